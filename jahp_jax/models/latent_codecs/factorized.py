"""`factorized`: a learned fully factorized density on y (Balle et al. 2018), no side latent."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jahp_jax.models.entropy_models import FactorizedDensity
from jahp_jax.models.latent_codecs.base import LatentCodec

Array = jax.Array


class FactorizedPrior(LatentCodec):
    """y ~ a per-channel learned density, rounded around its medians; per-channel tables."""

    description = "fully factorized density on y (Balle et al. 2018)"
    supports_mixture = False

    def setup(self):
        self.y_density = FactorizedDensity(self.num_latents)

    @property
    def conditional(self) -> None:
        return None

    def distribution(self, hyper: Array | None, y_hat: Array) -> dict[str, Array]:
        """{'medians'}: the learned medians broadcast to y_hat's shape (the rounding offsets)."""
        return {"medians": jnp.broadcast_to(self.y_density.medians(), y_hat.shape)}

    def y_offset(self, dist: dict[str, Array]) -> Array:
        return dist["medians"]

    def y_likelihood(self, y_hat: Array, dist: dict[str, Array]) -> Array:
        return self.y_density.likelihood(y_hat)

    def factorized_densities(self) -> dict[str, FactorizedDensity]:
        return {"y": self.y_density}

    def step_inputs(self, step, y_pad, hyper):
        """The step's (not yet decoded, zero) y_hat (P, M): only its shape is read."""
        return (y_pad[step.rows, step.cols],)

    def step_distribution(self, kind: int, *inputs: Array) -> dict[str, Array]:
        (y_hat,) = inputs
        return self.distribution(None, y_hat)
