"""`mean_scale`: Gaussian (or mixture) y with means and scales from a side latent (Minnen 2018)."""

from __future__ import annotations

from jahp_jax.models.entropy_models import make_conditional
from jahp_jax.models.latent_codecs.base import Composition
from jahp_jax.models.latent_codecs.parts import (
    DirectParameters,
    HyperFeatures,
    NoContext,
    hyperprior,
)
from jahp_jax.models.latent_codecs.prior import Prior, PriorArgs


def compose(args: PriorArgs) -> Composition:
    density = make_conditional(args.mixture_components)
    return Composition(
        side=hyperprior(args, density.params_per_latent * args.num_latents),
        groups=((0, args.num_latents),),
        conditioning=HyperFeatures(),
        spatial=NoContext(),
        parameters=DirectParameters("gaussian"),
        density=density,
    )


PRIOR = Prior(compose, "Gaussian with mean and scale from a hyperprior (Minnen et al. 2018)")
