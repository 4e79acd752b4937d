"""CompressAI -> jahp_jax conversion, checked against CompressAI's own outputs (golden files).

The golden cases (shared/golden/compressai, see its README) hold CompressAI 1.2.8's weights, input
and outputs for its four classic models at N=32, M=48; no PyTorch is needed here.
"""

import hashlib
import json
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import GOLDEN, golden_path

from jahp_jax.cli import convert as convert_cli
from jahp_jax.io import convert
from jahp_jax.io.checkpoints import load_codec, load_model, read_config, resolve_checkpoint
from jahp_jax.models.losses import bits_per_pixel

ARCHS = list(convert.ARCHS)


def golden_weights(arch: str) -> Path:
    """The golden case's weights (`conftest.golden_path`: skips, or fails in CI, without)."""
    return golden_path(f"{arch}_N32_M48.npz")


def golden_state(arch: str) -> dict[str, np.ndarray]:
    return convert.read_state_dict(golden_weights(arch))


def reference_streams(arch: str) -> list[bytes]:
    """CompressAI's bitstreams of a golden case: (4-byte little-endian length, bytes)*."""
    data = (GOLDEN / f"{arch}_N32_M48.bitstreams.bin").read_bytes()
    streams, position = [], 0
    while position < len(data):
        length = int.from_bytes(data[position : position + 4], "little")
        streams.append(data[position + 4 : position + 4 + length])
        position += 4 + length
    return streams


def nhwc(array: np.ndarray) -> np.ndarray:
    return np.transpose(array, (0, 2, 3, 1))


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    """Each golden case converted through the CLI and loaded back as an ordinary checkpoint."""
    models = {}
    for arch in ARCHS:
        out_dir = tmp_path_factory.mktemp(arch)
        args = ["--from=compressai", f"--arch={arch}", str(golden_weights(arch)), str(out_dir)]
        assert convert_cli.main(args) == 0
        models[arch] = (out_dir, *load_model(out_dir))
    return models


@pytest.mark.parametrize("arch", ARCHS)
def test_converted_model_reproduces_compressai(converted, arch):
    _, model, params, config = converted[arch]
    golden = np.load(golden_weights(arch))
    manifest = json.loads((GOLDEN / "MANIFEST.json").read_text())[arch]
    assert (config.prior, config.num_filters, config.num_latents) == (
        convert.ARCHS[arch],
        manifest["N"],
        manifest["M"],
    )
    x = jnp.asarray(nhwc(golden["input/x"]))

    y = model.apply({"params": params}, x, method="analysis")
    np.testing.assert_allclose(y, nhwc(golden["output/y"]), rtol=0, atol=1e-4)

    outputs = model.apply({"params": params}, x, train=False)
    expected_latents = {"y"} if arch == "bmshj2018-factorized" else {"y", "z"}
    assert set(outputs["likelihoods"]) == expected_latents
    for name, likelihood in outputs["likelihoods"].items():
        reference = nhwc(golden[f"output/forward_likelihoods_{name}"])
        np.testing.assert_allclose(likelihood, reference, rtol=1e-4, atol=0)
    num_pixels = x.shape[1] * x.shape[2]
    bpp = float(bits_per_pixel(outputs["likelihoods"], num_pixels)["bpp"])
    assert bpp == pytest.approx(manifest["forward_eval_bpp"], rel=1e-3)
    np.testing.assert_allclose(
        outputs["x_hat"], nhwc(golden["output/forward_x_hat"]), rtol=0, atol=1e-4
    )


def test_checkpoint_records_its_source(converted):
    out_dir, *_ = converted["mbt2018"]
    _, extra = read_config(resolve_checkpoint(out_dir))
    expected_sha = hashlib.sha256(golden_weights("mbt2018").read_bytes()).hexdigest()
    assert extra["source"] == {
        "format": "compressai",
        "arch": "mbt2018",
        "file": golden_weights("mbt2018").name,
        "sha256": expected_sha,
    }


def test_layouts_are_converted():
    """Conv (out, in, kh, kw) -> HWIO; transposed conv (in, out, kh, kw) -> (kh, kw, out, in)."""
    state = golden_state("mbt2018")
    _, params = convert.convert_state_dict(state, "mbt2018")
    conv = state["g_a.2.weight"]  # (out, in, 5, 5)
    np.testing.assert_array_equal(params["g_a"]["layers_2"]["kernel"][1, 3, 4, 7], conv[7, 4, 1, 3])
    deconv = state["g_s.0.weight"]  # (in=M, out=N, 5, 5)
    assert params["g_s"]["layers_0"]["kernel"].shape == (5, 5, 32, 48)
    np.testing.assert_array_equal(
        params["g_s"]["layers_0"]["kernel"][2, 0, 5, 9], deconv[9, 5, 2, 0]
    )
    np.testing.assert_array_equal(
        params["z_density"]["matrices_1"], state["entropy_bottleneck.matrices.1"]
    )


@pytest.mark.parametrize(
    "scheme",
    [
        ("entropy_bottleneck.matrices.", "entropy_bottleneck._matrices."),  # CompressAI zoo v1
        ("entropy_bottleneck.matrices.", "entropy_bottleneck._matrix"),  # CompressAI 1.1
    ],
)
def test_older_entropy_bottleneck_names_and_dataparallel_prefix(scheme):
    old, new = scheme
    state = golden_state("bmshj2018-hyperprior")
    renamed = {}
    for name, value in state.items():
        for kind in ("matrices", "biases", "factors"):
            plural = old.replace("matrices", kind)
            if name.startswith(plural):
                singular = {"matrices": "matrix", "biases": "bias", "factors": "factor"}[kind]
                prefix = new.replace("matrices", kind).replace("matrix", singular)
                name = prefix + name[len(plural) :]
        renamed["module." + name] = value
    assert "module.entropy_bottleneck.matrices.0" not in renamed
    _, expected = convert.convert_state_dict(state, "bmshj2018-hyperprior")
    _, params = convert.convert_state_dict(renamed, "bmshj2018-hyperprior")
    for index in range(5):
        np.testing.assert_array_equal(
            params["z_density"][f"biases_{index}"], expected["z_density"][f"biases_{index}"]
        )


def test_wrong_architecture_is_a_clear_error():
    state = golden_state("mbt2018")
    with pytest.raises(convert.ConversionError, match="not a CompressAI bmshj2018-factorized") as e:
        convert.convert_state_dict(state, "bmshj2018-factorized")
    assert "it matches --arch=mbt2018" in str(e.value)
    assert "unexpected 20 ('context_prediction.bias'" in str(e.value)
    with pytest.raises(convert.ConversionError, match=r"missing 20 \('context_prediction.bias'"):
        convert.convert_state_dict(golden_state("bmshj2018-factorized"), "mbt2018")
    with pytest.raises(
        convert.ConversionError,
        match=r"wrong shape 6 \(.*'h_s.0.weight' \(32, 48, 5, 5\) instead of \(32, 32, 5, 5\)",
    ):
        convert.convert_state_dict(golden_state("mbt2018-mean"), "bmshj2018-hyperprior")


def test_missing_key_and_cut_array_are_clear_errors():
    state = golden_state("mbt2018")
    del state["g_s.3.gamma"]
    with pytest.raises(convert.ConversionError, match=r"missing 1 \('g_s.3.gamma'\)"):
        convert.convert_state_dict(state, "mbt2018")
    state = golden_state("mbt2018")
    state["entropy_parameters.2.weight"] = state["entropy_parameters.2.weight"][:100]
    with pytest.raises(
        convert.ConversionError,
        match=r"wrong shape 1 \('entropy_parameters.2.weight' \(100, 160, 1, 1\) instead",
    ):
        convert.convert_state_dict(state, "mbt2018")


def test_unsupported_mask_and_constants_are_refused():
    state = golden_state("mbt2018")
    state["context_prediction.mask"][:, :, 2, 2] = 1.0  # mask type B
    with pytest.raises(convert.ConversionError, match="causal mask of type A"):
        convert.convert_state_dict(state, "mbt2018")
    state = golden_state("mbt2018")
    state["g_a.1.beta_reparam.lower_bound.bound"] = np.array([0.1], np.float32)
    with pytest.raises(convert.ConversionError, match="non-default settings"):
        convert.convert_state_dict(state, "mbt2018")


def test_truncated_file_fails_cleanly_and_writes_nothing(tmp_path, capsys):
    data = golden_weights("mbt2018-mean").read_bytes()
    truncated = tmp_path / "cut.npz"
    truncated.write_bytes(data[: len(data) // 2])
    out_dir = tmp_path / "out"
    assert convert_cli.main(["--arch=mbt2018-mean", str(truncated), str(out_dir)]) == 1
    message = capsys.readouterr().err
    assert message.startswith("error: cannot read") and message.count("\n") == 1
    assert not out_dir.exists()


def test_cli_refuses_wrong_arch_and_existing_output(converted, tmp_path, capsys):
    out_dir, *_ = converted["mbt2018"]
    args = ["--arch=bmshj2018-factorized", str(golden_weights("mbt2018")), str(tmp_path / "a")]
    assert convert_cli.main(args) == 1
    assert "not a CompressAI bmshj2018-factorized" in capsys.readouterr().err
    assert not (tmp_path / "a").exists()
    assert convert_cli.main(["--arch=mbt2018", str(golden_weights("mbt2018")), str(out_dir)]) == 1
    assert "already holds checkpoints" in capsys.readouterr().err


def test_pth_without_torch_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    source = tmp_path / "model.pth.tar"
    source.write_bytes(b"PK\x03\x04")
    with pytest.raises(convert.ConversionError, match=r"needs PyTorch.*\.\[torch\]"):
        convert.read_state_dict(source)


@pytest.mark.parametrize("arch", ARCHS)
def test_converted_model_codes_like_compressai(converted, arch):
    """Our coder on the converted model: a real round trip whose decoded image is CompressAI's own
    decompressed image, and whose payload (file minus our header) is within 2% of CompressAI's
    bitstreams. The golden input is a PNG crop (exact multiples of 1/255), so the uint8 image is
    the very input the reference streams were made from; the sizes still differ a little because
    the two coders' tables (scale levels, tail ranges, escape codes) differ."""
    out_dir, *_ = converted[arch]
    golden = np.load(golden_weights(arch))
    x = nhwc(golden["input/x"])[0]
    image = np.round(x * 255.0).astype(np.uint8)
    np.testing.assert_allclose(image / 255.0, x, rtol=0, atol=1e-6)

    codec = load_codec(out_dir)
    data, stats = codec.compress_with_stats(image)
    decoded = codec.decompress(data)
    reference = nhwc(golden["output/decompressed_x_hat"])[0]
    reference = np.round(np.clip(reference, 0.0, 1.0) * 255.0).astype(np.int16)
    assert np.abs(decoded.astype(np.int16) - reference).max() <= 1

    manifest = json.loads((GOLDEN / "MANIFEST.json").read_text())[arch]
    streams = reference_streams(arch)
    assert [len(stream) for stream in streams] == manifest["bytes_per_stream"]
    reference_bytes = sum(len(stream) for stream in streams)
    assert len(data) - stats.header_bytes == pytest.approx(reference_bytes, rel=0.02)
