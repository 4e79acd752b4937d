"""`tcm`: TCM's channel-wise prior (Liu et al. 2023): ms2020's slices (5 of M/5 by default),
each support [mean (scale) hyper features, decoded slices] passed through Swin attention
(SWAtten) before its 3x3-conv slice transform, and latent residual prediction from the attended
mean support (`parts.SliceTransforms` with attention). Separate mean and scale hyper syntheses
(`h_mean_s`, `h_scale_s`). Attention and GELU have no integer form, so neither has this prior.

Options: `num_slices` (5), `max_support_slices` (5).
"""

from __future__ import annotations

from jahp_jax.models.entropy_models import GaussianConditional
from jahp_jax.models.latent_codecs.base import Composition, Network
from jahp_jax.models.latent_codecs.channelwise import check_options, slice_bounds
from jahp_jax.models.latent_codecs.parts import (
    DirectParameters,
    LatentResidualPrediction,
    NoContext,
    SliceTransforms,
    hyperprior,
)
from jahp_jax.models.latent_codecs.prior import Prior, PriorArgs
from jahp_jax.models.transforms import tcm


def compose(args: PriorArgs) -> Composition:
    m = args.num_latents
    num_slices = args.options.get("num_slices", tcm.NUM_SLICES)
    max_support = args.options.get("max_support_slices", tcm.MAX_SUPPORT_SLICES)
    bounds = tuple(slice_bounds(m, num_slices))
    supports = [m + bounds[min(k, max_support)][0] for k in range(len(bounds))]
    widths = [stop - start for start, stop in bounds]

    def networks(builder, inputs):
        return tuple(Network(builder, (value,)) for value in inputs)

    return Composition(
        side=hyperprior(args, m, m, names=("h_mean_s", "h_scale_s")),
        groups=bounds,
        conditioning=SliceTransforms(
            networks(tcm.slice_transform, widths),
            networks(tcm.slice_transform, widths),
            max_support,
            mean_attention=networks(tcm.slice_attention, supports),
            scale_attention=networks(tcm.slice_attention, supports),
        ),
        spatial=NoContext(),
        parameters=DirectParameters("dict"),
        density=GaussianConditional(),
        residual=LatentResidualPrediction(networks(tcm.slice_transform, widths)),
        training="ste",
    )


PRIOR = Prior(
    compose,
    "channel slices with Swin attention on their context + LRP (Liu et al. 2023)",
    options=("num_slices", "max_support_slices"),
    check_options=check_options,
    supports_mixture=False,
    latent_alignment=tcm.WINDOW_SIZE,  # SWAtten's windows over y
    pytorch_init=True,  # as its transforms (`jahp_jax.models.transforms`)
)
