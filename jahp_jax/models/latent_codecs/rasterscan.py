"""`context` and `joint`: the 5x5 mask-A (raster-scan) context model of Minnen et al. 2018, alone
or beside the mean-scale hyperprior, coded in wavefronts (`parts.RasterContext`); the entropy
parameters read [hyper features (2M), context (2M)]."""

from __future__ import annotations

from jahp_jax.models.entropy_models import make_conditional
from jahp_jax.models.latent_codecs.base import Composition, Network
from jahp_jax.models.latent_codecs.parts import (
    EntropyParameters,
    HyperFeatures,
    RasterContext,
    entropy_parameters_network,
    hyperprior,
)
from jahp_jax.models.latent_codecs.prior import Prior, PriorArgs


def _compose(args: PriorArgs, with_hyperprior: bool) -> Composition:
    m = args.num_latents
    density = make_conditional(args.mixture_components)
    return Composition(
        side=hyperprior(args, 2 * m) if with_hyperprior else None,
        groups=((0, m),),
        conditioning=HyperFeatures(),
        spatial=RasterContext((2 * m,)),
        parameters=EntropyParameters(
            (Network(entropy_parameters_network, (4 * m, density.params_per_latent * m)),)
        ),
        density=density,
    )


def compose_context(args: PriorArgs) -> Composition:
    return _compose(args, with_hyperprior=False)


def compose_joint(args: PriorArgs) -> Composition:
    return _compose(args, with_hyperprior=True)


CONTEXT = Prior(compose_context, "Gaussian from an autoregressive 5x5 context model only")
JOINT = Prior(compose_joint, "context model + mean-scale hyperprior (Minnen et al. 2018)")
