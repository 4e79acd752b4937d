"""Residual and attention blocks of the transforms after Minnen 2018 (cheng2020, ELIC, TCM).

The blocks of CompressAI's `compressai.layers` (Cheng et al. 2020; He et al. 2022), written in
Flax on the project's conv layers (`jahp_jax.nn.layers`), NHWC. Each block names its children as
the PyTorch module does, and sequences are `nn.Sequential` (children `layers_<i>` at the PyTorch
index i), so a PyTorch state_dict name maps to a Flax parameter path one to one
(`g_a.0.conv1.weight` -> `g_a/layers_0/conv1/kernel`; `jahp_jax.io.convert_followups`).

Padding is PyTorch's `kernel_size // 2` throughout (`layers.Conv`): a stride-2 3x3 conv maps H to
ceil(H / 2). LeakyReLU has PyTorch's slope 0.01.
"""

from __future__ import annotations

from functools import partial

import jax
from flax import linen as nn

from jahp_jax.nn.layers import GDN, Conv, leaky_relu

Array = jax.Array


def conv3x3(features: int, stride: int = 1, name: str | None = None) -> Conv:
    """3x3 conv, padding 1 (CompressAI's `conv3x3`)."""
    return Conv(features, 3, stride, name=name)


def conv1x1(features: int, stride: int = 1, name: str | None = None) -> Conv:
    """1x1 conv (CompressAI's `conv1x1`)."""
    return Conv(features, 1, stride, name=name)


def pixel_shuffle(x: Array, upscale: int) -> Array:
    """PyTorch's PixelShuffle in NHWC: (B, H, W, C r^2) -> (B, H r, W r, C).

    Output pixel (h r + i, w r + j) of channel c is input channel c r^2 + i r + j at (h, w), as in
    PyTorch, so the preceding conv's output channels keep PyTorch's order.
    """
    batch, height, width, channels = x.shape
    out_channels = channels // (upscale * upscale)
    x = x.reshape(batch, height, width, out_channels, upscale, upscale)
    x = x.transpose(0, 1, 4, 2, 5, 3)  # (B, H, i, W, j, C)
    return x.reshape(batch, height * upscale, width * upscale, out_channels)


def subpel_conv3x3(features: int, upscale: int, name: str | None = None) -> nn.Sequential:
    """3x3 conv to features * upscale^2 channels, then `pixel_shuffle` (CompressAI's
    `subpel_conv3x3`): (B, H, W, I) -> (B, H r, W r, features). Params under `layers_0`."""
    shuffle = partial(pixel_shuffle, upscale=upscale)
    return nn.Sequential([conv3x3(features * upscale * upscale), shuffle], name=name)


class ResidualBlockWithStride(nn.Module):
    """conv3x3/stride, LeakyReLU, conv3x3, GDN, plus a 1x1/stride skip conv where the stride is not
    1 or the width changes: (B, H, W, I) -> (B, H / stride, W / stride, features).
    Children: conv1, conv2, gdn, skip."""

    features: int
    stride: int = 2

    def setup(self):
        self.conv1 = conv3x3(self.features, self.stride)
        self.conv2 = conv3x3(self.features)
        self.gdn = GDN()
        self.skip = conv1x1(self.features, self.stride)  # params only where it is called

    def __call__(self, x: Array) -> Array:
        out = self.gdn(self.conv2(leaky_relu(self.conv1(x))))
        if self.stride != 1 or x.shape[-1] != self.features:
            x = self.skip(x)
        return out + x


class ResidualBlockUpsample(nn.Module):
    """Sub-pixel conv (x upscale), LeakyReLU, conv3x3, IGDN, plus a sub-pixel conv skip:
    (B, H, W, I) -> (B, H r, W r, features). Children: subpel_conv, conv, igdn, upsample."""

    features: int
    upscale: int = 2

    def setup(self):
        self.subpel_conv = subpel_conv3x3(self.features, self.upscale)
        self.conv = conv3x3(self.features)
        self.igdn = GDN(inverse=True)
        self.upsample = subpel_conv3x3(self.features, self.upscale)

    def __call__(self, x: Array) -> Array:
        out = self.igdn(self.conv(leaky_relu(self.subpel_conv(x))))
        return out + self.upsample(x)


class ResidualBlock(nn.Module):
    """conv3x3, LeakyReLU, conv3x3, LeakyReLU, plus the input (through a 1x1 `skip` conv where the
    width changes): (B, H, W, I) -> (B, H, W, features). Children: conv1, conv2, skip."""

    features: int

    def setup(self):
        self.conv1 = conv3x3(self.features)
        self.conv2 = conv3x3(self.features)
        self.skip = conv1x1(self.features)  # params only where it is called

    def __call__(self, x: Array) -> Array:
        out = leaky_relu(self.conv2(leaky_relu(self.conv1(x))))
        if x.shape[-1] != self.features:
            x = self.skip(x)
        return out + x


class ResidualBottleneckBlock(nn.Module):
    """ELIC's bottleneck block (He et al. 2022): 1x1 conv to min(I, features) / 2 channels, ReLU,
    3x3 conv, ReLU, 1x1 conv to features, plus the input (1x1 `skip` conv where the width
    changes): (B, H, W, I) -> (B, H, W, features). Children: conv1, conv2, conv3, skip."""

    features: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        middle = min(x.shape[-1], self.features) // 2
        out = nn.relu(conv1x1(middle, name="conv1")(x))
        out = nn.relu(conv3x3(middle, name="conv2")(out))
        out = conv1x1(self.features, name="conv3")(out)
        if x.shape[-1] != self.features:
            x = conv1x1(self.features, name="skip")(x)
        return out + x


class ResidualUnit(nn.Module):
    """relu(x + conv1x1(C) o ReLU o conv3x3(C / 2) o ReLU o conv1x1(C / 2) (x)), C = `features`
    (the unit of Cheng's attention block). Child: conv (an nn.Sequential)."""

    features: int

    def setup(self):
        half = self.features // 2
        self.conv = nn.Sequential(
            [conv1x1(half), nn.relu, conv3x3(half), nn.relu, conv1x1(self.features)]
        )

    def __call__(self, x: Array) -> Array:
        return nn.relu(x + self.conv(x))


def attention_trunk(features: int) -> nn.Sequential:
    """Three `ResidualUnit`s: the trunk branch ("conv_a") of Cheng's attention block."""
    return nn.Sequential([ResidualUnit(features) for _ in range(3)])


def attention_mask_branch(features: int) -> nn.Sequential:
    """Three `ResidualUnit`s and a 1x1 conv: the mask branch ("conv_b") of Cheng's attention
    block, whose sigmoid gates the trunk."""
    return nn.Sequential([*(ResidualUnit(features) for _ in range(3)), conv1x1(features)])


class AttentionBlock(nn.Module):
    """Cheng et al. 2020's simplified attention block (no non-local part), CompressAI's
    `AttentionBlock`: x + conv_a(x) * sigmoid(conv_b(x)); (B, H, W, C) -> same, C = `features`."""

    features: int

    def setup(self):
        self.conv_a = attention_trunk(self.features)
        self.conv_b = attention_mask_branch(self.features)

    def __call__(self, x: Array) -> Array:
        return x + self.conv_a(x) * nn.sigmoid(self.conv_b(x))
