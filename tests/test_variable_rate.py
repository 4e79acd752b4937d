"""Variable-rate models (gain units, jahp_jax/models/gain.py, docs/variable_rate.md): training with
a lambda drawn per batch, compressing at a quality, a lambda or a target size, files that carry
their quality, the evaluation sweep, fine-tuning a fixed-rate model, the integer prior path under
another instruction set, and the bad input of each.

The model is a tiny joint model (N = M = 16, 4 gain levels over lambda 0.0035 ... 0.18) trained by
`jahp-train --variable_rate` for 40 steps on 64x64 crops (a real run, in a subprocess); the
Kodak images are those of the test data (../shared, or the committed kodim01 and kodim23).
"""

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import REPO_ROOT, SHARED, SSE4_2_SETUP, default_codegen

from jahp_jax.cli import codec as codec_cli
from jahp_jax.cli import evaluate as evaluate_cli
from jahp_jax.coding import bitstream
from jahp_jax.coding.codec import Codec, CodecError
from jahp_jax.io.checkpoints import load_codec, load_model
from jahp_jax.io.images import read_image, write_png
from jahp_jax.models import gain
from jahp_jax.models.compression_model import CompressionModel, init_params
from jahp_jax.models.config import ModelConfig
from jahp_jax.models.latent_codecs import PRIORS
from jahp_jax.models.losses import rate_distortion_loss
from jahp_jax.training import train

N = M = 16
LEVELS = 4
RANGE = (0.0035, 0.18)
KODAK = sorted((SHARED / "data" / "kodak").glob("*.png"))[:2]
SHIPPED = REPO_ROOT / "models" / "joint_n64_lmbda0.013"  # a fixed-rate model (lambda 0.013)
QUALITIES = (0.0, 0.25, 0.5, 0.75, 1.0)


def _run(module: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args], cwd=REPO_ROOT, capture_output=True, text=True,
        timeout=900, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
    )  # fmt: skip


def _last_line(result: subprocess.CompletedProcess) -> str:
    return result.stderr.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """4 training and 2 validation images."""
    root = tmp_path_factory.mktemp("images")
    for folder, count in (("train", 4), ("val", 2)):
        (root / folder).mkdir()
        for path in sorted((SHARED / "data" / folder / "bsds500").glob("*.jpg"))[:count]:
            shutil.copy(path, root / folder / path.name)
    return root


def _train_args(images: Path) -> list[str]:
    return [
        "--prior=joint", f"--num_filters={N}", f"--num_latents={M}", "--patch_size=64",
        "--batch_size=2", "--learning_rate=3e-3", "--log_every=10", "--seed=1",
        f"--data_dir={images / 'train'}", f"--val_data_dir={images / 'val'}", "--eval_images=2",
        f"--tfds_data_dir={images / 'tfds'}",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory, images) -> dict:
    """jahp-train --variable_rate: 40 steps, validated at the end."""
    workdir = tmp_path_factory.mktemp("runs") / "vr"
    result = _run(
        "jahp_jax.cli.train", *_train_args(images), "--variable_rate",
        f"--lmbda_range={RANGE[0]},{RANGE[1]}", f"--gain_levels={LEVELS}", "--num_steps=40",
        "--eval_every=40", f"--workdir={workdir}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return {"workdir": workdir, "log": result.stderr, "codec": load_codec(workdir)}


@pytest.fixture(scope="module")
def kodak() -> list[np.ndarray]:
    return [read_image(path) for path in KODAK]


# ---------------------------------------------------------------------------------------------
# Gains, qualities, identity.
# ---------------------------------------------------------------------------------------------
def test_gain_vectors_are_the_levels_and_their_exponential_interpolation():
    rng = np.random.default_rng(0)
    params = {name: rng.uniform(0.2, 3.0, (LEVELS, M)).astype(np.float32)
              for name in ("gain", "inverse_gain")}  # fmt: skip
    for level in range(LEVELS):  # a level's quality gives its vectors exactly
        code = gain.quality_code(level / (LEVELS - 1))
        vectors = gain.gain_vectors(params, code)
        assert np.array_equal(vectors[0], params["gain"][level])
        assert np.array_equal(vectors[1], params["inverse_gain"][level])
    units = gain.GainUnits(LEVELS, M, RANGE)
    one = 1 << gain.FRACTION_BITS
    for quality in (0.1, 0.37, 0.5, 0.9):
        code = gain.quality_code(quality)
        coded = gain.gain_vectors(params, code)
        # The coded position: the code's quality rounded to 2^-12 of a level.
        position = round(code * (LEVELS - 1) * one / gain.MAX_QUALITY_CODE) / one
        r, f = int(position), position - int(position)
        for name, vector in zip(("gain", "inverse_gain"), coded, strict=True):
            values = params[name].astype(np.float64)  # g_r^(1-f) g_{r+1}^f
            np.testing.assert_allclose(vector, values[r] ** (1 - f) * values[r + 1] ** f,
                                       rtol=1e-6)  # fmt: skip
        # ... which training's interpolation (jax, exp and log) gives at that quality.
        at_position = units.apply({"params": params}, jnp.float32(position / (LEVELS - 1)))
        for a, b in zip(coded, at_position, strict=True):
            np.testing.assert_allclose(a, np.asarray(b), rtol=2e-6)
        at_quality = units.apply({"params": params}, jnp.float32(quality))
        for a, b in zip(coded, at_quality, strict=True):  # 2^-12 of a level from it
            np.testing.assert_allclose(a, np.asarray(b), rtol=np.log(15) / one)


def test_qualities_lambdas_and_their_codes():
    assert gain.quality_code(0.0) == 0 and gain.quality_code(1.0) == gain.MAX_QUALITY_CODE
    assert gain.lmbda_of_quality(0.0, RANGE) == RANGE[0]
    assert gain.lmbda_of_quality(1.0, RANGE) == pytest.approx(RANGE[1])
    assert gain.quality_of_lmbda(0.0251, RANGE) == pytest.approx(0.5, abs=1e-3)
    # 4 levels over 0.0035 ... 0.18 sit at the ablation's lambdas (to 0.3 %).
    np.testing.assert_allclose(gain.level_lmbdas(RANGE, 4), [0.0035, 0.013, 0.0483, 0.18],
                               rtol=3e-3)  # fmt: skip
    for bad in (-0.01, 1.01, float("nan")):
        with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
            gain.quality_code(bad)
    with pytest.raises(ValueError, match="outside this model's range 0.0035 ... 0.18"):
        gain.quality_of_lmbda(0.2, RANGE)


def test_identity_records_the_rate_and_leaves_fixed_rate_models_as_they_were():
    fixed = ModelConfig("joint", 8, 8)
    # A fixed-rate model's identity is the JSON of the fields it had before variable rates.
    before = {"prior": "joint", "num_filters": 8, "num_latents": 8, "mixture_components": 1,
              "prior_options": {}, "integer_prior": False}  # fmt: skip
    canonical = json.dumps(before, sort_keys=True, separators=(",", ":")).encode()
    assert fixed.fingerprint() == hashlib.sha256(canonical).digest()[:8]
    variable = ModelConfig("joint", 8, 8, lmbda_range=RANGE, gain_levels=4)
    others = [dataclasses.replace(variable, gain_levels=6),
              dataclasses.replace(variable, lmbda_range=(0.0035, 0.0483))]  # fmt: skip
    assert len({c.fingerprint() for c in [fixed, variable, *others]}) == 4
    assert variable.variable_rate and not fixed.variable_rate
    assert "variable rate lambda 0.0035-0.18 (4 gain levels)" in variable.describe()
    assert ModelConfig.from_dict(json.loads(json.dumps(variable.to_dict()))) == variable


@pytest.mark.parametrize(
    "fields,message",
    [
        ({"gain_levels": 4}, "gain_levels=4 is for a variable-rate model"),
        ({"lmbda_range": (0.1, 0.01), "gain_levels": 4}, "0 < LOW < HIGH"),
        ({"lmbda_range": RANGE, "gain_levels": 1}, "gain_levels must be an integer in 2 ... 64"),
        ({"lmbda_range": RANGE}, "gain_levels must be"),
    ],
)
def test_bad_rate_configurations_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig("joint", 8, 8, **fields)


@pytest.mark.parametrize(
    "changes,message",
    [
        ({"variable_rate": True}, "--variable_rate needs --lmbda_range=LOW,HIGH"),
        ({"variable_rate": True, "lmbda_range": "0.1"}, "--lmbda_range must be LOW,HIGH"),
        ({"variable_rate": True, "lmbda_range": "0.1,0.01"}, "needs 0 < LOW < HIGH"),
        ({"variable_rate": True, "lmbda_range": "0.01,0.1", "lmbda": 0.01}, "--lmbda is for a"),
        ({"variable_rate": True, "lmbda_range": "0.01,0.1", "gain_levels": 1}, "gain_levels"),
        ({"lmbda": 0.01, "lmbda_range": "0.01,0.1"}, "add --variable_rate"),
        ({}, "--lmbda must be > 0 \\(or train --variable_rate\\), got None"),
    ],
)
def test_bad_training_configurations_are_refused(changes, message):
    config = train.TrainConfig(num_filters=8, num_latents=8, patch_size=64, **changes)
    with pytest.raises(train.ConfigError, match=message):
        train.check_train_config(config, None)


# ---------------------------------------------------------------------------------------------
# Training.
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_training_draws_the_rate_and_validates_at_three_qualities(trained):
    _, params, config = load_model(trained["workdir"])
    assert config == ModelConfig("joint", N, M, lmbda_range=RANGE, gain_levels=LEVELS)
    assert params["gain_units"]["gain"].shape == (LEVELS, M)
    start = gain.initial_gains(RANGE, LEVELS, M)["gain"]
    assert not np.allclose(params["gain_units"]["gain"], start)  # the gains trained
    for quality in ("0", "0.5", "1"):
        assert f"validation at step 40 (quality {quality})" in trained["log"]


def test_sizes_grow_with_quality(trained, kodak):
    codec = trained["codec"]
    for image in kodak:
        sizes = [len(codec.compress(image, quality)) for quality in QUALITIES]
        assert sizes == sorted(sizes) and len(set(sizes)) == len(sizes), sizes


def test_a_file_decodes_without_being_told_its_quality(trained, kodak):
    codec = trained["codec"]
    image = kodak[0][:200, :300]
    for quality in (0.3, 0.8):
        data, stats = codec.compress_with_stats(image, quality)
        header = bitstream.unpack(data)[0]
        assert header.quality == gain.quality_code(quality)
        assert stats.quality == pytest.approx(quality, abs=1e-5)
        decoded, y_hat = codec.decompress_with_latents(data)
        assert np.array_equal(y_hat, stats.y_hat)
        assert np.array_equal(decoded, codec.reconstruct(y_hat, 200, 300, header.quality))
        other = codec.reconstruct(y_hat, 200, 300, gain.quality_code(1.0 - quality))
        assert not np.array_equal(decoded, other)  # the header's quality is the one used
    assert codec.compress(image, 0.3) == codec.compress(image, 0.3)  # deterministic


def test_target_bpp_lands_within_3_percent_or_names_the_nearest_rate(trained, kodak):
    codec = trained["codec"]
    for image in kodak:
        lowest = codec.compress_with_stats(image, 0.0)[1].bits_per_pixel
        highest = codec.compress_with_stats(image, 1.0)[1].bits_per_pixel
        for share in (0.2, 0.5, 0.8):
            target = float(np.exp(np.log(lowest) + share * np.log(highest / lowest)))
            data, stats = codec.compress_to_bpp(image, target)
            assert 0.97 * target <= stats.bits_per_pixel <= target, (target, stats)
            assert np.array_equal(codec.decompress(data).shape, image.shape)
        with pytest.raises(CodecError, match=f"lowest rate .*: {lowest:.4f} bpp at quality 0"):
            codec.compress_to_bpp(image, 0.5 * lowest)
        with pytest.raises(CodecError, match=f"highest rate .*: {highest:.4f} bpp at quality 1"):
            codec.compress_to_bpp(image, 2.0 * highest)


# ---------------------------------------------------------------------------------------------
# Commands.
# ---------------------------------------------------------------------------------------------
def test_codec_command_compresses_at_a_quality_a_lambda_or_a_target(trained, kodak, tmp_path):
    codec, ckpt = trained["codec"], f"--checkpoint={trained['workdir']}"
    image = kodak[1][:128, :192]
    write_png(tmp_path / "in.png", image)
    cases = {
        "quality": (["--quality=0.6"], 0.6),
        "lmbda": (["--lmbda=0.02"], gain.quality_of_lmbda(0.02, RANGE)),
    }
    for name, (flags, quality) in cases.items():
        out = tmp_path / f"{name}.jahp"
        assert codec_cli.main(["compress", ckpt, *flags, str(tmp_path / "in.png"), str(out)]) == 0
        assert out.read_bytes() == codec.compress(image, quality), name
        assert codec_cli.main(["decompress", ckpt, str(out), str(tmp_path / "out.png")]) == 0
        assert np.array_equal(read_image(tmp_path / "out.png"), codec.decompress(out.read_bytes()))
    target = codec.compress_with_stats(image, 0.5)[1].bits_per_pixel
    out = tmp_path / "target.jahp"
    args = ["compress", ckpt, f"--target_bpp={target}", str(tmp_path / "in.png"), str(out)]
    assert codec_cli.main(args) == 0
    assert 0.97 * target <= 8 * len(out.read_bytes()) / image[..., 0].size <= target


@pytest.mark.parametrize(
    "flags,message",
    [
        (["--quality=1.5"], "quality 1.5 is outside [0, 1]"),
        (["--quality=-0.1"], "quality -0.1 is outside [0, 1]"),
        (["--lmbda=0.5"], "lambda 0.5 is outside this model's range 0.0035 ... 0.18"),
        (["--target_bpp=0.0001"], "below the lowest rate this model reaches on this image: "),
        (["--target_bpp=100"], "above the highest rate this model reaches on this image: "),
        ([], "holds a variable-rate model: give --quality=Q (0 ... 1), --lmbda=X"),
        (["--quality=0.5", "--lmbda=0.01"], "give one of --quality, --lmbda, --target_bpp"),
        (["--quality=0.5", "FIXED"], "--quality is for a variable-rate model; "),
        (["--lmbda=0.01", "FIXED"], "--lmbda is for a variable-rate model; "),
        (["--target_bpp=0.5", "FIXED"], "--target_bpp is for a variable-rate model; "),
    ],
)
def test_codec_command_bad_rates_get_one_line(trained, kodak, tmp_path, capsys, flags, message):
    write_png(tmp_path / "in.png", kodak[0][:64, :64])
    checkpoint = SHIPPED if "FIXED" in flags else trained["workdir"]
    flags = [flag for flag in flags if flag != "FIXED"]
    status = codec_cli.main(["compress", f"--checkpoint={checkpoint}", *flags,
                             str(tmp_path / "in.png"), str(tmp_path / "out.jahp")])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert status in (1, 2) and err.startswith("error: ") and len(err.splitlines()) == 1, err
    assert message in err, err
    assert not (tmp_path / "out.jahp").exists()


def test_eval_sweeps_the_qualities_of_one_model_into_one_curve(trained, tmp_path, capsys):
    common = [f"--checkpoint={trained['workdir']}", "--dataset=folder",
              f"--data_dir={KODAK[0].parent}", "--limit=1"]  # fmt: skip
    output = tmp_path / "vr.json"
    assert evaluate_cli.main([*common, "--qualities=0,0.5,1", f"--output={output}"]) == 0
    results = json.loads(output.read_text())
    assert results["results"]["quality"] == ["quality=0", "quality=0.5", "quality=1"]
    bpp = results["results"]["bpp"]
    assert bpp == sorted(bpp) and len(set(bpp)) == 3
    assert "variable rate" in results["name"]
    capsys.readouterr()
    for args, message in (
        ([], "holds a variable-rate model: give the qualities"),
        (["--qualities=0,1.5"], "quality 1.5 is outside [0, 1]"),
        (["--qualities=0,x"], "--qualities must be numbers"),
    ):
        assert evaluate_cli.main([*common, *args, f"--output={tmp_path / 'x.json'}"]) != 0
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1, err
    fixed = [f"--checkpoint={SHIPPED}", *common[1:], "--qualities=0,1"]
    assert evaluate_cli.main([*fixed, f"--output={tmp_path / 'x.json'}"]) == 1
    assert "qualities are for variable-rate models" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# Compatibility: fixed-rate models, fine-tuning, format 3 files, integer arithmetic.
# ---------------------------------------------------------------------------------------------
def test_fixed_rate_models_write_quality_zero_and_read_format_3_files(kodak):
    codec = load_codec(SHIPPED)
    image = kodak[0][:64, :96]
    data = codec.compress(image)
    assert data[4] == bitstream.FORMAT_VERSION and bitstream.unpack(data)[0].quality == 0
    version3 = bytearray(data)  # the same file as format 3 wrote it (bytes 6..7 reserved, 0)
    version3[4] = 3
    crc = bitstream.zlib.crc32(bytes(version3[48:]), bitstream.zlib.crc32(bytes(version3[:44])))
    version3[44:48] = crc.to_bytes(4, "little")
    assert np.array_equal(codec.decompress(bytes(version3)), codec.decompress(data))
    with pytest.raises(CodecError, match="a quality is for a variable-rate model"):
        codec.compress(image, 0.5)


@pytest.mark.slow
def test_init_from_a_fixed_rate_model_starts_as_that_model_at_its_lambda(images, tmp_path):
    fixed_model, fixed_params, fixed_config = load_model(SHIPPED)
    config = train.TrainConfig(
        variable_rate=True, lmbda_range=f"{RANGE[0]},{RANGE[1]}", gain_levels=LEVELS,
        num_filters=64, num_latents=64, init_from=str(SHIPPED),
    )  # fmt: skip
    params = train.pretrained_params(config)
    model = CompressionModel(config.model_config)
    x = jnp.asarray(kodak_crop := read_image(KODAK[0])[:64, :64], jnp.float32)[None] / 255.0
    assert kodak_crop.shape == (64, 64, 3)
    quality = gain.quality_of_lmbda(0.013, RANGE)  # the source's lambda
    start = model.apply({"params": params}, x, quality=jnp.float32(quality))["x_hat"]
    source = fixed_model.apply({"params": fixed_params}, x)["x_hat"]
    np.testing.assert_allclose(np.asarray(start), np.asarray(source), atol=1e-4)
    # The command: a real fine-tuning step from the shipped fixed-rate model.
    result = _run(
        "jahp_jax.cli.train", *_train_args(images), "--num_filters=64", "--num_latents=64",
        "--variable_rate", f"--lmbda_range={RANGE[0]},{RANGE[1]}", f"--gain_levels={LEVELS}",
        "--num_steps=1", "--eval_every=0", f"--init_from={SHIPPED}", f"--workdir={tmp_path / 'w'}",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert "starting from the parameters of" in result.stderr
    _, tuned, tuned_config = load_model(tmp_path / "w")
    assert tuned_config.variable_rate and tuned_config.num_filters == fixed_config.num_filters
    # One Adam step (learning rate 3e-3) from the source's parameters.
    np.testing.assert_allclose(tuned["g_a"]["layers_0"]["kernel"],
                               fixed_params["g_a"]["layers_0"]["kernel"], atol=3.1e-3)  # fmt: skip
    other = _run(
        "jahp_jax.cli.train", *_train_args(images), "--variable_rate",
        f"--lmbda_range={RANGE[0]},{RANGE[1]}", "--num_steps=1", f"--init_from={SHIPPED}",
        f"--workdir={tmp_path / 'other'}",
    )  # fmt: skip
    assert other.returncode == 1 and _last_line(other).startswith("error: --init_from")


_DECODE_ELSEWHERE = """
import sys, numpy as np
from jahp_jax.coding import bitstream
from jahp_jax.io.checkpoints import load_codec
codec = load_codec(sys.argv[1])
data = open(sys.argv[2], "rb").read()
image, y_hat = codec.decompress_with_latents(data)
code = bitstream.unpack(data)[0].quality
np.savez(sys.argv[3], image=image, y_hat=y_hat, inverse_gain=codec.gains(code)[1],
         synthesis_input=codec.synthesis_input(y_hat, code))
"""


@pytest.mark.slow
def test_an_integer_variable_rate_file_decodes_identically_under_another_isa(
    trained, kodak, tmp_path
):
    """The trained model converted to an integer prior path; a file compressed here by the
    command line (as a user's run compiles), decoded with XLA limited to SSE4.2 and another
    OpenBLAS kernel family: the same y_hat, inverse gain and g_s input, bit for bit (g_s itself
    is float: the image within 2 levels)."""
    integer = tmp_path / "integer"
    result = _run("jahp_jax.cli.convert", "--to=integer", str(trained["workdir"]), str(integer))
    assert result.returncode == 0, result.stderr[-2000:]
    write_png(tmp_path / "in.png", kodak[1][:192, :256])
    user = default_codegen(dict(os.environ))
    result = _run("jahp_jax.cli.codec", "compress", f"--checkpoint={integer}", "--quality=0.61",
                  str(tmp_path / "in.png"), str(tmp_path / "f.jahp"), env=user)  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    outputs = {}
    for name, extra in (("here", {}), ("sse4_2", SSE4_2_SETUP)):
        out = tmp_path / f"{name}.npz"
        result = subprocess.run(
            [sys.executable, "-c", _DECODE_ELSEWHERE, str(integer), str(tmp_path / "f.jahp"),
             str(out)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600,
            env={**user, **extra},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        outputs[name] = dict(np.load(out))
    here, there = outputs["here"], outputs["sse4_2"]
    for key in ("y_hat", "inverse_gain", "synthesis_input"):
        assert here[key].tobytes() == there[key].tobytes(), key
    assert np.abs(here["image"].astype(int) - there["image"].astype(int)).max() <= 2
    codec = load_codec(integer)
    assert codec.config.integer_prior and codec.config.variable_rate
    assert np.array_equal(codec.decompress_with_latents((tmp_path / "f.jahp").read_bytes())[1],
                          here["y_hat"])  # fmt: skip


def test_a_quality_is_refused_by_a_fixed_rate_model_and_required_by_a_variable_one():
    fixed = CompressionModel(ModelConfig("joint", 8, 8))
    variable = CompressionModel(ModelConfig("joint", 8, 8, lmbda_range=RANGE, gain_levels=2))
    x = jnp.zeros((1, 64, 64, 3))
    params = init_params(variable, jax.random.key(0))
    with pytest.raises(ValueError, match="needs a quality"):
        variable.apply({"params": params}, x)
    with pytest.raises(ValueError, match="a quality is for a variable-rate model"):
        fixed.apply({"params": init_params(fixed, jax.random.key(0))}, x, quality=0.5)
    codec = Codec(variable, params)
    with pytest.raises(CodecError, match="give a quality in \\[0, 1\\]"):
        codec.compress(np.zeros((8, 8, 3), np.uint8))


@pytest.mark.parametrize("prior", sorted(PRIORS))
def test_every_prior_trains_at_every_rate(prior):
    """Gain units wrap any latent codec: the rate grows with the quality from the start, and the
    loss at a drawn quality reaches the gains."""
    options = {"num_slices": 2} if prior in ("channelwise", "tcm") else {}  # fewer to compile
    config = ModelConfig(prior, 8, 16, prior_options=options, lmbda_range=RANGE, gain_levels=3)
    model = CompressionModel(config)
    size = 128  # 8 x 8 latents: TCM's attention windows need that many
    params = init_params(model, jax.random.key(0), size)
    last = params["g_a"]["layers_6"]  # y of a trained model's size, not nearly 0
    params["g_a"]["layers_6"] = {**last, "kernel": last["kernel"] * 20}
    x = jax.random.uniform(jax.random.key(1), (1, size, size, 3))

    def loss(params, quality):
        out = model.apply({"params": params}, x, train=True, quality=quality,
                          rngs={"noise": jax.random.key(2)})  # fmt: skip
        value, stats = rate_distortion_loss(x, out, gain.lmbda_of_quality(quality, RANGE))
        return value, stats["bpp"]

    _, low = loss(params, jnp.float32(0.1))
    (value, high), grads = jax.value_and_grad(loss, has_aux=True)(params, jnp.float32(0.9))
    assert float(high) > float(low) and np.isfinite(float(value))
    for name in ("gain", "inverse_gain"):
        gradient = np.asarray(grads["gain_units"][name])
        assert np.isfinite(gradient).all() and np.abs(gradient[1:]).sum() > 0, name
