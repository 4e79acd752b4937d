"""`channelwise`: the channel-wise autoregressive prior of Minnen & Singh, ICIP 2020 (ms2020).

y is split into `num_slices` channel slices (10 of 32 channels at the published M = 320; any M
is split as evenly as possible), each coded in one step, all positions at once, with a Gaussian
whose mean and scale come from 5x5-conv "slice transforms" of the mean (scale) hyper features and
of the first min(i, `max_support_slices`) decoded slices (`parts.SliceTransforms`); the decoded
slice is then corrected by latent residual prediction, y_hat += 0.5 tanh(lrp(mean support,
y_hat)). Separate mean and scale hyper syntheses (`h_s`, `h_s_scales`, M each). As in
tensorflow-compression's models/ms2020.py, the slices the decoder and the later slices see are
rounded with a straight-through gradient also in training (only the rate term sees noise); the
`straight_through` flag is therefore moot here. Hidden widths of the slice transforms: 224 and 128
at M = 320, scaled with M.
"""

from __future__ import annotations

from collections.abc import Mapping

from flax import linen as nn

from jahp_jax.models.entropy_models import GaussianConditional
from jahp_jax.models.latent_codecs.base import Composition, Network, check_positive_int
from jahp_jax.models.latent_codecs.parts import (
    DirectParameters,
    LatentResidualPrediction,
    NoContext,
    SliceTransforms,
    hyperprior,
)
from jahp_jax.models.latent_codecs.prior import Prior, PriorArgs
from jahp_jax.nn.layers import Conv

NUM_SLICES = 10
MAX_SUPPORT_SLICES = 5


def slice_bounds(num_latents: int, num_slices: int = NUM_SLICES) -> list[tuple[int, int]]:
    """[(start, stop)] of each channel slice: min(num_slices, M) slices, as even as possible."""
    count = min(num_slices, num_latents)
    edges = [round(i * num_latents / count) for i in range(count + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def slice_transform(m: int, out_channels: int) -> nn.Module:
    """conv 5x5/1 (7M/10), conv 5x5/1 (2M/5), conv 3x3/1 (out_channels), ReLU between."""
    return nn.Sequential(
        [
            Conv(max(1, m * 7 // 10), 5, 1), nn.relu,
            Conv(max(1, m * 2 // 5), 5, 1), nn.relu,
            Conv(out_channels, 3, 1),
        ]
    )  # fmt: skip


def check_options(options: Mapping) -> None:
    for name, value in options.items():
        check_positive_int(f"channelwise option {name}", value)


def compose(args: PriorArgs) -> Composition:
    m = args.num_latents
    bounds = tuple(slice_bounds(m, args.options.get("num_slices", NUM_SLICES)))
    networks = tuple(Network(slice_transform, (m, stop - start)) for start, stop in bounds)
    return Composition(
        side=hyperprior(args, m, m, names=("h_s", "h_s_scales")),
        groups=bounds,
        conditioning=SliceTransforms(
            networks, networks, args.options.get("max_support_slices", MAX_SUPPORT_SLICES)
        ),
        spatial=NoContext(),
        parameters=DirectParameters("dict"),
        density=GaussianConditional(),
        residual=LatentResidualPrediction(networks),
        training="ste",
    )


PRIOR = Prior(
    compose,
    "channel-wise autoregressive slices + LRP (Minnen & Singh 2020)",
    options=("num_slices", "max_support_slices"),
    check_options=check_options,
    supports_mixture=False,
)
