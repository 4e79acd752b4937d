import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import quick_model

from jahp_jax.models.compression_model import count_params, create_model, init_params
from jahp_jax.models.latent_codecs import PRIORS
from jahp_jax.models.losses import rate_distortion_loss

CONFIGS = [(prior, 1) for prior in PRIORS] + [("joint", 3), ("mean_scale", 2)]


def _loss(model, params, x, key):
    """The training loss (rate-distortion + aux), and as aux (the forward outputs, stats)."""
    out = model.apply({"params": params}, x, train=True, rngs={"noise": key})
    loss, stats = rate_distortion_loss(x, out, lmbda=0.01)
    return loss + model.apply({"params": params}, method="aux_loss"), (out, stats)


@pytest.mark.parametrize("prior,components", CONFIGS)
def test_every_prior_forward_and_gradients(prior, components):
    """The training forward pass (noise) and its gradients in one program, the evaluation forward
    pass (rounding) in another: two compiles per prior (TCM's programs are thousands of ops)."""
    model = quick_model(prior, 8, 12, components)
    params = init_params(model, jax.random.key(0))
    side = max(64, model.config.patch_multiple)  # tcm's attention windows need 128
    x = jax.random.uniform(jax.random.key(1), (2, side, side, 3))
    (loss, (train_out, _)), grads = jax.jit(
        jax.value_and_grad(_loss, argnums=1, has_aux=True), static_argnums=0
    )(model, params, x, jax.random.key(3))
    eval_out = jax.jit(lambda params: model.apply({"params": params}, x, train=False))(params)
    expected = {"y", "z"} if model.make_latent_codec().hyperprior else {"y"}
    for out in (train_out, eval_out):
        assert out["x_hat"].shape == x.shape
        assert set(out["likelihoods"]) == expected
        for lik in out["likelihoods"].values():
            assert float(lik.min()) > 0.0 and float(lik.max()) <= 1.0
    assert np.isfinite(float(loss))
    leaves = jax.tree_util.tree_leaves(grads)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert sum(float(jnp.abs(g).sum()) > 0 for g in leaves) > len(leaves) // 2


def test_eval_rounds_y_around_the_predicted_mean():
    model = create_model("mean_scale", 8, 12)
    params = init_params(model, jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (1, 64, 64, 3))
    out = model.apply({"params": params}, x, train=False)
    y = model.apply({"params": params}, x, method="analysis")

    def means(m, y):
        codec = m.latent_codec
        z_hat, _ = codec.z_density(codec.hyper_analysis(y))
        return codec.distribution(codec.hyper_synthesis(z_hat), y)["means"]

    residual = np.asarray(out["y_hat"] - model.apply({"params": params}, y, method=means))
    np.testing.assert_allclose(residual, np.round(residual), atol=1e-4)
    np.testing.assert_allclose(out["y_hat"], y, atol=0.5 + 1e-4)


@pytest.mark.parametrize("prior", ["factorized", "joint"])
def test_training_lowers_the_rate(prior):
    model = create_model(prior, num_filters=8, num_latents=8)
    params = init_params(model, jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (2, 64, 64, 3)) * 0.2 + 0.4  # low-entropy image
    optimizer = optax.adam(1e-2)
    opt_state = optimizer.init(params)

    @jax.jit
    def step(params, opt_state, key):
        (_, (_, stats)), grads = jax.value_and_grad(_loss, argnums=1, has_aux=True)(
            model, params, x, key
        )
        updates, opt_state = optimizer.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, stats["bpp"]

    rates = []
    for i in range(40):
        params, opt_state, bpp = step(params, opt_state, jax.random.key(i))
        rates.append(float(bpp))
    assert np.mean(rates[-5:]) < 0.7 * np.mean(rates[:5]), rates


def _conv(k, cin, cout):
    return k * k * cin * cout + cout


def _gdn(c):
    return c + c * c


def _density(c, filters=(3, 3, 3, 3)):
    dims = (1, *filters, 1)
    matrices = sum(dims[i] * dims[i + 1] for i in range(len(dims) - 1))
    biases = sum(dims[1:])
    factors = sum(dims[1:-1])
    return c * (matrices + biases + factors + 3)  # + 3 tail quantiles


def test_joint_parameter_count_follows_the_layer_list():
    n = m = 192
    g_a = _conv(5, 3, n) + 2 * _conv(5, n, n) + _conv(5, n, m) + 3 * _gdn(n)
    g_s = _conv(5, m, n) + 2 * _conv(5, n, n) + _conv(5, n, 3) + 3 * _gdn(n)
    h_a = _conv(3, m, n) + 2 * _conv(5, n, n)
    h_s = _conv(5, n, m) + _conv(5, m, m * 3 // 2) + _conv(3, m * 3 // 2, 2 * m)
    context = _conv(5, m, 2 * m)
    entropy_parameters = (
        _conv(1, 4 * m, m * 10 // 3)
        + _conv(1, m * 10 // 3, m * 8 // 3)
        + _conv(1, m * 8 // 3, 2 * m)
    )
    expected = g_a + g_s + h_a + h_s + context + entropy_parameters + _density(n)
    model = create_model("joint", n, m)
    shapes = jax.eval_shape(lambda: init_params(model, jax.random.key(0)))
    assert count_params(shapes) == expected == 14_130_467


def test_pytorch_layers_redraws_conv_and_dense_layers_only():
    from jahp_jax.models.compression_model import pytorch_layers

    params = {
        "g_a": {"layers_0": {"kernel": jnp.zeros((5, 5, 3, 64)), "bias": jnp.zeros(64)}},
        "mlp": {"kernel": jnp.zeros((400, 16)), "bias": jnp.zeros(16)},
        "mlp_2": {"kernel": jnp.zeros((400, 16)), "bias": jnp.zeros(16)},
        "ln": {"scale": jnp.ones(16), "bias": jnp.zeros(16)},
        "gdn": {"beta": jnp.ones(4), "gamma": jnp.eye(4)},
    }
    drawn = pytorch_layers(params, jax.random.key(0))
    for layer, fan_in in ((drawn["g_a"]["layers_0"], 75), (drawn["mlp"], 400)):
        bound = fan_in**-0.5
        for leaf in (layer["kernel"], layer["bias"]):
            assert float(jnp.abs(leaf).max()) <= bound
        # uniform in +-bound: standard deviation bound / sqrt(3)
        np.testing.assert_allclose(float(jnp.std(layer["kernel"])), bound / 3**0.5, rtol=0.05)
    assert not np.allclose(drawn["mlp"]["kernel"], drawn["mlp_2"]["kernel"])  # a draw per layer
    for name in ("ln", "gdn"):
        jax.tree.map(np.testing.assert_array_equal, drawn[name], params[name])
    jax.tree.map(np.testing.assert_array_equal, pytorch_layers(params, jax.random.key(0)), drawn)


def test_tcm_starts_at_its_references_scale():
    """TCM at the ablation's CPU scale (N=64, M=80) from init_params: y and x_hat of a random
    image about as large as LIC_TCM's models/tcm.py gives at its own initialisation (std 0.33
    and 0.18, torch 2.14, seed 0); Flax's default scales gave 44 and 1e13, and a first train
    step with infinite gradients."""
    from jahp_jax.models.compression_model import CompressionModel
    from jahp_jax.models.config import ModelConfig
    from jahp_jax.models.presets import MODELS

    fields = dict(MODELS["tcm"].fields(), num_filters=64, num_latents=80)
    model = CompressionModel(ModelConfig(**fields))
    assert model.config.pytorch_init
    params = init_params(model, jax.random.key(0))
    x = jax.random.uniform(jax.random.key(1), (1, 128, 128, 3))
    y = jax.jit(lambda p: model.apply({"params": p}, x, method="analysis"))(params)
    x_hat = jax.jit(lambda p: model.apply({"params": p}, jnp.round(y), method="synthesis"))(params)
    assert 0.1 < float(jnp.std(y)) < 1.0
    assert 0.05 < float(jnp.std(x_hat)) < 0.6
