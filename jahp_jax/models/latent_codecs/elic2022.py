"""`elic2022`: ELIC's space-channel context (He et al. 2022): the hyperprior, y in uneven channel
groups coded one after another, group k reading a channel context of earlier groups
(`parts.ChannelContext`: all of them, or the first and the previous one in Chandelier's
re-implementation) and a checkerboard context inside the group (anchors at r + c even, as
CompressAI's `Elic2022Official`/`Elic2022Chandelier`); the param aggregation (1x1 convs) reads
[spatial context, channel context, hyper features]. Coded in 2 steps per group (10 by default).

Options: `variant` ('official' or 'chandelier': which earlier groups, h_s's width 2N or 2M and
the aggregation's widths) and `groups` (the group sizes, e.g. '16,16,32,64,192'; default
16, 16, 32, 64, M - 128, or M/16 x (1, 1, 2, 4, 8) for M <= 128).
"""

from __future__ import annotations

from collections.abc import Mapping

from jahp_jax.models.entropy_models import GaussianConditional
from jahp_jax.models.latent_codecs.base import Composition, Network
from jahp_jax.models.latent_codecs.parts import (
    ChannelContext,
    CheckerboardContext,
    EntropyParameters,
    hyperprior,
)
from jahp_jax.models.latent_codecs.prior import Prior, PriorArgs
from jahp_jax.models.transforms import elic2022


def group_sizes(num_latents: int, groups: str | None = None) -> tuple[int, ...]:
    """The channel group sizes: parsed from `groups` ('16,16,32,64,192'), else the default."""
    if groups is not None:
        return tuple(int(size) for size in str(groups).split(","))
    if num_latents > 128:
        return elic2022.default_groups(num_latents)
    g = num_latents // 16
    if g == 0:  # under 16 channels (small test models): one channel in each of the first four
        if num_latents < 5:
            raise ValueError(f"elic2022 needs M >= 5 (five channel groups), got M={num_latents}")
        return (1, 1, 1, 1, num_latents - 4)
    return (g, g, 2 * g, 4 * g, num_latents - 8 * g)


def check_options(options: Mapping) -> None:
    variant = options.get("variant", "official")
    if variant not in elic2022.VARIANTS:
        raise ValueError(f"elic2022 option variant must be one of {elic2022.VARIANTS}")
    if "groups" in options:
        try:
            sizes = group_sizes(1, options["groups"])
        except ValueError:
            sizes = ()
        if not sizes or min(sizes) < 1:
            raise ValueError(
                f"elic2022 option groups must be channel counts like '16,16,32,64,192', "
                f"got {options['groups']!r}"
            )


def compose(args: PriorArgs) -> Composition:
    n, m = args.num_filters, args.num_latents
    variant = args.options.get("variant", "official")
    sizes = group_sizes(m, args.options.get("groups"))
    if sum(sizes) != m or min(sizes) < 1:
        raise ValueError(f"elic2022 groups {sizes} must be >= 1 each and add up to M={m}")
    edges = [sum(sizes[:k]) for k in range(len(sizes) + 1)]
    hyper_channels = elic2022.hyper_params_channels(n, m, variant)
    return Composition(
        side=hyperprior(args, hyper_channels),
        groups=tuple(zip(edges[:-1], edges[1:], strict=True)),
        conditioning=ChannelContext(
            tuple(Network(elic2022.channel_context, (sizes, k)) for k in range(1, len(sizes))),
            earlier="all" if variant == "official" else "first_and_previous",
        ),
        spatial=CheckerboardContext(tuple(2 * size for size in sizes), parity=0),
        parameters=EntropyParameters(
            tuple(
                Network(elic2022.param_aggregation, (n, m, sizes, k, variant))
                for k in range(len(sizes))
            ),
            order=("context", "hyper"),
        ),
        density=GaussianConditional(),
        training="ste",
    )


PRIOR = Prior(
    compose,
    "uneven channel groups x checkerboard, space-channel context (He et al. 2022)",
    options=("variant", "groups"),
    check_options=check_options,
    supports_mixture=False,
)
