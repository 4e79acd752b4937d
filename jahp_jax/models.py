"""The compression model: analysis/synthesis transforms and the prior registry.

One model class, `CompressionModel`; priors differ only by which shared parts they compose:

| prior        | y density                              | hyper h_a / h_s              | context |
|--------------|----------------------------------------|------------------------------|---------|
| factorized   | FactorizedDensity (Balle 2018)         | -                            | -       |
| hyperprior   | N(0, s^2), s from h_s (Balle 2018)     | on |y|, ReLU, h_s -> M scales | -       |
| mean_scale   | N(mu, s^2) or GMM from h_s             | LeakyReLU, h_s -> params     | -       |
| context      | N(mu, s^2) or GMM from the context     | -                            | 5x5 A   |
| joint        | N(mu, s^2) or GMM from h_s + context   | LeakyReLU, h_s -> 2M         | 5x5 A   |

The layer list follows Minnen et al. 2018 (and CompressAI's `mbt2018`, whose layer indices the
parameter names `layers_<i>` mirror): g_a = 4 x conv 5x5/2 with GDN between; h_a = conv 3x3/1,
conv 5x5/2, conv 5x5/2; h_s = deconv 5x5/2 (M), deconv 5x5/2 (3M/2), conv 3x3/1 (2M); context =
masked 5x5 conv (2M); entropy parameters = 1x1 convs 4M -> 10M/3 -> 8M/3 -> 2M (3KM for a
K-component mixture).
"""

from __future__ import annotations

import dataclasses
from typing import Literal

import jax
import jax.numpy as jnp
from flax import linen as nn

from jahp_jax.entropy_models import (
    FactorizedDensity,
    add_uniform_noise,
    make_conditional,
    quantize,
    straight_through_quantize,
)
from jahp_jax.layers import GDN, Conv, ConvTranspose, MaskedConv, leaky_relu

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class PriorSpec:
    """What a prior is made of."""

    hyperprior: Literal["scale", "mean_scale"] | None
    context: bool
    description: str

    @property
    def conditional(self) -> bool:
        """True when y has a conditional (Gaussian or mixture) density."""
        return self.hyperprior is not None or self.context

    @property
    def has_means(self) -> bool:
        return self.context or self.hyperprior == "mean_scale"


PRIORS: dict[str, PriorSpec] = {
    "factorized": PriorSpec(None, False, "fully factorized density on y (Balle et al. 2018)"),
    "hyperprior": PriorSpec(
        "scale", False, "zero-mean Gaussian, scales from a hyperprior (Balle 2018)"
    ),
    "mean_scale": PriorSpec("mean_scale", False, "Gaussian with mean and scale from a hyperprior"),
    "context": PriorSpec(None, True, "Gaussian from an autoregressive 5x5 context model only"),
    "joint": PriorSpec("mean_scale", True, "context model + mean-scale hyperprior (Minnen 2018)"),
}

# Named (N, M) sizes of the published models: M=192 for the low rates, 320 for the high ones.
PRESETS: dict[str, tuple[int, int]] = {"low": (192, 192), "high": (192, 320)}


def check_config(prior: str, num_filters: int, num_latents: int, mixture_components: int) -> None:
    """Raise ValueError with a clear message for a model configuration that cannot be built."""
    if prior not in PRIORS:
        raise ValueError(f"unknown prior '{prior}'; choose one of: {', '.join(PRIORS)}")
    if num_filters < 1 or num_latents < 1:
        raise ValueError(
            f"num_filters and num_latents must be >= 1, got {num_filters}, {num_latents}"
        )
    if mixture_components < 1:
        raise ValueError(f"mixture_components must be >= 1, got {mixture_components}")
    if mixture_components > 1 and not PRIORS[prior].has_means:
        raise ValueError(
            f"mixture_components={mixture_components} needs a prior that predicts means "
            f"(mean_scale, context or joint), not '{prior}'"
        )


class CompressionModel(nn.Module):
    """x (B, H, W, 3) in [0, 1], H and W multiples of 64 (16 for `factorized`, `context`).

    `__call__(x, train)` returns {'x_hat', 'y_hat', 'likelihoods': {'y', 'z'?}}. With train=True
    the quantizer is additive uniform noise (rng stream 'noise'); with train=False latents are
    rounded around their offsets exactly as the coder transmits them: z around the learned medians,
    y around the predicted mean. For autoregressive priors the one-pass evaluation feeds the context
    model (and the decoder) round(y) and codes y around the mean this gives, as CompressAI's
    `forward` does; the exact coded rate comes from `jahp_jax.coding`.
    """

    prior: str = "joint"
    num_filters: int = 192
    num_latents: int = 192
    mixture_components: int = 1
    straight_through: bool = False  # decoder sees round(y - mu) + mu (with identity gradient)

    def setup(self):
        check_config(self.prior, self.num_filters, self.num_latents, self.mixture_components)
        spec = PRIORS[self.prior]
        n, m = self.num_filters, self.num_latents
        self.conditional = make_conditional(self.mixture_components)
        distribution_channels = self.conditional.params_per_latent * m

        self.g_a = nn.Sequential([Conv(n), GDN(), Conv(n), GDN(), Conv(n), GDN(), Conv(m)])
        self.g_s = nn.Sequential(
            [
                ConvTranspose(n), GDN(inverse=True),
                ConvTranspose(n), GDN(inverse=True),
                ConvTranspose(n), GDN(inverse=True),
                ConvTranspose(3),
            ]
        )  # fmt: skip
        if spec.hyperprior is None and not spec.context:
            self.y_density = FactorizedDensity(m)
        if spec.hyperprior == "scale":
            self.h_a = nn.Sequential([Conv(n, 3, 1), nn.relu, Conv(n), nn.relu, Conv(n)])
            self.h_s = nn.Sequential(
                [ConvTranspose(n), nn.relu, ConvTranspose(n), nn.relu, Conv(m, 3, 1), nn.relu]
            )
        elif spec.hyperprior == "mean_scale":
            hyper_channels = 2 * m if spec.context else distribution_channels
            self.h_a = nn.Sequential([Conv(n, 3, 1), leaky_relu, Conv(n), leaky_relu, Conv(n)])
            self.h_s = nn.Sequential(
                [
                    ConvTranspose(m), leaky_relu,
                    ConvTranspose(m * 3 // 2), leaky_relu,
                    Conv(hyper_channels, 3, 1),
                ]
            )  # fmt: skip
        if spec.hyperprior is not None:
            self.z_density = FactorizedDensity(n)
        if spec.context:
            self.context_prediction = MaskedConv(2 * m, 5)
            self.entropy_parameters = nn.Sequential(
                [
                    Conv(m * 10 // 3, 1, 1), leaky_relu,
                    Conv(m * 8 // 3, 1, 1), leaky_relu,
                    Conv(distribution_channels, 1, 1),
                ]
            )  # fmt: skip

    # --- the pieces, each usable on its own (the coder calls them through `apply(method=...)`) ---
    @property
    def spec(self) -> PriorSpec:
        return PRIORS[self.prior]

    def analysis(self, x: Array) -> Array:
        """g_a: (B, H, W, 3) -> y (B, H/16, W/16, M)."""
        return self.g_a(x)

    def synthesis(self, y_hat: Array) -> Array:
        """g_s: y_hat (B, h, w, M) -> x_hat (B, 16h, 16w, 3), not clipped."""
        return self.g_s(y_hat)

    def hyper_analysis(self, y: Array) -> Array:
        """h_a: y -> z (B, H/64, W/64, N); on |y| for the scale-only hyperprior."""
        return self.h_a(jnp.abs(y) if self.spec.hyperprior == "scale" else y)

    def hyper_synthesis(self, z_hat: Array) -> Array:
        """h_s: z_hat -> hyper features (B, H/16, W/16, C): M scales, 2M features or dist params."""
        return self.h_s(z_hat)

    def context_features(self, y_hat: Array) -> Array:
        """Masked 5x5 conv over y_hat: (B, h, w, M) -> (B, h, w, 2M)."""
        return self.context_prediction(y_hat)

    def distribution(self, hyper: Array | None, context: Array | None) -> dict[str, Array]:
        """Distribution params of y from hyper features and/or context features (one of them may be
        None, per prior); returns the conditional's split dict ('scales', 'means'[, 'weights'])."""
        if self.spec.hyperprior == "scale":
            return {"scales": hyper, "means": jnp.zeros_like(hyper)}
        if self.spec.context:
            features = context if hyper is None else jnp.concatenate([hyper, context], axis=-1)
            return self.conditional.split(self.entropy_parameters(features))
        return self.conditional.split(hyper)

    def y_offset(self, dist: dict[str, Array]) -> Array:
        """The value each y is rounded around (the mean; the mixture mean for a GMM)."""
        return self.conditional.offset(dist)

    def y_likelihood(self, y_hat: Array, dist: dict[str, Array]) -> Array:
        return self.conditional.likelihood(y_hat, dist)

    def aux_loss(self) -> Array:
        """Tail-quantile loss of every factorized density (trains `quantiles` only)."""
        names = ("y_density", "z_density")
        densities = [getattr(self, name) for name in names if hasattr(self, name)]
        return sum((d.aux_loss() for d in densities), jnp.zeros((), jnp.float32))

    # --- the whole forward pass ---------------------------------------------------------------
    def __call__(self, x: Array, train: bool = False) -> dict:
        spec = self.spec
        y = self.analysis(x)
        noise = (lambda: self.make_rng("noise")) if train else (lambda: None)

        if not spec.conditional:
            y_hat, y_likelihoods = self.y_density(y, noise())
            if train and self.straight_through:
                y_hat = straight_through_quantize(y, self.y_density.medians())
            return {
                "x_hat": self.synthesis(y_hat),
                "y_hat": y_hat,
                "likelihoods": {"y": y_likelihoods},
            }

        likelihoods = {}
        hyper = None
        if spec.hyperprior is not None:
            z_hat, likelihoods["z"] = self.z_density(self.hyper_analysis(y), noise())
            hyper = self.hyper_synthesis(z_hat)

        if train:
            y_tilde = add_uniform_noise(y, self.make_rng("noise"))
            context_input = y_tilde
        else:
            context_input = quantize(y)
        context = self.context_features(context_input) if spec.context else None
        dist = self.distribution(hyper, context)
        offset = self.y_offset(dist)

        if train:
            y_hat = y_tilde
            decoder_input = (
                straight_through_quantize(y, offset) if self.straight_through else y_tilde
            )
        else:
            y_hat = quantize(y, offset)
            decoder_input = context_input if spec.context else y_hat
        likelihoods["y"] = self.y_likelihood(y_hat, dist)
        return {"x_hat": self.synthesis(decoder_input), "y_hat": y_hat, "likelihoods": likelihoods}


def create_model(
    prior: str = "joint",
    num_filters: int = 192,
    num_latents: int = 192,
    mixture_components: int = 1,
    straight_through: bool = False,
) -> CompressionModel:
    """Validated constructor (clear ValueError on a bad configuration)."""
    check_config(prior, num_filters, num_latents, mixture_components)
    return CompressionModel(prior, num_filters, num_latents, mixture_components, straight_through)


def init_params(model: CompressionModel, key: Array, image_size: int = 64) -> dict:
    """Initialise the model's variables on a (1, image_size, image_size, 3) input."""
    x = jnp.zeros((1, image_size, image_size, 3), jnp.float32)
    return model.init({"params": key, "noise": key}, x, train=False)["params"]


def count_params(params: dict) -> int:
    return sum(int(p.size) for p in jax.tree_util.tree_leaves(params))
