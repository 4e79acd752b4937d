"""The latent codec interface: how y (and the side latent z) are modelled and entropy coded.

A `LatentCodec` is a Flax module with two faces:

* the **differentiable pass** `__call__(y, train)` -> {'y_hat', 'decoder_input', 'likelihoods'}
  (training: additive uniform noise; evaluation: rounding as the coder transmits), built on
  `distribution(hyper, y_hat)`, the distribution parameters of every latent given all of y_hat
  (teacher forcing: what the context models see at training time);
* a **static coding schedule** `schedule(height, width)`: a list of `CodingStep`s, each a set of
  positions (and channels) coded together, whose distribution parameters come from one jitted
  call `step_distribution(kind, *coding_constants(), *step_inputs(step, y_pad, hyper))` on
  what earlier steps decoded (`coding_constants`: arrays derived from the parameters once per
  coder, such as the context model's masked kernel). `jahp_jax.coding.range_coder.LatentCoder`
  runs any
  schedule with one loop and picks the table family from `conditional` (a Gaussian, a Gaussian
  mixture, or None for a learned factorized density).

The coder's per-step parameters must equal `distribution(hyper, y_hat_decoded)` at the step's
positions (tests/test_latent_codecs.py checks it for every registered prior). Parameter names are
those of the published models (`h_a`, `h_s`, `z_density`, `context_prediction`,
`entropy_parameters`, ...), shared with CompressAI's so that its checkpoints convert.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jahp_jax.models.entropy_models import (
    FactorizedDensity,
    GaussianConditional,
    GaussianMixtureConditional,
    add_uniform_noise,
    make_conditional,
    quantize,
    straight_through_quantize,
)
from jahp_jax.nn.layers import Conv, ConvTranspose, leaky_relu

Array = jax.Array
Conditional = GaussianConditional | GaussianMixtureConditional


@dataclasses.dataclass(frozen=True)
class CodingStep:
    """Symbols coded together: positions rows[:count], cols[:count] (int64, padded to a fixed
    width with valid positions so that steps of one `kind` share a compiled function) and
    channels [channels[0], channels[1]) (None: all M). `kind` selects the step function."""

    rows: np.ndarray
    cols: np.ndarray
    count: int
    kind: int = 0
    channels: tuple[int, int] | None = None


def full_grid_step(height: int, width: int, kind: int = 0) -> CodingStep:
    """One step holding every position of an h x w latent, in raster order."""
    rows, cols = np.divmod(np.arange(height * width, dtype=np.int64), width)
    return CodingStep(rows, cols, height * width, kind)


def gather_patches(
    y_pad: np.ndarray, rows: np.ndarray, cols: np.ndarray, taps: np.ndarray, window_cols: int
) -> np.ndarray:
    """y_pad (H', W', M) -> (P, T * M): at the T window taps `taps` (flat row-major indices into
    a window `window_cols` wide) of the windows whose top-left corners are (rows, cols) in
    y_pad's coordinates; taps in the order given, then channels."""
    tap_rows, tap_cols = np.divmod(taps, window_cols)
    patches = y_pad[rows[:, None] + tap_rows[None], cols[:, None] + tap_cols[None]]
    return patches.reshape(rows.size, -1)


def check_positive_int(name: str, value: object) -> None:
    """ValueError (one line) unless `value` is an int >= 1 (a bool is not): for model sizes and
    priors' integer options."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")


# ---------------------------------------------------------------------------------------------
# Shared parts (the published layer lists).
# ---------------------------------------------------------------------------------------------
def scale_hyper_transforms(n: int, m: int) -> tuple[nn.Module, nn.Module]:
    """Balle 2018's h_a (on |y|) and h_s (-> M non-negative scales), ReLU between."""
    h_a = nn.Sequential([Conv(n, 3, 1), nn.relu, Conv(n), nn.relu, Conv(n)])
    h_s = nn.Sequential(
        [ConvTranspose(n), nn.relu, ConvTranspose(n), nn.relu, Conv(m, 3, 1), nn.relu]
    )
    return h_a, h_s


def mean_scale_hyper_analysis(n: int) -> nn.Module:
    """Minnen 2018's h_a: conv 3x3/1, conv 5x5/2, conv 5x5/2 (N each), LeakyReLU between."""
    return nn.Sequential([Conv(n, 3, 1), leaky_relu, Conv(n), leaky_relu, Conv(n)])


def mean_scale_hyper_synthesis(m: int, out_channels: int) -> nn.Module:
    """Minnen 2018's h_s: deconv 5x5/2 (M), deconv 5x5/2 (3M/2), conv 3x3/1 (out_channels)."""
    return nn.Sequential(
        [
            ConvTranspose(m), leaky_relu,
            ConvTranspose(m * 3 // 2), leaky_relu,
            Conv(out_channels, 3, 1),
        ]
    )  # fmt: skip


def mean_scale_hyper_transforms(n: int, m: int, out_channels: int) -> tuple[nn.Module, nn.Module]:
    """Minnen 2018's (h_a, h_s)."""
    return mean_scale_hyper_analysis(n), mean_scale_hyper_synthesis(m, out_channels)


def entropy_parameters_network(m: int, out_channels: int) -> nn.Module:
    """1x1 convs 4M -> 10M/3 -> 8M/3 -> out_channels (Minnen 2018)."""
    return nn.Sequential(
        [
            Conv(m * 10 // 3, 1, 1), leaky_relu,
            Conv(m * 8 // 3, 1, 1), leaky_relu,
            Conv(out_channels, 1, 1),
        ]
    )  # fmt: skip


# ---------------------------------------------------------------------------------------------
# The interface.
# ---------------------------------------------------------------------------------------------
class LatentCodec(nn.Module):
    """y (B, h, w, M) -> y_hat, likelihoods; and the coding schedule of y.

    Subclasses set the class attributes, build their parts in `setup` (h_a/h_s/z_density when
    `hyperprior`) and implement `distribution`; the coding defaults fit any prior whose
    distribution does not depend on y_hat (one step, all positions).
    """

    num_filters: int
    num_latents: int
    mixture_components: int = 1
    straight_through: bool = False  # decoder sees round(y - mu) + mu (with identity gradient)

    description: ClassVar[str] = ""
    hyperprior: ClassVar[bool] = False  # codes a side latent z = h_a(y) at 1/4 of y's size
    supports_mixture: ClassVar[bool] = True  # y may be a K-component Gaussian mixture
    coding_padding: ClassVar[tuple[int, int, int, int]] = (0, 0, 0, 0)  # top, bottom, left, right
    finalizes: ClassVar[bool] = False  # `step_finalize` changes the decoded values (LRP)
    options: ClassVar[tuple[str, ...]] = ()  # the prior's own keyword arguments (module fields)

    @classmethod
    def check_options(cls, options: dict) -> None:
        """Raise ValueError (one line) for option values this prior cannot be built with."""

    @property
    def conditional(self) -> Conditional | None:
        """The density family of y given its parameters (None: a learned factorized density)."""
        return make_conditional(self.mixture_components)

    # --- the differentiable pass --------------------------------------------------------------
    def hyper_analysis(self, y: Array) -> Array:
        """h_a: y (B, h, w, M) -> z (B, h/4, w/4, N)."""
        return self.h_a(y)

    def hyper_synthesis(self, z_hat: Array) -> Array:
        """h_s: z_hat -> hyper features (B, h, w, C) that `distribution` reads."""
        return self.h_s(z_hat)

    def side(self, y: Array, train: bool) -> tuple[Array | None, dict[str, Array]]:
        """(hyper features or None, {'z': likelihoods} or {})."""
        if not self.hyperprior:
            return None, {}
        noise = self.make_rng("noise") if train else None
        z_hat, z_likelihoods = self.z_density(self.hyper_analysis(y), noise)
        return self.hyper_synthesis(z_hat), {"z": z_likelihoods}

    def distribution(self, hyper: Array | None, y_hat: Array) -> dict[str, Array]:
        """Distribution parameters of every latent (B, h, w, [K,] M) given hyper features and
        all of y_hat (context models read only the parts their schedule decoded earlier)."""
        raise NotImplementedError

    def y_offset(self, dist: dict[str, Array]) -> Array:
        """The value each y is rounded around (the mean; the mixture mean for a GMM)."""
        return self.conditional.offset(dist)

    def y_likelihood(self, y_hat: Array, dist: dict[str, Array]) -> Array:
        return self.conditional.likelihood(y_hat, dist)

    def quantize_for_evaluation(
        self, y: Array, hyper: Array | None
    ) -> tuple[Array, Array, dict[str, Array]]:
        """Rounding as the coder does -> (y_hat, decoder input, dist). Exact for priors whose
        distribution does not depend on y_hat; context priors override it."""
        dist = self.distribution(hyper, jnp.round(y))
        y_hat = quantize(y, self.y_offset(dist))
        return y_hat, y_hat, dist

    def __call__(self, y: Array, train: bool = False) -> dict:
        """y (B, h, w, M) -> {'y_hat', 'decoder_input', 'likelihoods': {'y', 'z'?}}."""
        hyper, likelihoods = self.side(y, train)
        if train:
            y_hat = add_uniform_noise(y, self.make_rng("noise"))
            dist = self.distribution(hyper, y_hat)
            decoder_input = y_hat
            if self.straight_through:
                decoder_input = straight_through_quantize(y, self.y_offset(dist))
        else:
            y_hat, decoder_input, dist = self.quantize_for_evaluation(y, hyper)
        likelihoods["y"] = self.y_likelihood(y_hat, dist)
        return {"y_hat": y_hat, "decoder_input": decoder_input, "likelihoods": likelihoods}

    def factorized_densities(self) -> dict[str, FactorizedDensity]:
        """The learned factorized densities by latent: 'z' (or 'y' for the factorized prior)."""
        return {"z": self.z_density} if self.hyperprior else {}

    def aux_loss(self) -> Array:
        """Tail-quantile loss of every factorized density (trains `quantiles` only)."""
        densities = self.factorized_densities().values()
        return sum((d.aux_loss() for d in densities), jnp.zeros((), jnp.float32))

    # --- the coding schedule ------------------------------------------------------------------
    def coding_constants(self) -> tuple[Array, ...]:
        """Arrays computed from the parameters once per coder (jitted) and passed to every
        `step_distribution` and `step_finalize` before the step's inputs; here none."""
        return ()

    def schedule(self, height: int, width: int) -> list[CodingStep]:
        """The steps that code an h x w latent (host side, no parameters)."""
        return [full_grid_step(height, width)]

    def step_inputs(
        self, step: CodingStep, y_pad: np.ndarray, hyper: np.ndarray | None
    ) -> tuple[np.ndarray, ...]:
        """Host arrays for `step_distribution`: here the step's hyper features (P, C).

        y_pad is the decoded y_hat so far (zeros elsewhere), padded by `coding_padding`;
        hyper is (h, w, C) or None."""
        return () if hyper is None else (hyper[step.rows, step.cols],)

    def step_distribution(self, kind: int, *inputs: Array) -> dict[str, Array]:
        """Distribution parameters (P, [K,] M_step) of a step from `step_inputs` (jitted)."""
        (hyper,) = inputs
        dist = self.distribution(hyper[None, None], None)
        return {name: value[0, 0] for name, value in dist.items()}

    def step_finalize(self, kind: int, values: Array, *inputs: Array) -> Array:
        """The y_hat (count, M_step) written back for a step's dequantized symbols `values`, from
        the same inputs (jitted; called only when `finalizes`)."""
        return values


class ContextCodec(LatentCodec):
    """A masked 5x5 context model (2M features) on y_hat, optionally beside a mean-scale
    hyperprior (h_s -> 2M features), both read by the entropy parameters (1x1 convs) -> the
    distribution of y. Subclasses choose the context model, its mask and the schedule.

    On the coding side a step's context is a matmul of the decoded values at the kernel taps the
    mask keeps around its positions (`context_windows`) with those taps of the kernel, taken out
    once per coder (`coding_constants`): `context_from_windows`.
    """

    context_mask: ClassVar[np.ndarray]  # (5, 5): the kernel taps the context model reads

    def make_context_model(self) -> nn.Module:
        """A stride-1 5x5 conv M -> 2M whose params are `kernel` (5, 5, M, 2M), unmasked, and
        `bias`; it applies `context_mask`."""
        raise NotImplementedError

    def setup(self):
        n, m = self.num_filters, self.num_latents
        if self.hyperprior:
            self.h_a, self.h_s = mean_scale_hyper_transforms(n, m, 2 * m)
            self.z_density = FactorizedDensity(n)
        self.context_prediction = self.make_context_model()
        self.entropy_parameters = entropy_parameters_network(
            m, self.conditional.params_per_latent * m
        )

    def parameters_from_features(self, hyper: Array | None, context: Array) -> dict[str, Array]:
        """hyper (..., 2M) or None, context (..., 2M) -> the split distribution parameters."""
        features = context if hyper is None else jnp.concatenate([hyper, context], axis=-1)
        return self.conditional.split(self.entropy_parameters(features))

    @property
    def context_taps(self) -> np.ndarray:
        """The T taps the context mask keeps, as flat row-major indices into the 5x5 kernel."""
        return np.flatnonzero(self.context_mask)

    def coding_constants(self) -> tuple[Array, ...]:
        """(the context kernel at `context_taps`, (T M, 2M),)."""
        kernel = self.context_prediction.variables["params"]["kernel"]
        taps = kernel.reshape(-1, *kernel.shape[2:])[self.context_taps]
        return (taps.reshape(-1, kernel.shape[-1]),)

    def context_windows(self, y_pad: np.ndarray, step: CodingStep) -> np.ndarray:
        """(P, T M): the decoded y_hat at `context_taps` around the step's positions (y_pad is
        padded by 2 rows and columns before, so a window's top-left corner is (row, col))."""
        return gather_patches(y_pad, step.rows, step.cols, self.context_taps, 5)

    def context_from_windows(self, windows: Array, kernel_taps: Array) -> Array:
        """windows (P, T M) (`context_windows`), kernel_taps (`coding_constants`) -> context
        features (P, 2M), equal to the context model's output at those positions."""
        return windows @ kernel_taps + self.context_prediction.variables["params"]["bias"]

    def step_parameters(self, hyper: Array | None, context: Array) -> dict[str, Array]:
        """(P, 2M) features of one step -> its distribution parameters (P, [K,] M)."""
        dist = self.parameters_from_features(
            None if hyper is None else hyper[None, None], context[None, None]
        )
        return {name: value[0, 0] for name, value in dist.items()}
