"""Weights of cheng2020, ELIC and TCM (the PyTorch references) -> the Flax params of their networks.

    networks = convert_followup(read_state_dict("tcm.pth.tar"), "tcm")
    networks.options   # {'num_filters': 128, 'num_latents': 320, 'config': (2, ...), ...}
    networks.params    # {'g_a': {...}, 'g_s': {...}, 'h_a': {...}, 'atten_mean_0': {...}, ...}

Sources: CompressAI 1.2.8's `Cheng2020Anchor` ("cheng2020-anchor"), `Cheng2020Attention`
("cheng2020-attn"), `Cheng2020AnchorCheckerboard` ("cheng2020-anchor-checkerboard"),
`Elic2022Official` ("elic2022-official"), `Elic2022Chandelier` ("elic2022-chandelier"), and the
authors' TCM (`models/tcm.py` of github.com/jmliu206/LIC_TCM, "tcm"). The sizes and options (N, M,
ELIC's channel groups, TCM's config, head_dim, window size, slices) are read off the weights.

Every network is built from `jahp_jax.models.transforms` (and, for the priors' plain parts,
from the project's layers), its parameter shapes taken from `jax.eval_shape`, and each of our
parameter paths named back to the reference's: `layers_<i>` -> `<i>`, `kernel` and LayerNorm's
`scale` -> `weight` (so `g_a/layers_1/trans_block/msa/embedding_layer/kernel` comes from
`g_a.1.trans_block.msa.embedding_layer.weight`). Layouts: conv weights (out, in, kh, kw) -> HWIO,
transposed-conv weights (in, out, kh, kw) -> (kh, kw, out, in) (the same permutation), linear
weights (out, in) -> (in, out); GDN's reparameterised beta/gamma, TCM's relative position tables
(heads, 2w - 1, 2w - 1) and the entropy bottleneck's arrays as stored. The file must hold exactly
these networks: a missing, misshapen or unexpected entry is a `ConversionError` (one line); the
coders' tables are ignored and the constant buffers (GDN and likelihood bounds, the context
masks) checked.

Our names of the networks (keys of `params`), those of the prior parts
(`jahp_jax.models.latent_codecs.parts`): g_a, g_s, h_a, z_density; cheng2020: h_s,
entropy_parameters, context_prediction; ELIC: h_s, channel_context_<k> (k >= 1),
context_prediction_<k> (the spatial context), entropy_parameters_<k> (the param aggregation);
TCM: h_mean_s, h_scale_s, atten_mean_<i>, atten_scale_<i>, cc_mean_transforms_<i>,
cc_scale_transforms_<i>, lrp_transforms_<i>.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jahp_jax.io.state_dicts import ConversionError, constant_checks, normalize_names
from jahp_jax.models.compression_model import CompressionModel, init_params
from jahp_jax.models.config import ModelConfig
from jahp_jax.models.entropy_models import FactorizedDensity
from jahp_jax.models.latent_codecs.elic2022 import group_sizes
from jahp_jax.models.latent_codecs.parts import checkerboard_mask
from jahp_jax.models.transforms import cheng2020, elic2022, tcm
from jahp_jax.nn.blocks import conv1x1
from jahp_jax.nn.layers import MaskedConv, causal_mask, leaky_relu

# State entries that hold no learned value for us: the coders' tables and the aux-loss target.
_IGNORED_SUFFIXES = (
    "._quantized_cdf",
    "._offset",
    "._cdf_length",
    ".scale_table",
    "entropy_bottleneck.target",
)


@dataclasses.dataclass(frozen=True)
class ConvertedNetworks:
    """The networks of one reference model: `options` (sizes and options read off the weights,
    the builders' keyword arguments) and `params` (network name -> Flax params, numpy float32)."""

    arch: str
    options: dict[str, Any]
    params: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class ReferenceNetwork:
    """One network of a reference model: our name, the reference's state_dict prefix, the module
    (unbound) and an NHWC input shape it accepts (the channels it reads; spatial sizes that fit its
    windows); `mask`: a masked conv's mask, checked against the file's mask buffer."""

    name: str
    prefix: str
    module: nn.Module
    input_shape: tuple[int, ...]
    mask: Callable[[int], np.ndarray] | None = None


# ---------------------------------------------------------------------------------------------
# Naming and layouts.
# ---------------------------------------------------------------------------------------------
def reference_name(prefix: str, path: tuple[str, ...]) -> str:
    """Our parameter path under a network -> the reference's state_dict name."""
    parts = [
        part.removeprefix("layers_") if re.fullmatch(r"layers_\d+", part) else part
        for part in path[:-1]
    ]
    leaf = path[-1]
    if leaf in ("kernel", "scale"):
        leaf = "weight"
    elif re.fullmatch(r"(matrices|biases|factors)_\d+", leaf):  # FactorizedDensity
        leaf = leaf.replace("_", ".")
    return ".".join([prefix, *parts, leaf])


def _reference_layout(leaf: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Our shape of a parameter in the reference's layout."""
    if leaf == "kernel" and len(shape) == 4:
        return (shape[3], shape[2], shape[0], shape[1])
    if leaf == "kernel" and len(shape) == 2:
        return (shape[1], shape[0])
    return shape


def _to_ours(leaf: str, array: np.ndarray) -> np.ndarray:
    if leaf == "kernel" and array.ndim == 4:
        array = np.transpose(array, (2, 3, 1, 0))
    elif leaf == "kernel" and array.ndim == 2:
        array = array.T
    return np.ascontiguousarray(array, dtype=np.float32)


def _expected_shapes(network: ReferenceNetwork) -> dict[tuple[str, ...], tuple[int, ...]]:
    def init():
        return network.module.init(jax.random.key(0), jnp.zeros(network.input_shape))["params"]

    abstract = jax.eval_shape(init)
    return {
        tuple(entry.key for entry in path): tuple(leaf.shape)
        for path, leaf in jax.tree_util.tree_flatten_with_path(abstract)[0]
    }


def _shape(state: Mapping[str, np.ndarray], name: str, source: str) -> tuple[int, ...]:
    """The shape of a state entry the conversion reads sizes from."""
    if name not in state:
        raise ConversionError(
            f"{source} has no '{name}', from which the sizes are read; is it "
            "a state_dict of this architecture?"
        )
    return tuple(state[name].shape)


def _indices(state: Mapping[str, np.ndarray], prefix: str) -> list[int]:
    """The sorted distinct integers i of the names `prefix.<i>.*`."""
    pattern = re.compile(re.escape(prefix) + r"\.(\d+)\.")
    return sorted({int(m.group(1)) for name in state if (m := pattern.match(name))})


# ---------------------------------------------------------------------------------------------
# Matching a state_dict against the networks.
# ---------------------------------------------------------------------------------------------
def _match(
    state: Mapping[str, np.ndarray], networks: list[ReferenceNetwork]
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    params: dict[str, Any] = {}
    problems: dict[str, list[str]] = {"missing": [], "wrong shape": [], "unexpected": []}
    used: set[str] = set()
    for network in networks:
        tree: dict[str, Any] = {}
        for path, shape in _expected_shapes(network).items():
            name = reference_name(network.prefix, path)
            if name not in state:
                problems["missing"].append(f"'{name}'")
                continue
            used.add(name)
            array = state[name]
            expected = _reference_layout(path[-1], shape)
            if array.dtype.kind != "f" or tuple(array.shape) != expected:
                problems["wrong shape"].append(
                    f"'{name}' {tuple(array.shape)} {array.dtype} instead of {expected} floats"
                )
                continue
            node = tree
            for key in path[:-1]:
                node = node.setdefault(key, {})
            node[path[-1]] = _to_ours(path[-1], array)
        if network.mask is not None:
            used.add(_check_mask(state, network))
        params[network.name] = tree
    for name in state:
        if name in used or name.endswith(_IGNORED_SUFFIXES):
            continue
        if constant_checks(_constant_name(name)) is None:
            problems["unexpected"].append(f"'{name}'")
    return params, {kind: entries for kind, entries in problems.items() if entries}


def _constant_name(name: str) -> str:
    """A constant's name as `convert._constant_checks` knows it (the Gaussian conditional's
    buffers at the top level)."""
    index = name.find("gaussian_conditional.")
    return name[index:] if index >= 0 else name


def _check_constants(state: Mapping[str, np.ndarray]) -> None:
    for name, array in state.items():
        expected = constant_checks(_constant_name(name))
        if expected is None:
            continue
        if array.size != 1 or not np.isclose(float(array.reshape(())), expected, rtol=1e-5):
            raise ConversionError(
                f"'{name}' is {array.reshape(-1)[:4]}, but jahp_jax fixes it to {expected:.6g}; "
                "this model was built with settings jahp_jax does not support"
            )


def _check_mask(state: Mapping[str, np.ndarray], network: ReferenceNetwork) -> str:
    """The mask buffer of a masked conv must be the mask our layer applies; returns its name."""
    name = f"{network.prefix}.mask"
    if name not in state:
        return name  # a file without the buffer: our mask applies
    mask = state[name]
    weight = state.get(f"{network.prefix}.weight")
    if weight is None or mask.shape != weight.shape:
        raise ConversionError(f"'{name}' has shape {mask.shape}, not its weight's")
    if not np.array_equal(mask, np.broadcast_to(network.mask(mask.shape[-1]), mask.shape)):
        raise ConversionError(f"'{name}' is not the {network.mask.__name__} this model uses")
    return name


def _density(prefix: str, channels: int) -> ReferenceNetwork:
    return ReferenceNetwork("z_density", prefix, FactorizedDensity(channels), (1, 1, 1, channels))


# ---------------------------------------------------------------------------------------------
# The families: the sizes and options read off a state_dict, and the networks they give.
# ---------------------------------------------------------------------------------------------
def _cheng2020_options(state: Mapping[str, np.ndarray], arch: str, source: str) -> dict:
    n = _shape(state, "g_a.0.conv1.weight", source)[0]
    return {"num_filters": n, "num_latents": n, "attention": arch == "cheng2020-attn"}


def _cheng2020_networks(arch: str, options: dict) -> list[ReferenceNetwork]:
    n, attention = options["num_filters"], options["attention"]
    checkerboard = arch == "cheng2020-anchor-checkerboard"
    hyper = "latent_codec.hyper." if checkerboard else ""
    y = "latent_codec.y." if checkerboard else ""
    entropy_parameters = nn.Sequential(
        [conv1x1(n * 10 // 3), leaky_relu, conv1x1(n * 8 // 3), leaky_relu, conv1x1(2 * n)]
    )
    mask = checkerboard_mask if checkerboard else causal_mask
    return [
        ReferenceNetwork("g_a", "g_a", cheng2020.analysis(n, n, attention), (1, 64, 64, 3)),
        ReferenceNetwork("g_s", "g_s", cheng2020.synthesis(n, n, attention), (1, 4, 4, n)),
        ReferenceNetwork("h_a", f"{hyper}h_a", cheng2020.hyper_analysis(n, n), (1, 4, 4, n)),
        ReferenceNetwork(
            "h_s", f"{hyper}h_s", cheng2020.hyper_synthesis(n, n, 2 * n), (1, 1, 1, n)
        ),
        _density(f"{hyper}entropy_bottleneck", n),
        ReferenceNetwork(
            "entropy_parameters", f"{y}entropy_parameters", entropy_parameters, (1, 1, 1, 4 * n)
        ),
        ReferenceNetwork(
            "context_prediction",
            f"{y}context_prediction",
            MaskedConv(2 * n, 5, mask_fn=mask),
            (1, 4, 4, n),
            mask,
        ),
    ]


_SPATIAL_CONTEXT = "latent_codec.y.latent_codec.y{}.context_prediction"


def _elic_options(state: Mapping[str, np.ndarray], arch: str, source: str) -> dict:
    n = _shape(state, "g_a.0.weight", source)[0]
    m = _shape(state, "g_a.13.weight", source)[0]
    groups: list[int] = []
    while f"{_SPATIAL_CONTEXT.format(len(groups))}.weight" in state:
        groups.append(_shape(state, f"{_SPATIAL_CONTEXT.format(len(groups))}.weight", source)[1])
    if sum(groups) != m:
        raise ConversionError(
            f"{source}: the spatial contexts' groups {groups} do not add up to "
            f"M={m}; is it a CompressAI {arch} state_dict?"
        )
    variant = arch.removeprefix("elic2022-")
    return {"num_filters": n, "num_latents": m, "groups": tuple(groups), "variant": variant}


def _elic_networks(arch: str, options: dict) -> list[ReferenceNetwork]:
    n, m = options["num_filters"], options["num_latents"]
    groups, variant = options["groups"], options["variant"]
    hyper_params = elic2022.hyper_params_channels(n, m, variant)
    networks = [
        ReferenceNetwork("g_a", "g_a", elic2022.analysis(n, m), (1, 64, 64, 3)),
        ReferenceNetwork("g_s", "g_s", elic2022.synthesis(n, m), (1, 4, 4, m)),
        ReferenceNetwork(
            "h_a", "latent_codec.hyper.h_a", elic2022.hyper_analysis(n, m), (1, 4, 4, m)
        ),
        ReferenceNetwork(
            "h_s",
            "latent_codec.hyper.h_s",
            elic2022.hyper_synthesis(n, m, hyper_params, variant),
            (1, 1, 1, n),
        ),
        _density("latent_codec.hyper.entropy_bottleneck", n),
    ]
    for k in range(len(groups)):
        if k > 0:
            width = elic2022.channel_context_inputs(groups, k, variant)
            networks.append(
                ReferenceNetwork(
                    f"channel_context_{k}",
                    f"latent_codec.y.channel_context.y{k}",
                    elic2022.channel_context(groups, k),
                    (1, 4, 4, width),
                )
            )
        networks.append(
            ReferenceNetwork(
                f"context_prediction_{k}",
                _SPATIAL_CONTEXT.format(k),
                MaskedConv(2 * groups[k], 5, mask_fn=checkerboard_mask),
                (1, 4, 4, groups[k]),
                checkerboard_mask,
            )
        )
        widths = elic2022.param_aggregation_widths(n, m, groups, k, variant)
        networks.append(
            ReferenceNetwork(
                f"entropy_parameters_{k}",
                f"latent_codec.y.latent_codec.y{k}.entropy_parameters",
                elic2022.param_aggregation(n, m, groups, k, variant),
                (1, 1, 1, widths[0]),
            )
        )
    return networks


def _stage_lengths(state: Mapping[str, np.ndarray], prefix: str, source: str) -> list[int]:
    """The numbers of ConvTransBlocks between a TCM transform's resampling layers."""
    lengths = [0]
    for index in _indices(state, prefix)[1:]:
        if any(name.startswith(f"{prefix}.{index}.trans_block.") for name in state):
            lengths[-1] += 1
        else:
            lengths.append(0)
    if len(lengths) != 4 or lengths[-1] != 0:
        raise ConversionError(
            f"{source}: '{prefix}' is not a TCM transform (3 stages of mixture "
            "blocks and resampling layers)"
        )
    return lengths[:3]


def _head_dims(
    state: Mapping[str, np.ndarray], prefix: str, lengths: list[int], n: int
) -> tuple[list[int], set[int]]:
    """The channels per attention head of each stage (0 where a stage has no block) and the
    window sizes seen, from the relative position tables (heads, 2w - 1, 2w - 1)."""
    head_dims, windows, index = [], set(), 1
    for length in lengths:
        table = state.get(f"{prefix}.{index}.trans_block.msa.relative_position_params")
        if length and table is not None and table.ndim == 3:
            head_dims.append(n // max(1, table.shape[0]))
            windows.add((table.shape[1] + 1) // 2)
        else:
            head_dims.append(0)
        index += length + 1
    return head_dims, windows


def _tcm_options(state: Mapping[str, np.ndarray], arch: str, source: str) -> dict:
    n = _shape(state, "g_a.0.conv1.weight", source)[0] // 2
    analysis_lengths = _stage_lengths(state, "g_a", source)
    synthesis_lengths = _stage_lengths(state, "g_s", source)
    m = _shape(state, f"g_a.{sum(analysis_lengths) + 3}.weight", source)[0]
    analysis_heads, windows = _head_dims(state, "g_a", analysis_lengths, n)
    synthesis_heads, synthesis_windows = _head_dims(state, "g_s", synthesis_lengths, n)
    found = [*analysis_heads, *synthesis_heads]
    head_dim = tuple(heads or default for heads, default in zip(found, tcm.HEAD_DIM, strict=True))
    windows |= synthesis_windows
    if len(windows) > 1:
        raise ConversionError(f"{source}: the transforms' attention windows differ {windows}")
    num_slices = len(_indices(state, "atten_mean"))
    if num_slices == 0 or m % num_slices:
        raise ConversionError(
            f"{source} has {num_slices} 'atten_mean' slices for M={m}; is it a TCM state_dict?"
        )
    supports = [
        (_shape(state, f"cc_mean_transforms.{i}.0.weight", source)[1] - m) // (m // num_slices)
        for i in range(num_slices)
    ]
    max_support = tcm.MAX_SUPPORT_SLICES if supports[-1] == num_slices - 1 else supports[-1]
    if supports != [min(i, max_support) for i in range(num_slices)]:
        raise ConversionError(
            f"{source}: the channel-context supports {supports} (in slices) are "
            "not TCM's min(i, max_support_slices)"
        )
    return {
        "num_filters": n,
        "num_latents": m,
        "config": (*analysis_lengths, *synthesis_lengths),
        "head_dim": head_dim,
        "window_size": windows.pop() if windows else tcm.WINDOW_SIZE,
        "num_slices": num_slices,
        "max_support_slices": max_support,
    }


def _tcm_networks(arch: str, options: dict) -> list[ReferenceNetwork]:
    n, m = options["num_filters"], options["num_latents"]
    num_slices, max_support = options["num_slices"], options["max_support_slices"]
    transform = {key: options[key] for key in ("config", "head_dim", "window_size")}
    z = tcm.hyper_channels(n, m)
    side = math.lcm(transform["window_size"], 2 * tcm.HYPER_WINDOW_SIZE)  # the windows fit
    slice_width = tcm.slice_channels(m, num_slices)
    networks = [
        ReferenceNetwork(
            "g_a", "g_a", tcm.analysis(n, m, **transform), (1, 16 * side, 16 * side, 3)
        ),
        ReferenceNetwork("g_s", "g_s", tcm.synthesis(n, m, **transform), (1, side, side, m)),
        ReferenceNetwork("h_a", "h_a", tcm.hyper_analysis(n, m, **transform), (1, side, side, m)),
        _density("entropy_bottleneck", z),
        *(
            ReferenceNetwork(
                name, name, tcm.hyper_synthesis(n, m, m, **transform), (1, side // 4, side // 4, z)
            )
            for name in ("h_mean_s", "h_scale_s")
        ),
    ]
    for i in range(num_slices):
        support = tcm.support_channels(m, i, num_slices, max_support)
        for kind in ("mean", "scale"):
            networks.append(
                ReferenceNetwork(
                    f"atten_{kind}_{i}",
                    f"atten_{kind}.{i}.0",
                    tcm.slice_attention(support),
                    (1, side, side, support),
                )
            )
            networks.append(
                ReferenceNetwork(
                    f"cc_{kind}_transforms_{i}",
                    f"cc_{kind}_transforms.{i}",
                    tcm.slice_transform(slice_width),
                    (1, side, side, support),
                )
            )
        networks.append(
            ReferenceNetwork(
                f"lrp_transforms_{i}",
                f"lrp_transforms.{i}",
                tcm.slice_transform(slice_width),
                (1, side, side, support + slice_width),
            )
        )
    return networks


# arch -> (options read off a state_dict, the networks of those options)
_FAMILIES: dict[str, tuple[Callable, Callable]] = {
    "cheng2020-anchor": (_cheng2020_options, _cheng2020_networks),
    "cheng2020-attn": (_cheng2020_options, _cheng2020_networks),
    "cheng2020-anchor-checkerboard": (_cheng2020_options, _cheng2020_networks),
    "elic2022-official": (_elic_options, _elic_networks),
    "elic2022-chandelier": (_elic_options, _elic_networks),
    "tcm": (_tcm_options, _tcm_networks),
}
ARCHS = tuple(_FAMILIES)


def _check_arch(arch: str) -> None:
    if arch not in _FAMILIES:
        raise ConversionError(f"unknown architecture '{arch}'; choose one of: {', '.join(ARCHS)}")


def reference_networks(arch: str, options: Mapping[str, Any]) -> dict[str, ReferenceNetwork]:
    """The networks of the reference model `arch` with these options (`ConvertedNetworks.options`
    of a converted file, or chosen), by our name; each holds its module and an input shape."""
    _check_arch(arch)
    return {network.name: network for network in _FAMILIES[arch][1](arch, dict(options))}


def convert_followup(
    state: Mapping[str, np.ndarray], arch: str, source: str = "the state_dict"
) -> ConvertedNetworks:
    """A reference state_dict (name -> numpy array) of `arch` (one of `ARCHS`) -> its networks'
    Flax params and the options read off the weights. Raises ConversionError (one line)."""
    _check_arch(arch)
    state = normalize_names(state)
    options = _FAMILIES[arch][0](state, arch, source)
    try:
        networks = list(reference_networks(arch, options).values())
    except ValueError as error:  # options the builders refuse
        raise ConversionError(f"{source}: {error}") from None
    params, problems = _match(state, networks)
    if problems:
        shown = "; ".join(
            f"{kind} {len(entries)} ({', '.join(entries[:3])}{', ...' if len(entries) > 3 else ''})"
            for kind, entries in problems.items()
        )
        sizes = ", ".join(f"{key}={value}" for key, value in options.items())
        raise ConversionError(f"{source} is not a {arch} model with {sizes}: {shown}")
    _check_constants(state)
    return ConvertedNetworks(arch, options, params)


# ---------------------------------------------------------------------------------------------
# Whole models: the reference's networks -> our transform + prior, with their params.
# ---------------------------------------------------------------------------------------------
def _swap_halves(array: np.ndarray, axis: int) -> np.ndarray:
    first, second = np.split(np.asarray(array), 2, axis=axis)
    return np.concatenate([second, first], axis=axis)


def _model_config(arch: str, options: Mapping[str, Any]) -> ModelConfig:
    n, m = options["num_filters"], options["num_latents"]
    if arch.startswith("cheng2020"):
        transform = "cheng2020-attn" if options["attention"] else "cheng2020-anchor"
        if arch == "cheng2020-anchor-checkerboard":
            return ModelConfig("checkerboard", n, m, prior_options={"anchors": "even"},
                               transform=transform)  # fmt: skip
        return ModelConfig("joint", n, m, transform=transform)
    if arch.startswith("elic2022"):
        chandelier = options["variant"] == "chandelier"
        prior_options = {"variant": "chandelier"} if chandelier else {}
        if tuple(options["groups"]) != group_sizes(m):
            prior_options["groups"] = ",".join(str(size) for size in options["groups"])
        transform = "elic2022-chandelier" if chandelier else "elic2022"
        return ModelConfig("elic2022", n, m, prior_options=prior_options, transform=transform)
    fixed = {"config": tcm.CONFIG, "head_dim": tcm.HEAD_DIM, "window_size": tcm.WINDOW_SIZE}
    other = [key for key, value in fixed.items() if tuple(np.atleast_1d(options[key])) !=
             tuple(np.atleast_1d(value))]  # fmt: skip
    if other:
        found = ", ".join(f"{key}={options[key]}" for key in other)
        raise ConversionError(f"this TCM has {found}; jahp_jax's tcm transform has the published "
                              f"{', '.join(f'{k}={fixed[k]}' for k in other)} only")  # fmt: skip
    prior_options = {
        key: options[key]
        for key, default in (("num_slices", tcm.NUM_SLICES),
                             ("max_support_slices", tcm.MAX_SUPPORT_SLICES))  # fmt: skip
        if options[key] != default
    }
    return ModelConfig("tcm", n, m, prior_options=prior_options, transform="tcm")


def convert_followup_model(
    state: Mapping[str, np.ndarray], arch: str, source: str = "the state_dict"
) -> tuple[ModelConfig, dict[str, Any]]:
    """A reference state_dict of `arch` -> (ModelConfig, params) of the jahp_jax model that
    computes the same: cheng2020 = its transforms + `joint` (or `checkerboard` with anchors at
    r + c even); ELIC = its transforms + `elic2022`; TCM = its transforms + `tcm`. Layouts that
    differ only in order are reordered exactly: CompressAI's checkerboard entropy parameters read
    [context, hyper] (ours [hyper, context]); Chandelier's param aggregation gives [means,
    scales] (ours [scales, means])."""
    converted = convert_followup(state, arch, source)
    config = _model_config(arch, converted.options)
    params = jax.tree_util.tree_map(np.asarray, dict(converted.params))
    if arch == "cheng2020-anchor-checkerboard":
        first = params["entropy_parameters"]["layers_0"]
        first["kernel"] = _swap_halves(first["kernel"], axis=2)
    if arch == "elic2022-chandelier":
        for name, network in params.items():
            if name.startswith("entropy_parameters_"):
                last = network[max(network, key=lambda key: int(key.split("_")[1]))]
                last["kernel"] = _swap_halves(last["kernel"], axis=3)
                last["bias"] = _swap_halves(last["bias"], axis=0)
    expected = jax.eval_shape(lambda: init_params(CompressionModel(config), jax.random.key(0)))
    shapes = jax.tree_util.tree_map(lambda leaf: tuple(leaf.shape), expected)
    if jax.tree_util.tree_map(np.shape, params) != shapes:
        raise ConversionError(f"{source}: the converted networks do not form a "
                              f"{config.describe()} model")  # fmt: skip
    return config, params
