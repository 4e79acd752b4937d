"""`checkerboard`: the mean-scale hyperprior with a checkerboard 5x5 context (He et al. 2021).

Anchors are coded first from the hyperprior alone (their context features are zero); the other
half then from the hyperprior and a 5x5 conv over the decoded anchors
(`parts.CheckerboardContext`). Two coding steps whatever the image size. Option `anchors`: 'odd'
(the positions with r + c odd; the default) or 'even' (CompressAI's
`Cheng2020AnchorCheckerboard`).
"""

from __future__ import annotations

from collections.abc import Mapping

from jahp_jax.models.entropy_models import make_conditional
from jahp_jax.models.latent_codecs.base import Composition, Network
from jahp_jax.models.latent_codecs.parts import (
    CheckerboardContext,
    EntropyParameters,
    HyperFeatures,
    entropy_parameters_network,
    hyperprior,
)
from jahp_jax.models.latent_codecs.prior import Prior, PriorArgs

PARITY = {"even": 0, "odd": 1}  # the anchors: (r + c) % 2 == parity


def check_options(options: Mapping) -> None:
    if options.get("anchors", "odd") not in PARITY:
        raise ValueError(f"checkerboard option anchors must be 'odd' or 'even', got "
                         f"{options['anchors']!r}")  # fmt: skip


def compose(args: PriorArgs) -> Composition:
    m = args.num_latents
    density = make_conditional(args.mixture_components)
    return Composition(
        side=hyperprior(args, 2 * m),
        groups=((0, m),),
        conditioning=HyperFeatures(),
        spatial=CheckerboardContext((2 * m,), parity=PARITY[args.options.get("anchors", "odd")]),
        parameters=EntropyParameters(
            (Network(entropy_parameters_network, (4 * m, density.params_per_latent * m)),)
        ),
        density=density,
    )


PRIOR = Prior(
    compose,
    "mean-scale hyperprior + checkerboard 5x5 context, two passes (He 2021)",
    options=("anchors",),
    check_options=check_options,
)
