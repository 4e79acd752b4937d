"""Image-quality metrics in JAX: MSE, PSNR and MS-SSIM (Wang et al. 2003).

All functions take batches of NHWC float images (any value range given by ``max_val``; 1.0 for
images in [0, 1]) and return one value per image, shape [N]. They are jit-able and
differentiable, so ``1 - ms_ssim(x, x_hat)`` can serve as a training loss. MS-SSIM follows the
conventions of ``tf.image.ssim_multiscale``: 11x11 Gaussian window (sigma 1.5), VALID filtering,
K1=0.01, K2=0.03, 2x2 average-pool downsampling (symmetric padding of odd sizes), ReLU on the
per-scale terms, product over scales per colour channel, then the mean over channels.
"""

import jax
import jax.numpy as jnp

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
SSIM_FILTER_SIZE = 11
SSIM_FILTER_SIGMA = 1.5
SSIM_K1 = 0.01
SSIM_K2 = 0.03


def _check_pair(x: jax.Array, x_hat: jax.Array) -> None:
    if x.ndim != 4 or x.shape != x_hat.shape:
        raise ValueError(
            f"expected two NHWC batches of the same shape, got {x.shape} and {x_hat.shape}"
        )


def mse(x: jax.Array, x_hat: jax.Array) -> jax.Array:
    """Mean squared error per image: [N, H, W, C] x2 -> [N], in squared value units."""
    _check_pair(x, x_hat)
    diff = jnp.asarray(x, jnp.float32) - jnp.asarray(x_hat, jnp.float32)
    return jnp.mean(jnp.square(diff), axis=(1, 2, 3))


def psnr(x: jax.Array, x_hat: jax.Array, max_val: float = 1.0) -> jax.Array:
    """Peak signal-to-noise ratio per image in dB: [N, H, W, C] x2 -> [N]."""
    return 10.0 * jnp.log10(max_val**2 / mse(x, x_hat))


def _gaussian_window(size: int, sigma: float) -> jax.Array:
    """Normalised 1-D Gaussian of ``size`` taps, shape [size]."""
    coords = jnp.arange(size, dtype=jnp.float32) - (size - 1) / 2.0
    window = jnp.exp(-jnp.square(coords) / (2.0 * sigma**2))
    return window / jnp.sum(window)


def _filter_valid(images: jax.Array, window: jax.Array) -> jax.Array:
    """Separable filter, VALID padding: [N, H, W, C] -> [N, H-k+1, W-k+1, C].

    A weighted sum of k shifted slices per axis, which XLA fuses into elementwise loops: on CPU
    this is ~10x faster than `lax.conv_general_dilated` with one-channel planes (XLA:CPU's
    grouped conv is slower still); benchmarks/bench_metrics.py measures it.
    """
    size = window.shape[0]
    height, width = images.shape[1] - size + 1, images.shape[2] - size + 1
    rows = sum(window[i] * images[:, i : i + height] for i in range(size))
    return sum(window[i] * rows[:, :, i : i + width] for i in range(size))


def _ssim_terms(x: jax.Array, y: jax.Array, max_val: float) -> tuple[jax.Array, jax.Array]:
    """SSIM and contrast-structure term per image and channel: [N, H, W, C] x2 -> 2x [N, C]."""
    window = _gaussian_window(SSIM_FILTER_SIZE, SSIM_FILTER_SIGMA)
    c1 = (SSIM_K1 * max_val) ** 2
    c2 = (SSIM_K2 * max_val) ** 2
    moments = jnp.concatenate([x, y, x * y, jnp.square(x) + jnp.square(y)], axis=-1)
    mean_x, mean_y, mean_xy, mean_squares = jnp.split(_filter_valid(moments, window), 4, axis=-1)
    num0 = 2.0 * mean_x * mean_y
    den0 = jnp.square(mean_x) + jnp.square(mean_y)
    luminance = (num0 + c1) / (den0 + c1)
    contrast_structure = (2.0 * mean_xy - num0 + c2) / (mean_squares - den0 + c2)
    ssim = jnp.mean(luminance * contrast_structure, axis=(1, 2))
    return ssim, jnp.mean(contrast_structure, axis=(1, 2))


def _downsample(images: jax.Array) -> jax.Array:
    """2x2 average pooling, odd sizes padded symmetrically: [N, H, W, C] -> [N, ~H/2, ~W/2, C]."""
    pad_h, pad_w = images.shape[1] % 2, images.shape[2] % 2
    if pad_h or pad_w:
        images = jnp.pad(images, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="symmetric")
    n, h, w, c = images.shape
    return images.reshape(n, h // 2, 2, w // 2, 2, c).mean(axis=(2, 4))


def ms_ssim(x: jax.Array, x_hat: jax.Array, max_val: float = 1.0) -> jax.Array:
    """Multi-scale SSIM per image (5 scales): [N, H, W, C] x2 -> [N], in [0, 1].

    H and W must be at least 176 (the 11-tap window must fit the coarsest of 5 scales).
    """
    _check_pair(x, x_hat)
    min_side = SSIM_FILTER_SIZE * 2 ** (len(MS_SSIM_WEIGHTS) - 1)
    if min(x.shape[1], x.shape[2]) < min_side:
        raise ValueError(
            f"MS-SSIM needs images of at least {min_side}x{min_side} pixels, got "
            f"{x.shape[1]}x{x.shape[2]}"
        )
    x = jnp.asarray(x, jnp.float32)
    y = jnp.asarray(x_hat, jnp.float32)
    per_scale = []
    for scale in range(len(MS_SSIM_WEIGHTS)):
        if scale > 0:
            x, y = _downsample(x), _downsample(y)
        ssim, contrast_structure = _ssim_terms(x, y, max_val)
        per_scale.append(contrast_structure)
    per_scale[-1] = ssim
    stacked = jax.nn.relu(jnp.stack(per_scale, axis=-1))
    per_channel = jnp.prod(stacked ** jnp.asarray(MS_SSIM_WEIGHTS, jnp.float32), axis=-1)
    return jnp.mean(per_channel, axis=-1)


def ms_ssim_db(value: jax.Array) -> jax.Array:
    """MS-SSIM on a log scale in dB, -10 log10(1 - value); same shape as ``value``."""
    return -10.0 * jnp.log10(1.0 - value)
