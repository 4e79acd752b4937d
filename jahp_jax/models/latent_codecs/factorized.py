"""`factorized`: a learned fully factorized density on y (Balle et al. 2018), no side latent."""

from __future__ import annotations

from jahp_jax.models.latent_codecs.base import Composition
from jahp_jax.models.latent_codecs.parts import DirectParameters, LatentShape, NoContext
from jahp_jax.models.latent_codecs.prior import Prior, PriorArgs


def compose(args: PriorArgs) -> Composition:
    return Composition(
        side=None,
        groups=((0, args.num_latents),),
        conditioning=LatentShape(),
        spatial=NoContext(),
        parameters=DirectParameters("medians"),
        density=None,
    )


PRIOR = Prior(
    compose, "fully factorized density on y (Balle et al. 2018)", supports_mixture=False
)
