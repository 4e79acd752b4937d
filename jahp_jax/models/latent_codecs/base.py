"""The latent codec: one Flax module that runs a prior composed of parts.

A prior is a `Composition` of parts (jahp_jax.models.latent_codecs.parts):

* a **side** part: `Hyperprior` (z = h_a(y), coded with a learned factorized density, hyper
  features h_s(z_hat)) or none;
* **channel groups**: the channel slices of y coded one after another (one group: all of y);
* a **conditioning** part: what the distribution of group k reads besides its spatial context
  (the hyper features; ms2020's slice transforms of the hyper features and earlier groups; ELIC's
  channel context ...);
* a **spatial** part: the context inside a group and its coding schedule (`NoContext`: one
  step; `RasterContext`: the 5x5 mask-A model in wavefronts; `CheckerboardContext`: anchors,
  then the rest);
* a **parameters** part: how features become distribution parameters (`EntropyParameters`:
  1x1 convs over the concatenated features; `DirectParameters`: the features are the
  parameters);
* optional **latent residual prediction** after each group;
* the **density** of y: a Gaussian, a Gaussian mixture, a zero-mean Gaussian, or a learned
  factorized density.

`LatentCodec` has two faces:

* the **differentiable pass** `__call__(y, train)` -> {'y_hat', 'decoder_input', 'likelihoods'}
  (training: additive uniform noise; evaluation: rounding as the coder transmits), and
  `distribution(hyper, y_hat)`, every latent's parameters given all of y_hat (teacher forcing);
* the **coding schedule**: `schedule(h, w)` lists `CodingStep`s; `jahp_jax.coding.runner` runs
  them with one loop, computing each group's features once (`group_features`) and each step's
  distribution (`step_distribution`) with a float backend (these jitted methods) or an integer
  backend (`jahp_jax.coding.integer`), both through the parts' `Ops`-generic code.

The parts create the networks under the names of the published models (`h_a`, `h_s`,
`z_density`, `context_prediction`, `entropy_parameters`, `cc_mean_transforms_<k>`, ...), which
share the model's parameter scope, so CompressAI checkpoints convert and existing checkpoints
load unchanged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jahp_jax.models.entropy_models import (
    FactorizedDensity,
    add_uniform_noise,
    straight_through_quantize,
)

Array = jax.Array


@dataclasses.dataclass(frozen=True)
class CodingStep:
    """Symbols coded together: positions rows[:count], cols[:count] (int64, padded to a fixed
    width with valid positions so that steps of one kind share a compiled function), of channel
    group `group` (channels [channels[0], channels[1]); None: all M). `kind` tells the spatial
    part which pass this is (e.g. anchors or the rest)."""

    rows: np.ndarray
    cols: np.ndarray
    count: int
    kind: int = 0
    group: int = 0
    channels: tuple[int, int] | None = None


def full_grid_step(height: int, width: int, **fields) -> CodingStep:
    """One step holding every position of an h x w latent, in raster order."""
    rows, cols = np.divmod(np.arange(height * width, dtype=np.int64), width)
    return CodingStep(rows, cols, height * width, **fields)


def gather_patches(
    y_pad: np.ndarray, rows: np.ndarray, cols: np.ndarray, taps: np.ndarray, window_cols: int
) -> np.ndarray:
    """y_pad (H', W', C) -> (P, T * C): at the T window taps `taps` (flat row-major indices into
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


@dataclasses.dataclass(frozen=True)
class Network:
    """A network a part creates: `builder(*args)` -> an unbound Flax module. Hashable (the
    builder is a module-level function), so compositions compare by value."""

    builder: Callable[..., nn.Module]
    args: tuple = ()

    def build(self) -> nn.Module:
        return self.builder(*self.args)


class Ops(Protocol):
    """The arithmetic a part's shared code runs on (see `parts`): the differentiable pass and the
    float coder use `FloatOps` (jax, bound to the codec), the integer coder int64 arithmetic
    (`jahp_jax.coding.integer.IntegerOps`: traced into 64-bit XLA programs, or numpy).

    Maps are (B, h, w, C); rows are (P, C)."""

    xp: Any  # jax.numpy or numpy

    def network(self, name: str, x: Any) -> Any:
        """Run the prior network `name` on a map or on rows."""

    def context(self, name: str, windows: Any, taps: np.ndarray) -> Any:
        """The masked context conv `name` at gathered windows (P, T C) -> (P, O)."""

    def half_tanh(self, x: Any) -> Any:
        """0.5 tanh(x), latent residual prediction's nonlinearity."""

    def split_parameters(self, params: Any) -> dict[str, Any]:
        """Raw parameters (..., P C) -> the density's {'scales', 'means'[, 'weights']}."""


class FloatOps:
    """`Ops` in float32 jax, inside a method of the bound codec. `constants` (from
    `LatentCodec.coding_constants`) hold each context layer's kernel taps for `context`."""

    xp = jnp

    def __init__(self, codec: LatentCodec, constants: dict[str, Array] | None = None):
        self.codec = codec
        self.constants = constants or {}

    def network(self, name: str, x: Array) -> Array:
        module = self.codec.network(name)
        if x.ndim == 2:  # rows: the nets are convs, applied to a (1, 1, P, C) map
            return module(x[None, None])[0, 0]
        return module(x)

    def context(self, name: str, windows: Array, taps: np.ndarray) -> Array:
        bias = self.codec.network(name).variables["params"]["bias"]
        return windows @ self.constants[name] + bias

    def half_tanh(self, x: Array) -> Array:
        return 0.5 * jnp.tanh(x)

    def split_parameters(self, params: Array) -> dict[str, Array]:
        return self.codec.conditional.split(params)


# ---------------------------------------------------------------------------------------------
# The composition.
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Composition:
    """What a prior is made of (see the module docstring); built by a prior's `compose`.

    `groups`: (start, stop) channel bounds coded one after another. `training`: how the
    differentiable pass quantizes during training: 'noise' (Minnen 2018: y + U(-1/2, 1/2)
    everywhere, contexts read the noisy y) or 'ste' (ms2020 / ELIC: the rate sees the noisy y,
    contexts, later groups and the decoder see y rounded around its means with a
    straight-through gradient, pass by pass as the coder decodes them)."""

    side: Any  # parts.Hyperprior or None
    groups: tuple[tuple[int, int], ...]
    conditioning: Any  # parts.HyperFeatures, parts.SliceTransforms, ...
    spatial: Any  # parts.NoContext, parts.RasterContext, parts.CheckerboardContext
    parameters: Any  # parts.EntropyParameters, parts.DirectParameters
    density: Any  # an entropy_models conditional, or None (a learned factorized density)
    residual: Any = None  # parts.LatentResidualPrediction or None
    training: str = "noise"

    def modules(self) -> dict[str, nn.Module | list[nn.Module]]:
        """Every network of the prior, by parameter name (unbound)."""
        modules: dict[str, Any] = {}
        for part in (self.side, self.conditioning, self.spatial, self.parameters, self.residual):
            if part is not None:
                modules.update(part.modules(self))
        if self.density is None:
            modules["y_density"] = FactorizedDensity(self.groups[-1][1])
        return modules

    @property
    def num_latents(self) -> int:
        return self.groups[-1][1]

    @property
    def finalizes(self) -> bool:
        """Whether a group's decoded values change after coding (latent residual prediction)."""
        return self.residual is not None


class LatentCodec(nn.Module):
    """y (B, h, w, M) -> y_hat, likelihoods; and the coding schedule of y (see the module
    docstring). `composition` says which prior; `straight_through` (noise training only) makes
    the decoder see round(y - mu) + mu with an identity gradient."""

    composition: Composition
    straight_through: bool = False

    def setup(self):
        for name, module in self.composition.modules().items():
            setattr(self, name, module)

    def network(self, name: str) -> nn.Module:
        """The network with parameter name `name` (`base_<k>`: element k of a list of them)."""
        if hasattr(self, name):
            return getattr(self, name)
        base, _, index = name.rpartition("_")
        return getattr(self, base)[int(index)]

    # --- facts the coder and the tools read -------------------------------------------------
    @property
    def hyperprior(self) -> bool:
        """Whether a side latent z = h_a(y) is coded (at 1/4 of y's size)."""
        return self.composition.side is not None

    @property
    def conditional(self):
        """The density family of y given its parameters (None: a learned factorized density)."""
        return self.composition.density

    @property
    def num_latents(self) -> int:
        return self.composition.num_latents

    @property
    def z_channels(self) -> int:
        return self.composition.side.z_channels

    @property
    def coding_padding(self) -> tuple[int, int, int, int]:
        """(top, bottom, left, right) zeros around the decoded y_hat that step inputs gather."""
        return self.composition.spatial.padding

    @property
    def finalizes(self) -> bool:
        return self.composition.finalizes

    # --- the differentiable pass --------------------------------------------------------------
    def hyper_analysis(self, y: Array) -> Array:
        """h_a: y (B, h, w, M) -> z (B, h/4, w/4, Z)."""
        return self.composition.side.analyze(self, y)

    def hyper_synthesis(self, z_hat: Array) -> Array:
        """h_s: z_hat -> hyper features (B, h, w, C) (the parts' `features` read them)."""
        return self.composition.side.synthesize(self, z_hat)

    def side(self, y: Array, train: bool) -> tuple[Array | None, dict[str, Array]]:
        """(hyper features or None, {'z': likelihoods} or {})."""
        if self.composition.side is None:
            return None, {}
        noise = self.make_rng("noise") if train else None
        z_hat, z_likelihoods = self.z_density(self.hyper_analysis(y), noise)
        return self.hyper_synthesis(z_hat), {"z": z_likelihoods}

    def y_offset(self, dist: dict[str, Array]) -> Array:
        """The value each y is rounded around (the mean; the mixture mean; the median)."""
        if self.conditional is None:
            return dist["medians"]
        return self.conditional.offset(dist)

    def y_likelihood(self, y_hat: Array, dist: dict[str, Array]) -> Array:
        if self.conditional is None:
            return self.y_density.likelihood(y_hat)
        return self.conditional.likelihood(y_hat, dist)

    def _group_distribution(self, ops, group, features, context):
        parameters = self.composition.parameters
        return parameters.distribution(self, ops, group, features.values, context)

    def distribution(self, hyper: Array | None, y_hat: Array) -> dict[str, Array]:
        """Distribution parameters of every latent (B, h, w, [K,] M) given the hyper features and
        all of y_hat (each group reads the earlier groups; each context model only the part of
        its group its schedule decoded earlier): what the coder computes, step by step."""
        c, ops = self.composition, FloatOps(self)
        dists = []
        for group, (start, stop) in enumerate(c.groups):
            features = c.conditioning.features(self, ops, group, hyper, y_hat)
            context = c.spatial.context_map(self, group, y_hat[..., start:stop])
            dists.append(self._group_distribution(ops, group, features, context))
        return _concat_groups(dists)

    def __call__(self, y: Array, train: bool = False) -> dict:
        """y (B, h, w, M) -> {'y_hat', 'decoder_input', 'likelihoods': {'y', 'z'?}}.

        'y_hat' is what the rate is measured on (noisy in training), 'decoder_input' what g_s
        reads."""
        c, ops = self.composition, FloatOps(self)
        hyper, likelihoods = self.side(y, train)
        noisy = add_uniform_noise(y, self.make_rng("noise")) if train else None
        decoded = y if len(c.groups) == 1 else jnp.zeros_like(y)  # what later groups read
        rate_inputs, decoder_inputs, group_likelihoods = [], [], []
        for group, (start, stop) in enumerate(c.groups):
            features = c.conditioning.features(self, ops, group, hyper, decoded)
            y_group = y[..., start:stop]

            def distribution(y_hat, group=group, features=features):
                context = c.spatial.context_map(self, group, y_hat)
                return self._group_distribution(ops, group, features, context)

            if train and c.training == "noise":
                rate_input = noisy[..., start:stop]
                dist = distribution(rate_input)
                decoder_input = rate_input
                if self.straight_through:
                    decoder_input = straight_through_quantize(y_group, self.y_offset(dist))
            else:  # the coder's passes, rounded (straight-through in 'ste' training)
                rate_input, decoder_input, dist = c.spatial.evaluate(
                    self, y_group, distribution, straight_through=c.training == "ste"
                )
                if train:
                    rate_input = noisy[..., start:stop]
            group_likelihoods.append(self.y_likelihood(rate_input, dist))
            if c.residual is not None:
                decoder_input = c.residual.apply(ops, group, features, decoder_input)
            if len(c.groups) > 1:
                decoded = decoded.at[..., start:stop].set(decoder_input)
            rate_inputs.append(rate_input)
            decoder_inputs.append(decoder_input)
        likelihoods["y"] = _concat(group_likelihoods)
        if c.training == "ste":  # the rounded y_hat (what the decoder reconstructs)
            y_hat = _concat(decoder_inputs)
            return {"y_hat": y_hat, "decoder_input": y_hat, "likelihoods": likelihoods}
        return {
            "y_hat": _concat(rate_inputs),
            "decoder_input": _concat(decoder_inputs),
            "likelihoods": likelihoods,
        }

    def factorized_densities(self) -> dict[str, FactorizedDensity]:
        """The learned factorized densities by latent: 'z' (or 'y' for a factorized prior)."""
        densities = {"z": self.z_density} if self.hyperprior else {}
        if self.conditional is None:
            densities["y"] = self.y_density
        return densities

    def aux_loss(self) -> Array:
        """Tail-quantile loss of every factorized density (trains `quantiles` only)."""
        densities = self.factorized_densities().values()
        return sum((d.aux_loss() for d in densities), jnp.zeros((), jnp.float32))

    # --- the coding schedule ------------------------------------------------------------------
    def schedule(self, height: int, width: int) -> list[CodingStep]:
        """The steps that code an h x w latent, group by group (host side, no parameters)."""
        steps = []
        for group, bounds in enumerate(self.composition.groups):
            channels = None if len(self.composition.groups) == 1 else bounds
            steps += self.composition.spatial.schedule(height, width, group, channels)
        return steps

    def coding_constants(self) -> dict[str, Array]:
        """Arrays computed from the parameters once per coder: each context layer's kernel at
        its taps, ((T C, O) by layer name)."""
        return self.composition.spatial.coding_constants(self)

    def group_features(self, group: int, hyper: Array | None, decoded: Array) -> Any:
        """Group `group`'s features (maps (1, h, w, .)) from the hyper features and the decoded
        y_hat (1, h, w, M) of the earlier groups (jitted, once per group)."""
        return self.composition.conditioning.features(self, FloatOps(self), group, hyper, decoded)

    def step_inputs(self, step: CodingStep, y_pad: np.ndarray, features: Any) -> tuple:
        """Host arrays for `step_distribution`: the step's features and context windows (y_pad is
        the decoded y_hat so far (zeros elsewhere), padded by `coding_padding`)."""
        return self.composition.spatial.step_inputs(step, y_pad, features)

    def step_distribution(
        self, group: int, kind: int, constants: dict[str, Array], *inputs: Array
    ) -> tuple[dict[str, Array], Array]:
        """(distribution (P, [K,] C_group), rounding offsets (P, C_group)) of a step (jitted)."""
        ops = FloatOps(self, constants)
        dist = self.composition.spatial.step_parameters(self, ops, group, kind, inputs)
        return dist, self.y_offset(dist)

    def step_finalize(self, group: int, features: Any, values: Array) -> Array:
        """The y_hat (1, h, w, C_group) written back for a group's dequantized symbols (jitted;
        only when `finalizes`)."""
        return self.composition.residual.apply(FloatOps(self), group, features, values)


def _concat(arrays: list[Array]) -> Array:
    return arrays[0] if len(arrays) == 1 else jnp.concatenate(arrays, axis=-1)


def _concat_groups(dists: list[dict[str, Array]]) -> dict[str, Array]:
    return {name: _concat([d[name] for d in dists]) for name in dists[0]}
