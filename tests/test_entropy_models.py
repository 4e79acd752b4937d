import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jahp_jax.models import entropy_models as em

GRID = jnp.arange(-400.0, 401.0)  # a wide integer grid


@pytest.mark.parametrize("mean,scale", [(0.0, 0.11), (0.3, 1.0), (-2.7, 7.5), (10.2, 40.0)])
def test_gaussian_likelihoods_sum_to_one(mean, scale):
    dist = {"means": jnp.full_like(GRID, mean), "scales": jnp.full_like(GRID, scale)}
    total = jnp.sum(em.GaussianConditional().likelihood(GRID, dist))
    assert abs(float(total) - 1.0) < 1e-3


def test_gaussian_matches_scipy_and_is_accurate_in_the_tail():
    values = np.array([0.0, 1.0, 3.0, 6.0])
    got = em.gaussian_bin_probability(jnp.asarray(values), 0.0, 1.0)
    want = stats.norm.cdf(values + 0.5) - stats.norm.cdf(values - 0.5)
    np.testing.assert_allclose(got, want, rtol=1e-4)
    # Far in the upper tail the naive Phi(b) - Phi(a) in float32 would be exactly 0.
    far = em.gaussian_bin_probability(jnp.asarray([8.0]), 0.0, 1.0)
    np.testing.assert_allclose(far, stats.norm.sf(7.5) - stats.norm.sf(8.5), rtol=1e-3)


def test_gaussian_bounds():
    dist = {"means": jnp.zeros(2), "scales": jnp.asarray([0.0, 1.0])}
    lik = em.GaussianConditional().likelihood(jnp.asarray([0.0, 1e4]), dist)
    # scale 0 is bounded at 0.11, so the centre bin has probability < 1; far values hit 1e-9.
    np.testing.assert_allclose(lik[0], 1 - 2 * stats.norm.sf(0.5 / 0.11), rtol=1e-5)
    assert float(lik[1]) == pytest.approx(em.LIKELIHOOD_BOUND)


def test_mixture_likelihoods_sum_to_one_and_reduce_to_gaussian():
    mixture = em.GaussianMixtureConditional(3)
    n = GRID.shape[0]
    rng = np.random.default_rng(0)
    scales = rng.uniform(0.2, 20, 3)
    means = rng.uniform(-5, 5, 3)
    logits = rng.normal(size=3)
    params = np.concatenate([np.tile(v, (n, 1)) for v in (scales, means, logits)], axis=1)
    dist = mixture.split(jnp.asarray(params, jnp.float32))  # (n, 9) -> (n, K=3, M=1)
    assert dist["weights"].shape == (n, 3, 1)
    total = jnp.sum(mixture.likelihood(GRID[:, None], dist))
    assert abs(float(total) - 1.0) < 1e-3
    # Equal components give the single Gaussian.
    same = jnp.asarray([[1.5] * 3 + [0.4] * 3 + [0.0] * 3], jnp.float32)
    got = mixture.likelihood(jnp.asarray([[1.0]]), mixture.split(same))
    want = em.GaussianConditional().likelihood(
        jnp.asarray([1.0]), {"means": jnp.asarray([0.4]), "scales": jnp.asarray([1.5])}
    )
    np.testing.assert_allclose(got[0], want, rtol=1e-5)


def test_factorized_density_sums_to_one_and_quantizes_around_medians():
    density = em.FactorizedDensity(channels=4)
    variables = density.init(jax.random.key(0), jnp.zeros((1, 1, 1, 4)))
    grid = jnp.broadcast_to(GRID[None, :, None, None], (1, GRID.shape[0], 1, 4))
    lik = density.apply(variables, grid, method=em.FactorizedDensity.likelihood)
    np.testing.assert_allclose(jnp.sum(lik, axis=(0, 1, 2)), np.ones(4), atol=1e-3)
    # Shift the median: eval-mode rounding happens around it.
    params = jax.tree_util.tree_map(lambda v: v, variables["params"])
    params["quantiles"] = params["quantiles"].at[:, 0, 1].set(0.25)
    x = jnp.full((1, 1, 1, 4), 1.6)
    x_hat, _ = density.apply({"params": params}, x)
    np.testing.assert_allclose(x_hat, 1.25)
    x_tilde, _ = density.apply({"params": params}, x, jax.random.key(1))
    assert np.all(np.abs(np.asarray(x_tilde) - 1.6) <= 0.5) and not np.allclose(x_tilde, 1.25)


def test_factorized_aux_loss_moves_only_quantiles():
    density = em.FactorizedDensity(channels=2)
    variables = density.init(jax.random.key(0), jnp.zeros((1, 1, 1, 2)))
    grads = jax.grad(lambda p: density.apply({"params": p}, method=em.FactorizedDensity.aux_loss))(
        variables["params"]
    )
    assert float(jnp.abs(grads["quantiles"]).sum()) > 0
    others = [v for k, v in grads.items() if k != "quantiles"]
    assert all(float(jnp.abs(v).sum()) == 0.0 for v in others)


def test_quantizers():
    x = jnp.asarray([0.4, 0.6, -1.5])
    np.testing.assert_array_equal(em.quantize(x), jnp.round(x))
    np.testing.assert_allclose(em.quantize(x, 0.3), [0.3, 0.3, -1.7], atol=1e-6)
    assert float(jax.grad(lambda v: em.straight_through_quantize(v, 0.3).sum())(x).sum()) == 3.0
    noisy = em.add_uniform_noise(jnp.zeros(10000), jax.random.key(0))
    assert float(jnp.max(jnp.abs(noisy))) <= 0.5 and abs(float(jnp.mean(noisy))) < 0.02
