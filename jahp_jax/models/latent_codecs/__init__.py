"""Latent codecs, one per prior: see `base.LatentCodec` for the interface.

Adding a prior is one new module here with a `LatentCodec` subclass and one line in `PRIORS`.
A prior's own keyword arguments are its module fields named in `options` (see
`jahp_jax.models.config.ModelConfig.prior_options`).
"""

from jahp_jax.models.latent_codecs.base import CodingStep, LatentCodec
from jahp_jax.models.latent_codecs.channelwise import ChannelwisePrior
from jahp_jax.models.latent_codecs.checkerboard import CheckerboardPrior
from jahp_jax.models.latent_codecs.factorized import FactorizedPrior
from jahp_jax.models.latent_codecs.hyperprior import ScaleHyperprior
from jahp_jax.models.latent_codecs.mean_scale import MeanScaleHyperprior
from jahp_jax.models.latent_codecs.rasterscan import ContextPrior, JointPrior

PRIORS: dict[str, type[LatentCodec]] = {
    "factorized": FactorizedPrior,
    "hyperprior": ScaleHyperprior,
    "mean_scale": MeanScaleHyperprior,
    "context": ContextPrior,
    "joint": JointPrior,
    "checkerboard": CheckerboardPrior,
    "channelwise": ChannelwisePrior,
}

__all__ = ["PRIORS", "CodingStep", "LatentCodec"]
