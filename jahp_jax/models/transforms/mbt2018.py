"""The transforms of Minnen, Balle & Toderici 2018 (and Balle et al. 2018): g_a = 4 strided 5x5
convs with GDN between, g_s its mirror with inverse GDN; the mean-scale hyper transforms h_a =
conv 3x3/1, conv 5x5/2, conv 5x5/2 and h_s = deconv 5x5/2, deconv 5x5/2, conv 3x3/1, LeakyReLU
between. Parameter names `layers_<i>` mirror CompressAI's `mbt2018` layer indices."""

from __future__ import annotations

from flax import linen as nn

from jahp_jax.nn.layers import GDN, Conv, ConvTranspose, leaky_relu


def analysis(num_filters: int, num_latents: int) -> nn.Module:
    """g_a: (B, H, W, 3) -> y (B, H/16, W/16, M)."""
    n = num_filters
    return nn.Sequential([Conv(n), GDN(), Conv(n), GDN(), Conv(n), GDN(), Conv(num_latents)])


def synthesis(num_filters: int, num_latents: int) -> nn.Module:
    """g_s: y_hat (B, h, w, M) -> x_hat (B, 16h, 16w, 3), not clipped."""
    n = num_filters
    return nn.Sequential(
        [
            ConvTranspose(n), GDN(inverse=True),
            ConvTranspose(n), GDN(inverse=True),
            ConvTranspose(n), GDN(inverse=True),
            ConvTranspose(3),
        ]
    )  # fmt: skip


def hyper_analysis(num_filters: int, num_latents: int) -> nn.Module:
    """h_a: y -> z (B, h/4, w/4, N): conv 3x3/1, conv 5x5/2, conv 5x5/2, LeakyReLU between."""
    n = num_filters
    return nn.Sequential([Conv(n, 3, 1), leaky_relu, Conv(n), leaky_relu, Conv(n)])


def hyper_synthesis(num_filters: int, num_latents: int, out_channels: int) -> nn.Module:
    """h_s: z_hat -> (B, h, w, out_channels): deconv 5x5/2 (M), deconv 5x5/2 (3M/2), conv 3x3/1."""
    m = num_latents
    return nn.Sequential(
        [
            ConvTranspose(m), leaky_relu,
            ConvTranspose(m * 3 // 2), leaky_relu,
            Conv(out_channels, 3, 1),
        ]
    )  # fmt: skip


def hyper_channels(num_filters: int, num_latents: int) -> int:
    """Channels of z: N."""
    return num_filters
