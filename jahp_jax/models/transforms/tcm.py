"""TCM (Liu et al., CVPR 2023, "Learned Image Compression with Mixed Transformer-CNN
Architectures"): its transforms and the networks of its channel-wise prior, as the authors'
`models/tcm.py` (github.com/jmliu206/LIC_TCM, MIT) builds them.

g_a: a residual block with stride (3 -> 2N), then three stages of `config[i]` Transformer-CNN
mixture blocks (`ConvTransBlock`, N channels to each branch, alternately W-MSA and SW-MSA with
heads of `head_dim[i]` channels, windows of 8) each followed by a downsampling layer (two residual
blocks with stride, then a 3x3/2 conv to M). g_s mirrors it with residual upsampling blocks and a
last sub-pixel conv to 3 channels (stages 3, 4, 5 of config/head_dim). h_a: a residual block with
stride (M -> 2N), `config[0]` mixture blocks (heads of 32, windows of 4), a 3x3/2 conv to 192
channels (192 whatever N); h_s (one for the means, one for the scales: `hyper_synthesis` called
twice): a residual upsampling block (192 -> 2N), `config[3]` mixture blocks, a sub-pixel conv to M.
N is half the width of the mixture blocks (the paper's C = 2N; the published models N = 64, 128).

The prior's networks (the lead composes the prior): y is cut into `NUM_SLICES` slices of M / 5
channels; slice i's mean (and, with separate weights, scale) support is [h_s means, decoded slices
0..min(i, 5) - 1], fed to `slice_attention` (SWAtten, back to the support's width) and then
`slice_transform` (3x3 convs 224 -> 128 -> M / 5, GELU); the latent residual prediction reads
[attended mean support, y_hat slice i] through another `slice_transform`, and
y_hat_i += 0.5 tanh(lrp). Reference names: atten_mean.i / atten_scale.i (SWAtten),
cc_mean_transforms.i / cc_scale_transforms.i, lrp_transforms.i.

Every transform builder takes the family's options (config, head_dim, window_size; the hyper
transforms read only config), so that a registry can pass them to all four. Images must be
multiples of 128 pixels on both sides (the windows of 8 at H/16 in the prior and of 4 at H/32 in
h_a), as in the reference, whose evaluation pads to 128.
"""

from __future__ import annotations

from collections.abc import Sequence

from flax import linen as nn

from jahp_jax.nn.attention import ConvTransBlock, SWAtten, gelu
from jahp_jax.nn.blocks import (
    ResidualBlockUpsample,
    ResidualBlockWithStride,
    conv3x3,
    subpel_conv3x3,
)
from jahp_jax.nn.layers import Conv

NUM_FILTERS = 128  # N (the published "large" model; 64 for the others)
NUM_LATENTS = 320  # M
CONFIG = (2, 2, 2, 2, 2, 2)  # mixture blocks per stage: g_a's three, then g_s's three
HEAD_DIM = (8, 16, 32, 32, 16, 8)  # channels per attention head, per stage
WINDOW_SIZE = 8  # of the transforms and of SWAtten
HYPER_WINDOW_SIZE = 4
HYPER_HEAD_DIM = 32
HYPER_CHANNELS = 192  # z's channels, whatever N
NUM_SLICES = 5
MAX_SUPPORT_SLICES = 5
SLICE_TRANSFORM_WIDTHS = (224, 128)  # hidden widths of cc_*_transforms and lrp_transforms
ATTENTION_HEAD_DIM = 16  # SWAtten's heads
ATTENTION_INTER_CHANNELS = 128  # SWAtten's inner width


def _check_options(config: Sequence[int], head_dim: Sequence[int]) -> None:
    if len(config) != 6 or len(head_dim) != 6:
        raise ValueError(
            f"TCM's config and head_dim need 6 entries (3 stages of g_a, 3 of g_s), got "
            f"config={tuple(config)}, head_dim={tuple(head_dim)}"
        )


def _mixture_blocks(n: int, count: int, head_dim: int, window_size: int) -> list[nn.Module]:
    """`count` ConvTransBlocks on 2N channels, W-MSA first, then alternating with SW-MSA."""
    return [ConvTransBlock(n, n, head_dim, window_size, shifted=bool(i % 2)) for i in range(count)]


def analysis(
    num_filters: int,
    num_latents: int,
    config: Sequence[int] = CONFIG,
    head_dim: Sequence[int] = HEAD_DIM,
    window_size: int = WINDOW_SIZE,
) -> nn.Module:
    """g_a: (B, H, W, 3) -> y (B, H/16, W/16, M); H, W multiples of 8 window_size."""
    _check_options(config, head_dim)
    n = num_filters
    return nn.Sequential(
        [
            ResidualBlockWithStride(2 * n),
            *_mixture_blocks(n, config[0], head_dim[0], window_size),
            ResidualBlockWithStride(2 * n),
            *_mixture_blocks(n, config[1], head_dim[1], window_size),
            ResidualBlockWithStride(2 * n),
            *_mixture_blocks(n, config[2], head_dim[2], window_size),
            conv3x3(num_latents, stride=2),
        ]
    )  # fmt: skip


def synthesis(
    num_filters: int,
    num_latents: int,
    config: Sequence[int] = CONFIG,
    head_dim: Sequence[int] = HEAD_DIM,
    window_size: int = WINDOW_SIZE,
) -> nn.Module:
    """g_s: y_hat (B, h, w, M) -> x_hat (B, 16h, 16w, 3), not clipped; h, w multiples of
    window_size / 2."""
    _check_options(config, head_dim)
    n = num_filters
    return nn.Sequential(
        [
            ResidualBlockUpsample(2 * n),
            *_mixture_blocks(n, config[3], head_dim[3], window_size),
            ResidualBlockUpsample(2 * n),
            *_mixture_blocks(n, config[4], head_dim[4], window_size),
            ResidualBlockUpsample(2 * n),
            *_mixture_blocks(n, config[5], head_dim[5], window_size),
            subpel_conv3x3(3, 2),
        ]
    )  # fmt: skip


def hyper_channels(
    num_filters: int,
    num_latents: int,
    config: Sequence[int] = CONFIG,
    head_dim: Sequence[int] = HEAD_DIM,
    window_size: int = WINDOW_SIZE,
) -> int:
    """z's channels: 192, whatever N, M and the options."""
    return HYPER_CHANNELS


def hyper_analysis(
    num_filters: int,
    num_latents: int,
    config: Sequence[int] = CONFIG,
    head_dim: Sequence[int] = HEAD_DIM,
    window_size: int = WINDOW_SIZE,
) -> nn.Module:
    """h_a: y (B, h, w, M) -> z (B, h/4, w/4, 192); h, w multiples of 8 (windows of 4 at h/2).
    head_dim and window_size are the transforms' (unused: the hyper blocks fix heads of 32 and
    windows of 4); config[0] blocks."""
    _check_options(config, head_dim)
    n = num_filters
    return nn.Sequential(
        [
            ResidualBlockWithStride(2 * n),
            *_mixture_blocks(n, config[0], HYPER_HEAD_DIM, HYPER_WINDOW_SIZE),
            conv3x3(HYPER_CHANNELS, stride=2),
        ]
    )


def hyper_synthesis(
    num_filters: int,
    num_latents: int,
    out_channels: int,
    config: Sequence[int] = CONFIG,
    head_dim: Sequence[int] = HEAD_DIM,
    window_size: int = WINDOW_SIZE,
) -> nn.Module:
    """h_mean_s or h_scale_s: z_hat (B, h/4, w/4, 192) -> (B, h, w, out_channels); the
    reference's out_channels is M. config[3] blocks; head_dim and window_size as in
    `hyper_analysis` (unused)."""
    _check_options(config, head_dim)
    n = num_filters
    return nn.Sequential(
        [
            ResidualBlockUpsample(2 * n),
            *_mixture_blocks(n, config[3], HYPER_HEAD_DIM, HYPER_WINDOW_SIZE),
            subpel_conv3x3(out_channels, 2),
        ]
    )


def slice_channels(num_latents: int, num_slices: int = NUM_SLICES) -> int:
    """Channels of one slice: M / num_slices (the reference needs M divisible by it)."""
    if num_latents % num_slices:
        raise ValueError(
            f"TCM cuts y into {num_slices} equal slices: M={num_latents} is not "
            f"divisible by {num_slices}"
        )
    return num_latents // num_slices


def support_channels(
    num_latents: int,
    index: int,
    num_slices: int = NUM_SLICES,
    max_support_slices: int = MAX_SUPPORT_SLICES,
) -> int:
    """Channels of slice `index`'s mean (or scale) support: M + (M / slices) min(index, max)."""
    return num_latents + slice_channels(num_latents, num_slices) * min(index, max_support_slices)


def slice_attention(support: int) -> nn.Module:
    """atten_mean.i / atten_scale.i: SWAtten (B, h, w, support) -> (B, h, w, support); heads of
    16 channels, windows of 8, inner width 128; h, w multiples of 8."""
    return SWAtten(support, ATTENTION_HEAD_DIM, WINDOW_SIZE, ATTENTION_INTER_CHANNELS)


def slice_transform(out_channels: int) -> nn.Module:
    """cc_mean_transforms.i, cc_scale_transforms.i or lrp_transforms.i: (B, h, w, I) ->
    (B, h, w, out_channels) by 3x3 convs 224 -> 128 -> out_channels, exact GELU between. The
    reference's I: the support (cc_*) or the support plus one slice (lrp); out: M / slices."""
    first, second = SLICE_TRANSFORM_WIDTHS
    return nn.Sequential(
        [Conv(first, 3, 1), gelu, Conv(second, 3, 1), gelu, Conv(out_channels, 3, 1)]
    )
