"""Entropy coding of the latents with constriction's range coder, exact on both sides.

Symbols. Every latent is coded as an integer symbol relative to an offset both sides know:
z as round(z - median), y as round(y - mu) (mu = the predicted mean, the mixture mean for a
mixture, the median for the factorized prior, 0 for the scale hyperprior). The dequantized value
is symbol + offset in float32 numpy arithmetic on both sides, so a decoder never depends on mu
being bit-identical to the encoder's for the *symbol*; it does for y_hat of the context priors,
which is why both sides compute mu through the same jitted code (see `LatentCoder`).

Tables. A probability table is an integer PMF with `PRECISION` = 24 bits (entries >= 1, sum
2^24, the precision of constriction's default range coder), over the symbols [low, low + n - 2]
plus a last *escape* entry. A symbol outside the table codes the escape entry followed by its
value in an Elias-gamma-like code (below). Tables:
  * factorized densities (z, and y of the factorized prior): one table per channel over
    [-ceil(median - lower), ceil(upper - median)] (the learned tail quantiles, at most
    `MAX_TABLE_HALF_WIDTH` each side), from `FactorizedDensity.likelihood` at symbol + median;
    the escape entry gets the remaining mass.
  * Gaussians: `SCALE_LEVELS` = 64 scales log-spaced from SCALE_BOUND = 0.11 to 256; the table
    of level j covers [-T_j, T_j], T_j = ceil(4.5 s_j). A predicted scale is snapped to the
    nearest level in log space (at most 6.3 % off), so a tiny float difference changes a table
    only at a level boundary.
  * Gaussian mixtures: no scale table; each symbol gets its own PMF from its K (mean, scale,
    weight), computed by `mixture_pmfs` in float64 numpy from the float32 parameters that both
    sides obtain through the same jitted function and shapes, quantized like every table.
An integer table is passed to constriction as the exactly representable float64 values
count / 2^24 with `perfect=False` (a deterministic, near-identity re-quantization). Every entry
is floored at 2^-16 (see `quantize_pmf`); above that floor the 24-bit counts follow the model's
probabilities closely, so the file size tracks the estimated rate.

Escapes. A value v is mapped to u = zigzag(v) + 1 >= 1 with b + 1 = bit_length(u) bits; b (0..31)
is coded uniformly over 32 values, then the b bits of u below its leading one, uniformly, in
chunks of at most 16 bits. |v| <= 2^30.

Autoregressive priors. Positions on the wavefront 3 r + c = t depend only on earlier wavefronts
(the 5x5 mask-A kernel reaches rows r-2..r-1, cols c-2..c+2 and row r, cols c-2..c-1, all with
3 r' + c' <= 3 r + c - 1), so an h x w latent takes 3 (h - 1) + w steps. Encoder and decoder run
the same loop: gather the 3x5 causal patches of y_hat from a zero-padded numpy buffer, call one
jitted function of fixed shapes (context matmul + entropy-parameter convs -> distribution), code
the wavefront's symbols and write y_hat = symbol + offset back. The encoder fills its buffer
exactly as the decoder does, so both feed bit-identical inputs to the same compiled function.
"""

from __future__ import annotations

import dataclasses
import functools
import zlib
from collections.abc import Callable

import constriction
import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import ndtr

from jahp_jax.entropy_models import SCALE_BOUND, FactorizedDensity
from jahp_jax.layers import causal_mask
from jahp_jax.models import CompressionModel

PRECISION = 24
SCALE_LEVELS = 64
SCALE_MAX = 256.0
TAIL_SIGMAS = 4.5
MAX_TABLE_HALF_WIDTH = 1024
MAX_ESCAPE_MAGNITUDE = 2**30
PROBABILITY_FLOOR = 2.0**-16  # least probability of any table entry (caps a symbol at 16 bits)
_ESCAPE_LENGTHS = 32  # b in 0..31
_CHUNK_BITS = 16
_TOTAL = 1 << PRECISION
_MIXTURE_MAX_HALF_WIDTH = 256
_MIXTURE_ROWS_PER_BATCH = 8

_model = constriction.stream.model
_queue = constriction.stream.queue


class CodecError(ValueError):
    """A compressed file or stream that cannot be decoded, or a value that cannot be coded."""


# ---------------------------------------------------------------------------------------------
# Integer tables.
# ---------------------------------------------------------------------------------------------
def quantize_pmf(probabilities: np.ndarray) -> np.ndarray:
    """(..., n) nonnegative floats -> int64 counts >= 1 summing to 2^PRECISION along the last axis.

    Every entry gets at least PROBABILITY_FLOOR (2^-16) of the mass, as in CompressAI's 16-bit
    tables: a symbol the model deems (nearly) impossible, or an escape, then costs at most 16 bits
    instead of up to 30, which matters for badly predicted latents (random or barely trained
    weights); the 24-bit counts keep every other probability accurate. Then
    counts = floor(p * (2^24 - n)) + 1, the remainder added to the most likely entry.
    """
    p = np.asarray(probabilities, np.float64)
    n = p.shape[-1]
    if n < 2 or n > _TOTAL // 2:
        raise CodecError(f"cannot build a {PRECISION}-bit table with {n} entries")
    p = np.where(np.isfinite(p) & (p > 0), p, 0.0)
    total = p.sum(axis=-1, keepdims=True)
    p = np.where(total > 0, p / np.where(total > 0, total, 1.0), 1.0 / n)
    p = np.maximum(p, PROBABILITY_FLOOR)
    p = p / p.sum(axis=-1, keepdims=True)
    counts = np.floor(p * (_TOTAL - n)).astype(np.int64) + 1
    remainder = _TOTAL - counts.sum(axis=-1)
    np.put_along_axis(
        counts,
        np.argmax(p, axis=-1)[..., None],
        np.take_along_axis(counts, np.argmax(p, axis=-1)[..., None], -1) + remainder[..., None],
        axis=-1,
    )
    return counts


def _constriction_probabilities(counts: np.ndarray) -> np.ndarray:
    return counts.astype(np.float64) / _TOTAL


@dataclasses.dataclass
class TableSet:
    """Integer PMFs (last entry: escape) over [lows[i], lows[i] + len(counts[i]) - 2]."""

    counts: list[np.ndarray]
    lows: np.ndarray
    models: list = dataclasses.field(repr=False)

    @classmethod
    def from_probabilities(cls, probabilities: list[np.ndarray], lows: np.ndarray) -> TableSet:
        counts = [quantize_pmf(p) for p in probabilities]
        models = [_model.Categorical(_constriction_probabilities(c), perfect=False) for c in counts]
        return cls(counts, np.asarray(lows, np.int64), models)

    @functools.cached_property
    def sizes(self) -> np.ndarray:
        return np.array([len(c) for c in self.counts], np.int64)

    def checksum(self) -> int:
        """CRC32 of every table (what both sides must agree on)."""
        crc = zlib.crc32(self.lows.astype("<i8").tobytes())
        for c in self.counts:
            crc = zlib.crc32(c.astype("<u4").tobytes(), crc)
        return crc


@functools.cache
def scale_levels() -> np.ndarray:
    """(SCALE_LEVELS,) float64: the Gaussian scales of the tables, log-spaced 0.11 .. 256."""
    return np.exp(np.linspace(np.log(SCALE_BOUND), np.log(SCALE_MAX), SCALE_LEVELS))


def scale_to_level(scales: np.ndarray) -> np.ndarray:
    """Scales (any shape, float32) -> int64 index of the nearest level in log space."""
    log_levels = np.log(scale_levels())
    step = log_levels[1] - log_levels[0]
    position = np.log(np.maximum(np.asarray(scales, np.float64), SCALE_BOUND)) - log_levels[0]
    return np.clip(np.rint(position / step), 0, SCALE_LEVELS - 1).astype(np.int64)


@functools.cache
def gaussian_tables() -> TableSet:
    """One zero-mean quantized Gaussian table per scale level, tails beyond 4.5 sigma escaped."""
    probabilities, lows = [], []
    for scale in scale_levels():
        half = max(1, int(np.ceil(TAIL_SIGMAS * scale)))
        edges = (np.arange(-half, half + 2, dtype=np.float64) - 0.5) / scale
        cdf = ndtr(edges)
        pmf = np.diff(cdf)
        escape = ndtr(edges[0]) + ndtr(-edges[-1])
        probabilities.append(np.append(pmf, escape))
        lows.append(-half)
    return TableSet.from_probabilities(probabilities, np.array(lows))


def factorized_tables(density_params: dict, channels: int) -> tuple[TableSet, np.ndarray]:
    """Per-channel tables of a FactorizedDensity -> (tables, medians (C,) float32)."""
    quantiles = np.asarray(density_params["quantiles"], np.float32)[:, 0, :]
    medians = quantiles[:, 1]
    with np.errstate(invalid="ignore"):
        below = np.nan_to_num(np.ceil(medians - quantiles[:, 0]), nan=0.0)
        above = np.nan_to_num(np.ceil(quantiles[:, 2] - medians), nan=0.0)
    lows = -np.clip(below, 0, MAX_TABLE_HALF_WIDTH).astype(np.int64)
    highs = np.clip(above, 0, MAX_TABLE_HALF_WIDTH).astype(np.int64)
    length = int((highs - lows).max()) + 1
    grid = medians[:, None] + (lows[:, None] + np.arange(length)[None, :]).astype(np.float32)
    likelihood = FactorizedDensity(channels).apply(
        {"params": density_params}, jnp.asarray(grid.T[None, None]), method="likelihood"
    )
    likelihood = np.asarray(likelihood, np.float64)[0, 0].T  # (C, length)
    probabilities = []
    for c in range(channels):
        pmf = likelihood[c, : highs[c] - lows[c] + 1]
        probabilities.append(np.append(pmf, max(0.0, 1.0 - pmf.sum())))
    return TableSet.from_probabilities(probabilities, lows), medians


# ---------------------------------------------------------------------------------------------
# Symbols: tables + escapes.
# ---------------------------------------------------------------------------------------------
def _encode_escapes(encoder, values: np.ndarray) -> None:
    if values.size == 0:
        return
    if np.abs(values).max() > MAX_ESCAPE_MAGNITUDE:
        raise CodecError(
            f"a latent value of magnitude {np.abs(values).max()} exceeds the coder's limit "
            f"2^30 (the model produced non-finite or exploding latents)"
        )
    u = np.where(values >= 0, 2 * values, -2 * values - 1) + 1  # zigzag + 1 >= 1
    bits = np.frexp(u.astype(np.float64))[1].astype(np.int64) - 1  # bit_length - 1, exact
    encoder.encode(bits.astype(np.int32), _model.Uniform(_ESCAPE_LENGTHS))
    rest = u - (np.int64(1) << bits)
    low_bits = np.minimum(bits, _CHUNK_BITS)
    sel = low_bits > 0
    if sel.any():
        encoder.encode(
            (rest[sel] & ((1 << low_bits[sel]) - 1)).astype(np.int32),
            _model.Uniform(),
            (1 << low_bits[sel]).astype(np.int32),
        )
    sel = bits > _CHUNK_BITS
    if sel.any():
        encoder.encode(
            (rest[sel] >> _CHUNK_BITS).astype(np.int32),
            _model.Uniform(),
            (1 << (bits[sel] - _CHUNK_BITS)).astype(np.int32),
        )


def _decode_escapes(decoder, count: int) -> np.ndarray:
    if count == 0:
        return np.zeros(0, np.int64)
    bits = np.asarray(decoder.decode(_model.Uniform(_ESCAPE_LENGTHS), count), np.int64)
    rest = np.zeros(count, np.int64)
    low_bits = np.minimum(bits, _CHUNK_BITS)
    sel = low_bits > 0
    if sel.any():
        sizes = (1 << low_bits[sel]).astype(np.int32)
        rest[sel] = np.asarray(decoder.decode(_model.Uniform(), sizes), np.int64)
    sel = bits > _CHUNK_BITS
    if sel.any():
        sizes = (1 << (bits[sel] - _CHUNK_BITS)).astype(np.int32)
        high = np.asarray(decoder.decode(_model.Uniform(), sizes), np.int64)
        rest[sel] += high << _CHUNK_BITS
    u = (np.int64(1) << bits) + rest - 1
    return np.where(u % 2 == 0, u // 2, -(u + 1) // 2)


def _table_groups(table_index: np.ndarray):
    """Yield (table, positions) runs in the fixed order both sides use: by table, then position."""
    order = np.argsort(table_index, kind="stable")
    sorted_index = table_index[order]
    starts = np.flatnonzero(np.diff(sorted_index)) + 1
    for positions in np.split(order, starts):
        if positions.size:
            yield int(table_index[positions[0]]), positions


def encode_symbols(encoder, symbols: np.ndarray, table_index: np.ndarray, tables: TableSet) -> None:
    """Code int symbols (n,) with tables[table_index] (n,), then the escaped values in order."""
    symbols = np.asarray(symbols, np.int64).ravel()
    table_index = np.asarray(table_index, np.int64).ravel()
    local = symbols - tables.lows[table_index]
    escape = tables.sizes[table_index] - 1
    escaped = (local < 0) | (local >= escape)
    local = np.where(escaped, escape, local).astype(np.int32)
    for table, positions in _table_groups(table_index):
        encoder.encode(local[positions], tables.models[table])
    _encode_escapes(encoder, symbols[escaped])


def decode_symbols(decoder, table_index: np.ndarray, tables: TableSet) -> np.ndarray:
    """Inverse of `encode_symbols`: (n,) int64 symbols."""
    table_index = np.asarray(table_index, np.int64).ravel()
    local = np.empty(table_index.size, np.int64)
    for table, positions in _table_groups(table_index):
        local[positions] = decoder.decode(tables.models[table], positions.size)
    escaped = local == tables.sizes[table_index] - 1
    symbols = local + tables.lows[table_index]
    symbols[escaped] = _decode_escapes(decoder, int(escaped.sum()))
    return symbols


def mixture_pmfs(
    means: np.ndarray, scales: np.ndarray, weights: np.ndarray, offset: np.ndarray
) -> tuple[int, np.ndarray]:
    """Per-symbol PMFs of round(y - offset) under a Gaussian mixture.

    means/scales/weights (n, K), offset (n,) -> (low, counts (n, 2 R + 2)) over symbols
    [-R, R] plus escape, R = ceil(max(|mean_k - offset| + 4.5 scale_k)) over the batch (<= 256).
    """
    centred = np.asarray(means, np.float64) - np.asarray(offset, np.float64)[:, None]
    scales = np.maximum(np.asarray(scales, np.float64), SCALE_BOUND)
    weights = np.asarray(weights, np.float64)
    reach = np.nan_to_num(np.abs(centred) + TAIL_SIGMAS * scales, nan=1.0, posinf=1e9)
    half = int(np.clip(np.ceil(reach.max(initial=1.0)), 1, _MIXTURE_MAX_HALF_WIDTH))
    edges = np.arange(-half, half + 2, dtype=np.float64) - 0.5  # (2R + 2,)
    cdf = ndtr((edges[None, None, :] - centred[..., None]) / scales[..., None])  # (n, K, L)
    cdf = np.einsum("nk,nkl->nl", weights, cdf)
    pmf = np.diff(cdf, axis=-1)
    escape = np.clip(1.0 - pmf.sum(axis=-1, keepdims=True), 0.0, 1.0)
    return -half, quantize_pmf(np.concatenate([pmf, escape], axis=-1))


def encode_with_pmfs(encoder, symbols: np.ndarray, low: int, counts: np.ndarray) -> None:
    """Code symbols (n,) each with its own PMF row (n, L) over [low, low + L - 2] + escape."""
    local = np.asarray(symbols, np.int64).ravel() - low
    escape = counts.shape[1] - 1
    escaped = (local < 0) | (local >= escape)
    local = np.where(escaped, escape, local).astype(np.int32)
    encoder.encode(local, _model.Categorical(perfect=False), _constriction_probabilities(counts))
    _encode_escapes(encoder, np.asarray(symbols, np.int64).ravel()[escaped])


def decode_with_pmfs(decoder, low: int, counts: np.ndarray) -> np.ndarray:
    """Inverse of `encode_with_pmfs`."""
    local = np.asarray(
        decoder.decode(_model.Categorical(perfect=False), _constriction_probabilities(counts)),
        np.int64,
    )
    escaped = local == counts.shape[1] - 1
    symbols = local + low
    symbols[escaped] = _decode_escapes(decoder, int(escaped.sum()))
    return symbols


def new_encoder():
    return _queue.RangeEncoder()


def stream_bytes(encoder) -> bytes:
    """The encoder's compressed words as little-endian bytes."""
    return np.asarray(encoder.get_compressed(), "<u4").tobytes()


def new_decoder(data: bytes):
    if len(data) % 4:
        raise CodecError(f"a coded stream must be a whole number of 32-bit words, got {len(data)}")
    return _queue.RangeDecoder(np.frombuffer(data, "<u4").astype(np.uint32))


# ---------------------------------------------------------------------------------------------
# Wavefront schedule of the 5x5 causal context.
# ---------------------------------------------------------------------------------------------
def wavefront_schedule(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions of each wavefront 3 r + c = t, padded to a fixed width P.

    Returns rows (T, P), cols (T, P) int64 (padding entries point at (0, 0)) and counts (T,),
    T = 3 (height - 1) + width.
    """
    steps = 3 * (height - 1) + width
    width_p = min(height, (width + 2) // 3)
    rows = np.zeros((steps, width_p), np.int64)
    cols = np.zeros((steps, width_p), np.int64)
    counts = np.zeros(steps, np.int64)
    for t in range(steps):
        r = np.arange(max(0, -(-(t - width + 1) // 3)), min(height - 1, t // 3) + 1)
        counts[t] = r.size
        rows[t, : r.size] = r
        cols[t, : r.size] = t - 3 * r
    return rows, cols, counts


# ---------------------------------------------------------------------------------------------
# The latent coder of a model.
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass
class CodedLatents:
    """What the encoder produced: the two streams, the coded latents, the estimated rate."""

    z_stream: bytes
    y_stream: bytes
    y_hat: np.ndarray  # (h, w, M) float32, exactly what the decoder reconstructs
    z_hat: np.ndarray | None  # (h/4, w/4, N) float32
    bits_y: float  # sum of -log2 likelihood under the coder's (unsnapped) distribution
    bits_z: float


@functools.cache
def compiled_functions(model: CompressionModel) -> dict[str, Callable]:
    """The jitted pieces of `model` the coder uses (params are arguments), compiled once per
    model configuration and shared by every LatentCoder/Codec of that configuration."""

    def method(name):
        return jax.jit(lambda p, *a: model.apply({"params": p}, *a, method=name))

    def density_likelihood(channels):
        return jax.jit(
            lambda p, x: FactorizedDensity(channels).apply({"params": p}, x, method="likelihood")
        )

    def wavefront_params(p, kernel, bias, patches, hyper):
        """patches (P, 15 M) causal 3x5 windows, hyper (P, 2M) or None -> (dist, offset)."""
        context = (patches @ kernel + bias)[None, None]  # (1, 1, P, 2M)
        dist = model.apply(
            {"params": p},
            None if hyper is None else hyper[None, None],
            context,
            method="distribution",
        )
        return dist, model.apply({"params": p}, dist, method="y_offset")

    names = ("analysis", "synthesis", "hyper_analysis", "hyper_synthesis", "distribution")
    functions = {name: method(name) for name in (*names, "y_offset", "y_likelihood")}
    functions["z_likelihood"] = density_likelihood(model.num_filters)
    functions["y_factorized_likelihood"] = density_likelihood(model.num_latents)
    functions["wavefront_params"] = jax.jit(wavefront_params)
    return functions


class LatentCoder:
    """Codes y (and z) of one model with fixed parameters. All arrays are single images (no batch).

    `encode(y)` -> CodedLatents; `decode(z_stream, y_stream, (h, w))` -> y_hat (h, w, M).
    """

    def __init__(self, model: CompressionModel, params: dict):
        self.model = model
        self.params = params
        self.spec = model.spec
        self.num_latents = model.num_latents
        self.mixture = model.mixture_components > 1
        tables = [gaussian_tables()]
        if self.spec.hyperprior is not None:
            self.z_tables, self.z_medians = factorized_tables(
                params["z_density"], model.num_filters
            )
            tables.append(self.z_tables)
        if not self.spec.conditional:
            self.y_tables, self.y_medians = factorized_tables(
                params["y_density"], model.num_latents
            )
            tables.append(self.y_tables)
        self.table_checksum = functools.reduce(
            lambda crc, t: zlib.crc32(t.checksum().to_bytes(4, "little"), crc), tables, 0
        )

        functions = compiled_functions(model)
        self._hyper_analysis = functions["hyper_analysis"]
        self._hyper_synthesis = functions["hyper_synthesis"]
        self._distribution = functions["distribution"]
        self._offset = functions["y_offset"]
        self._y_likelihood = functions["y_likelihood"]
        self._z_likelihood = functions["z_likelihood"]
        self._y_factorized_likelihood = functions["y_factorized_likelihood"]
        self._wavefront_params = functions["wavefront_params"]
        if self.spec.context:
            kernel = np.asarray(params["context_prediction"]["kernel"], np.float32)
            kernel = (kernel * causal_mask(5)[:, :, None, None])[:3]  # rows r-2..r (3, 5, M, 2M)
            m = self.num_latents
            self._context_kernel = jnp.asarray(kernel.reshape(15 * m, 2 * m))
            self._context_bias = jnp.asarray(params["context_prediction"]["bias"])

    # --- z ------------------------------------------------------------------------------------
    def _hyper(self, z_hat: np.ndarray) -> np.ndarray:
        return np.asarray(self._hyper_synthesis(self.params, jnp.asarray(z_hat[None])))[0]

    def _channel_index(self, shape: tuple[int, ...]) -> np.ndarray:
        return np.broadcast_to(np.arange(shape[-1]), shape).ravel()

    # --- y symbols given the distribution -----------------------------------------------------
    def _code_gaussian(self, coder, dist: dict, offset: np.ndarray, y: np.ndarray | None):
        """Code one batch of y (n, M) given its dist (numpy); returns y_hat (n, M) float32."""
        if self.mixture:
            return self._code_mixture(coder, dist, offset, y)
        levels = scale_to_level(dist["scales"])
        if y is not None:
            symbols = np.rint(y - offset).astype(np.int64)
            encode_symbols(coder, symbols, levels, gaussian_tables())
        else:
            symbols = decode_symbols(coder, levels, gaussian_tables())
        return symbols.reshape(offset.shape).astype(np.float32) + offset

    def _code_mixture(self, coder, dist: dict, offset: np.ndarray, y: np.ndarray | None):
        # (n, K, M) -> (n * M, K), symbol order (n, M) row-major like the Gaussian case.
        def flat(a):
            return np.moveaxis(a, -2, -1).reshape(-1, a.shape[-2])

        low, counts = mixture_pmfs(
            flat(dist["means"]), flat(dist["scales"]), flat(dist["weights"]), offset.ravel()
        )
        if y is not None:
            symbols = np.rint(y - offset).astype(np.int64)
            encode_with_pmfs(coder, symbols, low, counts)
        else:
            symbols = decode_with_pmfs(coder, low, counts)
        return symbols.reshape(offset.shape).astype(np.float32) + offset

    def _code_y(self, coder, hyper: np.ndarray | None, y: np.ndarray | None, shape):
        """Code y (h, w, M) (encoder: y given; decoder: None) -> (y_hat, dist) numpy."""
        if not self.spec.conditional:
            index = self._channel_index(shape)
            if y is not None:
                symbols = np.rint(y - self.y_medians).astype(np.int64)
                encode_symbols(coder, symbols, index, self.y_tables)
            else:
                symbols = decode_symbols(coder, index, self.y_tables)
            return symbols.reshape(shape).astype(np.float32) + self.y_medians, None
        if self.spec.context:
            return self._code_autoregressive(coder, hyper, y, shape)
        dist = self._distribution(self.params, jnp.asarray(hyper[None]), None)
        offset = np.asarray(self._offset(self.params, dist))[0]
        dist = {k: np.asarray(v)[0] for k, v in dist.items()}
        rows = shape[0] if not self.mixture else _MIXTURE_ROWS_PER_BATCH
        y_hat = np.empty(shape, np.float32)
        for r in range(0, shape[0], rows):
            part = slice(r, r + rows)
            batch = {k: v[part].reshape(-1, *v.shape[2:]) for k, v in dist.items()}
            y_hat[part] = self._code_gaussian(
                coder,
                batch,
                offset[part].reshape(-1, shape[-1]),
                None if y is None else y[part].reshape(-1, shape[-1]),
            ).reshape(offset[part].shape)
        return y_hat, dist

    def _code_autoregressive(self, coder, hyper, y, shape):
        height, width, m = shape
        rows, cols, counts = wavefront_schedule(height, width)
        y_pad = np.zeros((height + 2, width + 4, m), np.float32)
        window_rows, window_cols = np.arange(3)[None, :, None], np.arange(5)[None, None, :]
        y_hat = np.zeros(shape, np.float32)
        dist_maps: dict[str, np.ndarray] = {}
        for t in range(rows.shape[0]):
            r, c, n = rows[t], cols[t], counts[t]
            # (P, 3, 5, M) causal windows (rows r-2..r, cols c-2..c+2) -> (P, 15 M)
            patches = y_pad[r[:, None, None] + window_rows, c[:, None, None] + window_cols]
            patches = patches.reshape(r.size, 15 * m)
            dist, offset = self._wavefront_params(
                self.params,
                self._context_kernel,
                self._context_bias,
                patches,
                None if hyper is None else hyper[r, c],
            )
            dist = {k: np.asarray(v)[0, 0, :n] for k, v in dist.items()}
            offset = np.asarray(offset)[0, 0, :n]
            values = self._code_gaussian(
                coder, dist, offset, None if y is None else y[r[:n], c[:n]]
            )
            y_pad[r[:n] + 2, c[:n] + 2] = values
            y_hat[r[:n], c[:n]] = values
            for k, v in dist.items():
                if k not in dist_maps:
                    dist_maps[k] = np.zeros((height, width, *v.shape[1:]), np.float32)
                dist_maps[k][r[:n], c[:n]] = v
        return y_hat, dist_maps

    # --- public -------------------------------------------------------------------------------
    def encode(self, y: np.ndarray) -> CodedLatents:
        """y (h, w, M) float32 (the analysis transform's output) -> CodedLatents."""
        y = np.asarray(y, np.float32)
        z_stream, z_hat, hyper, bits_z = b"", None, None, 0.0
        if self.spec.hyperprior is not None:
            z = np.asarray(self._hyper_analysis(self.params, jnp.asarray(y[None])))[0]
            z_symbols = np.rint(z - self.z_medians).astype(np.int64)
            encoder = new_encoder()
            encode_symbols(encoder, z_symbols, self._channel_index(z.shape), self.z_tables)
            z_stream = stream_bytes(encoder)
            z_hat = z_symbols.astype(np.float32) + self.z_medians
            hyper = self._hyper(z_hat)
            z_lik = self._z_likelihood(self.params["z_density"], jnp.asarray(z_hat[None]))
            bits_z = float(-np.sum(np.log2(np.asarray(z_lik, np.float64))))
        encoder = new_encoder()
        y_hat, dist = self._code_y(encoder, hyper, y, y.shape)
        if dist is None:
            y_lik = self._y_factorized_likelihood(self.params["y_density"], y_hat[None])
        else:
            y_lik = self._y_likelihood(
                self.params, y_hat[None], {k: v[None] for k, v in dist.items()}
            )
        bits_y = float(-np.sum(np.log2(np.asarray(y_lik, np.float64))))
        return CodedLatents(z_stream, stream_bytes(encoder), y_hat, z_hat, bits_y, bits_z)

    def decode(self, z_stream: bytes, y_stream: bytes, shape: tuple[int, int]) -> np.ndarray:
        """(z_stream, y_stream, latent (h, w)) -> y_hat (h, w, M) float32."""
        height, width = shape
        hyper = None
        if self.spec.hyperprior is not None:
            z_shape = (-(-height // 4), -(-width // 4), self.model.num_filters)
            z_symbols = decode_symbols(
                new_decoder(z_stream), self._channel_index(z_shape), self.z_tables
            )
            hyper = self._hyper(z_symbols.reshape(z_shape).astype(np.float32) + self.z_medians)
        shape_y = (height, width, self.num_latents)
        y_hat, _ = self._code_y(new_decoder(y_stream), hyper, None, shape_y)
        return y_hat


def decode_guard(function: Callable, *args):
    """Run a decoding step; constriction and numpy errors on garbage become CodecError."""
    try:
        return function(*args)
    except CodecError:
        raise
    except (ValueError, RuntimeError, OverflowError, IndexError, TypeError) as error:
        raise CodecError(f"the coded data is invalid ({error})") from None
