"""Entropy models: the quantization proxy, the factorized density, the conditional Gaussian and
Gaussian mixture. Each is written once; models compose them and the coder reads the same math.

Shapes: latents are NHWC, (B, H, W, C). Likelihoods have the shape of the latents and lie in
[LIKELIHOOD_BOUND, 1]; rates are -log2(likelihood) bits.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jahp_jax.nn.layers import lower_bound

Array = jax.Array

SCALE_BOUND = 0.11  # lower bound on Gaussian scales (as in the published models)
LIKELIHOOD_BOUND = 1e-9  # lower bound on every likelihood (caps one symbol at ~30 bits)


# ---------------------------------------------------------------------------------------------
# Quantization.
# ---------------------------------------------------------------------------------------------
def add_uniform_noise(x: Array, key: Array) -> Array:
    """Training proxy for rounding: x + u, u ~ U(-1/2, 1/2), independent per element."""
    return x + jax.random.uniform(key, x.shape, x.dtype, -0.5, 0.5)


def quantize(x: Array, offset: Array | float = 0.0) -> Array:
    """Rounding around `offset`: round(x - offset) + offset (what the coder transmits)."""
    return jnp.round(x - offset) + offset


def straight_through_quantize(x: Array, offset: Array | float = 0.0) -> Array:
    """`quantize` in the forward pass, identity in the backward pass."""
    return x + jax.lax.stop_gradient(quantize(x, offset) - x)


# ---------------------------------------------------------------------------------------------
# Conditional Gaussian and Gaussian mixture.
# ---------------------------------------------------------------------------------------------
def standardized_cumulative(x: Array) -> Array:
    """Standard normal CDF Phi(x) = erfc(-x / sqrt 2) / 2 (accurate in the lower tail)."""
    return 0.5 * jax.lax.erfc(-x * (1.0 / math.sqrt(2.0)))


def gaussian_bin_probability(y_hat: Array, mean: Array, scale: Array) -> Array:
    """P(y_hat - 1/2 < Y < y_hat + 1/2) for Y ~ N(mean, scale^2), scale bounded below by 0.11.

    Computed on |y_hat - mean| as Phi((1/2 - v)/s) - Phi((-1/2 - v)/s), so both terms are in the
    lower tail where erfc keeps relative precision (no 1 - 1 cancellation far from the mean).
    """
    scale = lower_bound(scale, SCALE_BOUND)
    values = jnp.abs(y_hat - mean)
    upper = standardized_cumulative((0.5 - values) / scale)
    lower = standardized_cumulative((-0.5 - values) / scale)
    return upper - lower


@dataclasses.dataclass(frozen=True)
class GaussianConditional:
    """y | params ~ N(mean, scale^2) per element. Params per latent channel: [scales, means]."""

    params_per_latent = 2

    def split(self, params: Array) -> dict[str, Array]:
        """params (..., 2M) -> {'scales', 'means'}, each (..., M); scales first (CompressAI)."""
        scales, means = jnp.split(params, 2, axis=-1)
        return {"scales": scales, "means": means}

    def offset(self, dist: dict[str, Array]) -> Array:
        """The value y is rounded around: the mean."""
        return dist["means"]

    def likelihood(self, y_hat: Array, dist: dict[str, Array]) -> Array:
        return lower_bound(
            gaussian_bin_probability(y_hat, dist["means"], dist["scales"]), LIKELIHOOD_BOUND
        )


@dataclasses.dataclass(frozen=True)
class GaussianMixtureConditional:
    """y | params ~ sum_k w_k N(mean_k, scale_k^2), K components per element.

    Params per latent channel: 3K, laid out [scales (K*M), means (K*M), weight logits (K*M)],
    each reshaped to (..., K, M). Rounding is around the mixture mean sum_k w_k mean_k.
    """

    num_components: int

    @property
    def params_per_latent(self) -> int:
        return 3 * self.num_components

    def split(self, params: Array) -> dict[str, Array]:
        """params (..., 3KM) -> {'scales', 'means', 'weights'}, each (..., K, M)."""
        k = self.num_components
        scales, means, logits = jnp.split(params, 3, axis=-1)
        shape = params.shape[:-1] + (k, params.shape[-1] // (3 * k))
        return {
            "scales": scales.reshape(shape),
            "means": means.reshape(shape),
            "weights": jax.nn.softmax(logits.reshape(shape), axis=-2),
        }

    def offset(self, dist: dict[str, Array]) -> Array:
        return jnp.sum(dist["weights"] * dist["means"], axis=-2)

    def likelihood(self, y_hat: Array, dist: dict[str, Array]) -> Array:
        per_component = gaussian_bin_probability(y_hat[..., None, :], dist["means"], dist["scales"])
        return lower_bound(jnp.sum(dist["weights"] * per_component, axis=-2), LIKELIHOOD_BOUND)


def make_conditional(num_components: int) -> GaussianConditional | GaussianMixtureConditional:
    """One Gaussian for K = 1, else a K-component mixture."""
    if num_components < 1:
        raise ValueError(f"mixture_components must be >= 1, got {num_components}")
    return (
        GaussianConditional() if num_components == 1 else GaussianMixtureConditional(num_components)
    )


# ---------------------------------------------------------------------------------------------
# Factorized (non-parametric) density, Balle et al. 2018, appendix 6.1.
# ---------------------------------------------------------------------------------------------
TAIL_MASS = 1e-9  # probability mass the learned quantiles leave outside the coding range


class FactorizedDensity(nn.Module):
    """A learned univariate density per channel, used for z (and for y in the factorized prior).

    The cumulative is c(x) = sigmoid(f_K o ... o f_1(x)) with f_k(x) = softplus(H_k) x + b_k
    followed by x + tanh(a_k) tanh(x) for k < K. Params are stored in CompressAI's layout:
    `matrices_k` (C, f_out, f_in), `biases_k` (C, f_out, 1), `factors_k` (C, f_out, 1), and the
    learned tail quantiles `quantiles` (C, 1, 3) = [lower, median, upper], trained only by
    `aux_loss` so that the coding range [lower, upper] holds all but TAIL_MASS of the density.
    """

    channels: int
    filters: tuple[int, ...] = (3, 3, 3, 3)
    init_scale: float = 10.0

    def setup(self):
        dims = (1, *self.filters, 1)
        scale = self.init_scale ** (1.0 / (len(self.filters) + 1))
        c = self.channels
        self.matrices = [
            self.param(
                f"matrices_{k}",
                nn.initializers.constant(float(np.log(np.expm1(1.0 / scale / dims[k + 1])))),
                (c, dims[k + 1], dims[k]),
            )
            for k in range(len(dims) - 1)
        ]
        self.biases = [
            self.param(
                f"biases_{k}",
                lambda key, shape: jax.random.uniform(key, shape, jnp.float32, -0.5, 0.5),
                (c, dims[k + 1], 1),
            )
            for k in range(len(dims) - 1)
        ]
        self.factors = [
            self.param(f"factors_{k}", nn.initializers.zeros, (c, dims[k + 1], 1))
            for k in range(len(dims) - 2)
        ]
        init_quantiles = np.tile(
            np.array([-self.init_scale, 0.0, self.init_scale], np.float32), (c, 1, 1)
        )
        self.quantiles = self.param("quantiles", lambda _k, _s: jnp.asarray(init_quantiles), None)

    def logits_cumulative(self, inputs: Array, stop_gradient: bool = False) -> Array:
        """inputs (C, 1, L) -> logits of the cumulative (C, 1, L)."""
        sg = jax.lax.stop_gradient if stop_gradient else (lambda v: v)
        logits = inputs
        for k, (matrix, bias) in enumerate(zip(self.matrices, self.biases, strict=True)):
            logits = jnp.matmul(jax.nn.softplus(sg(matrix)), logits) + sg(bias)
            if k < len(self.factors):
                logits = logits + jnp.tanh(sg(self.factors[k])) * jnp.tanh(logits)
        return logits

    def medians(self) -> Array:
        """(C,) the learned medians (no gradient)."""
        return jax.lax.stop_gradient(self.quantiles[:, 0, 1])

    def likelihood(self, x_hat: Array) -> Array:
        """x_hat (B, H, W, C) -> probability of the unit bin around each value, same shape."""
        flat = jnp.transpose(x_hat, (3, 0, 1, 2)).reshape(self.channels, 1, -1)
        lower = self.logits_cumulative(flat - 0.5)
        upper = self.logits_cumulative(flat + 0.5)
        sign = jax.lax.stop_gradient(-jnp.sign(lower + upper))
        probability = jnp.abs(jax.nn.sigmoid(sign * upper) - jax.nn.sigmoid(sign * lower))
        probability = jnp.transpose(
            probability.reshape((self.channels, *x_hat.shape[:3])), (1, 2, 3, 0)
        )
        return lower_bound(probability, LIKELIHOOD_BOUND)

    def aux_loss(self) -> Array:
        """Sum of |logits(quantiles) - target| over channels; trains the quantiles only."""
        target = np.log(2.0 / TAIL_MASS - 1.0)
        logits = self.logits_cumulative(self.quantiles, stop_gradient=True)
        return jnp.sum(jnp.abs(logits - jnp.asarray([-target, 0.0, target], logits.dtype)))

    def __call__(self, x: Array, noise_key: Array | None = None) -> tuple[Array, Array]:
        """x (B, H, W, C) -> (x_hat, likelihoods). With a noise key: x + U(-1/2, 1/2) (training);
        without: rounding around the medians (exactly what the coder transmits)."""
        if noise_key is not None:
            x_hat = add_uniform_noise(x, noise_key)
        else:
            x_hat = quantize(x, self.medians())
        return x_hat, self.likelihood(x_hat)
