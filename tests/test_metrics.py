"""metrics.py against tf.image.ssim_multiscale and a NumPy PSNR on natural Kodak crops."""

import io

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from jahp_jax.data.pipeline import read_image
from jahp_jax.models import metrics


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return np.asarray(Image.open(buffer).convert("RGB"))


@pytest.fixture(scope="module")
def pairs(shared_dir) -> list[tuple[np.ndarray, np.ndarray]]:
    """(original, distorted) float32 NHWC pairs in [0, 1]: JPEG and Gaussian noise, odd sizes."""
    rng = np.random.default_rng(0)
    out = []
    for name, (h, w) in (("kodim01", (256, 320)), ("kodim23", (201, 257))):
        image = read_image(shared_dir / "data" / "kodak" / f"{name}.png")
        top, left = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
        crop = image[top:top + h, left:left + w]
        noisy = np.clip(crop + rng.normal(0, 12, crop.shape), 0, 255).astype(np.uint8)
        for distorted in (_jpeg(crop, 15), noisy):
            out.append((crop[None] / np.float32(255), distorted[None] / np.float32(255)))
    return out


def test_ms_ssim_matches_tensorflow(pairs):
    for x, y in pairs:
        expected = tf.image.ssim_multiscale(x, y, max_val=1.0).numpy()
        got = np.asarray(jax.jit(metrics.ms_ssim)(x, y))
        assert got.shape == (1,)
        np.testing.assert_allclose(got, expected, atol=1e-4)
        assert got[0] < 0.999  # the distortion is visible to the metric


def test_ms_ssim_batch_and_max_val(pairs):
    x, y = pairs[0]
    batch = np.concatenate([x, x]), np.concatenate([y, x])
    ms_ssim = jax.jit(metrics.ms_ssim, static_argnames="max_val")
    values = np.asarray(ms_ssim(*batch))
    np.testing.assert_allclose(values[1], 1.0, atol=1e-6)
    np.testing.assert_allclose(ms_ssim(x * 255, y * 255, max_val=255.0), values[:1], atol=1e-5)


def test_psnr_and_mse_match_numpy(pairs):
    for x, y in pairs:
        mse = np.mean((x.astype(np.float64) - y) ** 2)
        np.testing.assert_allclose(metrics.mse(x, y), [mse], rtol=1e-5)
        np.testing.assert_allclose(metrics.psnr(x, y), [10 * np.log10(1 / mse)], rtol=1e-5)
        np.testing.assert_allclose(metrics.psnr(x * 255, y * 255, max_val=255.0),
                                   [10 * np.log10(1 / mse)], rtol=1e-5)


def test_ms_ssim_db():
    np.testing.assert_allclose(metrics.ms_ssim_db(jnp.array([0.9, 0.99])), [10.0, 20.0], rtol=1e-5)


def test_gradients_are_finite(pairs):
    x, y = pairs[1]
    loss = jax.jit(jax.grad(lambda a: 1.0 - metrics.ms_ssim(x, a).mean()))
    grad = np.asarray(loss(jnp.asarray(y)))
    assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0
    grad_mse = np.asarray(jax.grad(lambda a: metrics.mse(x, a).mean())(jnp.asarray(y)))
    assert np.all(np.isfinite(grad_mse))


def test_bad_shapes_get_clear_errors():
    small = np.zeros((1, 100, 200, 3), np.float32)
    with pytest.raises(ValueError, match="at least 176x176"):
        metrics.ms_ssim(small, small)
    with pytest.raises(ValueError, match="same shape"):
        metrics.psnr(np.zeros((1, 8, 8, 3)), np.zeros((1, 8, 9, 3)))
    with pytest.raises(ValueError, match="NHWC"):
        metrics.mse(np.zeros((8, 8, 3)), np.zeros((8, 8, 3)))
