"""Swin window attention and the Transformer-CNN blocks of TCM (Liu et al., CVPR 2023).

Written after the authors' `models/tcm.py` (github.com/jmliu206/LIC_TCM, MIT), NHWC, with its
children's names (`trans_block/msa/embedding_layer`, `conv1_1`, `non_local_block/block_1`, ...) so
that its state_dict converts one to one (`jahp_jax.io.convert_followups`). What the reference
computes, and so what these compute:

- Window attention (W-MSA) over non-overlapping `window_size` x `window_size` windows, heads of
  `head_dim` channels (input_dim / head_dim heads), q k^T / sqrt(head_dim) plus a learned
  relative position bias `relative_position_params` (heads, 2w - 1, 2w - 1); the shifted variant
  (SW-MSA) first rolls the map by -(w // 2) on both axes, masks the pairs of pixels that the roll
  brought together from opposite borders (only in the last row and the last column of windows),
  and rolls the result back.
- LayerNorm with PyTorch's eps 1e-5 (two-pass variance); GELU in PyTorch's default exact (erf)
  form, not the tanh approximation; pre-norm residual blocks x + msa(ln1(x)), x + mlp(ln2(x)).
- Drop-path is identity (the reference default drop_path_rate=0, and always at inference).

Heights and widths must be multiples of the window size (TCM pads images to multiples of 128).
The reference's SwinBlock pads maps no larger than one window but then fails on its own padded
shape (window partition, or the product with the unpadded trunk in SWAtten), so the reference
computes nothing there; here such a map (one window exactly) is attended without padding.
"""

from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jahp_jax.nn.blocks import (
    ResidualBlock,
    attention_mask_branch,
    attention_trunk,
    conv1x1,
)
from jahp_jax.nn.layers import channel_matmul

Array = jax.Array

LAYER_NORM_EPS = 1e-5  # PyTorch's nn.LayerNorm default
gelu = partial(nn.gelu, approximate=False)  # PyTorch's nn.GELU default (erf form)


def _channel_dot_general(lhs: Array, rhs: Array, dimension_numbers, precision=None,
                         preferred_element_type=None) -> Array:  # fmt: skip
    """nn.Dense's product, lhs (..., I) with rhs (I, O) (the only `dimension_numbers` Dense
    passes), as `channel_matmul`."""
    del dimension_numbers, precision, preferred_element_type  # float32 throughout
    return channel_matmul(lhs, rhs)


def dense(features: int, name: str | None = None) -> nn.Dense:
    """nn.Dense (params kernel (I, O), bias), its product a `channel_matmul`: oneDNN's 1x1 conv
    on CPU where it beats the matmul (`layers.ONEDNN_POINTWISE_POSITIONS`)."""
    return nn.Dense(features, dot_general=_channel_dot_general, name=name)


def layer_norm() -> nn.LayerNorm:
    """PyTorch's nn.LayerNorm over the channels: eps 1e-5, variance as mean((x - mean)^2).
    Params: scale (PyTorch's weight), bias."""
    return nn.LayerNorm(epsilon=LAYER_NORM_EPS, use_fast_variance=False)


def relative_position_index(window_size: int) -> np.ndarray:
    """(w^2, w^2, 2) int: for query pixel p and key pixel q of a window (raster order), the index
    (dr + w - 1, dc + w - 1) of their offset into the (2w - 1, 2w - 1) bias table."""
    coords = np.stack(
        np.meshgrid(np.arange(window_size), np.arange(window_size), indexing="ij"), axis=-1
    ).reshape(-1, 2)
    return coords[:, None, :] - coords[None, :, :] + window_size - 1


def shifted_window_mask(rows: int, cols: int, window_size: int) -> np.ndarray:
    """(rows * cols, w^2, w^2) bool, True where SW-MSA must not attend: in the last row of
    windows, a query and a key on different sides of row w - w // 2 of the window; likewise
    columns in the last column of windows (the pixels the cyclic roll wrapped around)."""
    split = window_size - window_size // 2
    upper = np.arange(window_size) < split  # pixel rows (or columns) of a window before the seam
    across = upper[:, None] != upper[None, :]  # (w, w): the two pixel rows are on either side
    mask = np.zeros((rows, cols, window_size, window_size, window_size, window_size), bool)
    mask[-1, :] |= across[:, None, :, None]  # (p_row, p_col, q_row, q_col)
    mask[:, -1] |= across[None, :, None, :]
    return mask.reshape(rows * cols, window_size * window_size, window_size * window_size)


def window_softmax(logits: Array, window_size: int) -> Array:
    """Softmax over the last axis, the w^2 keys of a window, reduced as (w, w): XLA:CPU rewrites
    a sum over one axis of 32 or more elements into a slow reduce-window, not over 8 x 8."""
    shape = logits.shape
    logits = logits.reshape(*shape[:-1], window_size, window_size)
    peak = jax.lax.stop_gradient(jnp.max(logits, axis=(-2, -1), keepdims=True))
    unnormalized = jnp.exp(logits - peak)
    probs = unnormalized / jnp.sum(unnormalized, axis=(-2, -1), keepdims=True)
    return probs.reshape(shape)


def _check_window_multiple(height: int, width: int, window_size: int) -> None:
    if height % window_size or width % window_size:
        raise ValueError(
            f"window attention needs height and width multiples of the window size "
            f"{window_size}, got {height} x {width} (pad the image: TCM needs multiples of 128)"
        )


# Windows attended per step of `attend_in_chunks`: the logits of one chunk (chunk x heads x
# w^2 x w^2 floats, 1 MB at 8 heads and 8 x 8 windows) stay in cache from the q k^T product to
# the product with v.
WINDOWS_PER_CHUNK = 8


def attend(
    q: Array, k: Array, v: Array, bias: Array, mask: Array | None, window_size: int
) -> Array:
    """softmax(q k^T / sqrt(d) + bias, masked) v per window and head.

    q, k, v: (windows, P, heads, d), P = w^2 pixels in raster order; bias (heads, P, P); mask
    (windows, P, P) bool, True where a query must not attend, or None. Returns (windows, P,
    heads, d)."""
    logits = jnp.einsum("nphd,nqhd->hnpq", q, k) * q.shape[-1] ** -0.5
    logits = logits + bias[:, None].astype(logits.dtype)
    if mask is not None:
        logits = jnp.where(mask, -jnp.inf, logits)
    probs = window_softmax(logits, window_size)
    return jnp.einsum("hnpq,nqhd->nphd", probs, v)


def attend_in_chunks(q: Array, k: Array, v: Array, bias: Array, mask: Array | None,
                     window_size: int) -> Array:  # fmt: skip
    """`attend` a chunk of WINDOWS_PER_CHUNK windows at a time (lax.map; the same results).

    Over all windows at once, every step is a pass over (heads, windows, P, P) logits in memory
    (400 MB in TCM's g_s at a 768x512 image's H/2 scale) and XLA:CPU runs the two products with
    head_dim 8 at ~10 GFLOP/s; chunk by chunk they stay in cache (docs/performance.md). The
    backward pass recomputes each chunk's logits (jax.checkpoint) instead of storing them. On CPU
    only: a GPU or TPU attends all windows in parallel, and would run the chunks one after
    another. Where no divisor of the window count from 4 to WINDOWS_PER_CHUNK exists, all
    windows at once."""
    windows = q.shape[0]
    chunk = next((c for c in range(WINDOWS_PER_CHUNK, 3, -1) if windows % c == 0), None)
    if chunk is None or chunk == windows or jax.default_backend() != "cpu":
        return attend(q, k, v, bias, mask, window_size)

    def attend_chunk(inputs):
        *qkv, chunk_mask = inputs
        return attend(*qkv, bias, chunk_mask, window_size)

    def split(array: Array) -> Array:
        return array.reshape(windows // chunk, chunk, *array.shape[1:])

    masks = None if mask is None else split(mask)
    out = jax.lax.map(jax.checkpoint(attend_chunk), (split(q), split(k), split(v), masks))
    return out.reshape(q.shape)


class WindowAttention(nn.Module):
    """(Shifted) window multi-head self-attention, TCM's WMSA: (B, H, W, C) -> (B, H, W, out).

    Children: embedding_layer (Dense 3C: q, k, v, each heads x head_dim, head-major), linear
    (Dense out_features); param relative_position_params (heads, 2w - 1, 2w - 1).
    """

    out_features: int
    head_dim: int
    window_size: int
    shifted: bool = False

    @nn.compact
    def __call__(self, x: Array) -> Array:
        batch, height, width, channels = x.shape
        w = self.window_size
        _check_window_multiple(height, width, w)
        heads = channels // self.head_dim
        table = self.param(
            "relative_position_params",
            nn.initializers.truncated_normal(0.02),
            (heads, 2 * w - 1, 2 * w - 1),
        )
        if self.shifted:
            x = jnp.roll(x, (-(w // 2), -(w // 2)), axis=(1, 2))
        rows, cols = height // w, width // w
        windows = x.reshape(batch, rows, w, cols, w, channels).transpose(0, 1, 3, 2, 4, 5)
        tokens = windows.reshape(-1, channels)  # window by window; see `SwinTransformerBlock`
        qkv = dense(3 * channels, name="embedding_layer")(tokens)
        qkv = qkv.reshape(batch * rows * cols, w * w, 3, heads, self.head_dim)
        q, k, v = (qkv[:, :, i] for i in range(3))  # (B n, P, heads, d)
        index = relative_position_index(w)
        bias = table[:, index[..., 0], index[..., 1]]  # (heads, P, P)
        mask = None
        if self.shifted:  # (n, P, P), the same in every image of the batch
            mask = jnp.tile(jnp.asarray(shifted_window_mask(rows, cols, w)), (batch, 1, 1))
        out = attend_in_chunks(q, k, v, bias, mask, w).reshape(-1, channels)
        out = dense(self.out_features, name="linear")(out)
        out = out.reshape(batch, rows, cols, w, w, self.out_features).transpose(0, 1, 3, 2, 4, 5)
        out = out.reshape(batch, height, width, self.out_features)
        if self.shifted:
            out = jnp.roll(out, (w // 2, w // 2), axis=(1, 2))
        return out


class SwinTransformerBlock(nn.Module):
    """TCM's `Block`: x + msa(ln1(x)), then + mlp(ln2(x)) with mlp = Dense(4C), GELU, Dense(C):
    (B, H, W, C) -> same, C = `features`. Children: ln1, msa, ln2, mlp (layers_0, layers_2)."""

    features: int
    head_dim: int
    window_size: int
    shifted: bool = False

    def setup(self):
        self.ln1 = layer_norm()
        self.msa = WindowAttention(self.features, self.head_dim, self.window_size, self.shifted)
        self.ln2 = layer_norm()
        self.mlp = nn.Sequential([dense(4 * self.features), gelu, dense(self.features)])

    def __call__(self, x: Array) -> Array:
        # LayerNorm and the MLP on the (pixels, C) matrix: their parameter gradients are then 2-D
        # column sums and matmuls, where XLA:CPU runs the 4-D (B, H, W) sums as slow strided
        # reduce-windows and transposes each gradient before the weight's matmul.
        tokens = x.reshape(-1, x.shape[-1])
        tokens = tokens + self.msa(self.ln1(tokens).reshape(x.shape)).reshape(tokens.shape)
        return (tokens + self.mlp(self.ln2(tokens))).reshape(x.shape)


class SwinBlockPair(nn.Module):
    """A W-MSA block then an SW-MSA block (TCM's `SwinBlock`, the non-local part of SWAtten):
    (B, H, W, C) -> same, C = `features`. Children: block_1, block_2."""

    features: int
    head_dim: int
    window_size: int

    def setup(self):
        self.block_1 = SwinTransformerBlock(self.features, self.head_dim, self.window_size, False)
        self.block_2 = SwinTransformerBlock(self.features, self.head_dim, self.window_size, True)

    def __call__(self, x: Array) -> Array:
        return self.block_2(self.block_1(x))


class ConvTransBlock(nn.Module):
    """TCM's Transformer-CNN mixture block: (B, H, W, conv_dim + trans_dim) -> same.

    conv1_1 (1x1) splits into a CNN part (first conv_dim channels) and a transformer part; the CNN
    part becomes c + conv_block(c), conv_block a `ResidualBlock` that adds c itself (so c counts
    twice, as in the reference); the transformer part goes through one `SwinTransformerBlock`
    (shifted or not); conv1_2 (1x1) of the two, concatenated, is added to the input.
    Children: conv1_1, conv_block, trans_block, conv1_2.
    """

    conv_dim: int
    trans_dim: int
    head_dim: int
    window_size: int
    shifted: bool = False

    def setup(self):
        width = self.conv_dim + self.trans_dim
        self.conv1_1 = conv1x1(width)
        self.conv_block = ResidualBlock(self.conv_dim)
        self.trans_block = SwinTransformerBlock(
            self.trans_dim, self.head_dim, self.window_size, self.shifted
        )
        self.conv1_2 = conv1x1(width)

    def __call__(self, x: Array) -> Array:
        mixed = self.conv1_1(x)
        conv_x, trans_x = mixed[..., : self.conv_dim], mixed[..., self.conv_dim :]
        conv_x = self.conv_block(conv_x) + conv_x
        trans_x = self.trans_block(trans_x)
        return x + self.conv1_2(jnp.concatenate([conv_x, trans_x], axis=-1))


class SWAtten(nn.Module):
    """TCM's Swin-attention module of the channel-wise prior: (B, H, W, I) -> (B, H, W, out).

    in_conv (1x1 to inter_features), then u + conv_a(u) * sigmoid(conv_b(swin(u))) (Cheng's
    attention with the mask branch fed by a W/SW Swin block pair), then out_conv (1x1).
    Children: in_conv, non_local_block (block_1, block_2), conv_a, conv_b, out_conv.
    """

    out_features: int
    head_dim: int
    window_size: int
    inter_features: int = 128

    def setup(self):
        self.in_conv = conv1x1(self.inter_features)
        self.non_local_block = SwinBlockPair(self.inter_features, self.head_dim, self.window_size)
        self.conv_a = attention_trunk(self.inter_features)
        self.conv_b = attention_mask_branch(self.inter_features)
        self.out_conv = conv1x1(self.out_features)

    def __call__(self, x: Array) -> Array:
        u = self.in_conv(x)
        gate = nn.sigmoid(self.conv_b(self.non_local_block(u)))
        return self.out_conv(u + self.conv_a(u) * gate)
