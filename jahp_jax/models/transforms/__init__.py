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
from collections.abc import Callable

from flax import linen as nn

from jahp_jax.models.transforms import mbt2018


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


def _family(module, description: str, downsampling: int = 16) -> Transform:
    return Transform(
        description,
        module.analysis,
        module.synthesis,
        module.hyper_analysis,
        module.hyper_synthesis,
        module.hyper_channels,
        downsampling,
    )


TRANSFORMS: dict[str, Transform] = {
    "mbt2018": _family(mbt2018, "4 strided 5x5 convs + GDN; mean-scale hyper transforms "
                       "(Minnen et al. 2018)"),  # fmt: skip
}

DEFAULT_TRANSFORM = "mbt2018"

__all__ = ["DEFAULT_TRANSFORM", "TRANSFORMS", "Transform"]
