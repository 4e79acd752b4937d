"""Priors: latent codecs composed of parts (`base.LatentCodec`, `parts`), registered by name.

A prior is one short module with a `compose(PriorArgs) -> Composition` and one line in `PRIORS`
(docs/architecture.md walks through an example). A prior's own keyword arguments are named in its
`Prior.options` (see `jahp_jax.models.config.ModelConfig.prior_options`).
"""

from jahp_jax.models.latent_codecs import (
    channelwise,
    checkerboard,
    elic2022,
    factorized,
    hyperprior,
    mean_scale,
    rasterscan,
    tcm,
)
from jahp_jax.models.latent_codecs.base import CodingStep, Composition, LatentCodec
from jahp_jax.models.latent_codecs.prior import Prior, PriorArgs

PRIORS: dict[str, Prior] = {
    "factorized": factorized.PRIOR,
    "hyperprior": hyperprior.PRIOR,
    "mean_scale": mean_scale.PRIOR,
    "context": rasterscan.CONTEXT,
    "joint": rasterscan.JOINT,
    "checkerboard": checkerboard.PRIOR,
    "channelwise": channelwise.PRIOR,
    "elic2022": elic2022.PRIOR,
    "tcm": tcm.PRIOR,
}

__all__ = ["PRIORS", "CodingStep", "Composition", "LatentCodec", "Prior", "PriorArgs"]
