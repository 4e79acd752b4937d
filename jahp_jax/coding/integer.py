"""The integer prior path: files that decode bit-exactly on any machine.

Everything that sets a probability (the hyper-synthesis h_s, the context model, the entropy
parameters, the table choice, the z and Gaussian tables) runs here in exact integer arithmetic, so
an encoder and a decoder on different CPUs, ISAs, BLAS builds or devices pick the same table for
every symbol and feed the context model the same y_hat (Balle, Johnston & Minnen, "Integer
networks for data compression with latent-variable models", ICLR 2019). g_a, h_a (encoder only)
and g_s stay float: a slightly different reconstruction is harmless, a different probability is
not. docs/portable_files.md describes the design and its measured cost.

Numbers. Activations, hyper features and means are integers in units of 2^-FRACTION_BITS
(2^-12), clipped to |a| <= ACTIVATION_LIMIT (2^24 - 1, i.e. |value| < 4096). A layer holds an
integer kernel (|k| <= 2^15 - 1, int16 range), an integer bias and a positive integer divisor per
output channel (a power of two chosen at conversion):

    out = clip(act(round_div(sum(kernel * a) + bias, divisor)))

with round_div(x, d) = floor((x + floor(d / 2)) / d) in int64 and act one of ReLU, a leaky ReLU
whose negative part is round_div(x, 100) (slope 0.01, the float models' LeakyReLU) or none.

Exactness. The sums are computed in float64 on integer-valued arrays (BLAS for large products,
numpy's einsum loops for the small ones: `exact_matmul`). Every layer is
checked (`check_exact`) to satisfy sum_i |kernel[i, o]| * ACTIVATION_LIMIT + |bias[o]| < 2^53, so
every product and every partial sum, in whatever order or blocking a BLAS adds them (with or
without FMA), is an integer of magnitude below 2^53, exactly representable in float64: each
operation is exact and the result is the same on every IEEE-754 machine. `matmul="int64"`
computes the same sums with numpy's int64 loops instead (no BLAS; the tests' reference decoder).

Outputs. The last layer gives the Gaussian scale s and the mean mu as fixed-point integers. The
table index is the number of stored integer thresholds at or below s (the 63 boundaries between
the 64 log-spaced scale levels of `jahp_jax.coding.range_coder`, in units of 2^-12); a symbol is
round(y - mu) and the decoded value is y_hat = symbol + mu_fixed / 2^12 exactly, so the context
model reads the same integers on both sides. z is rounded around integer medians, so z_hat is an
integer. Both table sets (per-channel z tables, the 64 Gaussian tables) are integer counts stored
with the model, never rebuilt from floats when coding.

The channel-wise prior's latent residual prediction 0.5 tanh(x) is a stored table of fixed-point
values over |x| <= 8 (`half_tanh_table`).

Training. `fake_quantization` makes the float layers of these networks compute as their
conversion will (rounded inputs, outputs, kernels and biases, straight-through gradients): what
`train --integer_prior` traces its loss with.

Storage. A converted checkpoint's params hold, beside the float params, the subtree
`params["integer_prior"]` (int32 arrays, `convert_params`); its config has `integer_prior=True`.
Supported priors: SUPPORTED_PRIORS, with one Gaussian (K = 1).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import zlib
from collections.abc import Iterator, Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jahp_jax.coding.range_coder import (
    MAX_TABLE_HALF_WIDTH,
    PRECISION,
    SCALE_LEVELS,
    SCALE_MAX,
    TAIL_SIGMAS,
    CodedLatents,
    TableSet,
    check_decoded_whole,
    compiled_functions,
    decode_symbols,
    encode_symbols,
    factorized_tables,
    gaussian_tables,
    new_decoder,
    new_encoder,
    scale_levels,
    stream_bytes,
)
from jahp_jax.models.latent_codecs import PRIORS, LatentCodec
from jahp_jax.models.latent_codecs.channelwise import ChannelwisePrior
from jahp_jax.models.latent_codecs.checkerboard import ANCHOR, CheckerboardPrior
from jahp_jax.models.latent_codecs.hyperprior import ScaleHyperprior
from jahp_jax.models.latent_codecs.mean_scale import MeanScaleHyperprior
from jahp_jax.models.latent_codecs.rasterscan import ContextPrior
from jahp_jax.nn.layers import Conv, ConvTranspose, MaskedConv, conv_transpose, strided_conv

INTEGER_KEY = "integer_prior"  # the params subtree of the integer arrays
FRACTION_BITS = 12
ONE = 1 << FRACTION_BITS  # the fixed-point value of 1.0
ACTIVATION_LIMIT = (1 << 24) - 1  # |activation| bound (values below 4096)
WEIGHT_LIMIT = (1 << 15) - 1  # |kernel entry| bound (int16 range)
STORED_LIMIT = (1 << 31) - 1  # every stored integer fits int32
MAX_DIVISOR_BITS = 30
EXACT_FLOAT64 = 1 << 53  # integers below this add and multiply exactly in float64
LEAKY_DIVISOR = 100  # the leaky ReLU's negative slope 1/100
BLAS_MIN_ROWS = 64  # smaller products are summed by numpy's einsum loops (`exact_matmul`)
SUPPORTED_PRIORS = ("hyperprior", "mean_scale", "context", "joint", "checkerboard", "channelwise")
TANH_REACH = 8 * ONE  # the LRP's 0.5 tanh table covers |x| <= 8 (beyond: within 2^-23 of +-1/2)
Z_TABLE_WIDTH = 2 * MAX_TABLE_HALF_WIDTH + 2  # stored z table columns: symbols + escape
GAUSSIAN_TABLE_WIDTH = 2 * int(np.ceil(TAIL_SIGMAS * SCALE_MAX)) + 2

Arrays = dict[str, Any]  # a nested dict of integer arrays


class IntegerPriorError(ValueError):
    """A model that cannot be converted to, or run with, the integer prior path."""


# ---------------------------------------------------------------------------------------------
# The networks of each prior: which params, which layer kinds, which nonlinearities.
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class LayerSpec:
    """One integer layer: `name` its params' key in the network (None: the network's own params),
    `kind` 'deconv' (k x k transposed conv, stride 2), 'conv' (k x k, stride 1), 'dense' (1x1)
    or 'context' (the masked 5x5 conv, applied to gathered windows), `activation` 'relu',
    'leaky' or 'none'."""

    name: str | None
    kind: str
    activation: str


def _hyper_synthesis(last: str, between: str) -> tuple[LayerSpec, ...]:
    return (
        LayerSpec("layers_0", "deconv", between),
        LayerSpec("layers_2", "deconv", between),
        LayerSpec("layers_4", "conv", last),
    )


_SCALE_HYPER_SYNTHESIS = _hyper_synthesis("relu", "relu")
_MEAN_SCALE_HYPER_SYNTHESIS = _hyper_synthesis("none", "leaky")
_CONTEXT = (LayerSpec(None, "context", "none"),)
_SLICE_TRANSFORM = (
    LayerSpec("layers_0", "conv", "relu"),
    LayerSpec("layers_2", "conv", "relu"),
    LayerSpec("layers_4", "conv", "none"),
)
_SLICE_NETWORKS = ("cc_mean_transforms", "cc_scale_transforms", "lrp_transforms")
_ENTROPY_PARAMETERS = (
    LayerSpec("layers_0", "dense", "leaky"),
    LayerSpec("layers_2", "dense", "leaky"),
    LayerSpec("layers_4", "dense", "none"),
)


def prior_name(codec: LatentCodec) -> str:
    """The registry name of a latent codec's prior."""
    return next(name for name, cls in PRIORS.items() if type(codec) is cls)


def check_supported(codec: LatentCodec) -> None:
    """IntegerPriorError (one line) unless the integer path covers this prior and K."""
    check_supported_config(prior_name(codec), codec.mixture_components)


def check_supported_config(name: str, mixture_components: int) -> None:
    """IntegerPriorError (one line) unless the integer path covers prior `name` with K
    components (`ModelConfig` calls it for `integer_prior=True`)."""
    if name not in SUPPORTED_PRIORS:
        why = " (it has no network to convert)" if name == "factorized" else ""
        raise IntegerPriorError(
            f"the integer prior path does not support the '{name}' prior{why}; "
            f"supported: {', '.join(SUPPORTED_PRIORS)}"
        )
    if mixture_components != 1:
        raise IntegerPriorError(
            f"the integer prior path needs one Gaussian (K=1), this model has "
            f"K={mixture_components} mixture components"
        )


def networks(codec: LatentCodec) -> dict[str, tuple[LayerSpec, ...]]:
    """The integer networks of a supported prior, by params key."""
    if isinstance(codec, ScaleHyperprior):
        return {"h_s": _SCALE_HYPER_SYNTHESIS}
    if isinstance(codec, MeanScaleHyperprior):
        return {"h_s": _MEAN_SCALE_HYPER_SYNTHESIS}
    if isinstance(codec, ChannelwisePrior):
        nets = {"h_s": _MEAN_SCALE_HYPER_SYNTHESIS, "h_s_scales": _MEAN_SCALE_HYPER_SYNTHESIS}
        for index in range(len(codec.bounds)):
            nets.update({f"{name}_{index}": _SLICE_TRANSFORM for name in _SLICE_NETWORKS})
        return nets
    nets = {"h_s": _MEAN_SCALE_HYPER_SYNTHESIS} if codec.hyperprior else {}
    return {**nets, "context_prediction": _CONTEXT, "entropy_parameters": _ENTROPY_PARAMETERS}


def _layer_params(network: Mapping, spec: LayerSpec) -> Mapping:
    return network if spec.name is None else network[spec.name]


# ---------------------------------------------------------------------------------------------
# Integer arithmetic.
# ---------------------------------------------------------------------------------------------
def rounding_divide(values: np.ndarray, divisor: np.ndarray | int) -> np.ndarray:
    """int64 values / positive int64 divisors (broadcast), rounded half up:
    floor((x + floor(d / 2)) / d)."""
    divisor = np.asarray(divisor, np.int64)
    return (values + divisor // 2) // divisor


def activate(values: np.ndarray, activation: str) -> np.ndarray:
    """The integer nonlinearity, then the clip to +-ACTIVATION_LIMIT."""
    if activation == "relu":
        values = np.maximum(values, 0)
    elif activation == "leaky":
        values = np.where(values >= 0, values, rounding_divide(values, LEAKY_DIVISOR))
    return np.clip(values, -ACTIVATION_LIMIT, ACTIVATION_LIMIT)


def to_fixed(values: np.ndarray) -> np.ndarray:
    """Integer-valued array (e.g. z_hat) -> clipped int64 fixed-point network input."""
    return np.clip(np.asarray(values, np.int64) * ONE, -ACTIVATION_LIMIT, ACTIVATION_LIMIT)


@dataclasses.dataclass(frozen=True)
class IntegerLayer:
    """An integer layer ready to run: `matrix` (fan-in, O) int64 rows in patch order (for
    'deconv' the flipped, transposed kernel), bias and divisor (O,) int64, the kernel size."""

    spec: LayerSpec
    kernel_size: int
    matrix: np.ndarray
    bias: np.ndarray
    divisor: np.ndarray
    _matrices: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_arrays(cls, spec: LayerSpec, arrays: Mapping[str, np.ndarray]) -> IntegerLayer:
        kernel = np.asarray(arrays["kernel"], np.int64)
        if spec.kind == "deconv":  # (k, k, O, I) of the strided conv -> correlation (k, k, I, O)
            kernel = np.swapaxes(kernel[::-1, ::-1], 2, 3)
        layer = cls(
            spec,
            kernel.shape[0],
            np.ascontiguousarray(kernel.reshape(-1, kernel.shape[-1])),
            np.asarray(arrays["bias"], np.int64),
            np.asarray(arrays["divisor"], np.int64),
        )
        layer.check_exact()
        return layer

    def check_exact(self) -> None:
        """Raise IntegerPriorError unless every sum of this layer is exact in float64."""
        if (self.divisor < 1).any():
            raise IntegerPriorError("an integer layer has a divisor < 1 (corrupt checkpoint?)")
        bound = np.abs(self.matrix).sum(axis=0) * ACTIVATION_LIMIT + np.abs(self.bias)
        if (np.abs(self.matrix) > WEIGHT_LIMIT).any() or bound.max() >= EXACT_FLOAT64:
            raise IntegerPriorError(
                "an integer layer's sums can exceed 2^53 (corrupt checkpoint or too large a "
                "fan-in): its float64 arithmetic would not be exact"
            )

    def output(
        self, patches: np.ndarray, matmul: str, taps: np.ndarray | None = None
    ) -> np.ndarray:
        """patches (P, fan-in) int64 -> (P, O) int64 activations. `taps` (context layers): the
        flat kernel taps the windows hold (`ContextCodec.context_taps`)."""
        accumulated = exact_matmul(patches, self._matrix(taps, matmul), matmul) + self.bias
        return activate(rounding_divide(accumulated, self.divisor), self.spec.activation)

    def _matrix(self, taps: np.ndarray | None, matmul: str) -> np.ndarray:
        """The kernel at the flat taps `taps` (all: None) as a (fan-in, O) matrix of the
        matmul's dtype."""
        key = (None if taps is None else tuple(taps), matmul)
        if key not in self._matrices:
            matrix = self.matrix
            if taps is not None:
                k, outputs = self.kernel_size, matrix.shape[-1]
                matrix = matrix.reshape(k * k, -1, outputs)[taps].reshape(-1, outputs)
            dtype = np.float64 if matmul == "float64" else np.int64
            self._matrices[key] = np.ascontiguousarray(matrix, dtype)
        return self._matrices[key]

    def apply_map(self, x: np.ndarray, matmul: str) -> np.ndarray:
        """A conv layer on a map: x (h, w, I) int64 -> (h, w, O) ('conv', 'dense') or
        (2h, 2w, O) ('deconv', the adjoint of a stride-2 conv with padding k // 2)."""
        k = self.kernel_size
        if self.spec.kind == "deconv":
            up = np.zeros((2 * x.shape[0], 2 * x.shape[1], x.shape[2]), np.int64)
            up[::2, ::2] = x
            before = k - 1 - k // 2
            x = np.pad(up, ((before, k - 1 - before), (before, k - 1 - before), (0, 0)))
        else:
            x = np.pad(x, ((k // 2, k // 2), (k // 2, k // 2), (0, 0)))
        height, width = x.shape[0] - k + 1, x.shape[1] - k + 1
        windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(0, 1))
        patches = windows.transpose(0, 1, 3, 4, 2).reshape(height * width, -1)
        return self.output(patches, matmul).reshape(height, width, -1)


def exact_matmul(patches: np.ndarray, matrix: np.ndarray, matmul: str = "float64") -> np.ndarray:
    """(P, K) @ (K, O) of integer arrays whose sums stay below 2^53 (`IntegerLayer.check_exact`),
    exactly. 'float64': in float64, with BLAS from BLAS_MIN_ROWS rows and numpy's einsum loops
    below (the small products of the wavefront steps, where BLAS's threads cost more than the
    sums; on a loaded 2-core machine 8x more); 'int64': numpy's int64 loops (no BLAS)."""
    if matmul == "int64":
        return patches @ matrix.astype(np.int64, copy=False)
    if matmul != "float64":
        raise ValueError(f"matmul must be 'float64' or 'int64', got '{matmul}'")
    patches, matrix = patches.astype(np.float64), matrix.astype(np.float64, copy=False)
    if patches.shape[0] < BLAS_MIN_ROWS:
        return np.einsum("pk,ko->po", patches, matrix).astype(np.int64)
    return (patches @ matrix).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# Conversion of float parameters.
# ---------------------------------------------------------------------------------------------
def quantize_layer(
    kernel: np.ndarray, bias: np.ndarray, kind: str, mask: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Float kernel (k, k, ., .) and bias (O,) -> int32 {'kernel', 'bias', 'divisor'}.

    Output channel o gets kernel round(W * 2^e_o), bias round(b * 2^(e_o + 12)) and divisor 2^e_o,
    e_o the largest exponent <= 30 with |kernel| <= 2^15 - 1, |bias| < 2^31 and the layer's sums
    below 2^53 (so the output is the float layer's to within the rounding). `mask` (k, k) zeroes
    the taps a masked conv does not read."""
    kernel = np.asarray(kernel, np.float64)
    if mask is not None:
        kernel = kernel * np.asarray(mask, np.float64)[:, :, None, None]
    out_axis = 2 if kind == "deconv" else 3  # a deconv kernel is (k, k, O, I)
    per_output = np.moveaxis(kernel, out_axis, -1).reshape(-1, kernel.shape[out_axis])
    bias = np.asarray(bias, np.float64)
    if not (np.isfinite(per_output).all() and np.isfinite(bias).all()):
        raise IntegerPriorError("the model has non-finite weights; it cannot be converted")
    exponents = np.empty(per_output.shape[1], np.int64)
    for o in range(per_output.shape[1]):
        exponent = MAX_DIVISOR_BITS
        while exponent >= 0:
            weights = np.rint(per_output[:, o] * 2.0**exponent)
            bias_int = np.rint(bias[o] * 2.0 ** (exponent + FRACTION_BITS))
            bound = np.abs(weights).sum() * ACTIVATION_LIMIT + abs(bias_int)
            if (
                np.abs(weights).max() <= WEIGHT_LIMIT
                and abs(bias_int) <= STORED_LIMIT
                and bound < EXACT_FLOAT64
            ):
                break
            exponent -= 1
        if exponent < 0:
            raise IntegerPriorError(
                "a layer's weights or bias are too large for int16 kernels and int32 biases"
            )
        exponents[o] = exponent
    shape = [1] * kernel.ndim
    shape[out_axis] = -1
    return {
        "kernel": np.rint(kernel * np.exp2(exponents).reshape(shape)).astype(np.int32),
        "bias": np.rint(bias * np.exp2(exponents + FRACTION_BITS)).astype(np.int32),
        "divisor": (np.int64(1) << exponents).astype(np.int32),
    }


def pack_tables(tables: TableSet, width: int) -> dict[str, np.ndarray]:
    """A TableSet -> int32 {'counts' (T, width) zero-padded, 'lows' (T,), 'sizes' (T,)}."""
    counts = np.zeros((len(tables.counts), width), np.int32)
    for row, table in zip(counts, tables.counts, strict=True):
        row[: table.size] = table
    return {
        "counts": counts,
        "lows": tables.lows.astype(np.int32),
        "sizes": tables.sizes.astype(np.int32),
    }


def unpack_tables(arrays: Mapping[str, np.ndarray]) -> TableSet:
    """Inverse of `pack_tables`; IntegerPriorError for tables that are not valid PMFs."""
    counts, lows, sizes = (np.asarray(arrays[k], np.int64) for k in ("counts", "lows", "sizes"))
    if (sizes < 2).any() or (sizes > counts.shape[1]).any():
        raise IntegerPriorError("a stored entropy table has an invalid size (corrupt checkpoint?)")
    rows = [counts[i, : sizes[i]] for i in range(sizes.size)]
    if any((row < 1).any() or row.sum() != 1 << PRECISION for row in rows):
        raise IntegerPriorError(
            f"a stored entropy table is not a {PRECISION}-bit PMF (corrupt checkpoint?)"
        )
    return TableSet.from_counts(rows, lows)


def scale_thresholds() -> np.ndarray:
    """(SCALE_LEVELS - 1,) int32: level j + 1 starts at scale threshold[j] / 2^12 (the
    geometric midpoints of `coding.scale_levels`, rounded up to the fixed-point grid)."""
    log_levels = np.log(scale_levels())
    midpoints = np.exp((log_levels[:-1] + log_levels[1:]) / 2)
    return np.ceil(midpoints * ONE).astype(np.int32)


def half_tanh_table() -> np.ndarray:
    """(2 TANH_REACH + 1,) int32: round(2^12 tanh(x) / 2) at x = (i - TANH_REACH) / 2^12, the
    latent residual prediction's nonlinearity as a lookup."""
    x = (np.arange(2 * TANH_REACH + 1) - TANH_REACH) / ONE
    return np.rint(0.5 * np.tanh(x) * ONE).astype(np.int32)


def _z_tables(model, params: Mapping) -> dict[str, np.ndarray]:
    """The z density's tables around its integer (rounded) medians."""
    quantiles = np.array(params["z_density"]["quantiles"], np.float32)
    quantiles[:, 0, 1] = np.rint(quantiles[:, 0, 1])
    likelihood = functools.partial(compiled_functions(model)["z_density_likelihood"], params)
    tables, medians = factorized_tables(quantiles, likelihood)
    return {**pack_tables(tables, Z_TABLE_WIDTH), "medians": medians.astype(np.int32)}


def integer_arrays(model, params: Mapping) -> Arrays:
    """The integer arrays of a float model's prior path (what `params["integer_prior"]` holds)."""
    codec = model.make_latent_codec()
    check_supported(codec)
    arrays: Arrays = {}
    for network, specs in networks(codec).items():
        arrays[network] = {}
        for spec in specs:
            layer = _layer_params(params[network], spec)
            mask = codec.context_mask if spec.kind == "context" else None
            quantized = quantize_layer(layer["kernel"], layer["bias"], spec.kind, mask)
            if spec.name is None:
                arrays[network] = quantized
            else:
                arrays[network][spec.name] = quantized
    if codec.hyperprior:
        arrays["z_tables"] = _z_tables(model, params)
    arrays["gaussian_tables"] = pack_tables(gaussian_tables(), GAUSSIAN_TABLE_WIDTH)
    arrays["scale_thresholds"] = scale_thresholds()
    if isinstance(codec, ChannelwisePrior):
        arrays["half_tanh"] = half_tanh_table()
    return arrays


def convert_params(model, params: Mapping) -> dict[str, Any]:
    """Float params -> the params of the integer-prior model: the same float params (g_a, h_a,
    g_s; the prior's float weights stay for fine-tuning) plus `params["integer_prior"]`."""
    float_params = {k: jax.tree_util.tree_map(np.asarray, v) for k, v in params.items()}
    float_params.pop(INTEGER_KEY, None)
    return {**float_params, INTEGER_KEY: integer_arrays(model, float_params)}


def abstract_arrays(model, float_shapes: Mapping) -> Arrays:
    """The shapes of `integer_arrays` (int32 `jax.ShapeDtypeStruct`s) from the float params'
    shapes (a tree with `.shape` leaves): what a checkpoint restore needs."""
    codec = model.make_latent_codec()
    check_supported(codec)

    def struct(*shape):
        return jax.ShapeDtypeStruct(tuple(shape), np.int32)

    arrays: Arrays = {}
    for network, specs in networks(codec).items():
        arrays[network] = {}
        for spec in specs:
            layer = _layer_params(float_shapes[network], spec)
            shapes = {
                "kernel": struct(*layer["kernel"].shape),
                "bias": struct(*layer["bias"].shape),
                "divisor": struct(*layer["bias"].shape),
            }
            if spec.name is None:
                arrays[network] = shapes
            else:
                arrays[network][spec.name] = shapes
    n = codec.num_filters
    if codec.hyperprior:
        arrays["z_tables"] = {
            "counts": struct(n, Z_TABLE_WIDTH),
            **{k: struct(n) for k in ("lows", "sizes", "medians")},
        }
    arrays["gaussian_tables"] = {
        "counts": struct(SCALE_LEVELS, GAUSSIAN_TABLE_WIDTH),
        **{k: struct(SCALE_LEVELS) for k in ("lows", "sizes")},
    }
    arrays["scale_thresholds"] = struct(SCALE_LEVELS - 1)
    if isinstance(codec, ChannelwisePrior):
        arrays["half_tanh"] = struct(2 * TANH_REACH + 1)
    return arrays


# ---------------------------------------------------------------------------------------------
# Integer-aware training: the float layers of the integer networks, fake-quantized.
# ---------------------------------------------------------------------------------------------
def _straight_through(x: jax.Array, quantized: jax.Array) -> jax.Array:
    """`quantized` in the forward pass, the identity's gradient in the backward pass."""
    return x + jax.lax.stop_gradient(quantized - x)


def _fake_fixed(x: jax.Array) -> jax.Array:
    """Values rounded to the 2^-12 grid and clipped like the integer activations (STE)."""
    limit = ACTIVATION_LIMIT / ONE
    return _straight_through(x, jnp.clip(jnp.round(x * ONE) / ONE, -limit, limit))


def _fake_quantized_layer(module: nn.Module, x: jax.Array) -> jax.Array:
    """What the converted layer computes, in float with straight-through gradients: input and
    output on the 2^-12 grid, the kernel on its channel's 2^-e grid, the bias on 2^-(e + 12).
    e is the weight-range exponent of `quantize_layer` (the conversion may lower it further for
    a channel whose bias or sum bound needs it)."""
    params = module.variables["params"]
    kernel, bias = params["kernel"], params["bias"]
    if isinstance(module, MaskedConv):
        kernel = kernel * jnp.asarray(module.mask_fn(module.kernel_size))[:, :, None, None]
    reduce = (0, 1, 3) if isinstance(module, ConvTranspose) else (0, 1, 2)
    largest = jnp.max(jnp.abs(kernel), axis=reduce, keepdims=True)
    exponent = jnp.floor(jnp.log2(WEIGHT_LIMIT / jnp.maximum(largest, 2.0**-40)))
    scale = jax.lax.stop_gradient(2.0 ** jnp.clip(exponent, 0, MAX_DIVISOR_BITS))
    kernel = _straight_through(kernel, jnp.round(kernel * scale) / scale)
    bias_scale = scale.reshape(-1) * ONE
    bias = _straight_through(bias, jnp.round(bias * bias_scale) / bias_scale)
    x = _fake_fixed(x)
    if isinstance(module, ConvTranspose):
        y = conv_transpose(x, kernel.astype(x.dtype), module.stride)
    else:
        y = strided_conv(x, kernel.astype(x.dtype), getattr(module, "stride", 1))
    return _fake_fixed(y + bias.astype(x.dtype))


@contextlib.contextmanager
def fake_quantization(codec: LatentCodec) -> Iterator[None]:
    """While tracing inside the block, the conv layers of `codec`'s integer networks (h_s, the
    context model, the entropy parameters, the slice transforms) compute as their integer
    conversion will, with straight-through gradients (integer-aware training, Balle et al.
    2019). The nonlinearities between them stay float: the next layer's input rounding puts
    their output on the integer grid."""
    check_supported(codec)
    names = set(networks(codec))

    def interceptor(next_fun, args, kwargs, context):
        module = context.module
        if (
            context.method_name == "__call__"
            and isinstance(module, Conv | ConvTranspose | MaskedConv)
            and module.path
            and module.path[0] in names
        ):
            return _fake_quantized_layer(module, *args)
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(interceptor):
        yield


def split_params(params: Mapping) -> tuple[dict[str, Any], Arrays | None]:
    """(float params, the integer arrays or None)."""
    float_params = {k: v for k, v in params.items() if k != INTEGER_KEY}
    return float_params, params.get(INTEGER_KEY)


# ---------------------------------------------------------------------------------------------
# Running the integer prior path.
# ---------------------------------------------------------------------------------------------
class IntegerPrior:
    """The integer prior path of one model: z tables, h_s, the per-step table indices and means.

    All inputs and outputs are int64 numpy; fixed-point values are in units of 2^-12.
    """

    def __init__(self, codec: LatentCodec, arrays: Arrays, matmul: str = "float64"):
        check_supported(codec)
        self.codec = codec
        self.matmul = matmul
        try:
            arrays = jax.tree_util.tree_map(np.asarray, arrays)
            self.layers = {
                network: [
                    IntegerLayer.from_arrays(spec, _layer_params(arrays[network], spec))
                    for spec in specs
                ]
                for network, specs in networks(codec).items()
            }
            self.gaussian_tables = unpack_tables(arrays["gaussian_tables"])
            self.thresholds = np.asarray(arrays["scale_thresholds"], np.int64)
            self.z_tables, self.z_medians = None, None
            self.half_tanh = None
            if isinstance(codec, ChannelwisePrior):
                self.half_tanh = np.asarray(arrays["half_tanh"], np.int64)
                if self.half_tanh.shape != (2 * TANH_REACH + 1,):
                    raise IntegerPriorError(
                        "the stored tanh table is invalid (corrupt checkpoint?)"
                    )
            if codec.hyperprior:
                self.z_tables = unpack_tables(arrays["z_tables"])
                self.z_medians = np.asarray(arrays["z_tables"]["medians"], np.int64)
        except (KeyError, TypeError) as error:
            raise IntegerPriorError(
                f"the model's integer arrays are incomplete (missing {error}); convert the "
                "float model again with `python -m jahp_jax.cli.convert --to=integer`"
            ) from None
        if self.thresholds.shape != (SCALE_LEVELS - 1,) or (np.diff(self.thresholds) < 0).any():
            raise IntegerPriorError("the stored scale thresholds are invalid (corrupt checkpoint?)")

    def table_checksum(self) -> int:
        """CRC32 of every stored table (the header's table CRC)."""
        tables = [self.gaussian_tables] + ([self.z_tables] if self.z_tables else [])
        crc = zlib.crc32(self.thresholds.astype("<i8").tobytes())
        for table in tables:
            crc = zlib.crc32(table.checksum().to_bytes(4, "little"), crc)
        return crc

    def hyper(self, z_hat: np.ndarray) -> np.ndarray:
        """z_hat (h/4, w/4, N) int64 -> hyper features (h, w, C) int64 fixed-point."""
        networks = ("h_s", "h_s_scales") if self.half_tanh is not None else ("h_s",)
        return np.concatenate([self._map(name, to_fixed(z_hat)) for name in networks], axis=-1)

    def _map(self, network: str, features: np.ndarray) -> np.ndarray:
        """A network of conv layers on a map (h, w, C) int64."""
        for layer in self.layers[network]:
            features = layer.apply_map(features, self.matmul)
        return features

    def _slice_support(self, index: int, hyper: np.ndarray, decoded: np.ndarray):
        """Channel-wise: (mean support, scale support) maps of slice `index`."""
        codec = self.codec
        mean_hyper, scale_hyper = np.split(hyper, 2, axis=-1)
        support = decoded[..., : codec.bounds[min(index, codec.max_support_slices)][0]]
        return (
            np.concatenate([mean_hyper, support], axis=-1),
            np.concatenate([scale_hyper, support], axis=-1),
        )

    def finalize(self, kind: int, values: np.ndarray, hyper: np.ndarray, decoded: np.ndarray):
        """Channel-wise: the decoded slice `kind` (h w, width) fixed-point plus the latent
        residual prediction round_table(0.5 tanh(lrp(mean support, slice)))."""
        mean_support, _ = self._slice_support(kind, hyper, decoded)
        slice_map = values.reshape(*decoded.shape[:2], -1)
        lrp = self._map(f"lrp_transforms_{kind}", np.concatenate([mean_support, slice_map], -1))
        residual = self.half_tanh[np.clip(lrp, -TANH_REACH, TANH_REACH) + TANH_REACH]
        return values + residual.reshape(values.shape)

    def table_index(self, scales: np.ndarray) -> np.ndarray:
        """Fixed-point scales -> the Gaussian table index (number of thresholds <= scale)."""
        return np.searchsorted(self.thresholds, scales, side="right").astype(np.int64)

    def _from_features(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        for layer in self.layers["entropy_parameters"]:
            features = layer.output(features, self.matmul)
        scales, means = np.split(features, 2, axis=-1)
        return scales, means

    def step(self, kind: int, *inputs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The step's inputs (`LatentCodec.step_inputs` on int64 y_pad and hyper) ->
        (table index (P, M), mean (P, M) fixed-point), both int64."""
        codec = self.codec
        if isinstance(codec, ScaleHyperprior):
            (scales,) = inputs
            means = np.zeros_like(scales)
        elif isinstance(codec, MeanScaleHyperprior):
            (hyper,) = inputs
            scales, means = np.split(hyper, 2, axis=-1)
        elif isinstance(codec, ChannelwisePrior):
            hyper, decoded = inputs
            mean_support, scale_support = self._slice_support(kind, hyper, decoded)
            means = self._map(f"cc_mean_transforms_{kind}", mean_support)
            scales = self._map(f"cc_scale_transforms_{kind}", scale_support)
            means, scales = means.reshape(-1, means.shape[-1]), scales.reshape(-1, scales.shape[-1])
        else:
            context_layer = self.layers["context_prediction"][0]
            if isinstance(codec, CheckerboardPrior):
                hyper, *patches = inputs
                if kind == ANCHOR:
                    context = np.zeros((hyper.shape[0], 2 * codec.num_latents), np.int64)
                else:
                    context = context_layer.output(patches[0], self.matmul, codec.context_taps)
            elif isinstance(codec, ContextPrior):
                patches, *hyper = inputs
                hyper = hyper[0] if hyper else None
                context = context_layer.output(patches, self.matmul, codec.context_taps)
            else:  # a ContextCodec subclass added later must say how it reads its context
                raise IntegerPriorError(f"no integer step for {type(codec).__name__}")
            features = context if hyper is None else np.concatenate([hyper, context], axis=-1)
            scales, means = self._from_features(features)
        return self.table_index(scales), means


def information_bits(symbols: np.ndarray, table_index: np.ndarray, tables: TableSet) -> float:
    """The code length in bits of int symbols (n,) under tables[table_index] (n,), escapes
    included (their 5-bit length and their bits): what the range coder spends, to within its
    32-bit words."""
    symbols, table_index = np.ravel(symbols), np.ravel(table_index)
    local = symbols - tables.lows[table_index]
    escape = tables.sizes[table_index] - 1
    escaped = (local < 0) | (local >= escape)
    local = np.where(escaped, escape, local)
    bits = 0.0
    for table in np.unique(table_index):
        counts = tables.counts[table][local[table_index == table]]
        bits += float(np.sum(PRECISION - np.log2(counts.astype(np.float64))))
    values = symbols[escaped]
    u = np.where(values >= 0, 2 * values, -2 * values - 1) + 1
    return bits + float(np.sum(5 + np.frexp(u.astype(np.float64))[1] - 1))


class IntegerLatentCoder:
    """`coding.LatentCoder` for an integer-prior model: the same streams API, with the prior path
    of `IntegerPrior`. Decoding runs no XLA at all (numpy and the range coder only)."""

    def __init__(self, model, params: Mapping, matmul: str = "float64"):
        float_params, arrays = split_params(params)
        if arrays is None:
            raise IntegerPriorError(
                "this integer-prior model has no integer arrays (params['integer_prior']); "
                "make one with `python -m jahp_jax.cli.convert --to=integer FLOAT_MODEL DST`"
            )
        self.model = model
        self.params = float_params
        self.codec = model.make_latent_codec()
        self.prior = IntegerPrior(self.codec, arrays, matmul)
        self.table_checksum = self.prior.table_checksum()

    # --- z ------------------------------------------------------------------------------------
    def _z_index(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.broadcast_to(np.arange(shape[-1]), shape)

    def _encode_z(self, y: np.ndarray) -> tuple[bytes, np.ndarray, float]:
        hyper_analysis = compiled_functions(self.model)["hyper_analysis"]
        z = np.asarray(hyper_analysis(self.params, y[None]), np.float64)[0]
        symbols = np.rint(z - self.prior.z_medians).astype(np.int64)
        encoder = new_encoder()
        encode_symbols(encoder, symbols, self._z_index(z.shape), self.prior.z_tables)
        bits = information_bits(symbols, self._z_index(z.shape), self.prior.z_tables)
        return stream_bytes(encoder), symbols + self.prior.z_medians, bits

    def _decode_z(self, z_stream: bytes, shape: tuple[int, int]) -> np.ndarray:
        z_shape = (-(-shape[0] // 4), -(-shape[1] // 4), self.codec.num_filters)
        index = self._z_index(z_shape)
        decoder = new_decoder(z_stream)
        symbols = decode_symbols(decoder, index, self.prior.z_tables)
        check_decoded_whole(decoder, "z")  # before the (larger) y decode
        return symbols.reshape(z_shape) + self.prior.z_medians

    # --- y ------------------------------------------------------------------------------------
    def _code_y(self, coder, hyper: np.ndarray | None, shape: tuple[int, int, int], y):
        """Code y (h, w, M) float (encoder) or None (decoder) -> (y_hat float32, table index and
        fixed-point mean maps (h, w, M) int64, bits)."""
        height, width, m = shape
        top, bottom, left, right = self.codec.coding_padding
        y_pad = np.zeros((height + top + bottom, width + left + right, m), np.int64)
        y_fixed = np.zeros(shape, np.int64)
        index_map = np.zeros(shape, np.int64)
        mean_map = np.zeros(shape, np.int64)
        tables = self.prior.gaussian_tables
        bits = 0.0
        for step in self.codec.schedule(height, width):
            n = step.count
            if n == 0:
                continue
            channels = slice(*step.channels) if step.channels else slice(0, m)
            inputs = self.codec.step_inputs(step, y_pad, hyper)
            index, means = self.prior.step(step.kind, *inputs)
            index, means = index[:n], means[:n]
            rows, cols = step.rows[:n], step.cols[:n]
            if y is not None:
                offset = means.astype(np.float64) / ONE
                values = y[rows, cols, channels].astype(np.float64)
                symbols = np.rint(values - offset).astype(np.int64)
                encode_symbols(coder, symbols, index, tables)
                bits += information_bits(symbols, index, tables)
            else:
                symbols = decode_symbols(coder, index, tables).reshape(means.shape)
            values = symbols * ONE + means
            if self.codec.finalizes:
                values = self.prior.finalize(step.kind, values, *inputs)
            y_fixed[rows, cols, channels] = values
            clipped = np.clip(values, -ACTIVATION_LIMIT, ACTIVATION_LIMIT)
            y_pad[rows + top, cols + left, channels] = clipped
            index_map[rows, cols, channels] = index
            mean_map[rows, cols, channels] = means
        y_hat = (y_fixed.astype(np.float64) / ONE).astype(np.float32)
        return y_hat, index_map, mean_map, bits

    # --- public -------------------------------------------------------------------------------
    def encode(self, y: np.ndarray) -> CodedLatents:
        """y (h, w, M) float32 (the analysis transform's output) -> CodedLatents; bits are the
        information content under the integer tables."""
        y = np.asarray(y, np.float32)
        z_stream, z_hat, hyper, bits_z = b"", None, None, 0.0
        if self.codec.hyperprior:
            z_stream, z_hat, bits_z = self._encode_z(y)
            hyper = self.prior.hyper(z_hat)
        encoder = new_encoder()
        y_hat, index, means, bits_y = self._code_y(encoder, hyper, y.shape, y)
        distribution = {
            "scales": scale_levels()[index].astype(np.float32),
            "means": (means / ONE).astype(np.float32),
            "table_index": index,
        }
        z_float = None if z_hat is None else z_hat.astype(np.float32)
        return CodedLatents(
            z_stream, stream_bytes(encoder), y_hat, z_float, distribution, bits_y, bits_z
        )

    def decode(self, z_stream: bytes, y_stream: bytes, shape: tuple[int, int]) -> np.ndarray:
        """(z_stream, y_stream, latent (h, w)) -> y_hat (h, w, M) float32."""
        hyper = self.prior.hyper(self._decode_z(z_stream, shape)) if self.codec.hyperprior else None
        shape_y = (*shape, self.codec.num_latents)
        decoder = new_decoder(y_stream)
        y_hat = self._code_y(decoder, hyper, shape_y, None)[0]
        check_decoded_whole(decoder, "y")
        return y_hat
