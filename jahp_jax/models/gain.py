"""Gain units (Cui et al. 2021, "Asymmetric Gained Deep Image Compression With Continuous Rate
Adaptation"): one model for every rate, the rate chosen when compressing.

A variable-rate model (`ModelConfig.lmbda_range` = (low, high), `ModelConfig.gain_levels` = L)
holds L gain vectors g_r and L inverse-gain vectors g'_r of M channels each (params
`gain_units/gain` and `gain_units/inverse_gain`, (L, M)). Level r belongs to the lambda
low (high/low)^(r/(L-1)). The encoder codes y * g (the latent codec and its prior path see an
ordinary latent), the decoder feeds y_hat * g' to g_s.

**Quality.** A quality q in [0, 1] names the lambda low (high/low)^q (log-uniform: training draws
q uniformly, one per batch) and the vectors at the position t = q (L - 1) between the levels:
with r = floor(t) and f = t - r, g(q) = g_r^(1-f) g_{r+1}^f, the exponential interpolation of
Cui et al. (eq. 7), and the same for g'. A gain's value is |parameter|, at least `GAIN_FLOOR`.

**Files.** A file carries its quality as a 16-bit code Q (q = Q / 65535, `quality_code`). Both
sides compute the vectors from Q with `gain_vectors`: the level position in units of
2^-`FRACTION_BITS` of a level by integer arithmetic, then g_r (g_{r+1}/g_r)^f by square roots and
products in float64, rounded once to float32. These are IEEE-754 operations that are correctly
rounded everywhere (no exp or log, whose results differ between math libraries and instruction
sets), so every decoder computes the encoder's inverse gain bit for bit.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

Array = jax.Array

MAX_QUALITY_CODE = 65535  # a file's quality: Q / MAX_QUALITY_CODE
FRACTION_BITS = 12  # a coded level position's resolution: 2^-12 of a level
MAX_GAIN_LEVELS = 64
GAIN_FLOOR = 1e-4  # a gain's value is max(|parameter|, this): logs and ratios stay finite


def check_lmbda_range(lmbda_range: tuple[float, float]) -> None:
    """ValueError (one line) unless 0 < low < high, both finite."""
    low, high = lmbda_range
    if not (0 < low < high < math.inf):
        raise ValueError(f"lmbda_range must be LOW,HIGH with 0 < LOW < HIGH, got {low},{high}")


def lmbda_of_quality(quality, lmbda_range: tuple[float, float]):
    """The lambda of quality q in [0, 1]: low (high/low)^q (a float, numpy or jax array)."""
    low, high = lmbda_range
    return low * (high / low) ** quality


def quality_of_lmbda(lmbda: float, lmbda_range: tuple[float, float]) -> float:
    """The quality of a lambda (ValueError outside the range)."""
    low, high = lmbda_range
    if not low <= lmbda <= high:
        raise ValueError(
            f"lambda {lmbda:g} is outside this model's range {low:g} ... {high:g}; give a lambda "
            "inside it"
        )
    return math.log(lmbda / low) / math.log(high / low)


def level_lmbdas(lmbda_range: tuple[float, float], levels: int) -> np.ndarray:
    """(L,) the lambdas the gain levels belong to, log-uniform from low to high."""
    return np.asarray(lmbda_of_quality(np.linspace(0.0, 1.0, levels), lmbda_range))


def quality_code(quality: float) -> int:
    """A quality in [0, 1] -> the 16-bit code a file carries (ValueError outside [0, 1])."""
    if not 0.0 <= quality <= 1.0:  # NaN fails too
        raise ValueError(f"quality {quality} is outside [0, 1] (0: lowest rate, 1: highest)")
    return round(quality * MAX_QUALITY_CODE)


def code_quality(code: int) -> float:
    """The quality a 16-bit code stands for."""
    return code / MAX_QUALITY_CODE


def initial_gains(
    lmbda_range: tuple[float, float], levels: int, num_channels: int,
    reference_lmbda: float | None = None,
) -> dict[str, np.ndarray]:  # fmt: skip
    """{'gain', 'inverse_gain'}: (L, M) float32 start values. Level r's gain is
    sqrt(lambda_r / reference) in every channel (the quantization step of a Gaussian source
    that minimises rate + lambda * MSE shrinks as 1/sqrt(lambda)), its inverse 1/gain: at the
    start a quality only scales the quantization step. `reference_lmbda` (default: the range's
    geometric mean) gets gain 1: a fixed-rate model trained there, fine-tuned into a variable-rate
    one, starts as itself at that lambda."""
    reference = reference_lmbda or math.sqrt(lmbda_range[0] * lmbda_range[1])
    gains = np.sqrt(level_lmbdas(lmbda_range, levels) / reference)
    gain = np.repeat(gains[:, None], num_channels, axis=1).astype(np.float32)
    return {"gain": gain, "inverse_gain": (1.0 / gain).astype(np.float32)}


def _level_position(code: int, levels: int) -> tuple[int, int]:
    """A quality code -> (level r, fraction k in units of 2^-FRACTION_BITS), integers only."""
    one = 1 << FRACTION_BITS
    position = (code * (levels - 1) * one + MAX_QUALITY_CODE // 2) // MAX_QUALITY_CODE
    return divmod(position, one)


def _interpolate_exactly(vectors: np.ndarray, level: int, fraction: int) -> np.ndarray:
    values = np.maximum(np.abs(np.asarray(vectors, np.float64)), GAIN_FLOOR)
    result = values[level]
    if fraction:
        root = values[level + 1] / values[level]
        for bit in reversed(range(FRACTION_BITS)):  # the fraction's bits, 1/2 first
            root = np.sqrt(root)
            if fraction >> bit & 1:
                result = result * root
    return result.astype(np.float32)


def gain_vectors(gain_params: dict, code: int) -> tuple[np.ndarray, np.ndarray]:
    """(gain, inverse gain), (M,) float32 each, of the quality code `code` (`quality_code`) from
    a model's `gain_units` params; the same bits on every machine (module docstring)."""
    gain, inverse_gain = np.asarray(gain_params["gain"]), np.asarray(gain_params["inverse_gain"])
    if not 0 <= code <= MAX_QUALITY_CODE:
        raise ValueError(f"quality code {code} is outside 0 ... {MAX_QUALITY_CODE}")
    level, fraction = _level_position(code, gain.shape[0])
    return (
        _interpolate_exactly(gain, level, fraction),
        _interpolate_exactly(inverse_gain, level, fraction),
    )


class GainUnits(nn.Module):
    """The L gain and inverse-gain vectors of a variable-rate model (module docstring).

    `__call__(quality)`: quality () or (B,) in [0, 1] -> (gain, inverse_gain), each
    quality.shape + (M,), differentiable in the vectors (training's interpolation, in jax;
    the coder uses `gain_vectors`).
    """

    levels: int
    num_channels: int
    lmbda_range: tuple[float, float]

    @nn.compact
    def __call__(self, quality: Array) -> tuple[Array, Array]:
        start = initial_gains(self.lmbda_range, self.levels, self.num_channels)
        vectors = {
            name: self.param(name, lambda _, value=value: jnp.asarray(value))
            for name, value in start.items()
        }
        position = jnp.clip(jnp.asarray(quality, jnp.float32), 0.0, 1.0) * (self.levels - 1)
        level = jnp.clip(jnp.floor(position), 0, self.levels - 2).astype(jnp.int32)
        fraction = (position - level)[..., None]

        def interpolate(parameter: Array) -> Array:
            log_values = jnp.log(jnp.maximum(jnp.abs(parameter), GAIN_FLOOR))
            mixed = (1.0 - fraction) * log_values[level] + fraction * log_values[level + 1]
            return jnp.exp(mixed)

        return interpolate(vectors["gain"]), interpolate(vectors["inverse_gain"])
