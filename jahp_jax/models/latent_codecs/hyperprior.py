"""`hyperprior`: zero-mean Gaussian y whose scales come from a side latent (Balle et al. 2018).

Its hyper transforms are its own (whatever the transform family): h_a on |y| = conv 3x3/1,
conv 5x5/2, conv 5x5/2 (N), ReLU between; h_s = deconv 5x5/2, deconv 5x5/2 (N), conv 3x3/1 (M),
ReLU between and after (non-negative scales).
"""

from __future__ import annotations

from flax import linen as nn

from jahp_jax.models.entropy_models import GaussianConditional
from jahp_jax.models.latent_codecs.base import Composition, Network
from jahp_jax.models.latent_codecs.parts import (
    DirectParameters,
    HyperFeatures,
    Hyperprior,
    NoContext,
)
from jahp_jax.models.latent_codecs.prior import Prior, PriorArgs
from jahp_jax.nn.layers import Conv, ConvTranspose


def scale_hyper_analysis(n: int) -> nn.Module:
    return nn.Sequential([Conv(n, 3, 1), nn.relu, Conv(n), nn.relu, Conv(n)])


def scale_hyper_synthesis(n: int, m: int) -> nn.Module:
    return nn.Sequential(
        [ConvTranspose(n), nn.relu, ConvTranspose(n), nn.relu, Conv(m, 3, 1), nn.relu]
    )


def compose(args: PriorArgs) -> Composition:
    n, m = args.num_filters, args.num_latents
    return Composition(
        side=Hyperprior(
            Network(scale_hyper_analysis, (n,)),
            (("h_s", Network(scale_hyper_synthesis, (n, m))),),
            z_channels=n,
            on_magnitude=True,
        ),
        groups=((0, m),),
        conditioning=HyperFeatures(),
        spatial=NoContext(),
        parameters=DirectParameters("scales"),
        density=GaussianConditional(),
    )


PRIOR = Prior(
    compose, "zero-mean Gaussian, scales from a hyperprior (Balle et al. 2018)",
    supports_mixture=False,
)  # fmt: skip
