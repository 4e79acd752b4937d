import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jahp_jax.nn import layers


def _rand(key, shape):
    return jax.random.normal(jax.random.key(key), shape, jnp.float32)


def test_strided_conv_halves_even_sizes():
    x = _rand(0, (2, 32, 48, 3))
    y = layers.strided_conv(x, _rand(1, (5, 5, 3, 4)), 2)
    assert y.shape == (2, 16, 24, 4)


def test_conv_transpose_is_adjoint_of_strided_conv():
    kernel = _rand(0, (5, 5, 3, 4))  # strided conv 3 -> 4, so the transpose maps 4 -> 3
    u = _rand(1, (2, 16, 20, 3))
    v = _rand(2, (2, 8, 10, 4))
    lhs = jnp.vdot(layers.strided_conv(u, kernel, 2), v)
    rhs = jnp.vdot(u, layers.conv_transpose(v, kernel, 2))
    np.testing.assert_allclose(lhs, rhs, rtol=1e-4)


def test_conv_transpose_matches_lax_conv_transpose():
    kernel = _rand(0, (5, 5, 3, 4))
    v = _rand(2, (2, 8, 10, 4))
    # PyTorch-style ConvTranspose2d(padding=2, output_padding=1) through lax: transpose_kernel
    # flips the kernel and swaps I/O, padding ((k-1-p), (k-1-p+output_padding)).
    reference = jax.lax.conv_transpose(
        v,
        kernel,
        (2, 2),
        padding=((2, 3), (2, 3)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        transpose_kernel=True,
    )
    np.testing.assert_allclose(layers.conv_transpose(v, kernel, 2), reference, atol=1e-4)


def test_conv_transpose_gradients_match_lax():
    kernel = _rand(0, (5, 5, 3, 4))
    v = _rand(2, (2, 8, 10, 4))
    target = _rand(3, (2, 16, 20, 3))

    def ours(v, k):
        return jnp.sum(jnp.sin(layers.conv_transpose(v, k, 2)) * target)

    def reference(v, k):
        out = jax.lax.conv_transpose(
            v,
            k,
            (2, 2),
            padding=((2, 3), (2, 3)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            transpose_kernel=True,
        )
        return jnp.sum(jnp.sin(out) * target)

    grads = jax.grad(ours, argnums=(0, 1))(v, kernel)
    expected = jax.grad(reference, argnums=(0, 1))(v, kernel)
    for got, want in zip(grads, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_masked_conv_is_causal():
    module = layers.MaskedConv(features=6, kernel_size=5)
    x = _rand(0, (1, 9, 9, 4))
    params = module.init(jax.random.key(1), x)
    i, j = 4, 4

    grad = jax.grad(lambda x: jnp.sum(module.apply(params, x)[0, i, j]))(x)[0]  # (H, W, C)
    magnitude = np.abs(np.asarray(grad)).sum(axis=-1)
    raster = np.arange(9 * 9).reshape(9, 9)
    position = raster[i, j]
    assert np.all(magnitude[raster >= position] == 0.0), "sees the current or a later position"
    assert np.all(
        magnitude[
            (raster < position) & (np.abs(raster // 9 - i) <= 2) & (np.abs(raster % 9 - j) <= 2)
        ]
        > 0.0
    )


def test_causal_mask_type_a():
    mask = layers.causal_mask(5)
    assert mask.sum() == 12
    assert mask[2, 2] == 0 and mask[2, 1] == 1 and mask[3, 0] == 0 and mask[1, 4] == 1


def _gdn_reference(x, beta, gamma, inverse):
    norm = np.sqrt(beta + np.einsum("bhwj,ij->bhwi", x**2, gamma))
    return x * norm if inverse else x / norm


# 48 positions: gamma's product a matmul; 1280 (>= layers.ONEDNN_POINTWISE_POSITIONS): a 1x1 conv
@pytest.mark.parametrize("height, width", [(4, 6), (32, 20)])
@pytest.mark.parametrize("inverse", [False, True])
def test_gdn_matches_numpy_formula(inverse, height, width):
    channels = 5
    module = layers.GDN(inverse=inverse)
    x = np.asarray(_rand(0, (2, height, width, channels)))
    rng = np.random.default_rng(0)
    beta = rng.uniform(0.5, 2.0, channels).astype(np.float32)
    gamma = rng.uniform(0.0, 0.3, (channels, channels)).astype(np.float32)
    params = {
        "params": {"beta": layers.nonnegative_init(beta), "gamma": layers.nonnegative_init(gamma)}
    }
    got = module.apply(params, jnp.asarray(x))
    np.testing.assert_allclose(got, _gdn_reference(x, beta, gamma, inverse), rtol=1e-5, atol=1e-6)


def test_gdn_initialisation_and_bounds():
    module = layers.GDN()
    params = module.init(jax.random.key(0), jnp.ones((1, 2, 2, 3)))["params"]
    np.testing.assert_allclose(
        layers.nonnegative_param(params["beta"], 1e-6), np.ones(3), rtol=1e-6
    )
    np.testing.assert_allclose(
        layers.nonnegative_param(params["gamma"], 0.0), 0.1 * np.eye(3), atol=1e-7
    )
    # A negative stored beta is clamped to the lower bound, so the output stays finite.
    bad = {"params": {"beta": -params["beta"], "gamma": params["gamma"]}}
    assert np.all(np.isfinite(module.apply(bad, jnp.ones((1, 2, 2, 3)))))


def test_lower_bound_gradient_pushes_back_above_bound():
    # Below the bound, a gradient that would increase x passes; one that would decrease it stops.
    assert jax.grad(lambda x: -layers.lower_bound(x, 1.0))(0.5) == -1.0
    assert jax.grad(lambda x: layers.lower_bound(x, 1.0))(0.5) == 0.0
    assert jax.grad(lambda x: layers.lower_bound(x, 1.0))(2.0) == 1.0


def _lax_conv(x, kernel, stride):
    pad = kernel.shape[0] // 2
    return jax.lax.conv_general_dilated(
        x,
        kernel,
        (stride, stride),
        ((pad, pad), (pad, pad)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
    )


# 3 -> 24 channels take the im2col path (`layers.FEW_CHANNELS`, where XLA's convs are not in
# oneDNN: forced so below), 20 -> 24 the phase-decomposed one; 1x1 kernels a matmul.
@pytest.mark.parametrize("channels", [3, 20])
@pytest.mark.parametrize(
    "height, width, kernel_size, stride",
    [
        (16, 20, 5, 2), (15, 9, 5, 2), (16, 16, 3, 2), (9, 7, 5, 1), (8, 8, 3, 1), (7, 5, 1, 1),
        (7, 5, 1, 2),
    ],
)  # fmt: skip
def test_phase_conv_gradients_equal_lax_to_float32_rounding(
    height, width, kernel_size, stride, channels, monkeypatch
):
    monkeypatch.setattr(layers.runtime, "convs_in_onednn", lambda: False)
    x = _rand(0, (2, height, width, channels))
    kernel = _rand(1, (kernel_size, kernel_size, channels, 24)) / channels**0.5
    g = _rand(2, _lax_conv(x, kernel, stride).shape)
    _, reference_pullback = jax.vjp(lambda x, k: _lax_conv(x, k, stride), x, kernel)
    with layers.conv_implementation("phase"):
        y, pullback = jax.vjp(lambda x, k: layers.strided_conv(x, k, stride), x, kernel)
        grads = jax.jit(pullback)(g)
    np.testing.assert_allclose(y, _lax_conv(x, kernel, stride), rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, reference_pullback(g), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=2e-5)


@pytest.mark.parametrize("kernel_size, out_channels", [(5, 6), (5, 20), (1, 20)])
@pytest.mark.parametrize("implementation", ["phase", "stock"])
def test_conv_transpose_implementations_agree(
    implementation, kernel_size, out_channels, monkeypatch
):
    # 24 -> 6: im2col (the path without oneDNN convs), 24 -> 20: phase, 1x1: a matmul
    monkeypatch.setattr(layers.runtime, "convs_in_onednn", lambda: False)
    kernel = _rand(0, (kernel_size, kernel_size, out_channels, 24)) / 24**0.5
    v = _rand(2, (2, 6, 10, 24))
    target = _rand(3, (2, 12, 20, out_channels))
    shape = jax.ShapeDtypeStruct((2, 12, 20, out_channels), jnp.float32)

    def reference(v, k):
        (out,) = jax.linear_transpose(lambda u: _lax_conv(u, k, 2), shape)(v)
        return out

    with layers.conv_implementation(implementation):
        got = jax.jit(lambda v, k: layers.conv_transpose(v, k, 2))(v, kernel)
        got_grads = jax.jit(
            jax.grad(lambda v, k: jnp.sum(jnp.sin(layers.conv_transpose(v, k, 2)) * target), (0, 1))
        )(v, kernel)
    want_grads = jax.grad(lambda v, k: jnp.sum(jnp.sin(reference(v, k)) * target), (0, 1))(
        v, kernel
    )
    np.testing.assert_allclose(got, reference(v, kernel), rtol=1e-5, atol=1e-5)
    for got_grad, want_grad in zip(got_grads, want_grads, strict=True):
        np.testing.assert_allclose(got_grad, want_grad, rtol=1e-5, atol=5e-5)


@pytest.mark.parametrize("onednn, path", [(True, "_STOCK"), (False, "_PATCH")])
def test_few_channel_convs_follow_the_conv_kernels(onednn, path, monkeypatch):
    """g_a's first conv (3 -> N) is XLA's own where its convs run in oneDNN, im2col otherwise."""
    monkeypatch.setattr(layers.runtime, "convs_in_onednn", lambda: onednn)
    with layers.conv_implementation("phase"):
        assert layers._conv_path((5, 5, 3, 24)) is getattr(layers, path)
        assert layers._conv_path((5, 5, 20, 24)) is layers._PHASE


@pytest.mark.parametrize(
    "positions, stride, onednn, path",
    [(1024, 1, True, "_ONEDNN_POINTWISE"), (1023, 1, True, "_POINTWISE"),
     (4096, 2, True, "_POINTWISE"), (4096, 1, False, "_POINTWISE")],
)  # fmt: skip
def test_pointwise_convs_switch_to_onednn_on_large_maps(positions, stride, onednn, path,
                                                         monkeypatch):  # fmt: skip
    """A stride-1 1x1 conv over >= ONEDNN_POINTWISE_POSITIONS pixels is XLA's conv under oneDNN."""
    monkeypatch.setattr(layers, "ONEDNN_POINTWISE_POSITIONS", 1024)
    monkeypatch.setattr(layers.runtime, "convs_in_onednn", lambda: onednn)
    with layers.conv_implementation("phase"):
        assert layers._conv_path((1, 1, 8, 8), stride, positions) is getattr(layers, path)


@pytest.mark.parametrize("height, width", [(4, 6), (32, 20)])  # 48 and 1280 positions (x 2)
def test_channel_products_equal_matmul_with_gradients(height, width, monkeypatch):
    """`channel_matmul` (a matmul, or oneDNN's 1x1 conv with its transpose as the input gradient)
    and a 1x1 `strided_conv` on those paths equal x @ kernel and its autodiff to rounding."""
    monkeypatch.setattr(layers.runtime, "convs_in_onednn", lambda: True)
    x, kernel = _rand(0, (2, height, width, 12)), _rand(1, (12, 20)) / 12**0.5
    g = _rand(2, (2, height, width, 20))
    want, want_pullback = jax.vjp(lambda x, k: x @ k, x, kernel)
    with layers.conv_implementation("phase"):
        products = (jax.vjp(layers.channel_matmul, x, kernel),
                    jax.vjp(lambda x, k: layers.strided_conv(x, k[None, None], 1), x, kernel))
        pullbacks = [(y, jax.jit(pullback)(g)) for y, pullback in products]  # fmt: skip
    for y, grads in pullbacks:
        np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-5)
        for got, expected in zip(grads, want_pullback(g), strict=True):
            np.testing.assert_allclose(got, expected, rtol=1e-5, atol=5e-5)


@pytest.mark.parametrize("implementation", ["phase", "stock"])
def test_add_bias_gradient_is_the_sum_over_positions(implementation):
    """The forward pass is y + bias; the bias gradient (a matmul on CPU) sums g over B, H, W."""
    y, bias, g = _rand(0, (2, 5, 7, 6)), _rand(1, (6,)), _rand(2, (2, 5, 7, 6))
    with layers.conv_implementation(implementation):
        out, pullback = jax.vjp(layers.add_bias, y, bias)
        grad_y, grad_bias = jax.jit(pullback)(g)
    np.testing.assert_array_equal(out, y + bias)
    np.testing.assert_array_equal(grad_y, g)
    np.testing.assert_allclose(grad_bias, np.sum(np.asarray(g), axis=(0, 1, 2)), rtol=1e-5,
                               atol=1e-5)  # fmt: skip


def test_conv_implementation_is_chosen_per_backend():
    x, kernel = _rand(0, (1, 8, 8, 3)), _rand(1, (5, 5, 3, 4))

    def jaxpr(name):
        with layers.conv_implementation(name):
            return str(jax.make_jaxpr(lambda x: layers.strided_conv(x, kernel, 2))(x))

    assert "custom_vjp" not in jaxpr("stock")
    assert "custom_vjp" in jaxpr("phase")
    assert ("custom_vjp" in jaxpr("auto")) == (jax.default_backend() == "cpu")
    with pytest.raises(ValueError, match="unknown conv implementation"):
        with layers.conv_implementation("winograd"):
            pass
