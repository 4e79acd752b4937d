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
BLAS_THREADED_ROWS = 64  # smaller products run on one BLAS thread (`blas_threads_for`)
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
# Integer arithmetic.
# ---------------------------------------------------------------------------------------------
def rounding_divide(values: np.ndarray, divisor: np.ndarray | int) -> np.ndarray:
    """int64 values / positive int64 divisors (broadcast), rounded half up:
    floor((x + floor(d / 2)) / d)."""
    divisor = np.asarray(divisor, np.int64)
    return (values + divisor // 2) // divisor


def activate(values: np.ndarray, activation: str) -> np.ndarray:
    """The integer nonlinearity, then the clip to +-ACTIVATION_LIMIT (in place: `values` is an
    int64 array the caller no longer needs)."""
    if activation == "relu":
        return np.clip(values, 0, ACTIVATION_LIMIT, out=values)
    if activation == "leaky":  # x >= 0: x; x < 0: round_div(x, 100) (0 for x = 0 either way)
        negative = rounding_divide(np.minimum(values, 0), LEAKY_DIVISOR)
        values = np.maximum(values, 0, out=values)
        values += negative
    return np.clip(values, -ACTIVATION_LIMIT, ACTIVATION_LIMIT, out=values)


def shuffled(x: np.ndarray, upscale: int) -> np.ndarray:
    """PyTorch's PixelShuffle on one map (`jahp_jax.nn.blocks.pixel_shuffle`, an exact
    permutation): (h, w, C r^2) -> (h r, w r, C), output (h r + i, w r + j, c) = input channel
    c r^2 + i r + j at (h, w)."""
    height, width, channels = x.shape
    out_channels = channels // (upscale * upscale)
    x = x.reshape(height, width, out_channels, upscale, upscale).transpose(0, 3, 1, 4, 2)
    return x.reshape(height * upscale, width * upscale, out_channels)


def to_fixed(values: np.ndarray) -> np.ndarray:
    """Integer-valued array (e.g. z_hat) -> clipped int64 fixed-point network input."""
    return np.clip(np.asarray(values, np.int64) * ONE, -ACTIVATION_LIMIT, ACTIVATION_LIMIT)


@dataclasses.dataclass(frozen=True)
class IntegerLayer:
    """An integer layer ready to run: `matrix` (fan-in, O) int64 rows in patch order (for
    'deconv' and 'transposed' the flipped, transposed kernel), bias and divisor (O,) int64, the
    kernel size."""

    spec: LayerSpec
    kernel_size: int
    matrix: np.ndarray
    bias: np.ndarray
    divisor: np.ndarray
    _matrices: dict = dataclasses.field(default_factory=dict, repr=False, compare=False)

    @functools.cached_property
    def _rounding(self) -> tuple[np.ndarray, np.ndarray | None]:
        """(bias + floor(divisor / 2), the divisors' log2 if all are powers of two, else None):
        round_div(x + bias, d) = (x + bias + floor(d / 2)) >> log2(d) then, an arithmetic shift
        being floor division by a power of two (the conversion only makes powers of two)."""
        rounded_bias = self.bias + self.divisor // 2
        shifts = np.log2(self.divisor).astype(np.int64)
        exact = np.array_equal(np.int64(1) << shifts, self.divisor)
        return rounded_bias, shifts if exact else None

    @classmethod
    def from_arrays(cls, spec: LayerSpec, arrays: Mapping[str, np.ndarray]) -> IntegerLayer:
        kernel = np.asarray(arrays["kernel"], np.int64)
        if spec.kind in TRANSPOSED_KINDS:  # (k, k, O, I) of the conv -> correlation (k, k, I, O)
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
        self,
        patches: np.ndarray,
        matmul: str,
        taps: np.ndarray | tuple[int, ...] | None = None,
    ) -> np.ndarray:
        """patches (P, fan-in) integer-valued (int64, or float64 for 'float64') -> (P, O) int64
        activations. `taps`: the flat kernel taps the patches hold, in that order (context
        layers: `ContextCodec.context_taps`; a deconv's phases), all of them if None."""
        accumulated = exact_matmul(patches, self._matrix(taps, matmul), matmul)
        rounded_bias, shifts = self._rounding
        accumulated += rounded_bias
        if shifts is None:
            accumulated //= self.divisor
        else:
            accumulated >>= shifts
        return activate(accumulated, self.spec.activation)

    def _matrix(self, taps: np.ndarray | tuple[int, ...] | None, matmul: str) -> np.ndarray:
        """The kernel at the flat taps `taps` (all: None) as a (fan-in, O) matrix of the
        matmul's dtype."""
        key = (None if taps is None else tuple(int(t) for t in taps), matmul)
        if key not in self._matrices:
            matrix = self.matrix
            if taps is not None:
                k, outputs = self.kernel_size, matrix.shape[-1]
                matrix = matrix.reshape(k * k, -1, outputs)[list(key[0])].reshape(-1, outputs)
            dtype = np.float64 if matmul == "float64" else np.int64
            self._matrices[key] = np.ascontiguousarray(matrix, dtype)
        return self._matrices[key]

    def apply_map(self, x: np.ndarray, matmul: str) -> np.ndarray:
        """A conv layer on a map: x (h, w, I) int64 -> (h, w, O) ('conv', 'dense',
        'transposed': the adjoint of a stride-1 conv with odd k and padding k // 2, which is
        the conv of the flipped, transposed kernel with the same padding), (2h, 2w, O / 4)
        ('subpel': the conv, then `pixel_shuffle` x2) or (2h, 2w, O) ('deconv', the adjoint of
        a stride-2 conv with padding k // 2).

        A deconv is computed per output phase (row and column parity): each phase reads only
        the taps that meet the input's samples (of a 5x5 kernel 3x3, 3x2, 2x3 and 2x2), not the
        zeros a zero-upsampled input would put under the others. The sums are the same
        integers, exactly."""
        x = x.astype(np.float64 if matmul == "float64" else np.int64)
        k, (height, width) = self.kernel_size, x.shape[:2]
        if self.spec.kind != "deconv":
            pad = k // 2
            taps = [(dy, dx, dy - pad, dx - pad) for dy in range(k) for dx in range(k)]
            out = self._taps_output(x, taps, matmul).reshape(height, width, -1)
            return shuffled(out, SHUFFLE_UPSCALE) if self.spec.kind == "subpel" else out
        out = np.empty((2 * height, 2 * width, self.matrix.shape[-1]), np.int64)
        before = k - 1 - k // 2  # of the zero-upsampled input's padding
        for row_phase in range(2):
            for col_phase in range(2):
                taps = [
                    (dy, dx, (row_phase + dy - before) // 2, (col_phase + dx - before) // 2)
                    for dy in range(k)
                    if (row_phase + dy - before) % 2 == 0
                    for dx in range(k)
                    if (col_phase + dx - before) % 2 == 0
                ]
                phase = self._taps_output(x, taps, matmul)
                out[row_phase::2, col_phase::2] = phase.reshape(height, width, -1)
        return out

    def _taps_output(self, x: np.ndarray, taps: list, matmul: str) -> np.ndarray:
        """The layer's output at every position of the map x (h, w, I), from the kernel taps
        (dy, dx) reading x at the offsets (oy, ox) (zero outside): (h w, O) int64."""
        height, width = x.shape[:2]
        reach = max(max(abs(oy), abs(ox)) for _, _, oy, ox in taps)
        padded = np.pad(x, ((reach, reach), (reach, reach), (0, 0)))
        patches = np.concatenate(
            [
                padded[reach + oy : reach + oy + height, reach + ox : reach + ox + width]
                for _, _, oy, ox in taps
            ],
            axis=-1,
        ).reshape(height * width, -1)
        flat = tuple(dy * self.kernel_size + dx for dy, dx, _, _ in taps)
        return self.output(patches, matmul, flat)


@functools.cache
def _blas_libraries() -> list:
    """threadpoolctl's handles of the BLAS libraries loaded (numpy's OpenBLAS), found once."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="blas").lib_controllers


@contextlib.contextmanager
def blas_threads_for(rows: int) -> Iterator[None]:
    """Inside the block numpy's BLAS runs on one thread if products have fewer than
    BLAS_THREADED_ROWS `rows` (a wavefront step's: a second thread costs more than it sums, on a
    loaded 2-core machine many times more), on its own number of threads otherwise."""
    if rows >= BLAS_THREADED_ROWS:
        yield
        return
    libraries = _blas_libraries()
    previous = [library.get_num_threads() for library in libraries]
    for library in libraries:
        library.set_num_threads(1)
    try:
        yield
    finally:
        for library, threads in zip(libraries, previous, strict=True):
            library.set_num_threads(threads)


def exact_matmul(patches: np.ndarray, matrix: np.ndarray, matmul: str = "float64") -> np.ndarray:
    """(P, K) @ (K, O) of integer-valued arrays whose sums stay below 2^53
    (`IntegerLayer.check_exact`), exactly, as int64. 'float64': BLAS's float64 product;
    'int64': numpy's int64 loops (no BLAS, the tests' reference)."""
    if matmul == "int64":
        return patches.astype(np.int64, copy=False) @ matrix.astype(np.int64, copy=False)
    if matmul != "float64":
        raise ValueError(f"matmul must be 'float64' or 'int64', got '{matmul}'")
    patches = patches.astype(np.float64, copy=False)
    return (patches @ matrix.astype(np.float64, copy=False)).astype(np.int64)


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
    return _fake_fixed(y + bias.astype(x.dtype))


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
class IntegerOps:
    """The parts' `Ops` in exact integer arithmetic: int64 numpy, fixed-point values in units of
    2^-12 (`jahp_jax.models.latent_codecs.base.Ops`)."""

    xp = np

    def __init__(self, layers: dict[str, list[IntegerLayer]], half_tanh, matmul: str):
        self.layers = layers
        self.half_tanh_values = half_tanh
        self.matmul = matmul

    def network(self, name: str, x: np.ndarray) -> np.ndarray:
        if x.ndim == 2:  # rows through 1x1 layers
            with blas_threads_for(x.shape[0]):
                for layer in self.layers[name]:
                    x = layer.output(x, self.matmul)
            return x
        features = x[0]  # a map (1, h, w, C)
        for layer in self.layers[name]:
            features = layer.apply_map(features, self.matmul)
        return features[None]

    def context(self, name: str, windows: np.ndarray, taps: np.ndarray) -> np.ndarray:
        with blas_threads_for(windows.shape[0]):
            return self.layers[name][0].output(windows, self.matmul, taps)

    def half_tanh(self, x: np.ndarray) -> np.ndarray:
        return self.half_tanh_values[np.clip(x, -TANH_REACH, TANH_REACH) + TANH_REACH]

    def split_parameters(self, params: np.ndarray) -> dict[str, np.ndarray]:
        scales, means = np.split(params, 2, axis=-1)
        return {"scales": scales, "means": means}


class IntegerPrior:
    """The integer prior path of one model, from its stored arrays: the layers of every network,
    the z and Gaussian tables, the scale thresholds (and LRP's tanh table). All int64 numpy."""

    def __init__(self, codec: LatentCodec, arrays: Arrays, matmul: str = "float64"):
        composition = codec.composition
        networks = integer_networks(composition)
        self.codec = codec
        try:
            arrays = jax.tree_util.tree_map(np.asarray, arrays)
            layers = {
                network: [
                    IntegerLayer.from_arrays(spec, _layer_params(arrays[network], spec))
                    for spec in specs
                ]
                for network, specs in networks.items()
            }
            self.gaussian_tables = unpack_tables(arrays["gaussian_tables"])
            self.thresholds = np.asarray(arrays["scale_thresholds"], np.int64)
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
        if self.thresholds.shape != (SCALE_LEVELS - 1,) or (np.diff(self.thresholds) < 0).any():
            raise IntegerPriorError("the stored scale thresholds are invalid (corrupt checkpoint?)")
        self.ops = IntegerOps(layers, half_tanh, matmul)

    def table_checksum(self) -> int:
        """CRC32 of every stored table (the header's table CRC)."""
        tables = [self.gaussian_tables] + ([self.z_tables] if self.z_tables else [])
        crc = zlib.crc32(self.thresholds.astype("<i8").tobytes())
        for table in tables:
            crc = zlib.crc32(table.checksum().to_bytes(4, "little"), crc)
        return crc

    def hyper(self, z_hat: np.ndarray) -> np.ndarray:
        """z_hat (h/4, w/4, Z) int64 -> hyper features (1, h, w, C) int64 fixed-point."""
        z_fixed = to_fixed(z_hat)[None]
        names = self.codec.composition.side.synthesis_names
        return np.concatenate([self.ops.network(name, z_fixed) for name in names], axis=-1)

    def table_index(self, scales: np.ndarray) -> np.ndarray:
        """Fixed-point scales -> the Gaussian table index (number of thresholds <= scale)."""
        return np.searchsorted(self.thresholds, scales, side="right").astype(np.int64)


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
