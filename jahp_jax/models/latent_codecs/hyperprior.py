"""`hyperprior`: zero-mean Gaussian y whose scales come from a side latent (Balle et al. 2018)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jahp_jax.models.entropy_models import FactorizedDensity
from jahp_jax.models.latent_codecs.base import LatentCodec, scale_hyper_transforms

Array = jax.Array


class ScaleHyperprior(LatentCodec):
    """z = h_a(|y|); y ~ N(0, s^2), s = h_s(z_hat); one coding step (scale tables)."""

    description = "zero-mean Gaussian, scales from a hyperprior (Balle 2018)"
    hyperprior = True
    supports_mixture = False

    def setup(self):
        self.h_a, self.h_s = scale_hyper_transforms(self.num_filters, self.num_latents)
        self.z_density = FactorizedDensity(self.num_filters)

    def hyper_analysis(self, y: Array) -> Array:
        return self.h_a(jnp.abs(y))

    def distribution(self, hyper: Array | None, y_hat: Array) -> dict[str, Array]:
        return {"scales": hyper, "means": jnp.zeros_like(hyper)}
