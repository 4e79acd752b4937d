"""Transforms: the analysis and synthesis networks (g_a/g_s) and the hyper transforms (h_a/h_s)
of one architecture family, registered by name (`--transform`).

A family is a module with five builders (`analysis`, `synthesis`, `hyper_analysis`,
`hyper_synthesis`, `hyper_channels`; see `mbt2018.py`) and one line in `TRANSFORMS`. Its
`downsampling` is the one home of the image -> y geometry: y is 1/`downsampling` of the image
(the hyperprior's z a further 1/4), so every tool that needs a latent's size or an image's
padding reads it from here (`jahp_jax.models.compression_model.CompressionModel`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

from flax import linen as nn

from jahp_jax.models.transforms import cheng2020, elic2022, mbt2018, tcm


@dataclasses.dataclass(frozen=True)
class Transform:
    """One architecture family's builders. `analysis(N, M)`: (B, H, W, 3) -> (B, H/d, W/d, M);
    `synthesis(N, M)`: its mirror; `hyper_analysis(N, M)`: y -> z (B, h/4, w/4, Z) with Z =
    `hyper_channels(N, M)`; `hyper_synthesis(N, M, out)`: z_hat -> (B, h, w, out)."""

    description: str
    analysis: Callable[[int, int], nn.Module]
    synthesis: Callable[[int, int], nn.Module]
    hyper_analysis: Callable[[int, int], nn.Module]
    hyper_synthesis: Callable[[int, int, int], nn.Module]
    hyper_channels: Callable[[int, int], int]
    downsampling: int = 16  # d: y is 1/d of the image in each dimension
    alignment: int = 64  # images are padded to a multiple of this (at least 4 d)
    pytorch_init: bool = False  # initialised as its PyTorch reference (`init_params`)


def _family(
    module, description: str, alignment: int = 64, pytorch_init: bool = False, **options
) -> Transform:
    """A family module's five builders, each given `options` (e.g. cheng2020's attention)."""

    def bound(builder):
        return functools.partial(builder, **options) if options else builder

    return Transform(
        description,
        bound(module.analysis),
        bound(module.synthesis),
        bound(module.hyper_analysis),
        bound(module.hyper_synthesis),
        bound(module.hyper_channels),
        alignment=alignment,
        pytorch_init=pytorch_init,
    )


TRANSFORMS: dict[str, Transform] = {
    "mbt2018": _family(mbt2018, "4 strided 5x5 convs + GDN; mean-scale hyper transforms "
                       "(Minnen et al. 2018)"),  # fmt: skip
    "cheng2020-anchor": _family(cheng2020, "residual blocks, sub-pixel upsampling; 3x3 hyper "
                                "transforms (Cheng et al. 2020)"),  # fmt: skip
    "cheng2020-attn": _family(cheng2020, "cheng2020-anchor with Cheng's simplified attention "
                              "blocks (Cheng et al. 2020)", attention=True),  # fmt: skip
    "elic2022": _family(elic2022, "residual bottleneck blocks + attention; h_s ends in a 3x3 "
                        "transposed conv (He et al. 2022)"),  # fmt: skip
    "elic2022-chandelier": _family(elic2022, "ELIC's transforms, h_s ending in a 3x3 conv "
                                   "(Chandelier's re-implementation)", variant="chandelier"),
    # TCM's residual mixture blocks keep activations in range only at PyTorch's initial
    # scales: at Flax's (3x the variance) each block doubles them, x_hat reaching 1e13 at N=64.
    "tcm": _family(tcm, "Transformer-CNN mixture blocks, Swin attention (Liu et al. 2023)",
                   alignment=128, pytorch_init=True),  # fmt: skip
}

DEFAULT_TRANSFORM = "mbt2018"

__all__ = ["DEFAULT_TRANSFORM", "TRANSFORMS", "Transform"]
