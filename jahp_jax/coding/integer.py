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

Exactness. Each computation of the prior path (the hyper synthesis, a group's features, a coding
step's table index and means, a group's residual prediction) is one XLA program on the CPU in
64-bit types (`IntegerPrior`, under `jax.enable_x64`): the rounding, shifts, clips and table
look-ups in int64, the sums of products in float64 on integer-valued arrays (`exact_matmul`,
`exact_correlation`: dots, never XLA's convolution). Every layer is checked (`check_exact`) to
satisfy sum_i |kernel[i, o]| * ACTIVATION_LIMIT + |bias[o]| < 2^53, and its inputs are clipped to
ACTIVATION_LIMIT, so every product and every partial sum, in whatever order, blocking or
vectorisation XLA adds them (with or without FMA, reassociated or not), is an integer of
magnitude below 2^53, exactly representable in float64: each float operation (int64 -> float64,
multiply, add, float64 -> int64 of an integer) is exact, no float division or transcendental is
used, and the result is the same integers on every IEEE-754 machine and instruction set (the
cross-ISA tests of tests/test_portable.py run these programs with XLA limited to SSE4.2 and AVX).
The one assumption is that a float64 dot is a sum of IEEE products (no Strassen-like or
reduced-precision algorithm). `matmul="int64"` computes the same sums with numpy's int64 loops
instead (no BLAS, no XLA; the tests' reference decoder).

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
Which priors have an integer form: `jahp_jax.models.latent_codecs.integer_form`.
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

from jahp_jax.coding.programs import compiled_functions
from jahp_jax.coding.range_coder import (
    MAX_TABLE_HALF_WIDTH,
    PRECISION,
    SCALE_LEVELS,
    SCALE_MAX,
    TAIL_SIGMAS,
    TableSet,
    factorized_tables,
    gaussian_tables,
    scale_levels,
)
from jahp_jax.models.latent_codecs import Composition, LatentCodec
from jahp_jax.models.latent_codecs.integer_form import (
    SHUFFLE_UPSCALE,
    TRANSPOSED_KINDS,
    IntegerFormError,
    LayerSpec,
    integer_networks,
)
from jahp_jax.nn.layers import (
    Conv,
    ConvTranspose,
    MaskedConv,
    add_bias,
    conv_transpose,
    strided_conv,
)

INTEGER_KEY = "integer_prior"  # the params subtree of the integer arrays
FRACTION_BITS = 12
ONE = 1 << FRACTION_BITS  # the fixed-point value of 1.0
ACTIVATION_LIMIT = (1 << 24) - 1  # |activation| bound (values below 4096)
WEIGHT_LIMIT = (1 << 15) - 1  # |kernel entry| bound (int16 range)
STORED_LIMIT = (1 << 31) - 1  # every stored integer fits int32
MAX_DIVISOR_BITS = 30
EXACT_FLOAT64 = 1 << 53  # integers below this add and multiply exactly in float64
LEAKY_DIVISOR = 100  # the leaky ReLU's negative slope 1/100
STEP_ROWS = 4  # a compiled step runs on a multiple of this many rows (`IntegerPrior.step`)
TANH_REACH = 8 * ONE  # the LRP's 0.5 tanh table covers |x| <= 8 (beyond: within 2^-23 of +-1/2)
Z_TABLE_WIDTH = 2 * MAX_TABLE_HALF_WIDTH + 2  # stored z table columns: symbols + escape
GAUSSIAN_TABLE_WIDTH = 2 * int(np.ceil(TAIL_SIGMAS * SCALE_MAX)) + 2

Arrays = dict[str, Any]  # a nested dict of integer arrays


IntegerPriorError = IntegerFormError  # a model that cannot be converted to, or run with, it


def _layer_params(network: Mapping, spec: LayerSpec) -> Mapping:
    """The entry of layer `spec` in a network's params (or integer arrays): its path's keys."""
    for key in () if spec.name is None else spec.name.split("/"):
        network = network[key]
    return network


def _network_arrays(specs: tuple[LayerSpec, ...], layers: list) -> Arrays:
    """A network's integer arrays nested as its params are: layers[i] at specs[i]'s path (the
    network's own entry for a layer without a name)."""
    arrays: Arrays = {}
    for spec, layer in zip(specs, layers, strict=True):
        if spec.name is None:
            return layer
        *parents, key = spec.name.split("/")
        entry = arrays
        for parent in parents:
            entry = entry.setdefault(parent, {})
        entry[key] = layer
    return arrays


# ---------------------------------------------------------------------------------------------
# Integer arithmetic (numpy or, traced under 64-bit jax, XLA: `xp` is np or jnp).
# ---------------------------------------------------------------------------------------------
def rounding_divide(values, divisor, xp: Any = np):
    """int64 values / positive int64 divisors (broadcast), rounded half up:
    floor((x + floor(d / 2)) / d)."""
    divisor = xp.asarray(divisor, xp.int64)
    return (values + divisor // 2) // divisor


def activate(values, activation: str, xp: Any = np):
    """The integer nonlinearity of int64 `values`, then the clip to +-ACTIVATION_LIMIT."""
    if activation == "relu":
        return xp.clip(values, 0, ACTIVATION_LIMIT)
    if activation == "leaky":  # x >= 0: x; x < 0: round_div(x, 100)
        values = xp.where(values >= 0, values, rounding_divide(values, LEAKY_DIVISOR, xp))
    return xp.clip(values, -ACTIVATION_LIMIT, ACTIVATION_LIMIT)


def shuffled(x, upscale: int, xp: Any = np):
    """PyTorch's PixelShuffle on one map (`jahp_jax.nn.blocks.pixel_shuffle`, an exact
    permutation; numpy or traced jnp `x`): (h, w, C r^2) -> (h r, w r, C), output
    (h r + i, w r + j, c) = input channel c r^2 + i r + j at (h, w)."""
    height, width, channels = x.shape
    out_channels = channels // (upscale * upscale)
    x = xp.reshape(x, (height, width, out_channels, upscale, upscale))
    x = xp.transpose(x, (0, 3, 1, 4, 2))
    return xp.reshape(x, (height * upscale, width * upscale, out_channels))


def to_fixed(values: np.ndarray) -> np.ndarray:
    """Integer-valued array (e.g. z_hat) -> clipped int64 fixed-point network input."""
    return np.clip(np.asarray(values, np.int64) * ONE, -ACTIVATION_LIMIT, ACTIVATION_LIMIT)


def exact_matmul(patches, matrix, xp: Any = np):
    """(P, K) integer-valued @ (K, O) `matrix` whose sums stay below 2^53 (`check_exact`),
    exactly, as int64: float64 products for a float64 `matrix` (XLA's, at its highest
    precision whatever jax's default matmul precision: exact, see the module docstring), int64
    loops for an int64 one (numpy: the tests' reference)."""
    if np.issubdtype(matrix.dtype, np.integer):
        return patches.astype(xp.int64) @ matrix
    patches = patches.astype(xp.float64)
    if xp is np:
        return (patches @ matrix).astype(np.int64)
    return jnp.matmul(patches, matrix, precision=jax.lax.Precision.HIGHEST).astype(jnp.int64)


def exact_correlation(x, kernel, offsets: tuple[int, int], xp: Any = np):
    """x (h, w, I) integer-valued map, kernel (kh, kw, I, O) integer-valued with sums below
    2^53 -> (h w, O) int64 exactly: out[r, c] = sum_ij x[r + oy + i, c + ox + j] kernel[i, j]
    (zero outside the map), (oy, ox) = `offsets`: the im2col columns (built in the kernel's
    dtype) through `exact_matmul`. (Not XLA's convolution: under `jahp_jax.runtime`'s flags
    oneDNN runs float64 convolutions some 40x slower than this product.)"""
    kh, kw, _, outputs = kernel.shape
    height, width = x.shape[:2]
    padding = ((-offsets[0], kh - 1 + offsets[0]), (-offsets[1], kw - 1 + offsets[1]), (0, 0))
    padded = xp.pad(x.astype(kernel.dtype), padding)
    patches = xp.concatenate(
        [padded[i : i + height, j : j + width] for i in range(kh) for j in range(kw)], axis=-1
    ).reshape(height * width, -1)
    return exact_matmul(patches, kernel.reshape(-1, outputs), xp)


def _map_taps(kind: str, k: int) -> list[list[tuple[int, int, int, int]]]:
    """The tap groups a map layer runs, each a list of (dy, dx, oy, ox): kernel tap (dy, dx)
    reads the input at offset (oy, ox). A conv (also 'transposed' and 'subpel', whose kernels
    `IntegerLayer.from_arrays` has made a conv's): one group, every tap. A stride-2 deconv (the
    adjoint of a stride-2 conv with padding k // 2): one group per output phase (row parity,
    column parity, row-major), the taps that meet the input's samples (of a 5x5 kernel 3x3,
    3x2, 2x3 and 2x2), not those the zeros of a zero-upsampled input would meet."""
    if kind != "deconv":
        pad = k // 2
        return [[(dy, dx, dy - pad, dx - pad) for dy in range(k) for dx in range(k)]]
    before = k - 1 - k // 2  # of the zero-upsampled input's padding
    return [
        [
            (dy, dx, (row_phase + dy - before) // 2, (col_phase + dx - before) // 2)
            for dy in range(k)
            if (row_phase + dy - before) % 2 == 0
            for dx in range(k)
            if (col_phase + dx - before) % 2 == 0
        ]
        for row_phase in range(2)
        for col_phase in range(2)
    ]


def _flat_taps(taps: list[tuple[int, int, int, int]], k: int) -> tuple[int, ...]:
    return tuple(dy * k + dx for dy, dx, _, _ in taps)


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["matrices", "bias", "divisor", "shifts"],
    meta_fields=["spec", "kernel_size"],
)
@dataclasses.dataclass(frozen=True)
class IntegerLayer:
    """An integer layer ready to run (a pytree: its arrays are numpy, or jax arrays for the
    compiled path). `matrices`: by the flat kernel taps it runs with (a context layer's, a
    deconv's phases, all of a conv's), the kernel at those taps as a (taps * I, O) matrix (for
    'deconv' and 'transposed' of the flipped, transposed kernel), float64 or int64 (which
    products, `exact_matmul`); bias and divisor (O,) int64; `shifts` the divisors' log2 if all
    are powers of two (what the conversion makes), else None."""

    spec: LayerSpec
    kernel_size: int
    matrices: dict[tuple[int, ...], Any]
    bias: Any
    divisor: Any
    shifts: Any

    @classmethod
    def from_arrays(
        cls,
        spec: LayerSpec,
        arrays: Mapping[str, np.ndarray],
        matmul: str = "float64",
        context_taps: np.ndarray | None = None,
    ) -> IntegerLayer:
        """A layer from its stored arrays, its products in `matmul` ('float64' or 'int64');
        a 'context' layer runs with `context_taps` (flat indices into its kernel)."""
        kernel = np.asarray(arrays["kernel"], np.int64)
        if spec.kind in TRANSPOSED_KINDS:  # (k, k, O, I) of the conv -> correlation (k, k, I, O)
            kernel = np.swapaxes(kernel[::-1, ::-1], 2, 3)
        k, outputs = kernel.shape[0], kernel.shape[-1]
        bias = np.asarray(arrays["bias"], np.int64)
        divisor = np.asarray(arrays["divisor"], np.int64)
        check_exact(kernel.reshape(-1, outputs), bias, divisor)
        if spec.kind == "context":
            tap_groups = [tuple(int(t) for t in context_taps)]
        else:
            tap_groups = [_flat_taps(taps, k) for taps in _map_taps(spec.kind, k)]
        dtype = np.float64 if matmul == "float64" else np.int64
        by_tap = kernel.reshape(k * k, -1, outputs)
        matrices = {
            taps: np.ascontiguousarray(by_tap[list(taps)].reshape(-1, outputs), dtype)
            for taps in tap_groups
        }
        shifts = np.log2(divisor).astype(np.int64)
        if not np.array_equal(np.int64(1) << shifts, divisor):
            shifts = None
        return cls(spec, k, matrices, bias, divisor, shifts)

    def output(self, patches, xp: Any = np, taps: tuple[int, ...] | None = None):
        """patches (P, fan-in) integer-valued -> (P, O) int64 activations. `taps`: the flat
        kernel taps the patches hold, in that order (None: the layer's only tap group)."""
        matrix = self.matrices[taps] if taps is not None else next(iter(self.matrices.values()))
        return self._finish(exact_matmul(patches, matrix, xp), xp)

    def _finish(self, sums, xp: Any):
        """The sums (P, O) int64 -> activations: + bias, rounding division, nonlinearity."""
        accumulated = sums + (self.bias + self.divisor // 2)
        if self.shifts is None:
            accumulated = accumulated // self.divisor
        else:  # an arithmetic shift: floor division by a power of two
            accumulated = accumulated >> self.shifts
        return activate(accumulated, self.spec.activation, xp)

    def apply_map(self, x, xp: Any = np):
        """A conv layer on a map: x (h, w, I) int64 -> (h, w, O) ('conv', 'dense',
        'transposed': the adjoint of a stride-1 conv with odd k and padding k // 2, which is
        the conv of the flipped, transposed kernel with the same padding), (2h, 2w, O / 4)
        ('subpel': the conv, then `shuffled` x2) or (2h, 2w, O) ('deconv', the adjoint of a
        stride-2 conv with padding k // 2, per output phase: `_map_taps`). The sums are the
        plain computation's integers, exactly."""
        height, width = x.shape[:2]
        phases = [
            self._taps_output(x, taps, xp).reshape(height, width, -1)
            for taps in _map_taps(self.spec.kind, self.kernel_size)
        ]
        if self.spec.kind == "subpel":
            return shuffled(phases[0], SHUFFLE_UPSCALE, xp)
        if self.spec.kind != "deconv":
            return phases[0]
        rows = [xp.stack(phases[2 * row : 2 * row + 2], axis=2) for row in range(2)]
        return xp.stack(rows, axis=1).reshape(2 * height, 2 * width, -1)  # (h, 2, w, 2, O)

    def _taps_output(self, x, taps: list, xp: Any):
        """The layer's output at every position of the map x (h, w, I), from the kernel taps
        (dy, dx) reading x at the offsets (oy, ox) (zero outside; a row-major grid of
        consecutive offsets): (h w, O) int64."""
        row_offsets = sorted({oy for _, _, oy, _ in taps})
        col_offsets = sorted({ox for _, _, _, ox in taps})
        matrix = self.matrices[_flat_taps(taps, self.kernel_size)]
        kernel = matrix.reshape(len(row_offsets), len(col_offsets), x.shape[-1], -1)
        sums = exact_correlation(x, kernel, (row_offsets[0], col_offsets[0]), xp)
        return self._finish(sums, xp)


def check_exact(matrix: np.ndarray, bias: np.ndarray, divisor: np.ndarray) -> None:
    """Raise IntegerPriorError unless every sum of the layer (matrix (fan-in, O) int64, bias
    and divisor (O,)) is exact in float64: sum_i |matrix[i, o]| * ACTIVATION_LIMIT + |bias[o]|
    < 2^53 for every output o (its inputs are clipped to ACTIVATION_LIMIT)."""
    if (divisor < 1).any():
        raise IntegerPriorError("an integer layer has a divisor < 1 (corrupt checkpoint?)")
    bound = np.abs(matrix).sum(axis=0) * ACTIVATION_LIMIT + np.abs(bias)
    if (np.abs(matrix) > WEIGHT_LIMIT).any() or bound.max() >= EXACT_FLOAT64:
        raise IntegerPriorError(
            "an integer layer's sums can exceed 2^53 (corrupt checkpoint or too large a "
            "fan-in): its float64 arithmetic would not be exact"
        )


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
    out_axis = 2 if kind in TRANSPOSED_KINDS else 3  # a transposed conv's kernel is (k, k, O, I)
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


def _context_mask(composition: Composition, network: str) -> np.ndarray:
    return composition.spatial.mask()


def integer_arrays(model, params: Mapping) -> Arrays:
    """The integer arrays of a float model's prior path (what `params["integer_prior"]` holds)."""
    composition = model.config.composition()
    arrays: Arrays = {}
    for network, specs in integer_networks(composition).items():
        quantized = []
        for spec in specs:
            layer = _layer_params(params[network], spec)
            mask = _context_mask(composition, network) if spec.kind == "context" else None
            quantized.append(quantize_layer(layer["kernel"], layer["bias"], spec.kind, mask))
        arrays[network] = _network_arrays(specs, quantized)
    if composition.side is not None:
        arrays["z_tables"] = _z_tables(model, params)
    arrays["gaussian_tables"] = pack_tables(gaussian_tables(), GAUSSIAN_TABLE_WIDTH)
    arrays["scale_thresholds"] = scale_thresholds()
    if composition.residual is not None:
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
    composition = model.config.composition()

    def struct(*shape):
        return jax.ShapeDtypeStruct(tuple(shape), np.int32)

    arrays: Arrays = {}
    for network, specs in integer_networks(composition).items():
        shapes = []
        for spec in specs:
            layer = _layer_params(float_shapes[network], spec)
            shapes.append({
                "kernel": struct(*layer["kernel"].shape),
                "bias": struct(*layer["bias"].shape),
                "divisor": struct(*layer["bias"].shape),
            })  # fmt: skip
        arrays[network] = _network_arrays(specs, shapes)
    if composition.side is not None:
        z = composition.side.z_channels
        arrays["z_tables"] = {
            "counts": struct(z, Z_TABLE_WIDTH),
            **{k: struct(z) for k in ("lows", "sizes", "medians")},
        }
    arrays["gaussian_tables"] = {
        "counts": struct(SCALE_LEVELS, GAUSSIAN_TABLE_WIDTH),
        **{k: struct(SCALE_LEVELS) for k in ("lows", "sizes")},
    }
    arrays["scale_thresholds"] = struct(SCALE_LEVELS - 1)
    if composition.residual is not None:
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
    return _fake_fixed(add_bias(y, bias.astype(x.dtype)))


@contextlib.contextmanager
def fake_quantization(codec: LatentCodec) -> Iterator[None]:
    """While tracing inside the block, the conv layers of `codec`'s integer networks (h_s, the
    context model, the entropy parameters, the slice transforms) compute as their integer
    conversion will, with straight-through gradients (integer-aware training, Balle et al.
    2019). The nonlinearities between them stay float: the next layer's input rounding puts
    their output on the integer grid."""
    names = set(integer_networks(codec.composition))

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
@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["layers", "half_tanh_values", "thresholds"],
    meta_fields=["xp"],
)
@dataclasses.dataclass(frozen=True)
class IntegerOps:
    """The parts' `Ops` in exact integer arithmetic (`jahp_jax.models.latent_codecs.base.Ops`):
    int64, fixed-point values in units of 2^-12, computed by numpy (`xp` np) or traced into one
    XLA program (`xp` jnp, 64-bit types; a pytree, so a jitted function takes it). Also the
    table index from the scale thresholds."""

    layers: dict[str, list[IntegerLayer]]
    half_tanh_values: Any  # (2 TANH_REACH + 1,) int64, or None without LRP
    thresholds: Any  # (SCALE_LEVELS - 1,) int64
    xp: Any = np

    def network(self, name: str, x):
        if x.ndim == 2:  # rows through 1x1 layers
            for layer in self.layers[name]:
                x = layer.output(x, self.xp)
            return x
        features = x[0]  # a map (1, h, w, C)
        for layer in self.layers[name]:
            features = layer.apply_map(features, self.xp)
        return features[None]

    def context(self, name: str, windows, taps: np.ndarray):
        return self.layers[name][0].output(windows, self.xp, tuple(int(t) for t in taps))

    def half_tanh(self, x):
        index = self.xp.clip(x, -TANH_REACH, TANH_REACH) + TANH_REACH
        return self.half_tanh_values[index]

    def split_parameters(self, params) -> dict[str, Any]:
        scales, means = self.xp.split(params, 2, axis=-1)
        return {"scales": scales, "means": means}

    def table_index(self, scales):
        """Fixed-point scales -> the Gaussian table index (number of thresholds <= scale)."""
        if self.xp is np:
            return np.searchsorted(self.thresholds, scales, side="right").astype(np.int64)
        # XLA: one comparison with every threshold (its binary search is a loop of calls)
        return (scales[..., None] >= self.thresholds).sum(axis=-1, dtype=self.xp.int64)


class IntegerPrior:
    """The integer prior path of one model, from its stored arrays: the layers of every network,
    the z and Gaussian tables, the scale thresholds (and LRP's tanh table).

    `matmul` 'float64': each computation (the hyper synthesis, a group's features, a coding
    step's table index and means, a group's residual prediction) is one XLA program on the CPU
    in 64-bit types: int64 arithmetic, float64 products of integers exact below 2^53
    (`check_exact`), so the same integers on every CPU and ISA, whatever order XLA sums in.
    'int64': numpy's int64 loops (no BLAS, no XLA; the tests' reference decoder)."""

    def __init__(self, codec: LatentCodec, arrays: Arrays, matmul: str = "float64"):
        if matmul not in ("float64", "int64"):
            raise ValueError(f"matmul must be 'float64' or 'int64', got '{matmul}'")
        composition = codec.composition
        networks = integer_networks(composition)
        self.codec = codec
        context_taps = getattr(composition.spatial, "taps", None)
        try:
            arrays = jax.tree_util.tree_map(np.asarray, arrays)
            layers = {
                network: [
                    IntegerLayer.from_arrays(
                        spec, _layer_params(arrays[network], spec), matmul, context_taps
                    )
                    for spec in specs
                ]
                for network, specs in networks.items()
            }
            self.gaussian_tables = unpack_tables(arrays["gaussian_tables"])
            thresholds = np.asarray(arrays["scale_thresholds"], np.int64)
            self.z_tables, self.z_medians = None, None
            half_tanh = None
            if composition.residual is not None:
                half_tanh = np.asarray(arrays["half_tanh"], np.int64)
                if half_tanh.shape != (2 * TANH_REACH + 1,):
                    raise IntegerPriorError(
                        "the stored tanh table is invalid (corrupt checkpoint?)"
                    )
            if composition.side is not None:
                self.z_tables = unpack_tables(arrays["z_tables"])
                self.z_medians = np.asarray(arrays["z_tables"]["medians"], np.int64)
        except (KeyError, TypeError) as error:
            raise IntegerPriorError(
                f"the model's integer arrays are incomplete (missing {error}); convert the "
                "float model again with `jahp-convert --to=integer`"
            ) from None
        if thresholds.shape != (SCALE_LEVELS - 1,) or (np.diff(thresholds) < 0).any():
            raise IntegerPriorError("the stored scale thresholds are invalid (corrupt checkpoint?)")
        self.thresholds = thresholds
        self.ops = IntegerOps(layers, half_tanh, thresholds)
        self.compiled = matmul == "float64"
        if self.compiled:
            with jax.enable_x64(True):
                self._device_ops = dataclasses.replace(
                    jax.device_put(self.ops, jax.devices("cpu")[0]), xp=jnp
                )
        self._programs: dict = {}

    def table_checksum(self) -> int:
        """CRC32 of every stored table (the header's table CRC)."""
        tables = [self.gaussian_tables] + ([self.z_tables] if self.z_tables else [])
        crc = zlib.crc32(self.thresholds.astype("<i8").tobytes())
        for table in tables:
            crc = zlib.crc32(table.checksum().to_bytes(4, "little"), crc)
        return crc

    def _run(self, key: tuple, function, *args):
        """function(ops, *args) with this prior's ops (numpy, or compiled once per `key` into
        one 64-bit XLA program) -> numpy int64 arrays."""
        if not self.compiled:
            return function(self.ops, *args)
        with jax.enable_x64(True):
            if key not in self._programs:
                self._programs[key] = jax.jit(function)
            result = self._programs[key](self._device_ops, *args)
            return jax.tree_util.tree_map(np.asarray, result)

    def hyper(self, z_hat: np.ndarray) -> np.ndarray:
        """z_hat (h/4, w/4, Z) int64 -> hyper features (1, h, w, C) int64 fixed-point."""
        names = self.codec.composition.side.synthesis_names

        def hyper(ops, z_fixed):
            return ops.xp.concatenate([ops.network(name, z_fixed) for name in names], axis=-1)

        return self._run(("hyper",), hyper, to_fixed(z_hat)[None])

    def group_features(self, group: int, hyper, decoded: np.ndarray):
        """Group `group`'s features (`GroupFeatures` of maps) from the hyper features and the
        decoded y_hat (1, h, w, M) of the earlier groups."""
        codec = self.codec

        def features(ops, hyper, decoded):
            return codec.composition.conditioning.features(codec, ops, group, hyper, decoded)

        return self._run(("features", group), features, hyper, decoded)

    def step(
        self, group: int, kind: int, inputs: tuple, count: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """A coding step's (table index, fixed-point means) (P', C_group) int64 from its inputs
        (`LatentCodec.step_inputs`, P rows of which the first `count` are the step's): P' =
        `count` for numpy; compiled, `count` rounded up to a multiple of STEP_ROWS (at most P),
        so that a few programs serve every step and no product runs on many padding rows (a
        wavefront step's products cost about in proportion to its rows)."""
        codec = self.codec
        padded = jax.tree_util.tree_leaves(inputs)[0].shape[0]
        rows = count if not self.compiled else min(padded, -(-count // STEP_ROWS) * STEP_ROWS)
        inputs = jax.tree_util.tree_map(lambda values: values[:rows], inputs)

        def parameters(ops, inputs):
            dist = codec.composition.spatial.step_parameters(codec, ops, group, kind, inputs)
            return ops.table_index(dist["scales"]), dist["means"]

        return self._run(("step", group, kind), parameters, inputs)

    def finalize(self, group: int, features, values: np.ndarray) -> np.ndarray:
        """A group's decoded fixed-point values (1, h, w, C_group) after the latent residual
        prediction."""
        residual = self.codec.composition.residual

        def finalize(ops, features, values):
            return residual.apply(ops, group, features, values)

        return self._run(("finalize", group), finalize, features, values)


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
