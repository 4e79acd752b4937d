"""Layers of the transforms: strided and transposed convolutions, GDN/IGDN, the masked context conv.

All layers take and return NHWC float arrays. Kernels are stored HWIO. Padding is always the
PyTorch/CompressAI convention `kernel_size // 2` on every side, so a stride-2 5x5 conv maps H to
H / 2 exactly and the matching transposed conv maps H back to 2 H (the published models use it).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jahp_jax import runtime

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
#
# XLA:CPU runs stride-1 convolutions and plain strided convolutions through its fast (YNNPACK)
# kernels, but an lhs-dilated convolution (what autodiff and `lax.conv_transpose` emit for the
# input gradient of a strided conv and for a transposed conv) and the weight gradient of a conv
# whose window overhangs a small input fall back to a generic kernel, which inside a train step
# (where XLA runs independent ops concurrently on the cores) takes 2-3x the time of the fast ones
# (docs/performance.md, benchmarks/bench_conv.py, bench_train --compare_stock). On CPU,
# `strided_conv` therefore carries a custom VJP whose input gradient is the phase-decomposed
# (sub-pixel) transposed conv below: stride^2 stride-1 convs with the kernel's polyphase
# components, interleaved. `conv_transpose` uses the same function as its forward pass.
# A conv from few channels to many (g_a's first layer reads the 3 image channels, g_s's last
# writes them) gives YNNPACK's kernels a contraction of only k*k*3: there it is an im2col matmul
# instead (`_PATCH`: the k*k shifted views of the input side by side, times the kernel as a
# (k*k*I, O) matrix), with its transpose and weight gradient the matching matmuls; oneDNN (the
# default, `jahp_jax.runtime`) runs these layers faster as plain convs. On GPU and TPU
# the stock ops are used. Each way is a `_ConvPath` (forward, transpose, weight gradient) that
# `_conv_path` picks per kernel when a function is traced.
# ---------------------------------------------------------------------------------------------
CONV_IMPLEMENTATIONS = ("auto", "stock", "phase")
FEW_CHANNELS = 16  # convs from at most this many channels to more: `_PATCH` under YNNPACK
# Stride-1 1x1 convs over at least this many positions (B H W) run in oneDNN where XLA's convs
# do: from 1024 positions on a median 1.4x faster forward and 1.3x in training than YNNPACK's
# matmul, mixed below (benchmarks/bench_pointwise.py).
ONEDNN_POINTWISE_POSITIONS = 1024
_conv_implementation = "auto"


@contextlib.contextmanager
def conv_implementation(name: str) -> Iterator[None]:
    """Trace the convs inside the block with `name`: 'stock' (XLA's conv ops and their autodiff),
    'phase' (the CPU paths of `_conv_path`: phase-decomposed transposed convs, 1x1 convs as
    matmuls, convs from at most `FEW_CHANNELS` channels to more as im2col matmuls unless XLA
    runs convs in oneDNN) or 'auto' (phase on CPU, stock elsewhere).

    The choice is read when a function is traced, so jit a fresh function inside the block; the
    benchmarks use it to time both on the same machine in one run. Both give the same result to
    float32 rounding.
    """
    global _conv_implementation
    if name not in CONV_IMPLEMENTATIONS:
        raise ValueError(
            f"unknown conv implementation '{name}'; choose one of {CONV_IMPLEMENTATIONS}"
        )
    previous, _conv_implementation = _conv_implementation, name
    try:
        yield
    finally:
        _conv_implementation = previous


def _use_phase_convs() -> bool:
    if _conv_implementation == "auto":
        return jax.default_backend() == "cpu"
    return _conv_implementation == "phase"


def _padding(kernel_size: int) -> tuple[tuple[int, int], tuple[int, int]]:
    pad = kernel_size // 2
    return ((pad, pad), (pad, pad))


def _stock_conv(x: Array, kernel: Array, stride: int) -> Array:
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        window_strides=(stride, stride),
        padding=_padding(kernel.shape[0]),
        dimension_numbers=_DIMENSION_NUMBERS,
    )


def _phase_range(phase: int, stride: int, pad: int, size: int) -> tuple[int, int]:
    """[lo, hi): the m whose padded row phase + stride * m lies in [pad, pad + size)."""
    return -(-(pad - phase) // stride), -(-(pad + size - phase) // stride)


def _phase_transpose(g: Array, kernel: Array, stride: int, in_shape: tuple[int, int]) -> Array:
    """Adjoint of `strided_conv(., kernel, stride)` on (B, H, W, I) inputs, by polyphase parts.

    g: (B, ceil(H / s), ceil(W / s), O); kernel (k, k, I, O); in_shape (H, W). Returns
    (B, H, W, I). Input pixel (s m + p - pad) only receives the taps p, p + s, ... of the kernel:
    each of the s^2 output phases is a stride-1 VALID conv of g with that flipped sub-kernel.
    """
    k = kernel.shape[0]
    pad = k // 2
    batch, g_h, g_w, _ = g.shape
    in_h, in_w = in_shape
    phase_h, phase_w = -(-in_h // stride), -(-in_w // stride)
    zero = jnp.zeros((), g.dtype)
    rows = []
    for out_row_phase in range(stride):
        p = (out_row_phase + pad) % stride
        lo_h, hi_h = _phase_range(p, stride, pad, in_h)
        columns = []
        for out_col_phase in range(stride):
            q = (out_col_phase + pad) % stride
            lo_w, hi_w = _phase_range(q, stride, pad, in_w)
            sub = kernel[p::stride, q::stride]  # (A, C, I, O)
            taps_h, taps_w = sub.shape[:2]
            g_padded = jax.lax.pad(
                g,
                zero,
                ((0, 0, 0), (taps_h - 1 - lo_h, hi_h - g_h, 0),
                 (taps_w - 1 - lo_w, hi_w - g_w, 0), (0, 0, 0)),
            )  # fmt: skip
            part = jax.lax.conv_general_dilated(
                g_padded,
                jnp.swapaxes(sub[::-1, ::-1], 2, 3),
                window_strides=(1, 1),
                padding="VALID",
                dimension_numbers=_DIMENSION_NUMBERS,
            )  # (B, hi_h - lo_h, hi_w - lo_w, I)
            columns.append(
                jnp.pad(part, ((0, 0), (0, phase_h - part.shape[1]), (0, phase_w - part.shape[2]),
                               (0, 0)))
            )  # fmt: skip
        rows.append(jnp.stack(columns, axis=3))  # (B, phase_h, phase_w, s, I)
    interleaved = jnp.stack(rows, axis=2)  # (B, phase_h, s, phase_w, s, I)
    out = interleaved.reshape(batch, stride * phase_h, stride * phase_w, kernel.shape[2])
    return out[:, :in_h, :in_w]


def _autodiff_weight_grad(x: Array, g: Array, kernel_shape: tuple[int, ...], stride: int) -> Array:
    """dL/dkernel of `strided_conv(x, kernel, stride)` for the output cotangent g: (k, k, I, O),
    by XLA's own weight-gradient conv."""
    _, pullback = jax.vjp(
        lambda kernel: _stock_conv(x, kernel, stride), jnp.zeros(kernel_shape, x.dtype)
    )
    return pullback(g)[0]


def _stock_transpose(g: Array, kernel: Array, stride: int, in_shape: tuple[int, int]) -> Array:
    """Adjoint of `strided_conv(., kernel, stride)` on (B, H, W, I) inputs, by XLA's autodiff
    (an lhs-dilated conv). g: (B, ceil(H / s), ceil(W / s), O); in_shape (H, W)."""
    shape = jax.ShapeDtypeStruct((g.shape[0], *in_shape, kernel.shape[2]), g.dtype)
    (x,) = jax.linear_transpose(lambda u: _stock_conv(u, kernel, stride), shape)(g)
    return x


def _patches(x: Array, k: int, stride: int) -> Array:
    """im2col: (B, H, W, I) -> (B, ceil(H / s), ceil(W / s), k * k * I), taps in (row, col, I)
    order (the HWIO kernel's order), zero padding k // 2 as `strided_conv`."""
    pad = k // 2
    _, height, width, _ = x.shape
    out_h, out_w = -(-height // stride), -(-width // stride)
    padded = jnp.pad(
        x,
        ((0, 0), (pad, pad + stride * out_h - height), (pad, pad + stride * out_w - width), (0, 0)),
    )
    views = [
        padded[:, i : i + stride * out_h : stride, j : j + stride * out_w : stride]
        for i in range(k)
        for j in range(k)
    ]
    return jnp.concatenate(views, axis=-1)


def _patch_matmul(x: Array, kernel: Array, stride: int) -> Array:
    """`strided_conv` as one matmul of the im2col columns with the (k * k * I, O) kernel."""
    return _patches(x, kernel.shape[0], stride) @ kernel.reshape(-1, kernel.shape[-1])


def _patch_transpose(g: Array, kernel: Array, stride: int, in_shape: tuple[int, int]) -> Array:
    """Adjoint of `_patch_matmul` on (B, H, W, I) inputs: g @ kernel^T, the columns added back
    onto the pixels they were read from (col2im). g: (B, ceil(H / s), ceil(W / s), O)."""
    k, _, channels, _ = kernel.shape
    shape = jax.ShapeDtypeStruct((g.shape[0], *in_shape, channels), g.dtype)
    (x,) = jax.linear_transpose(lambda u: _patches(u, k, stride), shape)(
        g @ kernel.reshape(-1, kernel.shape[-1]).T
    )
    return x


def _patch_weight_grad(x: Array, g: Array, kernel_shape: tuple[int, ...], stride: int) -> Array:
    """dL/dkernel of `_patch_matmul(x, kernel, stride)`: one (k*k*I, B*H*W) x (B*H*W, O) matmul
    (autodiff of the forward matmul lays it out 2-4x slower on XLA:CPU, benchmarks/bench_conv)."""
    columns = _patches(x, kernel_shape[0], stride)
    flat = columns.reshape(-1, columns.shape[-1]).T @ g.reshape(-1, g.shape[-1])
    return flat.reshape(kernel_shape)


def _pointwise(x: Array, kernel: Array, stride: int) -> Array:
    """`strided_conv` of a 1x1 kernel as a matmul over channels (XLA:CPU's conv runs the
    entropy-parameter layers 1.4x slower on the coder's 16 positions)."""
    return x[:, ::stride, ::stride] @ kernel[0, 0]


def _pointwise_transpose(g: Array, kernel: Array, stride: int, in_shape: tuple[int, int]) -> Array:
    """Adjoint of `_pointwise` on (B, H, W, I) inputs: g @ kernel^T at every stride-th pixel."""
    x = jnp.zeros((g.shape[0], *in_shape, kernel.shape[2]), g.dtype)
    return x.at[:, ::stride, ::stride].set(g @ kernel[0, 0].T)


def _pointwise_weight_grad(x: Array, g: Array, kernel_shape: tuple[int, ...], stride: int) -> Array:
    """dL/dkernel of `_pointwise`: one (I, B H W) x (B H W, O) matmul."""
    columns = x[:, ::stride, ::stride].reshape(-1, kernel_shape[2])
    return (columns.T @ g.reshape(-1, kernel_shape[3])).reshape(kernel_shape)


def _pointwise_conv_transpose(
    g: Array, kernel: Array, stride: int, in_shape: tuple[int, int]
) -> Array:
    """Adjoint of a stride-1 1x1 conv: the 1x1 conv of g with the kernel's I and O swapped."""
    del stride, in_shape  # stride 1: the input has g's positions
    return _stock_conv(g, jnp.swapaxes(kernel, 2, 3), 1)


class _ConvPath(NamedTuple):
    """One way to compute a strided conv and its two adjoints (NHWC inputs, HWIO kernels)."""

    forward: Callable  # (x, kernel, stride) -> y
    transpose: Callable  # (g, kernel, stride, (H, W)) -> dL/dx
    weight_grad: Callable  # (x, g, kernel_shape, stride) -> dL/dkernel


_STOCK = _ConvPath(_stock_conv, _stock_transpose, _autodiff_weight_grad)
_PHASE = _ConvPath(_stock_conv, _phase_transpose, _autodiff_weight_grad)
_PATCH = _ConvPath(_patch_matmul, _patch_transpose, _patch_weight_grad)
_POINTWISE = _ConvPath(_pointwise, _pointwise_transpose, _pointwise_weight_grad)
_ONEDNN_POINTWISE = _ConvPath(_stock_conv, _pointwise_conv_transpose, _pointwise_weight_grad)


def _conv_path(kernel_shape: tuple[int, ...], stride: int = 1, positions: int = 0) -> _ConvPath:
    """The path of the conv with this (k, k, I, O) kernel on an input of `positions` pixels
    (B H W), chosen when it is traced: stock ops off CPU; on CPU, for 1x1 kernels a matmul, or
    at stride 1 on at least ONEDNN_POINTWISE_POSITIONS where XLA's convs run in oneDNN
    (`runtime.convs_in_onednn`, the default) XLA's conv and its transpose (the weight gradient
    stays a matmul); for few input channels widened to many (I <= FEW_CHANNELS < O, as at the
    image side of g_a and g_s) XLA's own conv under oneDNN and im2col under YNNPACK; else the
    phase-decomposed transpose."""
    if not _use_phase_convs():
        return _STOCK
    if kernel_shape[:2] == (1, 1):
        if stride == 1 and positions >= ONEDNN_POINTWISE_POSITIONS and runtime.convs_in_onednn():
            return _ONEDNN_POINTWISE
        return _POINTWISE
    if kernel_shape[2] <= FEW_CHANNELS < kernel_shape[3]:
        return _STOCK if runtime.convs_in_onednn() else _PATCH
    return _PHASE


def _conv_with_vjp(path: _ConvPath) -> Callable:
    """`strided_conv` by `path.forward`, with a custom VJP by `path.transpose` (dL/dx) and
    `path.weight_grad` (dL/dkernel)."""

    @partial(jax.custom_vjp, nondiff_argnums=(2,))
    def conv(x: Array, kernel: Array, stride: int) -> Array:
        return path.forward(x, kernel, stride)

    def conv_fwd(x: Array, kernel: Array, stride: int):
        return path.forward(x, kernel, stride), (x, kernel)

    def conv_bwd(stride: int, residual, g: Array):
        x, kernel = residual
        grad_x = path.transpose(g, kernel, stride, x.shape[1:3])
        return grad_x, path.weight_grad(x, g, kernel.shape, stride)

    conv.defvjp(conv_fwd, conv_bwd)
    return conv


_CUSTOM_VJP_CONVS = {
    path: _conv_with_vjp(path) for path in (_PHASE, _PATCH, _POINTWISE, _ONEDNN_POINTWISE)
}


def strided_conv(x: Array, kernel: Array, stride: int) -> Array:
    """Conv, padding k // 2: (B, H, W, I) -> (B, ceil(H / stride), ceil(W / stride), O)."""
    path = _conv_path(kernel.shape, stride, x.shape[0] * x.shape[1] * x.shape[2])
    if path is _STOCK:  # XLA's conv and its own autodiff
        return _stock_conv(x, kernel, stride)
    return _CUSTOM_VJP_CONVS[path](x, kernel, stride)


def channel_matmul(x: Array, kernel: Array) -> Array:
    """x (..., I) @ kernel (I, O) -> (..., O): on CPU a 1x1 conv (`strided_conv`'s path, so
    oneDNN where it is faster), elsewhere a matmul. For GDN's gamma and the Dense layers of the
    attention blocks."""
    if not _use_phase_convs():
        return x @ kernel
    pixels = x.reshape(1, -1, 1, x.shape[-1])
    return strided_conv(pixels, kernel[None, None], 1).reshape(*x.shape[:-1], kernel.shape[-1])


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
    _, height, width, _ = x.shape
    return _conv_path(kernel.shape).transpose(x, kernel, stride, (stride * height, stride * width))


def _conv_transpose_fwd(x: Array, kernel: Array, stride: int):
    return _conv_transpose_forward(x, kernel, stride), (x, kernel)


def _conv_transpose_bwd(stride: int, residual, g: Array):
    x, kernel = residual
    # y = S_k^T x  =>  dL/dx = S_k g, and <g, S_k^T x> = <S_k g, x> gives dL/dk as the weight
    # gradient of the strided conv S_k(g) against the cotangent x.
    path = _conv_path(kernel.shape)
    return path.forward(g, kernel, stride), path.weight_grad(g, x, kernel.shape, stride)


conv_transpose.defvjp(_conv_transpose_fwd, _conv_transpose_bwd)


@jax.custom_vjp
def _add_bias_by_matmul(y: Array, bias: Array) -> Array:
    return y + bias


def _add_bias_fwd(y: Array, bias: Array):
    return y + bias, None


def _add_bias_bwd(_, g: Array):
    rows = g.reshape(-1, g.shape[-1])
    return g, (jnp.ones((1, rows.shape[0]), g.dtype) @ rows)[0]


_add_bias_by_matmul.defvjp(_add_bias_fwd, _add_bias_bwd)


def add_bias(y: Array, bias: Array) -> Array:
    """y (..., C) + bias (C,). On CPU the bias gradient, the sum of y's cotangent over every
    position, is one (1, B H W) x (B H W, C) matmul: XLA:CPU rewrites that sum over (B, H, W)
    into a strided reduce-window that runs several times slower than memory allows (reductions
    took 1.3 of the 3.5 thread-s outside the convs of cheng2020's train step, `profile_step
    --what=train --model=cheng2020-anchor --patch=256`). The forward pass is the plain sum."""
    if not _use_phase_convs():
        return y + bias
    return _add_bias_by_matmul(y, bias)


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
        return add_bias(strided_conv(x, kernel.astype(x.dtype), self.stride), bias.astype(x.dtype))


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
        return add_bias(conv_transpose(x, kernel.astype(x.dtype), self.stride),
                        bias.astype(x.dtype))


def causal_mask(kernel_size: int) -> np.ndarray:
    """Mask type A (kernel_size, kernel_size): 1 strictly before the centre in raster order."""
    mask = np.zeros((kernel_size, kernel_size), np.float32)
    centre = kernel_size // 2
    mask[:centre, :] = 1.0
    mask[centre, :centre] = 1.0
    return mask


class MaskedConv(nn.Module):
    """Stride-1 conv reading only the taps where `mask_fn(kernel_size)` is 1; by default its
    output at (i, j) sees only inputs strictly before (i, j) in raster order.

    The default is the context model of Minnen et al. 2018 (PixelCNN mask type A). Params: kernel
    (k, k, I, O), stored unmasked (as in CompressAI) and masked at use; bias (O,).
    """

    features: int
    kernel_size: int = 5
    mask_fn: Callable[[int], np.ndarray] = causal_mask

    @nn.compact
    def __call__(self, x: Array) -> Array:
        k = self.kernel_size
        kernel = self.param(
            "kernel",
            nn.initializers.variance_scaling(1.0, "fan_in", "uniform"),
            (k, k, x.shape[-1], self.features),
        )
        bias = self.param("bias", nn.initializers.zeros, (self.features,))
        mask = jnp.asarray(self.mask_fn(k), x.dtype)[:, :, None, None]
        return add_bias(strided_conv(x, kernel.astype(x.dtype) * mask, 1), bias.astype(x.dtype))


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
        norm = add_bias(channel_matmul(jnp.square(x), gamma.T), beta)
        return x * jnp.sqrt(norm) if self.inverse else x * jax.lax.rsqrt(norm)


def leaky_relu(x: Array) -> Array:
    """LeakyReLU with PyTorch's default slope 0.01 (the published models use it)."""
    return nn.leaky_relu(x, negative_slope=0.01)
