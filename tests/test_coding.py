"""Tables, symbol coding with escapes and mixtures of jahp_jax.coding.range_coder."""

import numpy as np
import pytest

from jahp_jax.coding import range_coder as coding


def test_quantize_pmf_is_a_valid_integer_table():
    rng = np.random.default_rng(0)
    p = rng.random((5, 40)) ** 8
    p[0, :10] = 0.0
    counts = coding.quantize_pmf(p)
    assert counts.dtype == np.int64
    assert np.all(counts >= 1)
    np.testing.assert_array_equal(counts.sum(axis=-1), 1 << coding.PRECISION)
    # close to the input distribution, every entry floored at 2^-16
    probabilities = counts / (1 << coding.PRECISION)
    expected = np.maximum(p / p.sum(-1, keepdims=True), coding.PROBABILITY_FLOOR)
    expected /= expected.sum(-1, keepdims=True)
    np.testing.assert_allclose(probabilities, expected, atol=5e-6)
    assert np.all(probabilities >= coding.PROBABILITY_FLOOR * (1 - 1e-3))


def test_scale_levels_snap_to_nearest_in_log_space():
    levels = coding.scale_levels()
    assert len(levels) == coding.SCALE_LEVELS
    np.testing.assert_array_equal(
        coding.scale_to_level(levels.astype(np.float32)), np.arange(coding.SCALE_LEVELS)
    )
    assert coding.scale_to_level(np.array([0.0, -3.0, 1e6]))[[0, 1, 2]].tolist() == [
        0,
        0,
        coding.SCALE_LEVELS - 1,
    ]
    ratio = levels[1] / levels[0]
    mid = np.sqrt(levels[10] * levels[11])
    assert coding.scale_to_level(np.array([mid / ratio**0.01, mid * ratio**0.01])).tolist() == [
        10,
        11,
    ]


def _roundtrip_symbols(symbols, index, tables):
    encoder = coding.new_encoder()
    coding.encode_symbols(encoder, symbols, index, tables)
    data = coding.stream_bytes(encoder)
    return coding.decode_symbols(coding.new_decoder(data), index, tables), data


def test_gaussian_symbols_roundtrip_with_escapes():
    rng = np.random.default_rng(1)
    tables = coding.gaussian_tables()
    levels = rng.integers(0, coding.SCALE_LEVELS, 5000)
    symbols = np.rint(rng.normal(size=5000) * coding.scale_levels()[levels]).astype(np.int64)
    symbols[:6] = [40, -40, 2**30, -(2**30), 65537, -70000]  # far outside the small tables
    levels[:6] = 0
    decoded, _ = _roundtrip_symbols(symbols, levels, tables)
    np.testing.assert_array_equal(decoded, symbols)


def test_coded_size_matches_table_information():
    rng = np.random.default_rng(2)
    tables = coding.gaussian_tables()
    levels = np.full(20000, 30)
    scale = coding.scale_levels()[30]
    symbols = np.rint(rng.normal(size=20000) * scale).astype(np.int64)
    _, data = _roundtrip_symbols(symbols, levels, tables)
    counts = tables.counts[30]
    ideal = -np.log2(counts[symbols - tables.lows[30]] / (1 << coding.PRECISION)).sum()
    assert ideal <= 8 * len(data) <= ideal * 1.001 + 64


def test_escape_beyond_limit_is_refused():
    tables = coding.gaussian_tables()
    with pytest.raises(coding.CodecError, match="exceeds"):
        coding.encode_symbols(coding.new_encoder(), np.array([2**31]), np.array([0]), tables)


def test_mixture_pmfs_roundtrip():
    rng = np.random.default_rng(3)
    n, k = 3000, 3
    means = rng.normal(size=(n, k)) * 3
    scales = np.exp(rng.normal(size=(n, k)))
    weights = rng.dirichlet(np.ones(k), n)
    offset = (weights * means).sum(-1)
    symbols = np.rint(rng.normal(size=n) * 2 + means[:, 0] - offset).astype(np.int64)
    symbols[0] = 5000
    low, counts = coding.mixture_pmfs(means, scales, weights, offset)
    encoder = coding.new_encoder()
    coding.encode_with_pmfs(encoder, symbols, low, counts)
    decoder = coding.new_decoder(coding.stream_bytes(encoder))
    np.testing.assert_array_equal(coding.decode_with_pmfs(decoder, low, counts), symbols)


def test_decoder_rejects_a_partial_word():
    with pytest.raises(coding.CodecError, match="32-bit"):
        coding.new_decoder(b"abc")
