"""The compression model: analysis transform -> latent codec (the prior) -> synthesis transform.

One model class, `CompressionModel(config)`: the transform family (`config.transform`,
jahp_jax.models.transforms) gives g_a and g_s (and the hyper transforms the prior composes), the
prior (`config.prior`, jahp_jax.models.latent_codecs) gives the latent codec. The latent codec
shares the model's parameter scope, so its parameters sit beside g_a and g_s (`h_a`, `z_density`,
`context_prediction`, ...), as in CompressAI. A variable-rate model (`config.variable_rate`) has
gain units (`gain_units`, jahp_jax.models.gain) around the latent codec: y * gain goes in,
y_hat * inverse gain goes to g_s, so the prior path is that of a fixed-rate model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from jahp_jax.models.config import ModelConfig
from jahp_jax.models.gain import GainUnits
from jahp_jax.models.latent_codecs import LatentCodec

Array = jax.Array


# Named (N, M) sizes of the published models: M=192 for the low rates, 320 for the high ones.
PRESETS: dict[str, tuple[int, int]] = {"low": (192, 192), "high": (192, 320)}


class CompressionModel(nn.Module):
    """x (B, H, W, 3) in [0, 1], H and W multiples of `config.patch_multiple`; `config` says
    which model (transform, prior, sizes, options).

    `__call__(x, train, quality)` returns {'x_hat', 'y_hat', 'likelihoods': {'y', 'z'?}}. With
    train=True the quantizer is additive uniform noise (rng stream 'noise'); with train=False
    latents are rounded around their offsets as the coder transmits them (see
    `LatentCodec.__call__`); the exact coded rate comes from `jahp_jax.coding`. A variable-rate
    model needs `quality` (() or (B,) in [0, 1]); its 'y_hat' is the coded (gained) latent.
    """

    config: ModelConfig = ModelConfig()
    straight_through: bool = False  # decoder sees round(y - mu) + mu (with identity gradient)

    def setup(self):
        c, family = self.config, self.config.transform_family
        self.g_a = family.analysis(c.num_filters, c.num_latents)
        self.g_s = family.synthesis(c.num_filters, c.num_latents)
        self.latent_codec = self.make_latent_codec()
        nn.share_scope(self, self.latent_codec)
        if c.variable_rate:
            self.gain_units = GainUnits(c.gain_levels, c.num_latents, c.lmbda_range)

    @nn.nowrap
    def make_latent_codec(self) -> LatentCodec:
        """The prior's latent codec (unbound: its schedule and host-side methods need no params)."""
        return LatentCodec(self.config.composition(), self.straight_through)

    def analysis(self, x: Array) -> Array:
        """g_a: (B, H, W, 3) -> y (B, H/d, W/d, M), d = the transform's downsampling."""
        return self.g_a(x)

    def synthesis(self, y_hat: Array) -> Array:
        """g_s: y_hat (B, h, w, M) -> x_hat (B, d h, d w, 3), not clipped."""
        return self.g_s(y_hat)

    def aux_loss(self) -> Array:
        """Tail-quantile loss of every factorized density (trains `quantiles` only)."""
        return self.latent_codec.aux_loss()

    def gains(self, quality: Array) -> tuple[Array, Array]:
        """A variable-rate model's (gain, inverse gain), quality.shape + (M,) each."""
        return self.gain_units(quality)

    def __call__(self, x: Array, train: bool = False, quality: Array | None = None) -> dict:
        y = self.analysis(x)
        if self.config.variable_rate != (quality is not None):
            raise ValueError(
                "a variable-rate model needs a quality" if self.config.variable_rate
                else f"a quality is for a variable-rate model, not {self.config.describe()}"
            )  # fmt: skip
        if quality is not None:
            gain, inverse_gain = self.gains(quality)
            y = y * _per_image(gain)
        latents = self.latent_codec(y, train)
        decoder_input = latents["decoder_input"]
        if quality is not None:
            decoder_input = decoder_input * _per_image(inverse_gain)
        return {
            "x_hat": self.synthesis(decoder_input),
            "y_hat": latents["y_hat"],
            "likelihoods": latents["likelihoods"],
        }


def _per_image(vector: Array) -> Array:
    """(M,) or (B, M) channel vectors -> broadcastable against (B, h, w, M)."""
    return vector[:, None, None, :] if vector.ndim == 2 else vector


def create_model(
    prior: str = "joint",
    num_filters: int = 192,
    num_latents: int = 192,
    mixture_components: int = 1,
    straight_through: bool = False,
    **prior_options,
) -> CompressionModel:
    """Shorthand for `CompressionModel(ModelConfig(prior, ...), straight_through)` (ValueError on
    a bad configuration)."""
    config = ModelConfig(prior, num_filters, num_latents, mixture_components, prior_options)
    return CompressionModel(config, straight_through)


def init_params(model: CompressionModel, key: Array, image_size: int | None = None) -> dict:
    """Initialise the model's variables on a (1, S, S, 3) input (S: the padding multiple); with
    `config.pytorch_init` every conv and dense layer then as PyTorch does (`pytorch_layers`)."""
    size = image_size or model.config.pad_multiple
    x = jnp.zeros((1, size, size, 3), jnp.float32)
    quality = jnp.ones(()) if model.config.variable_rate else None
    params = model.init({"params": key, "noise": key}, x, train=False, quality=quality)["params"]
    if model.config.pytorch_init:
        params = pytorch_layers(params, jax.random.fold_in(key, 1))
    return params


def pytorch_layers(params: dict, key: Array) -> dict:
    """`params` with each layer that has a `kernel` (conv, transposed conv, dense) re-drawn as
    PyTorch's nn.Conv2d / nn.ConvTranspose2d / nn.Linear start: kernel and bias uniform in
    +-1/sqrt(fan_in), fan_in = the kernel's size / its last axis (k k I for a conv's (k, k, I, O)
    and I for a dense (I, O); for a (k, k, O, I) transposed conv k k O, as PyTorch counts it).
    Everything else (GDN, the densities, LayerNorm, attention tables, gains) is kept. One draw
    for all layers: a jitted init compiles one random-number program, not one per layer."""

    def is_layer(tree: dict) -> bool:
        return "kernel" in tree and not isinstance(tree["kernel"], dict)

    def layers(tree: dict) -> list[dict]:
        if is_layer(tree):
            return [tree]
        return [layer for value in tree.values() if isinstance(value, dict)
                for layer in layers(value)]  # fmt: skip

    drawn = [leaf for layer in layers(params) for leaf in (layer["kernel"], layer.get("bias"))
             if leaf is not None]  # fmt: skip
    uniform = jax.random.uniform(key, (sum(leaf.size for leaf in drawn),), minval=-1.0)
    offset = 0

    def redraw(tree: dict) -> dict:
        nonlocal offset
        if not is_layer(tree):
            return {name: redraw(value) if isinstance(value, dict) else value
                    for name, value in tree.items()}  # fmt: skip
        layer = dict(tree)
        bound = (tree["kernel"].size // tree["kernel"].shape[-1]) ** -0.5
        for name in ("kernel", "bias"):
            if name in tree:
                leaf = tree[name]
                values = uniform[offset : offset + leaf.size].reshape(leaf.shape) * bound
                layer[name] = values.astype(leaf.dtype)
                offset += leaf.size
        return layer

    return redraw(params)


def latent_codec_params(params: dict) -> dict:
    """The part of a model's params its latent codec reads (the two share a scope): all but the
    transforms g_a and g_s and the gain units. Jitted coding steps take only these, fewer leaves
    to pass per call."""
    outside = ("g_a", "g_s", "gain_units")
    return {name: value for name, value in params.items() if name not in outside}


def count_params(params: dict) -> int:
    return sum(int(p.size) for p in jax.tree_util.tree_leaves(params))
