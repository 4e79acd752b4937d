"""The rate-distortion objective (`jahp_jax.models.losses`) against its formula computed here by
hand with NumPy on small arrays: loss = (bits of y + bits of z) / pixels + lambda * D, with
D = 255^2 * MSE (x in [0, 1]) or 1 - MS-SSIM (tf.image.ssim_multiscale as the reference)."""

import jax
import numpy as np
import pytest
import tensorflow as tf

from jahp_jax.models import losses

LMBDA = 0.013
# Jitted: one compile instead of MS-SSIM's many ops one by one (4.4 -> 0.8 CPU-s).
rate_distortion_loss = jax.jit(losses.rate_distortion_loss, static_argnames="distortion")


def _outputs(rng: np.random.Generator, x: np.ndarray, noise: float) -> dict:
    """A forward pass's outputs: x_hat = x + noise (some values outside [0, 1]) and likelihoods
    of y (B, h, w, 8) and z (B, h/4, w/4, 4) in (0, 1]."""
    batch, height, width, _ = x.shape
    y_shape, z_shape = (batch, height // 4, width // 4, 8), (batch, height // 16, width // 16, 4)
    return {
        "x_hat": (x + rng.normal(0, noise, x.shape)).astype(np.float32),
        "likelihoods": {"y": rng.uniform(0.01, 1, y_shape).astype(np.float32),
                        "z": rng.uniform(0.2, 1, z_shape).astype(np.float32)},
    }  # fmt: skip


def _bits_per_pixel(outputs: dict, num_pixels: int) -> dict[str, float]:
    """{'bpp_y', 'bpp_z'?}: -sum(log2 likelihood) / (B * H * W), in float64."""
    return {f"bpp_{name}": -np.sum(np.log2(likelihoods.astype(np.float64))) / num_pixels
            for name, likelihoods in outputs["likelihoods"].items()}  # fmt: skip


def test_the_mse_objective_is_the_rate_plus_lambda_times_255_squared_mse():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (2, 32, 48, 3)).astype(np.float32)
    outputs = _outputs(rng, x, noise=0.05)
    loss, stats = rate_distortion_loss(x, outputs, LMBDA, distortion="mse")

    num_pixels = 2 * 32 * 48  # B * H * W
    rates = _bits_per_pixel(outputs, num_pixels)
    error = x.astype(np.float64) - outputs["x_hat"]
    mse = np.mean(error**2)  # of x_hat as the model outputs it, not clipped
    expected = rates["bpp_y"] + rates["bpp_z"] + LMBDA * 255**2 * mse
    clipped = np.clip(outputs["x_hat"], 0, 1) - x.astype(np.float64)
    psnr = np.mean([10 * np.log10(1 / np.mean(e**2)) for e in clipped])  # per image, then mean
    assert rates["bpp_z"] > 0.01 and LMBDA * 255**2 * mse > 1  # every term counts
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5)
    np.testing.assert_allclose(float(stats["loss"]), expected, rtol=1e-5)
    np.testing.assert_allclose(float(stats["bpp"]), rates["bpp_y"] + rates["bpp_z"], rtol=1e-5)
    for name in ("bpp_y", "bpp_z"):
        np.testing.assert_allclose(float(stats[name]), rates[name], rtol=1e-5)
    np.testing.assert_allclose(float(stats["mse"]), mse, rtol=1e-5)
    np.testing.assert_allclose(float(stats["psnr"]), psnr, rtol=1e-5)


def test_the_ms_ssim_objective_is_the_rate_plus_lambda_times_one_minus_ms_ssim():
    rng = np.random.default_rng(1)
    x = rng.uniform(0.2, 0.8, (1, 176, 176, 3)).astype(np.float32)  # MS-SSIM's smallest size
    outputs = _outputs(rng, x, noise=0.1)
    outputs["x_hat"] = np.clip(outputs["x_hat"], 0, 1)
    loss, stats = rate_distortion_loss(x, outputs, LMBDA, distortion="ms-ssim")

    rates = _bits_per_pixel(outputs, 176 * 176)
    ms_ssim = tf.image.ssim_multiscale(x, outputs["x_hat"], max_val=1.0).numpy().mean()
    expected = rates["bpp_y"] + rates["bpp_z"] + LMBDA * (1 - ms_ssim)
    assert 0.05 < 1 - ms_ssim < 0.95
    np.testing.assert_allclose(float(stats["ms_ssim"]), ms_ssim, atol=1e-4)
    np.testing.assert_allclose(float(loss), expected, rtol=1e-5, atol=LMBDA * 1e-4)


def test_a_model_without_z_has_only_the_rate_of_y():
    rng = np.random.default_rng(2)
    x = rng.uniform(0, 1, (1, 16, 16, 3)).astype(np.float32)
    outputs = _outputs(rng, x, noise=0.05)
    del outputs["likelihoods"]["z"]
    loss, stats = rate_distortion_loss(x, outputs, LMBDA, distortion="mse")
    bpp_y = _bits_per_pixel(outputs, 16 * 16)["bpp_y"]
    mse = np.mean((x.astype(np.float64) - outputs["x_hat"]) ** 2)
    assert "bpp_z" not in stats
    np.testing.assert_allclose(float(loss), bpp_y + LMBDA * 255**2 * mse, rtol=1e-5)


def test_an_unknown_distortion_is_refused():
    x = np.zeros((1, 16, 16, 3), np.float32)
    outputs = {"x_hat": x, "likelihoods": {"y": np.ones((1, 1, 1, 1), np.float32)}}
    with pytest.raises(ValueError, match="unknown distortion 'l1'"):
        losses.rate_distortion_loss(x, outputs, LMBDA, "l1")
