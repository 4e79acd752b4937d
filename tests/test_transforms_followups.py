"""cheng2020, ELIC and TCM networks (jahp_jax.models.transforms, jahp_jax.io.convert_followups),
checked against their reference implementations' own outputs.

The golden cases (../shared/golden/followups, see its README; not committed, so these tests skip
without it) hold each reference's weights (N = 32), input, y = g_a(x), eval-mode forward
likelihoods and x_hat. The references' quantized symbols (round(y - mean), round(z - median)),
which a rebuilt forward pass needs so that an element within float rounding of a half rounds as
the reference rounded it, are committed in tests/data/followups (made by its make_symbols.py from
the running references). With them, `forward` below rebuilds each reference's eval forward pass
from our networks: h_a, h_s and the z density; the joint, checkerboard, ELIC channel-group and
TCM channel-slice priors' networks; g_s. Its likelihoods and x_hat must equal the reference's.
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import FULL_SHARED, REPO_ROOT

from jahp_jax.io.convert import ConversionError, read_state_dict
from jahp_jax.io.convert_followups import (
    ConvertedNetworks,
    convert_followup,
    reference_name,
    reference_networks,
)
from jahp_jax.models.entropy_models import GaussianConditional
from jahp_jax.models.latent_codecs.parts import anchor_map
from jahp_jax.models.transforms import cheng2020, elic2022, tcm

GOLDEN = FULL_SHARED / "golden" / "followups"
SYMBOLS = REPO_ROOT / "tests" / "data" / "followups"
CASES = {
    "cheng2020-anchor": "cheng2020-anchor_N32",
    "cheng2020-attn": "cheng2020-attn_N32",
    "cheng2020-anchor-checkerboard": "cheng2020-anchor-checkerboard_N32",
    "elic2022-official": "elic2022-official_N32_M64",
    "elic2022-chandelier": "elic2022-chandelier_N32_M64",
    "tcm": "tcm_N32_M320",
}
TOLERANCE = 1e-4  # max abs difference to the reference (outputs in [0, 1] or y of magnitude ~10)


@pytest.fixture(scope="module")
def followups_dir() -> Path:
    """The follow-up models' reference outputs, `../shared/golden/followups`; skips without."""
    if not GOLDEN.is_dir():
        pytest.skip(f"needs the follow-up models' reference outputs in {GOLDEN} (not committed)")
    return GOLDEN


def nhwc(array: np.ndarray) -> np.ndarray:
    return np.transpose(array, (0, 2, 3, 1))


@functools.cache
def golden(arch: str) -> dict[str, np.ndarray]:
    with np.load(GOLDEN / f"{CASES[arch]}.npz") as arrays:
        return {name: arrays[name] for name in arrays.files if not name.startswith("param/")}


@functools.cache
def converted(arch: str) -> ConvertedNetworks:
    return convert_followup(read_state_dict(GOLDEN / f"{CASES[arch]}.npz"), arch)


@functools.cache
def symbols(arch: str) -> dict[str, np.ndarray]:
    with np.load(SYMBOLS / f"{CASES[arch]}.symbols.npz") as arrays:
        return {name: nhwc(arrays[name]).astype(np.float32) for name in arrays.files}


@functools.cache
def _jitted_apply(arch: str, name: str):
    return jax.jit(reference_networks(arch, converted(arch).options)[name].module.apply)


def apply(arch: str, name: str, x, method: str | None = None):
    """Network `name` of the converted golden case on x (jitted per network)."""
    params = {"params": converted(arch).params[name]}
    if method is not None:
        module = reference_networks(arch, converted(arch).options)[name].module
        return module.apply(params, x, method=method)
    return _jitted_apply(arch, name)(params, x)


def max_abs(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a) - np.asarray(b))))


def check_rounding(arch: str, values, q) -> None:
    """Our round(values) is the reference's q except within 1e-3 of a half (float rounding)."""
    values = np.asarray(values)
    near_half = np.abs(np.abs(values - np.floor(values)) - 0.5) < 1e-3
    assert np.all((np.round(values) == q) | near_half), f"{arch}: a symbol rounds otherwise"


# ---------------------------------------------------------------------------------------------
# The eval-mode forward passes of the references, from our networks.
# ---------------------------------------------------------------------------------------------
def hyper_latent(arch: str, y) -> jax.Array:
    """z_hat = q_z + medians, after checking our z against the reference's symbols."""
    z = apply(arch, "h_a", y)
    medians = converted(arch).params["z_density"]["quantiles"][:, 0, 1]
    check_rounding(arch, z - medians, symbols(arch)["q_z"])
    return jnp.asarray(symbols(arch)["q_z"]) + medians


def gaussian_likelihood(q, scales) -> jax.Array:
    """The reference's eval likelihood of round(y - mean) = q: its bin around q + mean."""
    return GaussianConditional().likelihood(q, {"means": jnp.zeros_like(q), "scales": scales})


def checkerboard_group(arch, y, q, side, context, parameters, means_first=False):
    """CompressAI's two-pass checkerboard group (anchors at r + c even): -> (y_hat, scales).

    side: the params besides the spatial context (channel context, hyper params); context and
    parameters: the spatial context and param aggregation networks' names."""
    _, height, width, channels = y.shape
    anchors = anchor_map(height, width, parity=0)[None, :, :, None]  # CompressAI's "even"

    def split(params):
        first, second = jnp.split(params, 2, axis=-1)
        return (second, first) if means_first else (first, second)  # (scales, means)

    empty = jnp.zeros((*y.shape[:3], 2 * channels), y.dtype)
    anchor_scales, anchor_means = split(apply(arch, parameters, jnp.concatenate([empty, side], -1)))
    anchor_y_hat = jnp.where(anchors, q + anchor_means, 0.0)
    spatial = apply(arch, context, anchor_y_hat)
    scales, means = split(apply(arch, parameters, jnp.concatenate([spatial, side], -1)))
    scales = jnp.where(anchors, anchor_scales, scales)
    means = jnp.where(anchors, anchor_means, means)
    check_rounding(arch, y - means, q)
    return q + means, scales


def forward(arch: str) -> dict[str, jax.Array]:
    """The reference's eval forward pass from golden y: {'x_hat', 'likelihoods_y', '_z'}."""
    y = jnp.asarray(nhwc(golden(arch)["output/y"]))
    q = jnp.asarray(symbols(arch)["q_y"])
    z_hat = hyper_latent(arch, y)
    z_likelihoods = apply(arch, "z_density", z_hat, method="likelihood")
    options = converted(arch).options
    if arch in ("cheng2020-anchor", "cheng2020-attn"):  # raster context on round(y)
        y_hat = jnp.round(y)
        context = apply(arch, "context_prediction", y_hat)
        params = apply(
            arch, "entropy_parameters", jnp.concatenate([apply(arch, "h_s", z_hat), context], -1)
        )
        scales, means = jnp.split(params, 2, axis=-1)
        check_rounding(arch, y - means, q)
    elif arch == "cheng2020-anchor-checkerboard":
        y_hat, scales = checkerboard_group(
            arch, y, q, apply(arch, "h_s", z_hat), "context_prediction", "entropy_parameters"
        )
    elif arch.startswith("elic2022"):
        hyper = apply(arch, "h_s", z_hat)
        edges = np.cumsum([0, *options["groups"]])
        y_hats, all_scales = [], []
        for k, (start, stop) in enumerate(zip(edges[:-1], edges[1:], strict=True)):
            side = hyper
            if k > 0:
                decoded = y_hats if options["variant"] == "official" else [y_hats[0], y_hats[-1]]
                context = apply(arch, f"channel_context_{k}", jnp.concatenate(decoded[:k], -1))
                side = jnp.concatenate([context, hyper], -1)
            group_y_hat, group_scales = checkerboard_group(
                arch,
                y[..., start:stop],
                q[..., start:stop],
                side,
                f"context_prediction_{k}",
                f"entropy_parameters_{k}",
                means_first=options["variant"] == "chandelier",
            )
            y_hats.append(group_y_hat)
            all_scales.append(group_scales)
        y_hat, scales = jnp.concatenate(y_hats, -1), jnp.concatenate(all_scales, -1)
    else:  # tcm
        latent_means = apply(arch, "h_mean_s", z_hat)
        latent_scales = apply(arch, "h_scale_s", z_hat)
        width = options["num_latents"] // options["num_slices"]
        y_hats, all_scales = [], []
        for i in range(options["num_slices"]):
            support = y_hats[: options["max_support_slices"]]
            mean_support = apply(
                arch, f"atten_mean_{i}", jnp.concatenate([latent_means, *support], -1)
            )
            means = apply(arch, f"cc_mean_transforms_{i}", mean_support)
            scale_support = apply(
                arch, f"atten_scale_{i}", jnp.concatenate([latent_scales, *support], -1)
            )
            all_scales.append(apply(arch, f"cc_scale_transforms_{i}", scale_support))
            y_slice, q_slice = (
                y[..., i * width : (i + 1) * width],
                q[..., i * width : (i + 1) * width],
            )
            check_rounding(arch, y_slice - means, q_slice)
            slice_y_hat = q_slice + means
            lrp = apply(
                arch, f"lrp_transforms_{i}", jnp.concatenate([mean_support, slice_y_hat], -1)
            )
            y_hats.append(slice_y_hat + 0.5 * jnp.tanh(lrp))
        y_hat, scales = jnp.concatenate(y_hats, -1), jnp.concatenate(all_scales, -1)
    return {
        "x_hat": apply(arch, "g_s", y_hat),
        "likelihoods_y": gaussian_likelihood(q, scales),
        "likelihoods_z": z_likelihoods,
    }


# ---------------------------------------------------------------------------------------------
# Tests against the golden cases.
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", list(CASES))
def test_analysis_matches_reference(followups_dir, arch):
    x = jnp.asarray(nhwc(golden(arch)["input/x"]))
    difference = max_abs(apply(arch, "g_a", x), nhwc(golden(arch)["output/y"]))
    assert difference <= TOLERANCE, f"{arch}: max |g_a(x) - y| = {difference:.3g}"


@pytest.mark.parametrize("arch", ["cheng2020-anchor", "cheng2020-attn"])
def test_cheng2020_synthesis_of_rounded_y_matches_reference(followups_dir, arch):
    """CompressAI's eval forward of the raster models decodes round(y) (no mean subtracted)."""
    y_hat = jnp.round(jnp.asarray(nhwc(golden(arch)["output/y"])))
    x_hat = apply(arch, "g_s", y_hat)
    difference = max_abs(x_hat, nhwc(golden(arch)["output/forward_x_hat"]))
    assert difference <= TOLERANCE, f"{arch}: max |g_s(round(y)) - x_hat| = {difference:.3g}"


@pytest.mark.parametrize("arch", list(CASES))
def test_forward_pass_matches_reference(followups_dir, arch):
    """h_a, z density, h_s, the prior's networks and g_s reproduce the reference's likelihoods
    of y and z and its x_hat."""
    outputs = forward(arch)
    for name in ("x_hat", "likelihoods_y", "likelihoods_z"):
        difference = max_abs(outputs[name], nhwc(golden(arch)[f"output/forward_{name}"]))
        assert difference <= TOLERANCE, f"{arch}: max |{name} - reference| = {difference:.3g}"


@pytest.mark.parametrize("arch", list(CASES))
def test_converted_parameter_count_is_the_references(followups_dir, arch):
    """Every parameter of the reference converts: our count is its `num_params`."""
    manifest = json.loads((GOLDEN / "MANIFEST.json").read_text())[CASES[arch]]
    count = sum(int(leaf.size) for leaf in jax.tree_util.tree_leaves(converted(arch).params))
    assert count == manifest["num_params"]


def test_options_read_off_the_weights(followups_dir):
    assert converted("elic2022-chandelier").options == {
        "num_filters": 32,
        "num_latents": 64,
        "groups": (4, 4, 8, 16, 32),
        "variant": "chandelier",
    }
    assert converted("tcm").options == {
        "num_filters": 32,
        "num_latents": 320,
        "config": (2, 2, 2, 2, 2, 2),
        "head_dim": (8, 16, 32, 32, 16, 8),
        "window_size": 8,
        "num_slices": 5,
        "max_support_slices": 5,
    }
    assert converted("cheng2020-attn").options["attention"] is True


def test_layouts(followups_dir):
    """Conv (out, in, kh, kw) -> HWIO; linear (out, in) -> (in, out); tables as stored."""
    state = read_state_dict(GOLDEN / f"{CASES['tcm']}.npz")
    params = converted("tcm").params
    block = params["g_a"]["layers_1"]["trans_block"]
    embedding = state["g_a.1.trans_block.msa.embedding_layer.weight"]  # (3C, C)
    np.testing.assert_array_equal(block["msa"]["embedding_layer"]["kernel"], embedding.T)
    np.testing.assert_array_equal(
        block["msa"]["relative_position_params"],
        state["g_a.1.trans_block.msa.relative_position_params"],
    )
    np.testing.assert_array_equal(block["ln1"]["scale"], state["g_a.1.trans_block.ln1.weight"])
    conv = state["g_a.0.conv1.weight"]  # (out, in, 3, 3)
    np.testing.assert_array_equal(
        params["g_a"]["layers_0"]["conv1"]["kernel"][1, 2, 0, 5], conv[5, 0, 1, 2]
    )
    elic = read_state_dict(GOLDEN / f"{CASES['elic2022-official']}.npz")
    deconv = elic["g_s.1.weight"]  # (in=M, out=N, 5, 5)
    kernel = converted("elic2022-official").params["g_s"]["layers_1"]["kernel"]
    assert kernel.shape == (5, 5, 32, 64)
    np.testing.assert_array_equal(kernel[3, 1, 7, 9], deconv[9, 7, 3, 1])


def test_wrong_architecture_is_a_one_line_error(followups_dir):
    state = read_state_dict(GOLDEN / f"{CASES['elic2022-official']}.npz")
    with pytest.raises(ConversionError) as error:
        convert_followup(state, "elic2022-chandelier")
    message = str(error.value)
    assert "\n" not in message
    assert "not a elic2022-chandelier model" in message and "wrong shape" in message
    with pytest.raises(ConversionError, match="no 'g_a.0.conv1.weight'"):
        convert_followup(state, "tcm")
    with pytest.raises(ConversionError, match="unknown architecture 'elic'"):
        convert_followup(state, "elic")


def test_missing_and_unexpected_entries_are_named(followups_dir):
    state = dict(read_state_dict(GOLDEN / f"{CASES['cheng2020-attn']}.npz"))
    del state["g_s.5.conv_b.3.bias"]
    state["h_a.0.extra"] = np.zeros(3, np.float32)
    with pytest.raises(ConversionError) as error:
        convert_followup(state, "cheng2020-attn")
    assert "missing 1 ('g_s.5.conv_b.3.bias')" in str(error.value)
    assert "unexpected 1 ('h_a.0.extra')" in str(error.value)


def test_a_wrong_context_mask_is_refused(followups_dir):
    state = dict(read_state_dict(GOLDEN / f"{CASES['cheng2020-anchor']}.npz"))
    state["context_prediction.mask"] = np.ones_like(state["context_prediction.mask"])
    with pytest.raises(ConversionError, match="'context_prediction.mask' is not the causal_mask"):
        convert_followup(state, "cheng2020-anchor")


# ---------------------------------------------------------------------------------------------
# Shapes and sizes at the published configurations (no golden files needed).
# ---------------------------------------------------------------------------------------------
def param_count(arch: str, options: dict) -> int:
    total = 0
    for network in reference_networks(arch, options).values():
        abstract = jax.eval_shape(
            lambda net=network: net.module.init(jax.random.key(0), jnp.zeros(net.input_shape))
        )
        total += sum(math.prod(leaf.shape) for leaf in jax.tree_util.tree_leaves(abstract))
    return total


PUBLISHED = [  # (arch, options, millions of parameters of the whole model, as published)
    ("cheng2020-anchor", {"num_filters": 192, "num_latents": 192, "attention": False}, 26.6),
    (
        "elic2022-official",
        {
            "num_filters": 192,
            "num_latents": 320,
            "variant": "official",
            "groups": elic2022.default_groups(320),
        },
        32.1,
    ),
    (
        "tcm",
        {
            "num_filters": 128,
            "num_latents": 320,
            "config": tcm.CONFIG,
            "head_dim": tcm.HEAD_DIM,
            "window_size": tcm.WINDOW_SIZE,
            "num_slices": tcm.NUM_SLICES,
            "max_support_slices": tcm.MAX_SUPPORT_SLICES,
        },
        76.6,
    ),
]


@pytest.mark.parametrize("arch, options, millions", PUBLISHED, ids=[p[0] for p in PUBLISHED])
def test_whole_model_parameter_count_is_the_published_one(arch, options, millions):
    assert round(param_count(arch, options) / 1e6, 1) == millions


@pytest.mark.parametrize(
    "family, n, m, side",
    [(cheng2020, 192, 192, 64), (elic2022, 192, 320, 64), (tcm, 128, 320, 128)],
    ids=["cheng2020", "elic2022", "tcm"],
)
def test_transform_shapes_at_published_sizes(family, n, m, side):
    def shape(module, input_shape):
        out = jax.eval_shape(
            lambda: module.init_with_output(jax.random.key(0), jnp.zeros(input_shape))[0]
        )
        return out.shape

    z = family.hyper_channels(n, m)
    assert shape(family.analysis(n, m), (2, side, side, 3)) == (2, side // 16, side // 16, m)
    assert shape(family.synthesis(n, m), (2, side // 16, side // 16, m)) == (2, side, side, 3)
    assert shape(family.hyper_analysis(n, m), (2, side // 16, side // 16, m)) == (
        2,
        side // 64,
        side // 64,
        z,
    )
    assert shape(family.hyper_synthesis(n, m, 2 * m), (2, side // 64, side // 64, z)) == (
        2,
        side // 16,
        side // 16,
        2 * m,
    )


def test_reference_names():
    assert reference_name("g_a", ("layers_1", "trans_block", "mlp", "layers_2", "kernel")) == (
        "g_a.1.trans_block.mlp.2.weight"
    )
    assert reference_name("atten_mean.0.0", ("non_local_block", "block_1", "ln1", "scale")) == (
        "atten_mean.0.0.non_local_block.block_1.ln1.weight"
    )
    assert reference_name("entropy_bottleneck", ("matrices_3",)) == "entropy_bottleneck.matrices.3"


def test_elic_aggregation_widths_follow_compressai_ramp():
    """sequential_channel_ramp: linspace(in, out, 4), floored, hidden widths >= 2N (published
    sizes: N = 192, groups 16, 16, 32, 64, 192)."""
    groups = elic2022.default_groups(320)
    widths = [elic2022.param_aggregation_widths(192, 320, groups, k) for k in range(5)]
    assert widths == [
        (416, 384, 384, 32),
        (448, 384, 384, 32),
        (512, 384, 384, 64),
        (640, 469, 384, 128),
        (1152, 896, 640, 384),
    ]
    assert elic2022.param_aggregation_widths(192, 320, groups, 4, "chandelier") == (
        1408,
        640,
        512,
        384,
    )
