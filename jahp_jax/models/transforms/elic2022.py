"""ELIC (He et al., CVPR 2022, "ELIC: Efficient Learned Image Compression with Unevenly Grouped
Space-Channel Contextual Adaptive Coding"): its transforms and the networks of its prior, as
CompressAI 1.2.8's `Elic2022Official` and `Elic2022Chandelier` build them.

g_a: four 5x5/2 convs, three residual bottleneck blocks after each of the first three, Cheng's
attention block after the second stage and after the last conv; g_s: the mirror with 5x5/2
transposed convs. h_a: conv 3x3/1, conv 5x5/2, conv 5x5/2 (ReLU between, z has N channels);
h_s: deconv 5x5/2 (N), deconv 5x5/2 (3N/2), then a 3x3/1 layer to the hyper parameters: a
transposed conv to 2N in the official model, a conv to 2M in Chandelier's re-implementation.

The prior (composed from parts, `jahp_jax.models.latent_codecs.parts`: channel groups, each
coded in two checkerboard passes) uses three kinds of networks: the spatial context g_sp^(k), a
checkerboard-masked 5x5 conv g_k -> 2 g_k (the parts' `CheckerboardContext`), and two built here:
- `channel_context(k)`: g_ch^(k), from the decoded groups to 2 g_k channel-context params;
- `param_aggregation(k)`: 1x1 convs from [spatial ctx, channel ctx (k > 0), hyper params] to the
  2 g_k Gaussian params (scales then means).

The four transform builders take the family's option `variant` ("official" or "chandelier"), so
that a registry can pass it to all four. Layer indices follow CompressAI's nn.Sequential
(`layers_<i>` = PyTorch index i).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from flax import linen as nn

from jahp_jax.nn.blocks import AttentionBlock, ResidualBottleneckBlock, conv1x1
from jahp_jax.nn.layers import Conv, ConvTranspose

NUM_FILTERS = 192
NUM_LATENTS = 320
VARIANTS = ("official", "chandelier")  # Elic2022Official, Elic2022Chandelier
CHANNEL_CONTEXT_WIDTHS = (224, 128)  # hidden widths of g_ch^(k)
CHANDELIER_AGGREGATION_WIDTH = 512  # the second hidden width of Chandelier's param aggregation


def default_groups(num_latents: int) -> tuple[int, ...]:
    """The published uneven channel groups: 16, 16, 32, 64, M - 128 (M > 128)."""
    if num_latents <= 128:
        raise ValueError(f"ELIC's default groups need M > 128, got M={num_latents}; give groups")
    return (16, 16, 32, 64, num_latents - 128)


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"unknown ELIC variant '{variant}'; choose one of {VARIANTS}")


def _bottlenecks(n: int) -> list[nn.Module]:
    return [ResidualBottleneckBlock(n) for _ in range(3)]


def analysis(num_filters: int, num_latents: int, variant: str = "official") -> nn.Module:
    """g_a: (B, H, W, 3) -> y (B, H/16, W/16, M) (the same in both variants)."""
    _check_variant(variant)
    n = num_filters
    return nn.Sequential(
        [
            Conv(n), *_bottlenecks(n),
            Conv(n), *_bottlenecks(n), AttentionBlock(n),
            Conv(n), *_bottlenecks(n),
            Conv(num_latents), AttentionBlock(num_latents),
        ]
    )  # fmt: skip


def synthesis(num_filters: int, num_latents: int, variant: str = "official") -> nn.Module:
    """g_s: y_hat (B, h, w, M) -> x_hat (B, 16h, 16w, 3), not clipped (both variants)."""
    _check_variant(variant)
    n = num_filters
    return nn.Sequential(
        [
            AttentionBlock(num_latents),
            ConvTranspose(n), *_bottlenecks(n),
            ConvTranspose(n), AttentionBlock(n), *_bottlenecks(n),
            ConvTranspose(n), *_bottlenecks(n),
            ConvTranspose(3),
        ]
    )  # fmt: skip


def hyper_channels(num_filters: int, num_latents: int, variant: str = "official") -> int:
    """z's channels: N."""
    return num_filters


def hyper_analysis(num_filters: int, num_latents: int, variant: str = "official") -> nn.Module:
    """h_a: y (B, h, w, M) -> z (B, h/4, w/4, N): conv 3x3/1, conv 5x5/2, conv 5x5/2, ReLU (both
    variants)."""
    _check_variant(variant)
    n = num_filters
    return nn.Sequential([Conv(n, 3, 1), nn.relu, Conv(n), nn.relu, Conv(n)])


def hyper_synthesis(
    num_filters: int, num_latents: int, out_channels: int, variant: str = "official"
) -> nn.Module:
    """h_s: z_hat (B, h/4, w/4, N) -> (B, h, w, out_channels): deconv 5x5/2 (N), deconv 5x5/2
    (3N/2), ReLU between, then a 3x3/1 transposed conv (official; the reference's out_channels is
    2N) or conv (Chandelier; 2M)."""
    _check_variant(variant)
    n = num_filters
    last = ConvTranspose if variant == "official" else Conv
    return nn.Sequential(
        [
            ConvTranspose(n), nn.relu, ConvTranspose(n * 3 // 2), nn.relu,
            last(out_channels, 3, 1),
        ]
    )  # fmt: skip


def hyper_params_channels(num_filters: int, num_latents: int, variant: str = "official") -> int:
    """The width of h_s's output in the reference: 2N (official) or 2M (Chandelier)."""
    _check_variant(variant)
    return 2 * num_filters if variant == "official" else 2 * num_latents


def channel_context_inputs(groups: Sequence[int], k: int, variant: str = "official") -> int:
    """Channels g_ch^(k) reads (k >= 1): all earlier groups (official), or the first group and,
    for k > 1, group k - 1 (Chandelier)."""
    _check_variant(variant)
    if not 1 <= k < len(groups):
        raise ValueError(f"channel context index k must be in [1, {len(groups)}), got {k}")
    if variant == "official":
        return sum(groups[:k])
    return groups[0] + (groups[k - 1] if k > 1 else 0)


def channel_context(groups: Sequence[int], k: int) -> nn.Module:
    """g_ch^(k), k >= 1: (B, h, w, `channel_context_inputs`) -> (B, h, w, 2 g_k) by 5x5 convs
    224 -> 128 -> 2 g_k, ReLU between (the same layers in both variants)."""
    first, second = CHANNEL_CONTEXT_WIDTHS
    return nn.Sequential(
        [Conv(first, 5, 1), nn.relu, Conv(second, 5, 1), nn.relu, Conv(2 * groups[k], 5, 1)]
    )


def _linspace_float32(start: float, stop: float, steps: int) -> np.ndarray:
    """torch.linspace in float32 as PyTorch computes it (from both ends toward the middle), so
    that flooring gives PyTorch's integer widths."""
    start32, stop32 = np.float32(start), np.float32(stop)
    step = (stop32 - start32) / np.float32(steps - 1)
    index = np.arange(steps)
    from_start = start32 + step * index.astype(np.float32)
    from_stop = stop32 - step * (steps - 1 - index).astype(np.float32)
    return np.where(index < steps // 2, from_start, from_stop).astype(np.float32)


def param_aggregation_widths(
    num_filters: int, num_latents: int, groups: Sequence[int], k: int, variant: str = "official"
) -> tuple[int, ...]:
    """Channel widths (input, hidden, hidden, output) of the param aggregation of group k.

    Input: spatial context (2 g_k), channel context (2 g_k, k > 0) and the hyper params
    (`hyper_params_channels`). Official: CompressAI's `sequential_channel_ramp` (a linear ramp of
    4 widths from the input to 2 g_k, floored, hidden widths at least 2N); Chandelier: 2M, 512.
    """
    hyper = hyper_params_channels(num_filters, num_latents, variant)
    in_channels = 2 * groups[k] + (2 * groups[k] if k > 0 else 0) + hyper
    out_channels = 2 * groups[k]
    if variant == "chandelier":
        return (in_channels, 2 * num_latents, CHANDELIER_AGGREGATION_WIDTH, out_channels)
    ramp = np.floor(_linspace_float32(in_channels, out_channels, 4)).astype(int)
    hidden = np.maximum(ramp[1:-1], 2 * num_filters)
    return (in_channels, int(hidden[0]), int(hidden[1]), out_channels)


def param_aggregation(
    num_filters: int, num_latents: int, groups: Sequence[int], k: int, variant: str = "official"
) -> nn.Module:
    """Param aggregation of group k: (B, h, w, input width) -> (B, h, w, 2 g_k) [scales, means]
    (official; Chandelier's layout is [means, scales]: CompressAI's chunks=("means", "scales")),
    three 1x1 convs with ReLU between (`param_aggregation_widths`)."""
    _, first, second, out = param_aggregation_widths(num_filters, num_latents, groups, k, variant)
    return nn.Sequential([conv1x1(first), nn.relu, conv1x1(second), nn.relu, conv1x1(out)])
