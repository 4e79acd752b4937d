"""cheng2020: the transforms of Cheng et al., CVPR 2020 ("Learned Image Compression with
Discretized Gaussian Mixture Likelihoods and Attention Modules"), as CompressAI 1.2.8's
`Cheng2020Anchor`, `Cheng2020Attention` and `Cheng2020AnchorCheckerboard` build them.

g_a: residual blocks with stride (3x3 convs, GDN), residual blocks, a last 3x3/2 conv; g_s: the
mirror with sub-pixel upsampling (IGDN) and a last sub-pixel conv to 3 channels. The attention
variant (`attention=True`) adds Cheng's simplified attention blocks (two in g_a, two in g_s).
h_a: five 3x3 convs (two of stride 2) with LeakyReLU; h_s: 3x3 convs and two sub-pixel convs.
These models tie M to N (the latent has N channels); their z has N channels too.

Every builder takes the family's options (here `attention`), so that a registry can pass them to
all four. Layer indices follow CompressAI's nn.Sequential (`layers_<i>` = PyTorch index i).
"""

from __future__ import annotations

from flax import linen as nn

from jahp_jax.nn.blocks import (
    AttentionBlock,
    ResidualBlock,
    ResidualBlockUpsample,
    ResidualBlockWithStride,
    conv3x3,
    subpel_conv3x3,
)
from jahp_jax.nn.layers import leaky_relu

NUM_FILTERS = 192  # N of the published models (CompressAI's zoo: 128 for the lowest rates)
NUM_LATENTS = 192  # M = N


def _check_sizes(num_filters: int, num_latents: int) -> None:
    if num_latents != num_filters:
        raise ValueError(
            f"cheng2020 has as many latent channels as filters (M = N), got N={num_filters}, "
            f"M={num_latents}"
        )


def analysis(num_filters: int, num_latents: int, attention: bool = False) -> nn.Module:
    """g_a: (B, H, W, 3) -> y (B, H/16, W/16, M)."""
    _check_sizes(num_filters, num_latents)
    n = num_filters
    if attention:
        layers = [
            ResidualBlockWithStride(n), ResidualBlock(n),
            ResidualBlockWithStride(n), AttentionBlock(n), ResidualBlock(n),
            ResidualBlockWithStride(n), ResidualBlock(n),
            conv3x3(num_latents, stride=2), AttentionBlock(num_latents),
        ]  # fmt: skip
    else:
        layers = [
            ResidualBlockWithStride(n), ResidualBlock(n),
            ResidualBlockWithStride(n), ResidualBlock(n),
            ResidualBlockWithStride(n), ResidualBlock(n),
            conv3x3(num_latents, stride=2),
        ]  # fmt: skip
    return nn.Sequential(layers)


def synthesis(num_filters: int, num_latents: int, attention: bool = False) -> nn.Module:
    """g_s: y_hat (B, h, w, M) -> x_hat (B, 16h, 16w, 3), not clipped."""
    _check_sizes(num_filters, num_latents)
    n = num_filters
    if attention:
        layers = [
            AttentionBlock(n), ResidualBlock(n), ResidualBlockUpsample(n),
            ResidualBlock(n), ResidualBlockUpsample(n),
            AttentionBlock(n), ResidualBlock(n), ResidualBlockUpsample(n),
            ResidualBlock(n), subpel_conv3x3(3, 2),
        ]  # fmt: skip
    else:
        layers = [
            ResidualBlock(n), ResidualBlockUpsample(n),
            ResidualBlock(n), ResidualBlockUpsample(n),
            ResidualBlock(n), ResidualBlockUpsample(n),
            ResidualBlock(n), subpel_conv3x3(3, 2),
        ]  # fmt: skip
    return nn.Sequential(layers)


def hyper_channels(num_filters: int, num_latents: int, attention: bool = False) -> int:
    """z's channels: N."""
    return num_filters


def hyper_analysis(num_filters: int, num_latents: int, attention: bool = False) -> nn.Module:
    """h_a: y (B, h, w, M) -> z (B, h/4, w/4, N); 3x3 convs, LeakyReLU between (the same with and
    without attention)."""
    n = num_filters
    return nn.Sequential(
        [
            conv3x3(n), leaky_relu, conv3x3(n), leaky_relu,
            conv3x3(n, stride=2), leaky_relu,
            conv3x3(n), leaky_relu, conv3x3(n, stride=2),
        ]
    )  # fmt: skip


def hyper_synthesis(
    num_filters: int, num_latents: int, out_channels: int, attention: bool = False
) -> nn.Module:
    """h_s: z_hat (B, h/4, w/4, N) -> (B, h, w, out_channels); the reference's out_channels is 2N
    (the hyper params of the M = N latents, before the entropy parameters); the same with and
    without attention."""
    n = num_filters
    return nn.Sequential(
        [
            conv3x3(n), leaky_relu, subpel_conv3x3(n, 2), leaky_relu,
            conv3x3(n * 3 // 2), leaky_relu, subpel_conv3x3(n * 3 // 2, 2), leaky_relu,
            conv3x3(out_channels),
        ]
    )  # fmt: skip
