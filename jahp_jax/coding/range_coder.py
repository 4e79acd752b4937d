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

Schedules. y is coded in the steps of its latent codec's schedule (`jahp_jax.models.latent_codecs`):
one step for the factorized and hyperprior priors, two for the checkerboard, the wavefronts of
the raster-scan context. Encoder and decoder run the same loop (`LatentCoder._code_y`): gather the
step's inputs from the decoded y_hat so far (a zero-padded numpy buffer), call the codec's one
jitted step function (fixed shapes per step kind) -> distribution, code the step's symbols with the
table family of the codec's density, write y_hat = symbol + offset back. The encoder fills its
buffer exactly as the decoder does, so both feed bit-identical inputs to the same compiled
function.
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

from jahp_jax.models.compression_model import CompressionModel, latent_codec_params
from jahp_jax.models.entropy_models import (
    SCALE_BOUND,
    GaussianConditional,
    GaussianMixtureConditional,
)
from jahp_jax.models.latent_codecs import CodingStep, LatentCodec

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
_MIXTURE_SYMBOLS_PER_BATCH = 1 << 15  # bounds the (n, K, 2R + 2) float64 CDF arrays

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
        return cls.from_counts([quantize_pmf(p) for p in probabilities], lows)

    @classmethod
    def from_counts(cls, counts: list[np.ndarray], lows: np.ndarray) -> TableSet:
        """Tables from integer counts (each >= 1, summing to 2^PRECISION), e.g. stored ones."""
        counts = [np.asarray(c, np.int64) for c in counts]
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


def factorized_tables(
    quantiles: np.ndarray, likelihood: Callable[[jax.Array], jax.Array]
) -> tuple[TableSet, np.ndarray]:
    """Per-channel tables of a FactorizedDensity -> (tables, medians (C,) float32).

    quantiles (C, 1, 3) are its learned [lower, median, upper]; `likelihood` maps (1, 1, L, C)
    values to their unit-bin probabilities (`FactorizedDensity.likelihood`)."""
    quantiles = np.asarray(quantiles, np.float32)[:, 0, :]
    medians = quantiles[:, 1]
    channels = medians.size
    with np.errstate(invalid="ignore"):
        below = np.nan_to_num(np.ceil(medians - quantiles[:, 0]), nan=0.0)
        above = np.nan_to_num(np.ceil(quantiles[:, 2] - medians), nan=0.0)
    lows = -np.clip(below, 0, MAX_TABLE_HALF_WIDTH).astype(np.int64)
    highs = np.clip(above, 0, MAX_TABLE_HALF_WIDTH).astype(np.int64)
    length = int((highs - lows).max()) + 1
    grid = medians[:, None] + (lows[:, None] + np.arange(length)[None, :]).astype(np.float32)
    probability = np.asarray(likelihood(jnp.asarray(grid.T[None, None])), np.float64)[0, 0].T
    probabilities = []
    for c in range(channels):
        pmf = probability[c, : highs[c] - lows[c] + 1]
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


def _table_runs(table_index: np.ndarray) -> tuple[np.ndarray, list[tuple[int, int, int]]]:
    """The fixed order both sides code symbols in: by table, then position. table_index (n,) ->
    (the positions in that order (n,), [(table, start, stop)]: that order's run of each table)."""
    order = np.argsort(table_index, kind="stable")
    sorted_index = table_index[order]
    starts = np.flatnonzero(np.diff(sorted_index, prepend=-1))  # indices are >= 0
    stops = [*starts[1:].tolist(), order.size]
    return order, list(zip(sorted_index[starts].tolist(), starts.tolist(), stops, strict=True))


def encode_symbols(encoder, symbols: np.ndarray, table_index: np.ndarray, tables: TableSet) -> None:
    """Code int symbols (n,) with tables[table_index] (n,), then the escaped values in order."""
    symbols = np.asarray(symbols, np.int64).ravel()
    table_index = np.asarray(table_index, np.int64).ravel()
    local = symbols - tables.lows[table_index]
    escape = tables.sizes[table_index] - 1
    escaped = (local < 0) | (local >= escape)
    order, runs = _table_runs(table_index)
    local = np.where(escaped, escape, local).astype(np.int32)[order]
    for table, start, stop in runs:
        encoder.encode(local[start:stop], tables.models[table])
    _encode_escapes(encoder, symbols[escaped])


def decode_symbols(decoder, table_index: np.ndarray, tables: TableSet) -> np.ndarray:
    """Inverse of `encode_symbols`: (n,) int64 symbols."""
    table_index = np.asarray(table_index, np.int64).ravel()
    order, runs = _table_runs(table_index)
    local = np.empty(table_index.size, np.int64)
    if runs:
        parts = [decoder.decode(tables.models[table], stop - start) for table, start, stop in runs]
        local[order] = np.concatenate(parts)
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


def check_decoded_whole(decoder, stream: str) -> None:
    """CodecError unless `decoder` ended exactly at the end of its stream: a decode that left
    words unread or read past the end (constriction then decodes zeros silently) means that the
    header's image size or stream lengths are not the encoder's. Never fires on a file as
    encoded (constriction's `maybe_exhausted` is True after decoding every symbol)."""
    if not decoder.maybe_exhausted():
        raise CodecError(
            f"the {stream} stream does not hold the latents of the image size in the header "
            "(corrupt header or stream)"
        )


# ---------------------------------------------------------------------------------------------
# Table families: how the symbols of one step are coded given their distribution.
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ChannelTables:
    """A learned factorized density: one table per channel, symbols around the medians."""

    tables: TableSet

    def encode(self, encoder, symbols: np.ndarray, dist: dict, channels: np.ndarray) -> None:
        index = np.broadcast_to(channels, symbols.shape)
        encode_symbols(encoder, symbols, index, self.tables)

    def decode(self, decoder, dist: dict, channels: np.ndarray, shape: tuple) -> np.ndarray:
        return decode_symbols(decoder, np.broadcast_to(channels, shape), self.tables)


class ScaleTables:
    """A Gaussian: the table of the scale level nearest to each predicted scale."""

    def encode(self, encoder, symbols: np.ndarray, dist: dict, channels: np.ndarray) -> None:
        encode_symbols(encoder, symbols, scale_to_level(dist["scales"]), gaussian_tables())

    def decode(self, decoder, dist: dict, channels: np.ndarray, shape: tuple) -> np.ndarray:
        return decode_symbols(decoder, scale_to_level(dist["scales"]), gaussian_tables())


class MixturePmfs:
    """A Gaussian mixture: one PMF per symbol (`mixture_pmfs`), in batches of positions."""

    @staticmethod
    def _batches(dist: dict, offset_shape: tuple):
        # (n, K, C) -> (n * C, K) rows in the symbols' (n, C) row-major order
        n, c = offset_shape
        rows = max(1, _MIXTURE_SYMBOLS_PER_BATCH // c)
        for start in range(0, n, rows):
            part = {k: np.moveaxis(v[start : start + rows], -2, -1) for k, v in dist.items()}
            yield start * c, {k: v.reshape(-1, v.shape[-1]) for k, v in part.items()}

    def encode(self, encoder, symbols: np.ndarray, dist: dict, channels: np.ndarray) -> None:
        flat, offset = symbols.ravel(), dist["offset"].ravel()
        for start, part in self._batches(dist["mixture"], symbols.shape):
            stop = start + part["means"].shape[0]
            low, counts = mixture_pmfs(
                part["means"], part["scales"], part["weights"], offset[start:stop]
            )
            encode_with_pmfs(encoder, flat[start:stop], low, counts)

    def decode(self, decoder, dist: dict, channels: np.ndarray, shape: tuple) -> np.ndarray:
        offset = dist["offset"].ravel()
        symbols = []
        for start, part in self._batches(dist["mixture"], shape):
            stop = start + part["means"].shape[0]
            low, counts = mixture_pmfs(
                part["means"], part["scales"], part["weights"], offset[start:stop]
            )
            symbols.append(decode_with_pmfs(decoder, low, counts))
        return np.concatenate(symbols)


TableFamily = ChannelTables | ScaleTables | MixturePmfs


def table_family(conditional, density_tables: TableSet | None) -> TableFamily:
    """The table family of a density: per-channel tables for a learned factorized density
    (conditional None), scale tables for a Gaussian, per-symbol PMFs for a mixture."""
    if conditional is None:
        return ChannelTables(density_tables)
    if isinstance(conditional, GaussianMixtureConditional):
        return MixturePmfs()
    if isinstance(conditional, GaussianConditional):
        return ScaleTables()
    raise TypeError(f"no table family for the density {conditional!r}")


def code_step(
    family: TableFamily,
    coder,
    dist: dict[str, np.ndarray],
    offset: np.ndarray,
    channels: np.ndarray,
    values: np.ndarray | None,
) -> np.ndarray:
    """Code one step's latents (n, C) given their dist and offsets: the encoder passes `values`
    (the unquantized latents), the decoder None. Returns the dequantized symbols + offset."""
    if isinstance(family, MixturePmfs):
        dist = {"mixture": dist, "offset": offset}
    if values is not None:
        symbols = np.rint(values - offset).astype(np.int64)
        family.encode(coder, symbols, dist, channels)
    else:
        symbols = family.decode(coder, dist, channels, offset.shape)
    return symbols.reshape(offset.shape).astype(np.float32) + offset


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
    y_distribution: dict[str, np.ndarray]  # (h, w, [K,] M) the parameters the coder used
    bits_y: float  # sum of -log2 likelihood under the coder's (unsnapped) distribution
    bits_z: float


def _latent_codec(model: CompressionModel) -> LatentCodec:
    return model.latent_codec


def _density_quantiles(model: CompressionModel) -> dict[str, jax.Array]:
    densities = _latent_codec(model).factorized_densities()
    return {name: density.quantiles for name, density in densities.items()}


def _step(model: CompressionModel, kind: int, *inputs):
    codec = _latent_codec(model)
    dist = codec.step_distribution(kind, *inputs)
    return dist, codec.y_offset(dist)


def _finalize(model: CompressionModel, kind: int, values, *inputs):
    return _latent_codec(model).step_finalize(kind, values, *inputs)


@functools.cache
def compiled_functions(model: CompressionModel) -> dict[str, Callable]:
    """The jitted pieces of `model` the coder uses (params are arguments), compiled once per
    model configuration and shared by every LatentCoder/Codec of that configuration."""

    def method(function):
        return jax.jit(lambda p, *a: model.apply({"params": p}, *a, method=function))

    def codec_method(name):
        return method(lambda m, *a: getattr(_latent_codec(m), name)(*a))

    functions = {name: method(name) for name in ("analysis", "synthesis")}
    for name in ("hyper_analysis", "hyper_synthesis", "y_likelihood", "coding_constants"):
        functions[name] = codec_method(name)
    for name, function in (("step", _step), ("finalize", _finalize)):
        functions[name] = jax.jit(
            lambda p, kind, *a, function=function: model.apply(
                {"params": p}, kind, *a, method=function
            ),
            static_argnums=1,
        )
    for name in ("z", "y"):
        functions[f"{name}_density_likelihood"] = method(
            lambda m, x, name=name: _latent_codec(m).factorized_densities()[name].likelihood(x)
        )
    return functions


class LatentCoder:
    """Codes y (and z) of one model with fixed parameters. All arrays are single images (no batch).

    `encode(y)` -> CodedLatents; `decode(z_stream, y_stream, (h, w))` -> y_hat (h, w, M).
    """

    def __init__(self, model: CompressionModel, params: dict):
        self.model = model
        self.params = latent_codec_params(params)  # all that the coder's functions read
        self.codec = model.make_latent_codec()
        self.num_latents = model.config.num_latents
        self.functions = compiled_functions(model)
        self.constants = self.functions["coding_constants"](self.params)  # once, for every step
        quantiles = model.apply({"params": self.params}, method=_density_quantiles)
        self.density_tables = {}
        for name in ("z", "y"):  # a fixed order for the checksum
            if name in quantiles:
                likelihood = functools.partial(
                    self.functions[f"{name}_density_likelihood"], self.params
                )
                self.density_tables[name] = factorized_tables(quantiles[name], likelihood)
        y_tables = self.density_tables["y"][0] if "y" in self.density_tables else None
        self.y_family = table_family(self.codec.conditional, y_tables)
        tables = [gaussian_tables()] + [tables for tables, _ in self.density_tables.values()]
        self.table_checksum = functools.reduce(
            lambda crc, t: zlib.crc32(t.checksum().to_bytes(4, "little"), crc), tables, 0
        )

    # --- z ------------------------------------------------------------------------------------
    def _code_z(self, coder, shape: tuple[int, ...], z: np.ndarray | None) -> np.ndarray:
        """Code z (h/4, w/4, N) around its medians -> z_hat."""
        tables, medians = self.density_tables["z"]
        offset = np.broadcast_to(medians, shape)
        return code_step(ChannelTables(tables), coder, {}, offset, np.arange(shape[-1]), z)

    def _hyper(self, z_hat: np.ndarray) -> np.ndarray:
        return np.asarray(self.functions["hyper_synthesis"](self.params, z_hat[None]))[0]

    # --- y: the schedule ----------------------------------------------------------------------
    def _code_y(self, coder, hyper: np.ndarray | None, shape, y: np.ndarray | None):
        """Code y (h, w, M) (encoder: y given; decoder: None) -> (y_hat, the dequantized symbols
        (y_hat before `step_finalize`), dist maps) numpy."""
        height, width, m = shape
        top, bottom, left, right = self.codec.coding_padding
        y_pad = np.zeros((height + top + bottom, width + left + right, m), np.float32)
        y_hat = y_pad[top : top + height, left : left + width]  # a view: written in place
        y_coded = np.zeros(shape, np.float32) if self.codec.finalizes else y_hat
        dist_maps: dict[str, np.ndarray] = {}
        step: CodingStep
        for step in self.codec.schedule(height, width):
            if step.count == 0:
                continue
            channels = slice(*step.channels) if step.channels else slice(0, m)
            inputs = self.codec.step_inputs(step, y_pad, hyper)
            dist, offset = self.functions["step"](self.params, step.kind, *self.constants, *inputs)
            n = step.count
            dist = {k: np.asarray(v)[:n] for k, v in dist.items()}
            rows, cols = step.rows[:n], step.cols[:n]
            values = code_step(
                self.y_family,
                coder,
                dist,
                np.asarray(offset)[:n],
                np.arange(m)[channels],
                None if y is None else y[rows, cols, channels],
            )
            if self.codec.finalizes:
                y_coded[rows, cols, channels] = values
                values = self.functions["finalize"](
                    self.params, step.kind, values, *self.constants, *inputs
                )
            y_hat[rows, cols, channels] = np.asarray(values)
            for k, v in dist.items() if y is not None else ():  # the encoder's rate needs them
                if k not in dist_maps:
                    dist_maps[k] = np.zeros((height, width, *v.shape[1:-1], m), np.float32)
                dist_maps[k][rows, cols, ..., channels] = v
        return np.ascontiguousarray(y_hat), np.ascontiguousarray(y_coded), dist_maps

    # --- public -------------------------------------------------------------------------------
    def encode(self, y: np.ndarray) -> CodedLatents:
        """y (h, w, M) float32 (the analysis transform's output) -> CodedLatents."""
        y = np.asarray(y, np.float32)
        z_stream, z_hat, hyper, bits_z = b"", None, None, 0.0
        if self.codec.hyperprior:
            z = np.asarray(self.functions["hyper_analysis"](self.params, y[None]))[0]
            encoder = new_encoder()
            z_hat = self._code_z(encoder, z.shape, z)
            z_stream = stream_bytes(encoder)
            hyper = self._hyper(z_hat)
            z_lik = self.functions["z_density_likelihood"](self.params, z_hat[None])
            bits_z = float(-np.sum(np.log2(np.asarray(z_lik, np.float64))))
        encoder = new_encoder()
        y_hat, y_coded, dist = self._code_y(encoder, hyper, y.shape, y)
        y_lik = self.functions["y_likelihood"](
            self.params, y_coded[None], {k: v[None] for k, v in dist.items()}
        )
        bits_y = float(-np.sum(np.log2(np.asarray(y_lik, np.float64))))
        return CodedLatents(z_stream, stream_bytes(encoder), y_hat, z_hat, dist, bits_y, bits_z)

    def decode(self, z_stream: bytes, y_stream: bytes, shape: tuple[int, int]) -> np.ndarray:
        """(z_stream, y_stream, latent (h, w)) -> y_hat (h, w, M) float32."""
        height, width = shape
        hyper = None
        if self.codec.hyperprior:
            z_shape = (-(-height // 4), -(-width // 4), self.model.config.num_filters)
            z_decoder = new_decoder(z_stream)
            z_hat = self._code_z(z_decoder, z_shape, None)
            check_decoded_whole(z_decoder, "z")  # before the (larger) y decode
            hyper = self._hyper(z_hat)
        shape_y = (height, width, self.num_latents)
        y_decoder = new_decoder(y_stream)
        y_hat = self._code_y(y_decoder, hyper, shape_y, None)[0]
        check_decoded_whole(y_decoder, "y")
        return y_hat


def make_latent_coder(model: CompressionModel, params: dict):
    """The latent coder of a model: `LatentCoder` (float prior path), or for a model whose
    config has `integer_prior` the `integer_prior.IntegerLatentCoder` (same API, integer
    arithmetic from z_hat to every table index, decodable on any machine)."""
    if model.config.integer_prior:
        from jahp_jax.coding.integer import IntegerLatentCoder  # it imports this module

        return IntegerLatentCoder(model, params)
    return LatentCoder(model, params)


# constriction raises AssertionError on data its range decoder cannot continue
_DECODING_ERRORS = (ValueError, RuntimeError, OverflowError, IndexError, TypeError, AssertionError)


def decode_guard(function: Callable, *args):
    """Run a decoding step; constriction and numpy errors on garbage become CodecError."""
    try:
        return function(*args)
    except CodecError:
        raise
    except _DECODING_ERRORS as error:
        raise CodecError(f"the coded data is invalid ({error})") from None
