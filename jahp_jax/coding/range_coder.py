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

The loop that codes y step by step over a prior's schedule is `jahp_jax.coding.runner`.
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

from jahp_jax.models.entropy_models import (
    SCALE_BOUND,
    GaussianConditional,
    GaussianMixtureConditional,
)

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
def quantize_pmf(probabilities: np.ndarray, floor: float | None = PROBABILITY_FLOOR) -> np.ndarray:
    """(..., n) nonnegative floats -> int64 counts >= 1 summing to 2^PRECISION along the last axis.

    Every entry gets at least `floor` (PROBABILITY_FLOOR, 2^-16) of the mass, as in CompressAI's
    16-bit tables: a symbol the model deems (nearly) impossible, or an escape, then costs at most
    16 bits instead of up to 30, which matters for badly predicted latents (random or barely
    trained weights); the 24-bit counts keep every other probability accurate. Then
    counts = floor(p * (2^24 - n)) + 1, the remainder added to the most likely entry.
    `floor=None`: no floor (the tables of the first format-1 files, `CodingRules`).
    """
    p = np.asarray(probabilities, np.float64)
    n = p.shape[-1]
    if n < 2 or n > _TOTAL // 2:
        raise CodecError(f"cannot build a {PRECISION}-bit table with {n} entries")
    p = np.where(np.isfinite(p) & (p > 0), p, 0.0)
    total = p.sum(axis=-1, keepdims=True)
    p = np.where(total > 0, p / np.where(total > 0, total, 1.0), 1.0 / n)
    if floor is not None:
        p = np.maximum(p, floor)
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
    def from_probabilities(
        cls,
        probabilities: list[np.ndarray],
        lows: np.ndarray,
        floor: float | None = PROBABILITY_FLOOR,
    ) -> TableSet:
        return cls.from_counts([quantize_pmf(p, floor) for p in probabilities], lows)

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
def gaussian_tables(floor: float | None = PROBABILITY_FLOOR) -> TableSet:
    """One zero-mean quantized Gaussian table per scale level, tails beyond 4.5 sigma escaped
    (`floor`: see `quantize_pmf`)."""
    probabilities, lows = [], []
    for scale in scale_levels():
        half = max(1, int(np.ceil(TAIL_SIGMAS * scale)))
        edges = (np.arange(-half, half + 2, dtype=np.float64) - 0.5) / scale
        cdf = ndtr(edges)
        pmf = np.diff(cdf)
        escape = ndtr(edges[0]) + ndtr(-edges[-1])
        probabilities.append(np.append(pmf, escape))
        lows.append(-half)
    return TableSet.from_probabilities(probabilities, np.array(lows), floor)


def factorized_tables(
    quantiles: np.ndarray,
    likelihood: Callable[[jax.Array], jax.Array],
    floor: float | None = PROBABILITY_FLOOR,
) -> tuple[TableSet, np.ndarray]:
    """Per-channel tables of a FactorizedDensity -> (tables, medians (C,) float32).

    quantiles (C, 1, 3) are its learned [lower, median, upper]; `likelihood` maps (1, 1, L, C)
    values to their unit-bin probabilities (`FactorizedDensity.likelihood`); `floor`: see
    `quantize_pmf`."""
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
    return TableSet.from_probabilities(probabilities, lows, floor), medians


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
    means: np.ndarray,
    scales: np.ndarray,
    weights: np.ndarray,
    offset: np.ndarray,
    floor: float | None = PROBABILITY_FLOOR,
) -> tuple[int, np.ndarray]:
    """Per-symbol PMFs of round(y - offset) under a Gaussian mixture.

    means/scales/weights (n, K), offset (n,) -> (low, counts (n, 2 R + 2)) over symbols
    [-R, R] plus escape, R = ceil(max(|mean_k - offset| + 4.5 scale_k)) over the batch (<= 256);
    `floor`: see `quantize_pmf`.
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
    return -half, quantize_pmf(np.concatenate([pmf, escape], axis=-1), floor)


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


def check_exhausted(decoder, name: str) -> None:
    """CodecError unless `decoder` ended where its stream does (to within the word it reads
    ahead), as a decode with the encoder's tables always does: one with other tables (a float
    prior path computed with other numerics, another era's coding rules) almost never does."""
    if not decoder.maybe_exhausted():
        raise CodecError(
            f"the {name} stream does not end where its symbols do: it was coded with other "
            "tables (a float-prior file decodes only where the float arithmetic matches the "
            "encoder's), or the header's image size or stream lengths are not the encoder's "
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


@dataclasses.dataclass(frozen=True)
class ScaleTables:
    """A Gaussian: the table of the scale level nearest to each predicted scale."""

    tables: TableSet

    def encode(self, encoder, symbols: np.ndarray, dist: dict, channels: np.ndarray) -> None:
        encode_symbols(encoder, symbols, scale_to_level(dist["scales"]), self.tables)

    def decode(self, decoder, dist: dict, channels: np.ndarray, shape: tuple) -> np.ndarray:
        return decode_symbols(decoder, scale_to_level(dist["scales"]), self.tables)


@dataclasses.dataclass(frozen=True)
class MixturePmfs:
    """A Gaussian mixture: one PMF per symbol (`mixture_pmfs`), in batches of positions."""

    floor: float | None = PROBABILITY_FLOOR

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
                part["means"], part["scales"], part["weights"], offset[start:stop], self.floor
            )
            encode_with_pmfs(encoder, flat[start:stop], low, counts)

    def decode(self, decoder, dist: dict, channels: np.ndarray, shape: tuple) -> np.ndarray:
        offset = dist["offset"].ravel()
        symbols = []
        for start, part in self._batches(dist["mixture"], shape):
            stop = start + part["means"].shape[0]
            low, counts = mixture_pmfs(
                part["means"], part["scales"], part["weights"], offset[start:stop], self.floor
            )
            symbols.append(decode_with_pmfs(decoder, low, counts))
        return np.concatenate(symbols)


TableFamily = ChannelTables | ScaleTables | MixturePmfs


@dataclasses.dataclass(frozen=True)
class CodingRules:
    """The details of how symbols are coded that changed once without a change of the header:
    the defaults are today's; `jahp_jax.coding.versions` holds the earlier ones and the files
    they read.

    floor: least table probability (`quantize_pmf`; None: no floor).
    eager_density_tables: the factorized densities' tables from the likelihood evaluated op by op
        (un-jitted), as the first coder did: the float rounding differs from the jitted one's.
    """

    floor: float | None = PROBABILITY_FLOOR
    eager_density_tables: bool = False


CURRENT_RULES = CodingRules()  # how this code codes (and every file since 2026-12-01 20:59)


def table_family(
    conditional, density_tables: TableSet | None, floor: float | None = PROBABILITY_FLOOR
) -> TableFamily:
    """The table family of a density: per-channel tables for a learned factorized density
    (conditional None), scale tables for a Gaussian, per-symbol PMFs for a mixture (`floor`:
    see `quantize_pmf`)."""
    if conditional is None:
        return ChannelTables(density_tables)
    if isinstance(conditional, GaussianMixtureConditional):
        return MixturePmfs(floor)
    if isinstance(conditional, GaussianConditional):
        return ScaleTables(gaussian_tables(floor))
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
