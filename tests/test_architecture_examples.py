"""docs/architecture.md stays true: its tables of priors, transforms and named models are the
registries', and
its two worked examples (a prior made of existing parts, a new transform), taken from the page as
written, train, code files exactly and (the prior) run in integer arithmetic."""

import dataclasses
import importlib.util
import re
import sys

import jax
import numpy as np
import pytest
from conftest import REPO_ROOT

from jahp_jax.coding import integer
from jahp_jax.coding.codec import Codec
from jahp_jax.models.compression_model import CompressionModel, init_params
from jahp_jax.models.config import ModelConfig
from jahp_jax.models.latent_codecs import PRIORS
from jahp_jax.models.latent_codecs.integer_form import (
    LAYER_KINDS,
    has_integer_form,
    integer_networks,
)
from jahp_jax.models.presets import MODELS
from jahp_jax.models.transforms import TRANSFORMS, _family
from jahp_jax.training import train

PAGE = REPO_ROOT / "docs" / "architecture.md"


def _blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(), re.S)


def _example(kind: str, tmp_path, monkeypatch):
    """Import the page's example module for `kind` ('latent_codecs' or 'transforms') from a
    temporary folder and register it with the page's registry line -> its registry name."""
    blocks = _blocks()
    headers = [re.match(rf"# jahp_jax/models/{kind}/(\w+)\.py\n", block) for block in blocks]
    index = next((i for i, header in enumerate(headers) if header), None)
    assert index is not None, f"docs/architecture.md has no {kind} example"
    name, block = headers[index].group(1), blocks[index]
    (tmp_path / f"{name}.py").write_text(block)
    spec = importlib.util.spec_from_file_location(name, tmp_path / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    entry = eval("{" + blocks[index + 1] + "}", {name: module, "_family": _family})
    registry = PRIORS if kind == "latent_codecs" else TRANSFORMS
    for key, value in entry.items():
        monkeypatch.setitem(registry, key, value)
    return next(iter(entry))


def _table(heading: str) -> dict[str, str]:
    """{name: description} of the page's table whose first column is `heading`."""
    section = PAGE.read_text().split(f"| `{heading}` |")[1].split("\n\n")[0]
    rows = re.findall(r"^\| `([\w-]+)` \| ([^|]+) \|", section, re.M)
    return {name: text.strip() for name, text in rows}


def test_the_tables_are_the_registries():
    priors = _table("--prior")
    assert set(priors) == set(PRIORS)
    for name, text in priors.items():
        assert text == PRIORS[name].description, name
    transforms = _table("--transform")
    assert set(transforms) == set(TRANSFORMS)
    for name, text in transforms.items():
        assert text == TRANSFORMS[name].description, name
    page = PAGE.read_text()
    for name in PRIORS:  # the integer-form column
        row = re.search(rf"^\| `{name}` \|.*\| (yes|no)[^|]*\|$", page, re.M).group(1)
        assert (row == "yes") == has_integer_form(ModelConfig(name, 8, 8).composition()), name


def test_the_integer_form_tables_are_the_code():
    """The layer kinds named are `LAYER_KINDS`; each transform's row says whether its h_s has
    an integer form and of which kinds."""
    page = PAGE.read_text()
    section = page.split("| layer or part | in integers |")[1].split("\n\n")[0]
    assert set(re.findall(r"^\| [^|]+ \| `(\w+)`", section, re.M)) == set(LAYER_KINDS)
    section = page.split("| hyper synthesis of | integer form |")[1].split("\n\n")[0]
    rows = dict(re.findall(r"^\| `([\w-]+)` \| ([^|]+) \|$", section, re.M))
    assert set(rows) == set(TRANSFORMS)
    for name, text in rows.items():
        composition = ModelConfig("joint", 8, 8, transform=name).composition()
        assert text.startswith("yes") == has_integer_form(composition), name
        if text.startswith("yes"):
            kinds = {spec.kind for spec in integer_networks(composition)["h_s"]}
            assert set(re.findall(r"`(\w+)`", text)) == kinds, name


def test_the_named_models_table_is_the_presets():
    section = PAGE.read_text().split("| `--model` |")[1].split("\n\n")[0]
    rows = re.findall(r"^\| `([\w-]+)` \| `([\w-]+)` \| `(\w+)` \| (\d+), (\d+) \| ([^|]+) \|$",
                      section, re.M)  # fmt: skip
    assert {row[0] for row in rows} == set(MODELS)
    for name, transform, prior, n, m, reference in rows:
        preset = MODELS[name]
        assert (transform, prior, int(n), int(m), reference.strip()) == (
            preset.transform, preset.prior, preset.num_filters, preset.num_latents,
            preset.reference), name


def _train_two_steps(config: ModelConfig) -> None:
    settings = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    settings.pop("integer_prior")
    train_config = train.TrainConfig(lmbda=0.01, batch_size=2, patch_size=64, num_steps=2,
                                     log_every=1, **settings)  # fmt: skip
    mesh = train.make_mesh(jax.devices()[:1])
    model = CompressionModel(config)
    state = train.create_train_state(train_config, model, mesh)
    step = train.jit_train_step(train_config, model, mesh)
    hparams = train.hyperparams(train_config)
    batch = np.random.default_rng(0).random((2, 64, 64, 3), np.float32)
    before = jax.tree_util.tree_map(np.asarray, state.params)
    for _ in range(2):
        state, stats = step(state, batch, hparams)
        assert bool(stats["finite"])
    changed = jax.tree_util.tree_map(lambda a, b: not np.array_equal(a, b), before, state.params)
    assert any(jax.tree_util.tree_leaves(changed))


def _roundtrip(model: CompressionModel, params: dict, image: np.ndarray) -> None:
    codec = Codec(model, params)
    data, stats = codec.compress_with_stats(image)
    decoded, y_hat = codec.decompress_with_latents(data)
    assert np.array_equal(y_hat, stats.y_hat) and decoded.shape == image.shape
    assert np.abs(stats.y_hat).max() > 0


IMAGE = np.random.default_rng(1).integers(0, 256, (70, 90, 3), np.uint8)


def _params(model: CompressionModel) -> dict:
    params = jax.tree_util.tree_map(np.asarray, init_params(model, jax.random.key(0)))
    last = sorted(params["g_a"])[-1]  # larger latents: symbols that are not all 0
    params["g_a"][last]["kernel"] = params["g_a"][last]["kernel"] * 8
    return params


def test_the_prior_example_trains_codes_and_runs_in_integers(tmp_path, monkeypatch):
    from test_latent_codecs import max_differences

    name = _example("latent_codecs", tmp_path, monkeypatch)
    config = ModelConfig(name, 16, 32)
    _train_two_steps(config)
    model = CompressionModel(config)
    params = _params(model)
    _roundtrip(model, params, IMAGE)
    differences = max_differences(Codec(model, params), IMAGE)
    assert max(differences.values()) <= 1e-5, differences
    integer_model = CompressionModel(dataclasses.replace(config, integer_prior=True))
    _roundtrip(integer_model, integer.convert_params(integer_model, params), IMAGE)


def test_the_transform_example_trains_and_codes(tmp_path, monkeypatch):
    name = _example("transforms", tmp_path, monkeypatch)
    config = ModelConfig("joint", 16, 16, transform=name)
    _train_two_steps(config)
    model = CompressionModel(config)
    _roundtrip(model, _params(model), IMAGE)
    with pytest.raises(ValueError, match="unknown transform"):
        ModelConfig("joint", transform="no-such-family")
