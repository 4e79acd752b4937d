"""Blocks of the follow-up transforms (jahp_jax.nn.blocks, jahp_jax.nn.attention): the layout
conventions they share with PyTorch, checked from their definitions. Their numerical equality with
the references is tests/test_transforms_followups.py's (golden cases)."""

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

from jahp_jax.nn import attention, blocks
from jahp_jax.nn.layers import ConvTranspose


def test_pixel_shuffle_is_pytorchs():
    """out[h r + i, w r + j, c] = in[h, w, c r^2 + i r + j] (PyTorch's PixelShuffle, NCHW)."""
    r, channels = 2, 3
    x = np.arange(2 * 4 * 5 * channels * r * r, dtype=np.float32).reshape(2, 4, 5, channels * r * r)
    out = np.asarray(blocks.pixel_shuffle(jnp.asarray(x), r))
    assert out.shape == (2, 8, 10, channels)
    for h, w, i, j, c in [(0, 0, 0, 1, 2), (3, 4, 1, 0, 1), (2, 1, 1, 1, 0)]:
        assert out[1, h * r + i, w * r + j, c] == x[1, h, w, c * r * r + i * r + j]


def test_shifted_window_mask_separates_the_rolled_regions():
    """Swin's definition: label each pixel of the rolled map by the region it came from (rows
    [0, H - w), [H - w, H - w/2), [H - w/2, H), likewise columns); within a window only pixels
    of one region attend to each other."""
    window, rows, cols = 4, 3, 2
    height, width = rows * window, cols * window
    shift = window // 2

    def region(size: int) -> np.ndarray:
        labels = np.zeros(size, int)
        labels[size - window : size - shift] = 1
        labels[size - shift :] = 2
        return labels

    labels = 3 * region(height)[:, None] + region(width)[None, :]
    windows = labels.reshape(rows, window, cols, window).transpose(0, 2, 1, 3)
    windows = windows.reshape(rows * cols, window * window)
    expected = windows[:, :, None] != windows[:, None, :]
    np.testing.assert_array_equal(attention.shifted_window_mask(rows, cols, window), expected)


def test_relative_position_index_counts_offsets_from_the_table_centre():
    index = attention.relative_position_index(3)  # pixels in raster order (row, col)
    assert index.shape == (9, 9, 2)
    np.testing.assert_array_equal(index[0, 8], [0, 0])  # query (0, 0), key (2, 2): offset -2, -2
    np.testing.assert_array_equal(index[8, 0], [4, 4])
    np.testing.assert_array_equal(index[5, 5], [2, 2])  # itself: the centre


def test_window_attention_refuses_sizes_off_the_window_grid():
    layer = attention.WindowAttention(8, 4, window_size=4)
    with pytest.raises(ValueError, match="multiples of the window size 4, got 8 x 6"):
        layer.init(jax.random.key(0), jnp.zeros((1, 8, 6, 8)))


@pytest.mark.parametrize("windows", [24, 7])  # 3 chunks of 8; no divisor from 4 to 8: one go
def test_attention_in_chunks_equals_all_windows_at_once(windows):
    """The chunked attention (lax.map over windows, the logits recomputed in the backward pass)
    gives the outputs of `attend` over all windows exactly, and its gradients (of q, k, v and
    the bias) to float rounding, with a mask."""
    w, heads, head_dim = 4, 2, 4
    keys = jax.random.split(jax.random.key(0), 5)
    q, k, v = (jax.random.normal(key, (windows, w * w, heads, head_dim)) for key in keys[:3])
    bias = jax.random.normal(keys[3], (heads, w * w, w * w))
    mask = jax.random.bernoulli(keys[4], 0.3, (windows, w * w, w * w)) & ~jnp.eye(w * w, dtype=bool)

    def loss(attend, *args):
        return jnp.sum(jnp.sin(attend(*args, mask, w)))

    chunked, whole = attention.attend_in_chunks, attention.attend
    np.testing.assert_array_equal(chunked(q, k, v, bias, mask, w), whole(q, k, v, bias, mask, w))
    grads = [jax.grad(partial(loss, f), argnums=(0, 1, 2, 3))(q, k, v, bias)
             for f in (chunked, whole)]  # fmt: skip
    for got, expected in zip(*grads, strict=True):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("tokens", [50, 1100])  # a matmul; oneDNN's 1x1 conv on CPU
def test_dense_layers_equal_flax_dense(tokens):
    """The attention blocks' Dense layers: nn.Dense's params and result, the product routed."""
    x = jax.random.normal(jax.random.key(0), (2, tokens, 16))
    params = nn.Dense(24).init(jax.random.key(1), x)
    assert jax.tree.map(jnp.shape, attention.dense(24).init(jax.random.key(1), x)) == jax.tree.map(
        jnp.shape, params
    )
    np.testing.assert_allclose(attention.dense(24).apply(params, x), nn.Dense(24).apply(params, x),
                               rtol=1e-5, atol=1e-5)  # fmt: skip


def test_shifted_attention_has_finite_gradients_matching_finite_differences():
    """The -inf mask must not leak NaNs into the gradient; the gradient is the function's."""
    block = attention.ConvTransBlock(4, 8, head_dim=4, window_size=4, shifted=True)
    x = jax.random.normal(jax.random.key(1), (1, 8, 8, 12), jnp.float32)
    params = block.init(jax.random.key(0), x)
    direction = jax.random.normal(jax.random.key(2), x.shape, jnp.float32)

    @jax.jit
    def loss(x):
        return jnp.sum(jnp.sin(block.apply(params, x)))

    gradient = jax.jit(jax.grad(loss))(x)
    assert bool(jnp.all(jnp.isfinite(gradient)))
    step = 1e-2
    numeric = (loss(x + step * direction) - loss(x - step * direction)) / (2 * step)
    np.testing.assert_allclose(jnp.vdot(gradient, direction), numeric, rtol=2e-2)


def test_stride_one_transposed_conv_is_pytorchs():
    """ELIC's h_s ends in ConvTranspose2d(k=3, stride=1, padding=1): lax's transposed conv with
    the kernel flipped and its in/out swapped."""
    x = jax.random.normal(jax.random.key(0), (2, 5, 6, 4), jnp.float32)
    layer = ConvTranspose(3, kernel_size=3, stride=1)
    params = layer.init(jax.random.key(1), x)
    kernel = params["params"]["kernel"]  # (3, 3, out=3, in=4)
    expected = jax.lax.conv_transpose(
        x, kernel, (1, 1), padding=((1, 1), (1, 1)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"), transpose_kernel=True,
    ) + params["params"]["bias"]  # fmt: skip
    np.testing.assert_allclose(layer.apply(params, x), expected, atol=1e-5)


def test_blocks_keep_the_reference_child_names():
    x = jnp.zeros((1, 8, 8, 6))
    names = {
        blocks.ResidualBlockWithStride(8): {"conv1", "conv2", "gdn", "skip"},
        blocks.ResidualBlock(6): {"conv1", "conv2"},  # no skip at equal widths
        blocks.ResidualBlockUpsample(4): {"subpel_conv", "conv", "igdn", "upsample"},
        blocks.ResidualBottleneckBlock(6): {"conv1", "conv2", "conv3"},
        blocks.AttentionBlock(6): {"conv_a", "conv_b"},
        attention.SWAtten(6, head_dim=4, window_size=4, inter_features=8): {
            "in_conv", "non_local_block", "conv_a", "conv_b", "out_conv",
        },
    }  # fmt: skip

    def init(block):
        return jax.eval_shape(lambda: block.init(jax.random.key(0), x))["params"]

    for block, expected in names.items():
        assert set(init(block)) == expected, type(block).__name__
    params = init(blocks.AttentionBlock(6))
    assert set(params["conv_b"]) == {"layers_0", "layers_1", "layers_2", "layers_3"}
    assert set(params["conv_a"]["layers_0"]["conv"]) == {"layers_0", "layers_2", "layers_4"}
