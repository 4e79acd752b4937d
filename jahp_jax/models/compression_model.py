"""The compression model: analysis transform -> latent codec (the prior) -> synthesis transform.

One model class, `CompressionModel`; priors are latent codecs (`jahp_jax.models.latent_codecs`),
each
composed from shared parts:

| prior        | y density                            | hyper h_a / h_s              | context |
|--------------|--------------------------------------|------------------------------|---------|
| factorized   | FactorizedDensity (Balle 2018)       | -                            | -       |
| hyperprior   | N(0, s^2), s from h_s (Balle 2018)   | on |y|, ReLU, h_s -> M scales | -       |
| mean_scale   | N(mu, s^2) or GMM from h_s           | LeakyReLU, h_s -> params     | -       |
| context      | N(mu, s^2) or GMM from the context   | -                            | 5x5 A   |
| joint        | N(mu, s^2) or GMM from h_s + context | LeakyReLU, h_s -> 2M         | 5x5 A   |
| checkerboard | N(mu, s^2) or GMM from h_s + context | LeakyReLU, h_s -> 2M         | 5x5 chk |

The layer list follows Minnen et al. 2018 (and CompressAI's `mbt2018`, whose layer indices the
parameter names `layers_<i>` mirror): g_a = 4 x conv 5x5/2 with GDN between; h_a = conv 3x3/1,
conv 5x5/2, conv 5x5/2; h_s = deconv 5x5/2 (M), deconv 5x5/2 (3M/2), conv 3x3/1 (2M); context =
masked 5x5 conv (2M; chk = the checkerboard mask of He et al. 2021); entropy parameters = 1x1
convs 4M -> 10M/3 -> 8M/3 -> 2M (3KM for a K-component mixture). The latent codec shares the
model's parameter scope, so its parameters sit beside g_a and g_s (`h_a`, `z_density`,
`context_prediction`, ...), as in CompressAI.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from jahp_jax.models.config import ModelConfig
from jahp_jax.models.latent_codecs import PRIORS, LatentCodec
from jahp_jax.nn.layers import GDN, Conv, ConvTranspose

Array = jax.Array


# Named (N, M) sizes of the published models: M=192 for the low rates, 320 for the high ones.
PRESETS: dict[str, tuple[int, int]] = {"low": (192, 192), "high": (192, 320)}


class CompressionModel(nn.Module):
    """x (B, H, W, 3) in [0, 1], H and W multiples of 64 (16 for priors without a hyperprior);
    `config` says which model (prior, sizes, options).

    `__call__(x, train)` returns {'x_hat', 'y_hat', 'likelihoods': {'y', 'z'?}}. With train=True
    the quantizer is additive uniform noise (rng stream 'noise'); with train=False latents are
    rounded around their offsets as the coder transmits them (see `LatentCodec.__call__`); the
    exact coded rate comes from `jahp_jax.coding.range_coder`.
    """

    config: ModelConfig = ModelConfig()
    straight_through: bool = False  # decoder sees round(y - mu) + mu (with identity gradient)

    def setup(self):
        n = self.config.num_filters
        self.g_a = nn.Sequential(
            [Conv(n), GDN(), Conv(n), GDN(), Conv(n), GDN(), Conv(self.config.num_latents)]
        )
        self.g_s = nn.Sequential(
            [
                ConvTranspose(n), GDN(inverse=True),
                ConvTranspose(n), GDN(inverse=True),
                ConvTranspose(n), GDN(inverse=True),
                ConvTranspose(3),
            ]
        )  # fmt: skip
        self.latent_codec = self.make_latent_codec()
        nn.share_scope(self, self.latent_codec)

    @nn.nowrap
    def make_latent_codec(self) -> LatentCodec:
        """The prior's latent codec (unbound: its schedule and host-side methods need no params)."""
        c = self.config
        return PRIORS[c.prior](
            c.num_filters, c.num_latents, c.mixture_components, self.straight_through, **c.options
        )

    def analysis(self, x: Array) -> Array:
        """g_a: (B, H, W, 3) -> y (B, H/16, W/16, M)."""
        return self.g_a(x)

    def synthesis(self, y_hat: Array) -> Array:
        """g_s: y_hat (B, h, w, M) -> x_hat (B, 16h, 16w, 3), not clipped."""
        return self.g_s(y_hat)

    def aux_loss(self) -> Array:
        """Tail-quantile loss of every factorized density (trains `quantiles` only)."""
        return self.latent_codec.aux_loss()

    def __call__(self, x: Array, train: bool = False) -> dict:
        latents = self.latent_codec(self.analysis(x), train)
        return {
            "x_hat": self.synthesis(latents["decoder_input"]),
            "y_hat": latents["y_hat"],
            "likelihoods": latents["likelihoods"],
        }


def create_model(
    prior: str = "joint",
    num_filters: int = 192,
    num_latents: int = 192,
    mixture_components: int = 1,
    straight_through: bool = False,
    **prior_options,
) -> CompressionModel:
    """Shorthand for `ModelConfig(prior, ...).build(straight_through)` (ValueError on a bad
    configuration)."""
    config = ModelConfig(prior, num_filters, num_latents, mixture_components, prior_options)
    return config.build(straight_through)


def init_params(model: CompressionModel, key: Array, image_size: int = 64) -> dict:
    """Initialise the model's variables on a (1, image_size, image_size, 3) input."""
    x = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    return model.init({"params": key, "noise": key}, x, train=False)["params"]


def latent_codec_params(params: dict) -> dict:
    """The part of a model's params its latent codec reads (the two share a scope): all but the
    transforms g_a and g_s. Jitted coding steps take only these, fewer leaves to pass per call."""
    return {name: value for name, value in params.items() if name not in ("g_a", "g_s")}


def count_params(params: dict) -> int:
    return sum(int(p.size) for p in jax.tree_util.tree_leaves(params))
