"""Layers of the transforms: strided and transposed convolutions, GDN/IGDN, the masked context conv.

All layers take and return NHWC float arrays. Kernels are stored HWIO. Padding is always the
PyTorch/CompressAI convention `kernel_size // 2` on every side, so a stride-2 5x5 conv maps H to
H / 2 exactly and the matching transposed conv maps H back to 2 H (the published models use it).
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

Array = jax.Array

_DIMENSION_NUMBERS = ("NHWC", "HWIO", "NHWC")


# ---------------------------------------------------------------------------------------------
# Lower bound with a gradient that can push values back above the bound.
# ---------------------------------------------------------------------------------------------
@jax.custom_vjp
def lower_bound(x: Array, bound: float | Array) -> Array:
    """max(x, bound); the gradient passes where x >= bound or where it would increase x.

    The plain `maximum` would cut the gradient below the bound for good (Balle et al. 2018, used for
    GDN parameters, Gaussian scales and likelihoods).
    """
    return jnp.maximum(x, bound)


def _lower_bound_fwd(x: Array, bound: float | Array):
    return jnp.maximum(x, bound), (x, bound)


def _lower_bound_bwd(residual, g: Array):
    x, bound = residual
    pass_through = (x >= bound) | (g < 0)
    return g * pass_through.astype(g.dtype), jnp.zeros_like(jnp.asarray(bound, dtype=x.dtype))


lower_bound.defvjp(_lower_bound_fwd, _lower_bound_bwd)


# ---------------------------------------------------------------------------------------------
# Convolutions.
# ---------------------------------------------------------------------------------------------
def _padding(kernel_size: int) -> tuple[tuple[int, int], tuple[int, int]]:
    pad = kernel_size // 2
    return ((pad, pad), (pad, pad))


def strided_conv(x: Array, kernel: Array, stride: int) -> Array:
    """Conv, padding k // 2: (B, H, W, I) -> (B, ceil(H / stride), ceil(W / stride), O)."""
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(stride, stride),
        padding=_padding(kernel.shape[0]),
        dimension_numbers=_DIMENSION_NUMBERS,
    )


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def conv_transpose(x: Array, kernel: Array, stride: int) -> Array:
    """Transposed conv, the exact adjoint of `strided_conv(., kernel, stride)` on a 2x larger input.

    x: (B, H, W, C_in); kernel: (k, k, C_out, C_in), i.e. the HWIO kernel of the strided conv that
    maps C_out -> C_in (this is also PyTorch's ConvTranspose2d weight (C_in, C_out, k, k) in HWIO
    order). Returns (B, stride*H, stride*W, C_out). Equals PyTorch's ConvTranspose2d with
    padding=k//2 and output_padding=stride-1.

    The custom VJP computes both gradients with strided convs only: XLA:CPU's weight gradient of an
    lhs-dilated conv is ~10x slower (jax-ml/jax#31662).
    """
    return _conv_transpose_forward(x, kernel, stride)


def _conv_transpose_forward(x: Array, kernel: Array, stride: int) -> Array:
    batch, height, width, _ = x.shape
    out_shape = (batch, stride * height, stride * width, kernel.shape[2])
    (y,) = jax.linear_transpose(
        lambda u: strided_conv(u, kernel, stride), jax.ShapeDtypeStruct(out_shape, x.dtype)
    )(x)
    return y


def _conv_transpose_fwd(x: Array, kernel: Array, stride: int):
    return _conv_transpose_forward(x, kernel, stride), (x, kernel)


def _conv_transpose_bwd(stride: int, residual, g: Array):
    x, kernel = residual
    # y = S_k^T x  =>  dL/dx = S_k g, and <g, S_k^T x> = <S_k g, x> gives dL/dk as the weight
    # gradient of the strided conv S_k(g) against the cotangent x.
    grad_x, pullback = jax.vjp(lambda k: strided_conv(g, k, stride), kernel)
    (grad_kernel,) = pullback(x)
    return grad_x, grad_kernel


conv_transpose.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)


class Conv(nn.Module):
    """Conv2d, padding k//2 (stride 2 halves H and W). Params: kernel (k, k, I, O), bias (O,)."""

    features: int
    kernel_size: int = 5
    stride: int = 2

    @nn.compact
    def __call__(self, x: Array) -> Array:
        k = self.kernel_size
        kernel = self.param(
            "kernel",
            nn.initializers.variance_scaling(1.0, "fan_in", "uniform"),
            (k, k, x.shape[-1], self.features),
        )
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        return strided_conv(x, kernel.astype(x.dtype), self.stride) + bias.astype(x.dtype)


class ConvTranspose(nn.Module):
    """Transposed conv (stride 2 doubles H and W). Params: kernel (k, k, O, I), bias (O,)."""

    features: int
    kernel_size: int = 5
    stride: int = 2

    @nn.compact
    def __call__(self, x: Array) -> Array:
        k = self.kernel_size
        kernel = self.param(
            "kernel",
            nn.initializers.variance_scaling(1.0, "fan_in", "uniform", in_axis=-1, out_axis=-2),
            (k, k, self.features, x.shape[-1]),
        )
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        return conv_transpose(x, kernel.astype(x.dtype), self.stride) + bias.astype(x.dtype)


def causal_mask(kernel_size: int) -> np.ndarray:
    """Mask type A (kernel_size, kernel_size): 1 strictly before the centre in raster order."""
    mask = np.zeros((kernel_size, kernel_size), np.float32)
    centre = kernel_size // 2
    mask[:centre, :] = 1.0
    mask[centre, :centre] = 1.0
    return mask


class MaskedConv(nn.Module):
    """Stride-1 conv whose output at (i, j) sees only inputs strictly before (i, j) in raster order.

    This is the context model of Minnen et al. 2018 (PixelCNN mask type A). Params: kernel
    (k, k, I, O), stored unmasked (as in CompressAI) and masked at use; bias (O,).
    """

    features: int
    kernel_size: int = 5

    @nn.compact
    def __call__(self, x: Array) -> Array:
        k = self.kernel_size
        kernel = self.param(
            "kernel",
            nn.initializers.variance_scaling(1.0, "fan_in", "uniform"),
            (k, k, x.shape[-1], self.features),
        )
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        mask = jnp.asarray(causal_mask(k), x.dtype)[:, :, None, None]
        return strided_conv(x, kernel.astype(x.dtype) * mask, 1) + bias.astype(x.dtype)


# ---------------------------------------------------------------------------------------------
# GDN.
# ---------------------------------------------------------------------------------------------
REPARAM_PEDESTAL = 2.0**-36  # (2^-18)^2, Balle's reparameterisation offset squared


def nonnegative_param(param: Array, minimum: float) -> Array:
    """Decode a non-negative reparameterised value: max(p, sqrt(min + pedestal))^2 - pedestal."""
    bound = float(np.sqrt(minimum + REPARAM_PEDESTAL))
    return jnp.square(lower_bound(param, bound)) - REPARAM_PEDESTAL


def nonnegative_init(value: np.ndarray) -> np.ndarray:
    """Inverse of `nonnegative_param` (for values above the minimum): sqrt(v + pedestal)."""
    return np.sqrt(np.maximum(value + REPARAM_PEDESTAL, REPARAM_PEDESTAL)).astype(np.float32)


class GDN(nn.Module):
    """Generalised divisive normalisation (Balle et al. 2016), or its inverse.

    y_i = x_i / sqrt(beta_i + sum_j gamma_ij x_j^2)   (inverse: multiply instead of divide).
    Params `beta` (C,) and `gamma` (C, C) (gamma[i, j] weighs x_j for output i, as in CompressAI)
    are stored reparameterised (sqrt(v + 2^-36)) with lower bounds beta >= 1e-6, gamma >= 0;
    initialised to beta = 1, gamma = 0.1 I.
    """

    inverse: bool = False
    beta_min: float = 1e-6
    gamma_init: float = 0.1

    @nn.compact
    def __call__(self, x: Array) -> Array:
        channels = x.shape[-1]
        beta_param = self.param(
            "beta", lambda _key, shape: jnp.asarray(nonnegative_init(np.ones(shape))), (channels,)
        )
        gamma_param = self.param(
            "gamma",
            lambda _key, shape: jnp.asarray(
                nonnegative_init(self.gamma_init * np.eye(shape[0], dtype=np.float32))
            ),
            (channels, channels),
        )
        beta = nonnegative_param(beta_param, self.beta_min).astype(x.dtype)
        gamma = nonnegative_param(gamma_param, 0.0).astype(x.dtype)
        norm = jnp.einsum("bhwj,ij->bhwi", jnp.square(x), gamma) + beta
        return x * jnp.sqrt(norm) if self.inverse else x * jax.lax.rsqrt(norm)


def leaky_relu(x: Array) -> Array:
    """LeakyReLU with PyTorch's default slope 0.01 (the published models use it)."""
    return nn.leaky_relu(x, negative_slope=0.01)
