"""Portable files: the integer prior path decodes bit-exactly under other numerics, the float
path does not (jahp_jax/coding/integer.py, docs/portable_files.md).

The cross-arithmetic tests encode every case (below) here and re-run the coder in
subprocesses: one with this CPU's default set-up (its widest ISA, OpenBLAS's default kernels,
XLA's default compile options rather than the test suite's), and others with other numerical
set-ups: XLA CPU code limited to SSE4.2 or AVX (`--xla_cpu_max_isa`) and compiled with the
suite's quick options (`conftest.FAST_COMPILE_FLAGS`), another OpenBLAS kernel family
(`OPENBLAS_CORETYPE`), two host devices; and in this process with the int64 numpy decoder
(`matmul="int64"`: no BLAS, no XLA). They assert that each set-up perturbs the float path (its
distribution parameters and its tables differ in some elements, so a float file from here fails
its table check there) and that the integer path decodes every file bit-exactly in all of them.
Models are tiny and randomly initialised (N = M = 16, 8 x 8 latents): every prior with an
integer form, with the default transform, and the hyper syntheses of cheng2020 (sub-pixel convs)
and ELIC (a stride-1 transposed conv); run this file as a script with a folder argument to be the
subprocess.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import (
    QUICK_PRIOR_OPTIONS,
    SHARED,
    SSE4_2_SETUP,
    default_codegen,
    suite_xla_flags,
)

from jahp_jax.cli import convert
from jahp_jax.coding import bitstream
from jahp_jax.coding import integer as integer_prior
from jahp_jax.coding.integer import (
    ACTIVATION_LIMIT,
    ONE,
    IntegerLayer,
    IntegerPriorError,
    LayerSpec,
    rounding_divide,
)
from jahp_jax.coding.programs import compiled_functions
from jahp_jax.coding.range_coder import CodecError, scale_to_level
from jahp_jax.coding.runner import LatentCoder
from jahp_jax.io.checkpoints import (
    checkpoint_root,
    load_codec,
    load_model,
    params_fingerprint,
    save_model,
)
from jahp_jax.io.images import read_image, write_png
from jahp_jax.models.compression_model import CompressionModel, create_model, init_params
from jahp_jax.models.config import ModelConfig
from jahp_jax.models.latent_codecs import PRIORS
from jahp_jax.models.latent_codecs.integer_form import (
    TRANSPOSED_KINDS,
    has_integer_form,
    integer_networks,
)
from jahp_jax.training import train

SIZE = 16  # N = M
INTEGER_PRIORS = [prior for prior in PRIORS if has_integer_form(ModelConfig(prior).composition())]
CASES = {  # name -> model: every integer prior, and the hyper syntheses of other layer kinds
    **{
        prior: ModelConfig(prior, SIZE, SIZE, prior_options=QUICK_PRIOR_OPTIONS.get(prior, {}))
        for prior in INTEGER_PRIORS
    },
    "joint cheng2020-anchor": ModelConfig("joint", SIZE, SIZE, transform="cheng2020-anchor"),
    "elic2022 elic2022": ModelConfig("elic2022", SIZE, SIZE, transform="elic2022"),
}
# The cases run again under other numerical set-ups (subprocesses): one of each part's kind, the
# others being compositions of the same parts (mean_scale, context, checkerboard, elic2022 with
# mbt2018's transforms): the hyper side alone, the raster context, channel slices with LRP, ELIC's
# checkerboard in uneven groups with a transposed conv, cheng2020's sub-pixel convs.
CROSS_ISA_CASES = ("hyperprior", "joint", "channelwise", "elic2022 elic2022",
                   "joint cheng2020-anchor")  # fmt: skip
LATENT = (8, 8)
SETUPS = {  # each compiled with the suite's options as well: a third way to round
    "sse4_2": SSE4_2_SETUP,
    "avx": {
        "XLA_FLAGS": suite_xla_flags("--xla_cpu_max_isa=AVX",
                                     "--xla_force_host_platform_device_count=2"),
        "OPENBLAS_CORETYPE": "Sandybridge",
    },
}  # fmt: skip


_ISAS = ("SSE4_2", "AVX", "AVX2", "AVX512")


def _host_isa() -> str:
    """The widest of _ISAS this CPU has (from /proc/cpuinfo; AVX512 where it cannot be read)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "AVX512"
    for isa, flag in (("AVX512", "avx512f"), ("AVX2", "avx2"), ("AVX", "avx")):
        if flag in flags:
            return isa
    return "SSE4_2"


def _isa_below_host(setup: str) -> bool:
    return _ISAS.index(setup.upper()) < _ISAS.index(_host_isa())


def _blas_probe() -> np.ndarray:
    """A float64 BLAS product of non-integer data: shows whether OpenBLAS's kernels changed."""
    rng = np.random.default_rng(0)
    return rng.normal(size=(64, 777)) @ rng.normal(size=(777, 96))


def _model_and_params(prior: str):
    model = create_model(prior, SIZE, SIZE)
    params = jax.tree_util.tree_map(np.asarray, init_params(model, jax.random.key(3)))
    return model, params


def _prior_path_params(config: ModelConfig):
    """The model and the params of its latent codec only (h_a, h_s, z density, prior networks):
    all that coding latents reads. g_a and g_s are not initialised (ELIC's take a minute)."""
    model = CompressionModel(config)
    y = np.zeros((1, *LATENT, config.num_latents), np.float32)
    variables = model.init(
        {"params": jax.random.key(3), "noise": jax.random.key(3)},
        y,
        method=lambda module, y: module.latent_codec(y, False),
    )
    return model, jax.tree_util.tree_map(np.asarray, variables["params"])


def _latents() -> np.ndarray:
    return (np.random.default_rng(1).normal(size=(*LATENT, SIZE)) * 3).astype(np.float32)


def _run_coders(cases: dict) -> dict:
    """What one numerical set-up computes for each prior: the float coder's z tables, table
    checksum, distribution and streams (re-encoding the same y), and the integer coder's
    checksum, decode of the reference integer file and re-encoding."""
    results = {"blas_probe": _blas_probe()}
    y = _latents()
    for name, case in cases.items():
        model = CompressionModel(ModelConfig.from_dict(case["config"]))
        float_coder = LatentCoder(model, case["float_params"])
        float_coded = float_coder.encode(y)
        integer_coder = LatentCoder(model, case["integer_params"], "integer")
        integer_coded = integer_coder.encode(y)
        z_tables = float_coder.backend.density_tables.get("z")
        results[name] = {
            "float_z_counts": None if z_tables is None else z_tables[0].counts,
            "float_checksum": float_coder.table_checksum,
            "float_distribution": float_coded.y_distribution,
            "float_streams": (float_coded.z_stream, float_coded.y_stream),
            "integer_checksum": integer_coder.table_checksum,
            "integer_decoded": integer_coder.decode(*case["integer_streams"], LATENT),
            "integer_streams": (integer_coded.z_stream, integer_coded.y_stream),
        }
    return results


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """Every case encoded here: params, streams, y_hat and distributions."""
    cases, coded = {}, {}
    y = _latents()
    for name, config in CASES.items():
        model, params = _prior_path_params(config)
        integer_params = integer_prior.convert_params(model, params)
        float_coded = LatentCoder(model, params).encode(y)
        integer_coded = LatentCoder(model, integer_params, "integer").encode(y)
        cases[name] = {
            "config": config.to_dict(),
            "float_params": params,
            "integer_params": integer_params,
            "float_streams": (float_coded.z_stream, float_coded.y_stream),
            "integer_streams": (integer_coded.z_stream, integer_coded.y_stream),
        }
        coded[name] = {"float": float_coded, "integer": integer_coded, "model": model}
    folder = tmp_path_factory.mktemp("portable")
    cross_isa = {name: cases[name] for name in CROSS_ISA_CASES}
    (folder / "cases.pkl").write_bytes(pickle.dumps(cross_isa))
    return {"cases": cases, "coded": coded, "folder": folder}


@pytest.fixture(scope="module")
def elsewhere(reference) -> dict:
    """The same coders run in a subprocess per numerical set-up (all at once), and in one with
    this CPU's default set-up ('host'), compiled as a user's run is (conftest.default_codegen):
    the float rounding compared is a user's, not the test suite's."""
    runs = {}
    for name, variables in {"host": {}, **SETUPS}.items():
        out = reference["folder"] / f"{name}.pkl"
        base = default_codegen(dict(os.environ)) if name == "host" else dict(os.environ)
        env = {**base, **variables, "JAX_PLATFORMS": "cpu"}
        command = [sys.executable, __file__, str(reference["folder"]), str(out)]
        runs[name] = (subprocess.Popen(command, env=env), out)
    for name, (process, _) in runs.items():
        assert process.wait(timeout=900) == 0, f"the {name} subprocess failed"  # 900: a hang
    return {name: pickle.loads(out.read_bytes()) for name, (_, out) in runs.items()}


def _differing(a: dict, b: dict) -> tuple[int, float]:
    """(number of differing elements, max |difference|) over the distribution parameters."""
    count, largest = 0, 0.0
    for key in ("scales", "means"):
        difference = np.abs(a[key].astype(np.float64) - b[key].astype(np.float64))
        count += int((a[key] != b[key]).sum())
        largest = max(largest, float(difference.max()))
    return count, largest


# ---------------------------------------------------------------------------------------------
# Cross-arithmetic.
# ---------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("setup", SETUPS)
def test_the_setups_perturb_the_float_path(reference, elsewhere, setup):
    """Each set-up changes float results: OpenBLAS's float64 products, the z tables of every
    hyperprior (the learned density's probabilities, so the table checksum: the float file from
    here is refused there) and the y distribution parameters of some priors."""
    if not _isa_below_host(setup):
        pytest.skip(f"this CPU's widest ISA is {_host_isa()}: the {setup} set-up is not different")
    here, there = elsewhere["host"], elsewhere[setup]
    assert not np.array_equal(here["blas_probe"], there["blas_probe"])
    perturbed_y = {}
    for name in CROSS_ISA_CASES:
        count, largest = _differing(
            here[name]["float_distribution"], there[name]["float_distribution"]
        )
        perturbed_y[name] = count
        line = f"{setup} {name}: {count} y parameters differ (max {largest:.3g})"
        if here[name]["float_z_counts"] is not None:
            z_counts = zip(here[name]["float_z_counts"], there[name]["float_z_counts"], strict=True)
            differing = sum(int((a != b).sum()) for a, b in z_counts)
            line += f", {differing} z table entries differ"
            assert differing > 0, name
            assert here[name]["float_checksum"] != there[name]["float_checksum"], name
        print(line)
    assert any(perturbed_y.values()), perturbed_y


@pytest.mark.parametrize("setup", SETUPS)
def test_integer_files_decode_bit_exactly_elsewhere(reference, elsewhere, setup):
    here, there = elsewhere["host"], elsewhere[setup]
    for name in CROSS_ISA_CASES:
        coded = reference["coded"][name]["integer"]
        assert there[name]["integer_checksum"] == here[name]["integer_checksum"], name
        assert np.array_equal(there[name]["integer_decoded"], coded.y_hat), name
        assert there[name]["integer_streams"] == reference["cases"][name]["integer_streams"]


def test_the_int64_numpy_decoder_decodes_bit_exactly(reference):
    """The reference decoder: numpy int64 sums (no BLAS, no XLA) give the float64-BLAS result."""
    for name in CASES:
        case, coded = reference["cases"][name], reference["coded"][name]
        coder = LatentCoder(coded["model"], case["integer_params"], "integer", matmul="int64")
        decoded = coder.decode(*case["integer_streams"], LATENT)
        assert np.array_equal(decoded, coded["integer"].y_hat), name


def test_integer_files_decode_here(reference, elsewhere):
    """In this process (the suite's XLA flags) and in the host subprocess (a user's)."""
    for name in CASES:
        case, coded = reference["cases"][name], reference["coded"][name]
        decoded = LatentCoder(coded["model"], case["integer_params"], "integer").decode(
            *case["integer_streams"], LATENT
        )
        assert np.array_equal(decoded, coded["integer"].y_hat), name
        if name in CROSS_ISA_CASES:
            host_decoded = elsewhere["host"][name]["integer_decoded"]
            assert np.array_equal(host_decoded, coded["integer"].y_hat), name


# ---------------------------------------------------------------------------------------------
# The integer path against the float model it was converted from.
# ---------------------------------------------------------------------------------------------
def test_the_integer_path_follows_the_float_model(reference):
    """Given the integer coder's own z_hat and y_hat, the float model's means are within a few
    fixed-point steps of the integer means, and the table index is the float scale's level at
    almost every latent."""
    for name in CASES:
        model = reference["coded"][name]["model"]
        params = reference["cases"][name]["float_params"]
        coded = reference["coded"][name]["integer"]

        def distribution(module, z_hat, y_hat):
            codec = module.latent_codec
            hyper = None if z_hat is None else codec.hyper_synthesis(z_hat)
            return codec.distribution(hyper, y_hat)

        z_hat = None if coded.z_hat is None else coded.z_hat[None]
        dist = model.apply({"params": params}, z_hat, coded.y_hat[None], method=distribution)
        means = np.asarray(dist["means"])[0]
        index = scale_to_level(np.asarray(dist["scales"])[0])
        assert np.abs(means - coded.y_distribution["means"]).max() < 8 / ONE, name
        assert np.mean(index == coded.y_distribution["table_index"]) > 0.99, name


@pytest.mark.parametrize(
    ("name", "kinds"),
    [
        ("mean_scale", {"deconv", "conv"}),  # 5x5 stride-2 transposed convs, a 3x3 conv
        ("joint cheng2020-anchor", {"conv", "subpel"}),  # 3x3 convs, sub-pixel convs
        ("elic2022 elic2022", {"deconv", "transposed"}),  # ... a 3x3 stride-1 transposed conv
    ],
)
def test_the_integer_layers_match_float_convolutions(reference, name, kinds):
    """A converted hyper synthesis of each layer kind, on fixed-point inputs, gives the float
    network's output to within a few 2^-12 steps, and its fake-quantized float form (what
    integer-aware training computes) to within two."""
    model, params = reference["coded"][name]["model"], reference["cases"][name]["float_params"]
    codec = model.make_latent_codec()
    assert {spec.kind for spec in integer_networks(codec.composition)["h_s"]} == kinds
    arrays = integer_prior.integer_arrays(model, params)
    z = np.random.default_rng(2).integers(-4, 5, size=(3, 5, codec.composition.side.z_channels))
    hyper = compiled_functions(model)["hyper_synthesis"](params, z[None].astype(np.float32))
    integer_hyper = integer_prior.IntegerPrior(codec, arrays).hyper(z)[0] / ONE
    assert np.abs(integer_hyper - np.asarray(hyper)[0]).max() < 4 / ONE
    with integer_prior.fake_quantization(codec):
        fake = model.apply(
            {"params": params},
            z[None].astype(np.float32),
            method=lambda module, z_hat: module.latent_codec.hyper_synthesis(z_hat),
        )
    assert np.abs(integer_hyper - np.asarray(fake)[0]).max() <= 2 / ONE


def _reference_map(spec: LayerSpec, arrays: dict, x: np.ndarray) -> np.ndarray:
    """What `IntegerLayer.apply_map` must compute, the plain way, from the stored arrays: a
    deconv as a correlation over the zero-upsampled input, a stride-1 transposed conv by adding
    each input pixel's kernel products onto the output pixels it reaches, a sub-pixel conv's
    shuffle pixel by pixel; every sum in int64, rounding by floor division."""
    kernel = np.asarray(arrays["kernel"], np.int64)
    k = kernel.shape[0]
    if spec.kind == "transposed":  # (k, k, O, I): out[i + d - k // 2] += K[d] x[i]
        height, width = x.shape[:2]
        padded = np.zeros((height + k - 1, width + k - 1, kernel.shape[2]), np.int64)
        for dy in range(k):
            for dx in range(k):
                padded[dy : dy + height, dx : dx + width] += x @ kernel[dy, dx].T
        pad = k // 2
        sums = padded[pad : pad + height, pad : pad + width].reshape(-1, kernel.shape[2])
    else:
        if spec.kind == "deconv":  # the strided conv's (k, k, O, I) kernel, flipped, transposed
            kernel = np.swapaxes(kernel[::-1, ::-1], 2, 3)
            up = np.zeros((2 * x.shape[0], 2 * x.shape[1], x.shape[2]), np.int64)
            up[::2, ::2] = x
            before = k - 1 - k // 2
            x = np.pad(up, ((before, k - 1 - before), (before, k - 1 - before), (0, 0)))
        else:
            x = np.pad(x, ((k // 2, k // 2), (k // 2, k // 2), (0, 0)))
        height, width = x.shape[0] - k + 1, x.shape[1] - k + 1
        windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(0, 1))
        patches = windows.transpose(0, 1, 3, 4, 2).reshape(height * width, -1)
        sums = patches @ kernel.reshape(-1, kernel.shape[-1])
    values = rounding_divide(sums + arrays["bias"], arrays["divisor"])
    if spec.activation == "leaky":
        values = np.where(values >= 0, values, rounding_divide(values, 100))
    elif spec.activation == "relu":
        values = np.maximum(values, 0)
    values = np.clip(values, -ACTIVATION_LIMIT, ACTIVATION_LIMIT).reshape(height, width, -1)
    if spec.kind != "subpel":
        return values
    shuffled = np.empty((2 * height, 2 * width, values.shape[-1] // 4), np.int64)
    for row, col, channel in np.ndindex(*shuffled.shape):  # PyTorch's PixelShuffle
        source = 4 * channel + 2 * (row % 2) + col % 2
        shuffled[row, col, channel] = values[row // 2, col // 2, source]
    return shuffled


@pytest.mark.parametrize("kind", ["deconv", "conv", "transposed", "subpel"])
@pytest.mark.parametrize("divisors", ["powers of two", "any"])
def test_layers_by_phases_and_shifts_give_the_plain_integers(kind, divisors):
    """A deconv computed per output phase (only the taps that meet input samples), a stride-1
    transposed conv as the conv of its flipped kernel, a sub-pixel conv's shuffle as one
    reshape, and rounding by shifts (power-of-two divisors; floor division otherwise) are the
    plain computation's integers exactly, with activations at the clip limits: numpy's int64
    loops, and float64 products in a 64-bit XLA program (what the coder runs)."""
    rng = np.random.default_rng(5)
    k, inputs, outputs = {"deconv": (5, 6, 7), "conv": (3, 5, 4), "transposed": (3, 5, 6),
                          "subpel": (3, 5, 8)}[kind]  # fmt: skip
    shape = (k, k, outputs, inputs) if kind in TRANSPOSED_KINDS else (k, k, inputs, outputs)
    divisor = 1 << rng.integers(0, 20, outputs)
    if divisors == "any":
        divisor = rng.integers(1, 1 << 20, outputs)
    arrays = {"kernel": rng.integers(-(2**15) + 1, 2**15, shape),
              "bias": rng.integers(-(2**31) + 1, 2**31, outputs), "divisor": divisor}  # fmt: skip
    x = rng.integers(-ACTIVATION_LIMIT, ACTIVATION_LIMIT + 1, (4, 6, inputs))
    x[0, 0], x[1, 1] = ACTIVATION_LIMIT, -ACTIVATION_LIMIT
    for activation in ("leaky", "relu", "none"):
        spec = LayerSpec(None, kind, activation)
        expected = _reference_map(spec, arrays, x)
        layer = IntegerLayer.from_arrays(spec, arrays, "int64")
        assert np.array_equal(layer.apply_map(x), expected), activation
        layer = IntegerLayer.from_arrays(spec, arrays, "float64")
        with jax.enable_x64(True):
            compiled = jax.jit(lambda layer, x: layer.apply_map(x, jnp))(layer, x)
            assert np.array_equal(np.asarray(compiled), expected), activation


# ---------------------------------------------------------------------------------------------
# Arithmetic details and bad input.
# ---------------------------------------------------------------------------------------------
def test_rounding_divide_rounds_half_up_for_any_sign():
    values = np.array([-7, -6, -5, -4, 4, 5, 6, 7], np.int64)
    assert rounding_divide(values, 4).tolist() == [-2, -1, -1, -1, 1, 1, 2, 2]
    assert rounding_divide(values, 1).tolist() == values.tolist()


def test_a_layer_whose_sums_could_pass_2_to_53_is_refused():
    spec = LayerSpec("layers_0", "dense", "none")
    kernel = np.full((1, 1, 2**15, 1), 2**15 - 1, np.int64)  # fan-in 32768 at the int16 limit
    arrays = {"kernel": kernel, "bias": np.zeros(1, np.int64), "divisor": np.ones(1, np.int64)}
    with pytest.raises(IntegerPriorError, match="2\\^53"):
        IntegerLayer.from_arrays(spec, arrays)


@pytest.mark.parametrize(
    ("prior", "components", "message"),
    [
        ("factorized", 1, "factorized density"),
        ("mean_scale", 2, "K=2"),
    ],
)
def test_unsupported_models_are_refused_in_one_line(prior, components, message):
    model = create_model(prior, 10, 10, components)
    with pytest.raises(IntegerPriorError, match=message) as error:
        integer_prior.integer_arrays(model, {})
    assert "\n" not in str(error.value)


def test_an_integer_coder_needs_its_arrays_and_valid_tables(reference):
    model = reference["coded"]["joint"]["model"]
    params = reference["cases"]["joint"]["integer_params"]
    with pytest.raises(IntegerPriorError, match="no integer arrays"):
        LatentCoder(model, reference["cases"]["joint"]["float_params"], "integer")
    broken = {**params, "integer_prior": {**params["integer_prior"]}}
    tables = dict(broken["integer_prior"]["gaussian_tables"])
    tables["counts"] = tables["counts"].copy()
    tables["counts"][3, 0] += 1
    broken["integer_prior"]["gaussian_tables"] = tables
    with pytest.raises(IntegerPriorError, match="not a 24-bit PMF"):
        LatentCoder(model, broken, "integer")
    incomplete = {**params, "integer_prior": {**params["integer_prior"]}}
    del incomplete["integer_prior"]["entropy_parameters"]
    with pytest.raises(IntegerPriorError, match="incomplete"):
        LatentCoder(model, incomplete, "integer")


# ---------------------------------------------------------------------------------------------
# Checkpoints, files and the command line.
# ---------------------------------------------------------------------------------------------
IMAGE = np.random.default_rng(4).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)


def _cli(module: str, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})},
    )


@pytest.fixture(scope="module")
def workdirs(tmp_path_factory) -> dict[str, Path]:
    """A float joint checkpoint (random weights, N = M = 16) and its `convert --to=integer`."""
    root = tmp_path_factory.mktemp("models")
    model, params = _model_and_params("joint")
    params["g_a"]["layers_6"]["kernel"] = params["g_a"]["layers_6"]["kernel"] * 20  # y not all 0
    save_model(checkpoint_root(root / "float"), 5, model.config, params)
    assert convert.main(["--to=integer", str(root / "float"), str(root / "integer")]) == 0
    return {"float": root / "float", "integer": root / "integer"}


def test_a_converted_checkpoint_loads_as_an_integer_model(workdirs):
    model, params, config = load_model(workdirs["integer"])
    assert config.integer_prior and config.prior == "joint"
    float_model, float_params, _ = load_model(workdirs["float"])
    expected = integer_prior.convert_params(float_model, float_params)["integer_prior"]
    loaded = jax.tree_util.tree_map(np.asarray, params["integer_prior"])
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, loaded, expected))
    assert params_fingerprint(params) != params_fingerprint(float_params)


def test_integer_files_round_trip_and_refuse_the_other_arithmetic(workdirs):
    float_codec, integer_codec = load_codec(workdirs["float"]), load_codec(workdirs["integer"])
    data, stats = integer_codec.compress_with_stats(IMAGE)
    assert bitstream.unpack(data)[0].arithmetic == "integer"
    decoded, y_hat = integer_codec.decompress_with_latents(data)
    assert np.array_equal(y_hat, stats.y_hat) and decoded.shape == IMAGE.shape
    # The estimate is the integer tables' code length: the payload (the header aside) is within
    # the float coder's bound of it (tests/test_codec.py), 0.5 % + 64 bits per stream.
    payload_bits = 8 * (len(data) - bitstream.HEADER_BYTES)
    print(f"\n[figure] integer file: {payload_bits} payload bits, estimate "
          f"{stats.estimated_bits:.0f}")
    assert abs(payload_bits - stats.estimated_bits) <= 0.005 * stats.estimated_bits + 2 * 64
    assert stats.estimated_bits > 20 * 2 * 64  # the flush allowance is a small part of it
    float_data = float_codec.compress(IMAGE)
    for codec, other in ((integer_codec, float_data), (float_codec, data)):
        with pytest.raises(CodecError, match="prior path") as error:
            codec.decompress(other)
        assert "\n" not in str(error.value)


def test_an_integer_file_decodes_under_another_isa_and_a_float_file_does_not(workdirs, tmp_path):
    """Files written here by the command line (as a user's run compiles), decoded by the command
    line with XLA limited to SSE4.2."""
    sse = SSE4_2_SETUP
    write_png(tmp_path / "image.png", IMAGE)
    for name in ("integer", "float"):
        result = _cli("jahp_jax.cli.codec", "compress", f"--checkpoint={workdirs[name]}",
                      str(tmp_path / "image.png"), str(tmp_path / f"{name}.jahp"),
                      env=default_codegen(dict(os.environ)))  # fmt: skip
        assert result.returncode == 0, result.stderr
    here = load_codec(workdirs["integer"]).decompress((tmp_path / "integer.jahp").read_bytes())
    decompress = ("jahp_jax.cli.codec", "decompress")
    files = (str(tmp_path / "integer.jahp"), str(tmp_path / "integer.png"))
    result = _cli(*decompress, f"--checkpoint={workdirs['integer']}", *files, env=sse)
    assert result.returncode == 0, result.stderr
    there = read_image(tmp_path / "integer.png")
    assert np.abs(there.astype(int) - here.astype(int)).max() <= 2  # g_s is float
    if _isa_below_host("sse4_2"):
        files = (str(tmp_path / "float.jahp"), str(tmp_path / "float.png"))
        result = _cli(*decompress, f"--checkpoint={workdirs['float']}", *files, env=sse)
        assert result.returncode == 1 and "entropy tables" in result.stderr
        assert not (tmp_path / "float.png").exists()


def test_an_exported_models_file_decodes_identically_under_another_isa(workdirs, tmp_path):
    """`jahp-export` of a float training checkpoint writes the integer form by default: a file
    the command line compresses with it (compiled as a user's run is, this CPU's widest ISA)
    decodes in a process with XLA limited to SSE4.2 to the same y_hat, bit for bit."""
    exported = tmp_path / "exported"
    result = _cli("jahp_jax.cli.export", str(workdirs["float"]), str(exported))
    assert result.returncode == 0 and "integer prior" in result.stdout, result.stderr
    write_png(tmp_path / "image.png", IMAGE)
    result = _cli("jahp_jax.cli.codec", "compress", f"--checkpoint={exported}",
                  str(tmp_path / "image.png"), str(tmp_path / "image.jahp"),
                  env=default_codegen(dict(os.environ)))  # fmt: skip
    assert result.returncode == 0 and "warning" not in result.stderr, result.stderr
    decode = (
        "import sys; import numpy as np; from jahp_jax.io.checkpoints import load_codec; "
        "y_hat = load_codec(sys.argv[1]).decompress_with_latents(open(sys.argv[2], 'rb').read())"
        "[1]; np.save(sys.argv[3], y_hat)"
    )
    sse = SSE4_2_SETUP
    for name, env in (("here", default_codegen(dict(os.environ))), ("sse4_2", sse)):
        result = subprocess.run(
            [sys.executable, "-c", decode, str(exported), str(tmp_path / "image.jahp"),
             str(tmp_path / f"{name}.npy")],
            capture_output=True, text=True, timeout=300,
            env={**os.environ, "JAX_PLATFORMS": "cpu", **env},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
    here, there = np.load(tmp_path / "here.npy"), np.load(tmp_path / "sse4_2.npy")
    assert np.array_equal(here, there) and np.abs(here).max() > 0


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("integer", "already holds an integer-prior model"),
        ("factorized", "'factorized' prior"),
        ("missing", "does not exist"),
    ],
)
def test_convert_to_integer_refuses_bad_input_in_one_line(
    workdirs, tmp_path, capsys, source, message
):
    if source == "factorized":
        model, params = _model_and_params("factorized")
        save_model(checkpoint_root(tmp_path / source), 0, model.config, params)
    path = workdirs.get(source, tmp_path / source)
    assert convert.main(["--to=integer", str(path), str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error and error.count("\n") == 1
    assert not (tmp_path / "out").exists() and not list(tmp_path.glob(".out.partial-*"))


def test_convert_to_integer_refuses_an_existing_destination(workdirs, capsys):
    assert convert.main(["--to=integer", str(workdirs["float"]), str(workdirs["integer"])]) == 1
    assert "already exists" in capsys.readouterr().err


@pytest.mark.slow
def test_integer_aware_fine_tuning_writes_integer_models_and_resumes(tmp_path):
    """train --init_from=FLOAT --integer_prior: the prior path fake-quantized in the loss, the
    checkpoint an integer-prior model that codes, and a rerun restores it (then stops: done)."""
    model, params = _model_and_params("mean_scale")
    save_model(checkpoint_root(tmp_path / "float"), 0, model.config, params)
    bsds = SHARED / "data" / "train" / "bsds500"
    config = train.TrainConfig(
        lmbda=0.01, prior="mean_scale", num_filters=SIZE, num_latents=SIZE, integer_prior=True,
        patch_size=64, batch_size=2, num_steps=1, eval_every=0, data_dir=str(bsds),
        init_from=str(tmp_path / "float"),
    )  # fmt: skip
    trained = train.train_and_evaluate(config, tmp_path / "run")
    resumed = train.train_and_evaluate(config, tmp_path / "run")
    assert int(resumed.step) == 1
    assert jax.tree_util.tree_all(
        jax.tree_util.tree_map(np.array_equal, trained.params, resumed.params)
    )
    _, saved_params, saved = load_model(tmp_path / "run")
    assert saved.integer_prior
    kernel = saved_params["h_s"]["layers_0"]["kernel"]
    assert not np.array_equal(np.asarray(kernel), params["h_s"]["layers_0"]["kernel"])
    codec = load_codec(tmp_path / "run")
    assert codec.decompress(codec.compress(IMAGE)).shape == IMAGE.shape


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"prior": "factorized"}, "'factorized' prior"),
        ({"prior": "joint", "mixture_components": 2}, "K=2"),
        ({"prior": "tcm"}, "the 'tcm' prior has no integer form: .* layer 1 \\(gelu\\) has none"),
        (
            {"prior": "joint", "transform": "tcm"},
            "the 'joint' prior with the 'tcm' transform has no integer form: network 'h_s', "
            "layer 0 \\(ResidualBlockUpsample\\) has none",
        ),
    ],
)
def test_integer_prior_configs_without_an_integer_form_are_refused_in_one_line(fields, message):
    with pytest.raises(ValueError, match=message) as error:
        ModelConfig(num_filters=16, num_latents=16, integer_prior=True, **fields)
    assert "\n" not in str(error.value)


if __name__ == "__main__":  # the subprocess of the cross-arithmetic tests: FOLDER OUT
    folder, out = Path(sys.argv[1]), Path(sys.argv[2])
    outcome = _run_coders(pickle.loads((folder / "cases.pkl").read_bytes()))
    out.write_bytes(pickle.dumps(outcome))
