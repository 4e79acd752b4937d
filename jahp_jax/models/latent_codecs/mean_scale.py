"""`mean_scale`: Gaussian (or mixture) y with means and scales from a side latent (Minnen 2018)."""

from __future__ import annotations

import jax

from jahp_jax.models.entropy_models import FactorizedDensity
from jahp_jax.models.latent_codecs.base import LatentCodec, mean_scale_hyper_transforms

Array = jax.Array


class MeanScaleHyperprior(LatentCodec):
    """z = h_a(y); the distribution parameters of y are h_s(z_hat); one coding step."""

    description = "Gaussian with mean and scale from a hyperprior"
    hyperprior = True

    def setup(self):
        n, m = self.num_filters, self.num_latents
        self.h_a, self.h_s = mean_scale_hyper_transforms(
            n, m, self.conditional.params_per_latent * m
        )
        self.z_density = FactorizedDensity(n)

    def distribution(self, hyper: Array | None, y_hat: Array) -> dict[str, Array]:
        return self.conditional.split(hyper)
