"""Rate-distortion objective: rate in bits per pixel from likelihoods, MSE or MS-SSIM distortion."""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

from jahp_jax.models import metrics

Array = jax.Array

DISTORTIONS = ("mse", "ms-ssim")


def bits(likelihoods: Array) -> Array:
    """Total information content -sum(log2 p) in bits."""
    return -jnp.sum(jnp.log2(likelihoods))


def bits_per_pixel(likelihoods: dict[str, Array], num_pixels: int) -> dict[str, Array]:
    """{'y': ..., 'z': ...} likelihoods -> {'bpp_y', 'bpp_z', 'bpp'}: bits / num_pixels (B*H*W)."""
    rates = {f"bpp_{name}": bits(lik) / num_pixels for name, lik in likelihoods.items()}
    rates["bpp"] = sum(rates.values())
    return rates


def rate_distortion_loss(
    x: Array,
    outputs: dict,
    lmbda: float,
    distortion: Literal["mse", "ms-ssim"] = "mse",
) -> tuple[Array, dict[str, Array]]:
    """loss = bpp + lmbda * D, D = 255^2 * MSE (x in [0, 1]) or 1 - MS-SSIM.

    The MSE convention is that of the published models (lambda 0.0018 ... 0.18 for MSE).
    x, outputs['x_hat']: (B, H, W, 3). Returns (loss, metrics) with batch-mean metrics:
    loss, bpp, bpp_y, bpp_z, mse (on [0, 1]), psnr (dB), ms_ssim.
    """
    if distortion not in DISTORTIONS:
        raise ValueError(f"unknown distortion '{distortion}'; choose one of {DISTORTIONS}")
    batch, height, width, _ = x.shape
    x_hat = outputs["x_hat"]
    stats = bits_per_pixel(outputs["likelihoods"], batch * height * width)
    stats["mse"] = jnp.mean(jnp.square(x - x_hat))
    x_hat_clipped = jnp.clip(x_hat, 0.0, 1.0)
    stats["psnr"] = jnp.mean(metrics.psnr(x, x_hat_clipped))
    if distortion == "mse":
        distortion_term = 255.0**2 * stats["mse"]
    else:
        stats["ms_ssim"] = jnp.mean(metrics.ms_ssim(x, x_hat))
        distortion_term = 1.0 - stats["ms_ssim"]
    stats["loss"] = stats["bpp"] + lmbda * distortion_term
    return stats["loss"], stats
