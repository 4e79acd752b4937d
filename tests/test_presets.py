"""Named models (`--model`): each is a valid model whose size is the reference's, and jahp-train's
flags take it, with explicit flags overriding it."""

import jax
import pytest

from jahp_jax.cli import train as train_cli
from jahp_jax.models.compression_model import CompressionModel, count_params, init_params
from jahp_jax.models.config import ModelConfig
from jahp_jax.models.presets import MODELS, model_fields

# Millions of parameters of the references at these sizes (CompressAI 1.2.8, LIC_TCM), as
# counted beside the issue that added them (the whole model, entropy models included).
PUBLISHED = {
    "mbt2018": 14.1,
    "cheng2020-anchor": 26.6,
    "cheng2020-anchor-checkerboard": 26.6,
    "elic2022-official": 32.1,
    "elic2022-chandelier": 33.8,
    "tcm": 76.6,
}


@pytest.mark.parametrize("name", list(MODELS))
def test_every_named_model_is_a_valid_model(name):
    config = ModelConfig(**MODELS[name].fields())
    assert config.prior == MODELS[name].prior and config.transform == MODELS[name].transform
    assert config.mixture_components == (3 if name.endswith("-gmm") else 1)
    if name in PUBLISHED:
        model = CompressionModel(config)
        shapes = jax.eval_shape(lambda: init_params(model, jax.random.key(0)))
        assert round(count_params(shapes) / 1e6, 1) == PUBLISHED[name]


def test_explicit_values_override_a_named_model():
    fields = model_fields("elic2022-official", {"num_latents": 64})
    assert fields["num_latents"] == 64 and fields["prior"] == "elic2022"
    with pytest.raises(ValueError, match="unknown --model 'elic'"):
        model_fields("elic", {})


def _config(*argv: str):
    train_cli.FLAGS.unparse_flags()
    train_cli.FLAGS(["jahp-train", "--lmbda=0.01", "--workdir=unused", *argv])
    try:
        return train_cli.config_from_flags().model_config
    finally:
        train_cli.FLAGS.unparse_flags()


def test_jahp_train_takes_a_named_model():
    assert _config("--model=tcm") == ModelConfig("tcm", 128, 320, transform="tcm")
    config = _config("--model=elic2022-chandelier", "--num_latents=64",
                     "--prior_option=groups=4,4,8,16,32")  # fmt: skip
    assert config.options == {"variant": "chandelier", "groups": "4,4,8,16,32"}
    assert (config.num_filters, config.num_latents) == (192, 64)
    assert _config("--model=mbt2018", "--prior=checkerboard").prior == "checkerboard"
