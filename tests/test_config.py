"""ModelConfig: validation, the prior's own options, JSON round trip and the header fingerprint."""

import json
import subprocess
import sys
import tomllib

import pytest
from conftest import REPO_ROOT

from jahp_jax.cli import train as train_cli
from jahp_jax.models.compression_model import CompressionModel
from jahp_jax.models.config import ModelConfig
from jahp_jax.models.latent_codecs import PRIORS
from jahp_jax.training import train


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"prior": "nope"}, "unknown prior 'nope'"),
        ({"prior": "hyperprior", "mixture_components": 3}, "needs a prior that predicts means"),
        ({"mixture_components": 0}, "mixture_components must be an integer >= 1"),
        ({"num_filters": 0}, "num_filters must be an integer >= 1"),
        ({"num_latents": 8.0}, "num_latents must be an integer"),
        ({"prior_options": {"num_slices": 5}}, "prior 'joint' has no option num_slices"),
        ({"prior": "channelwise", "prior_options": {"slices": 5}}, "has no option slices"),
        ({"prior": "channelwise", "prior_options": {"num_slices": 0}}, "num_slices must be"),
    ],
)
def test_bad_configurations_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**kwargs)


def test_json_round_trip_and_old_checkpoint_configs():
    config = ModelConfig("channelwise", 8, 16, prior_options={"num_slices": 4})
    text = json.dumps({**config.to_dict(), "extra": {"lmbda": 0.01}})
    assert ModelConfig.from_dict(json.loads(text)) == config
    assert config.options == {"num_slices": 4}
    # A checkpoint written before prior_options and integer_prior existed.
    old = {"prior": "joint", "num_filters": 8, "num_latents": 8, "mixture_components": 1}
    assert ModelConfig.from_dict(old) == ModelConfig("joint", 8, 8)


def test_fingerprint_tells_every_field_apart():
    configs = [
        ModelConfig("joint", 8, 8),
        ModelConfig("checkerboard", 8, 8),
        ModelConfig("joint", 8, 12),
        ModelConfig("joint", 12, 8),
        ModelConfig("joint", 8, 8, 2),
        ModelConfig("joint", 8, 8, integer_prior=True),
        ModelConfig("channelwise", 8, 8),
        ModelConfig("channelwise", 8, 8, prior_options={"num_slices": 4}),
        ModelConfig("channelwise", 8, 8, prior_options={"num_slices": 4, "max_support_slices": 2}),
    ]
    fingerprints = {config.fingerprint() for config in configs}
    assert len(fingerprints) == len(configs)
    assert all(len(f) == 8 for f in fingerprints)
    # Options given in another order are the same model.
    a = ModelConfig("channelwise", 8, 8, prior_options={"num_slices": 4, "max_support_slices": 2})
    b = ModelConfig(
        "channelwise", 8, 8, prior_options=(("max_support_slices", 2), ("num_slices", 4))
    )
    assert a == b and a.fingerprint() == b.fingerprint() and hash(a) == hash(b)


def test_options_reach_the_latent_codec():
    model = CompressionModel(ModelConfig("channelwise", 8, 8, prior_options={"num_slices": 4}))
    assert len(model.make_latent_codec().composition.groups) == 4
    default = ModelConfig("channelwise", 8, 8).composition()
    assert len(default.groups) == 8  # min(num_slices = 10, M = 8)


def test_describe():
    assert ModelConfig("joint", 192, 320).describe() == "joint N=192 M=320"
    assert ModelConfig("mean_scale", 8, 8, 3).describe() == "mean_scale N=8 M=8 K=3"
    config = ModelConfig("mean_scale", 8, 8, integer_prior=True)  # the integer path needs K = 1
    assert config.describe() == "mean_scale N=8 M=8 integer prior"
    assert all(ModelConfig(prior, 8, 8).describe().startswith(prior) for prior in PRIORS)


def test_train_flags_carry_prior_options():
    assert train_cli.parse_prior_options(["num_slices=4", "max_support_slices=2"]) == (
        ("max_support_slices", 2),
        ("num_slices", 4),
    )
    assert train_cli.parse_prior_options(["a=0.5", "b=true", "c=text"]) == (
        ("a", 0.5),
        ("b", True),
        ("c", "text"),
    )
    for bad, message in (("num_slices", "not NAME=VALUE"), ("=4", "not NAME=VALUE")):
        with pytest.raises(train.ConfigError, match=message):
            train_cli.parse_prior_options([bad])
    with pytest.raises(train.ConfigError, match="given twice"):
        train_cli.parse_prior_options(["num_slices=4", "num_slices=5"])
    config = train.TrainConfig(lmbda=0.01, prior="channelwise", prior_options=(("num_slices", 4),))
    assert config.model_config == ModelConfig("channelwise", prior_options={"num_slices": 4})
    with pytest.raises(train.ConfigError, match="prior 'joint' has no option num_slices"):
        train.check_train_config(
            train.TrainConfig(lmbda=0.01, prior_options=(("num_slices", 4),)), device_count=1
        )


def test_the_library_has_no_command_lines():
    """Library modules parse no command line (no argparse, no flags, no `main`): the commands
    do, each in its jahp_jax.cli module and on a FlagValues of its own, so that importing any
    module, a command's too, leaves absl's global FLAGS alone."""
    package = REPO_ROOT / "jahp_jax"
    library = [p for p in package.rglob("*.py") if package / "cli" not in p.parents]
    assert len(library) > 20
    for path in library:
        text = path.read_text()
        for sign in ("argparse", "DEFINE_", "FlagValues", "def main(", "absl import app"):
            assert sign not in text, f"{path.relative_to(REPO_ROOT)} has {sign!r}"
    code = (
        "import importlib, pkgutil, jahp_jax\n"
        "from absl import flags\n"
        "names = [m.name for m in pkgutil.walk_packages(jahp_jax.__path__, 'jahp_jax.')]\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "ours = [m for m in flags.FLAGS.flags_by_module_dict() if 'jahp_jax' in m]\n"
        "assert not ours, ours\n"
        "print(*names)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert {target.split(":")[0] for target in scripts.values()} < set(proc.stdout.split())


def test_the_commands_import_tensorflow_only_to_read_data(tmp_path):
    """TensorFlow (seconds to import) waits for the data pipelines: importing the commands'
    modules leaves it out, and `jahp-train` refuses a bad flag without it."""
    code = (
        "import atexit, sys\n"
        "from jahp_jax.cli import codec, convert, evaluate, export, report, train\n"
        "atexit.register(lambda: print('tensorflow' in sys.modules))\n"
        "assert 'tensorflow' not in sys.modules\n"
        "sys.exit(train.main(['--lmbda=1', '--prior=bogus', '--workdir=' + sys.argv[1]]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "run")],
                          capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("error: unknown prior 'bogus'")
    assert proc.stdout.strip() == "False"
