"""The parts priors are composed of (see `base.Composition`).

Every part is a frozen dataclass of static facts (sizes, names, which networks), so a composition
compares by value. `modules(composition)` names the networks it creates (unbound Flax modules);
its other methods take the bound codec (`base.LatentCodec`, which owns those networks) and an
`Ops` (float jax or integer numpy), so that the code that computes a distribution is written
once for training, the float coder and the integer coder.

Shapes: maps (B, h, w, C) (the coder's maps have B = 1); rows (P, C) for the P positions of one
coding step. Features and distribution parameters of group k cover that group's channels.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jahp_jax.models.entropy_models import FactorizedDensity, quantize, straight_through_quantize
from jahp_jax.models.latent_codecs.base import (
    CodingStep,
    Network,
    full_grid_step,
    gather_patches,
)
from jahp_jax.nn.layers import Conv, MaskedConv, causal_mask, leaky_relu


class GroupFeatures(NamedTuple):
    """What a conditioning part computes for a group (maps): `values`, read at every position
    by the parameters part (an array, or a dict of arrays), and `state`, read by the latent
    residual prediction after the group (or None)."""

    values: Any
    state: Any = None


def _name(base: str, group: int, composition) -> str:
    """A per-group network's parameter name: `base` for one group, `base_<k>` for several."""
    return base if len(composition.groups) == 1 else f"{base}_{group}"


# ---------------------------------------------------------------------------------------------
# Side information: the hyperprior.
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Hyperprior:
    """z = h_a(y) (or h_a(|y|), Balle 2018's scale hyperprior), z_hat coded with a learned
    factorized density (`z_density`, rounded around its medians), hyper features = the
    concatenated outputs of the synthesis networks (`syntheses`: (name, network) pairs, e.g.
    h_s alone, or ms2020's h_s for the means and h_s_scales for the scales)."""

    analysis: Network
    syntheses: tuple[tuple[str, Network], ...]
    z_channels: int
    on_magnitude: bool = False

    def modules(self, composition) -> dict[str, Any]:
        return {
            "h_a": self.analysis.build(),
            **{name: network.build() for name, network in self.syntheses},
            "z_density": FactorizedDensity(self.z_channels),
        }

    @property
    def synthesis_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.syntheses)

    def analyze(self, codec, y):
        return codec.h_a(jnp.abs(y) if self.on_magnitude else y)

    def synthesize(self, codec, z_hat):
        return _concat(jnp, [getattr(codec, name)(z_hat) for name in self.synthesis_names])

    def prior_path_networks(self, composition) -> list[str]:
        """h_s (the encoder-only h_a stays float)."""
        return list(self.synthesis_names)


def hyperprior(args, *out_channels: int, names: tuple[str, ...] = ("h_s",)) -> Hyperprior:
    """The hyperprior of `args.transform`'s family (`PriorArgs`): its h_a, and one h_s per
    name with the given output channels (e.g. ms2020's h_s and h_s_scales, M each)."""
    t, n, m = args.transform, args.num_filters, args.num_latents
    return Hyperprior(
        Network(t.hyper_analysis, (n, m)),
        tuple(
            (name, Network(t.hyper_synthesis, (n, m, channels)))
            for name, channels in zip(names, out_channels, strict=True)
        ),
        z_channels=t.hyper_channels(n, m),
    )


# ---------------------------------------------------------------------------------------------
# Conditioning: what a group's distribution reads besides its spatial context.
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class HyperFeatures:
    """The hyper features as they are (one group; none without a side part)."""

    def modules(self, composition) -> dict[str, Any]:
        return {}

    def prior_path_networks(self, composition) -> list[str]:
        return []

    def features(self, codec, ops, group: int, hyper, decoded) -> GroupFeatures:
        return GroupFeatures(hyper)


@dataclasses.dataclass(frozen=True)
class LatentShape:
    """No features: a learned factorized density reads only y's shape (the decoded y_hat, zeros
    on the coding side, stands in)."""

    def modules(self, composition) -> dict[str, Any]:
        return {}

    def prior_path_networks(self, composition) -> list[str]:
        return []

    def features(self, codec, ops, group: int, hyper, decoded) -> GroupFeatures:
        return GroupFeatures(decoded)


@dataclasses.dataclass(frozen=True)
class SliceTransforms:
    """Minnen & Singh 2020 (ms2020): the mean (scale) of slice k from a network over the mean
    (scale) hyper features and the first min(k, `max_support`) decoded slices. The hyper
    features are [mean features, scale features] (two h_s of M channels each). With attention
    networks (TCM, Liu et al. 2023: `atten_mean_<k>`, `atten_scale_<k>`), each support passes
    through its attention first; the latent residual prediction then reads the attended mean
    support."""

    mean_networks: tuple[Network, ...]
    scale_networks: tuple[Network, ...]
    max_support: int
    mean_attention: tuple[Network, ...] = ()
    scale_attention: tuple[Network, ...] = ()

    def modules(self, composition) -> dict[str, Any]:
        modules = {
            "cc_mean_transforms": [network.build() for network in self.mean_networks],
            "cc_scale_transforms": [network.build() for network in self.scale_networks],
        }
        if self.mean_attention:
            modules["atten_mean"] = [network.build() for network in self.mean_attention]
            modules["atten_scale"] = [network.build() for network in self.scale_attention]
        return modules

    def prior_path_networks(self, composition) -> list[str]:
        names = ["cc_{}_transforms_{}"] + (["atten_{}_{}"] if self.mean_attention else [])
        return [
            name.format(what, k)
            for k in range(len(self.mean_networks))
            for name in names
            for what in ("mean", "scale")
        ]

    def supports(self, codec, ops, group: int, hyper, decoded):
        """(mean support, scale support) maps of slice `group` (attended, where attention)."""
        xp = ops.xp
        mean_hyper, scale_hyper = xp.split(hyper, 2, axis=-1)
        stop = codec.composition.groups[min(group, self.max_support)][0]
        support = decoded[..., :stop]
        mean_support = _concat(xp, [mean_hyper, support])
        scale_support = _concat(xp, [scale_hyper, support])
        if self.mean_attention:
            mean_support = ops.network(f"atten_mean_{group}", mean_support)
            scale_support = ops.network(f"atten_scale_{group}", scale_support)
        return mean_support, scale_support

    def features(self, codec, ops, group: int, hyper, decoded) -> GroupFeatures:
        mean_support, scale_support = self.supports(codec, ops, group, hyper, decoded)
        values = {
            "scales": ops.network(f"cc_scale_transforms_{group}", scale_support),
            "means": ops.network(f"cc_mean_transforms_{group}", mean_support),
        }
        return GroupFeatures(values, mean_support)


@dataclasses.dataclass(frozen=True)
class ChannelContext:
    """He et al. 2022 (ELIC): group k > 0 reads a network (`channel_context_<k>`) over earlier
    decoded groups: all of them (`earlier='all'`, the paper), or the first and the previous one
    (`'first_and_previous'`, Chandelier's re-implementation, whose weights are published). Its
    features are [channel context, hyper features]; group 0's the hyper features alone."""

    networks: tuple[Network, ...]  # groups 1 .. G-1
    earlier: str = "all"

    def modules(self, composition) -> dict[str, Any]:
        return {f"channel_context_{k + 1}": n.build() for k, n in enumerate(self.networks)}

    def prior_path_networks(self, composition) -> list[str]:
        return [f"channel_context_{k + 1}" for k in range(len(self.networks))]

    def features(self, codec, ops, group: int, hyper, decoded) -> GroupFeatures:
        if group == 0:
            return GroupFeatures(hyper)
        groups = codec.composition.groups
        if self.earlier == "all" or group == 1:
            support = decoded[..., : groups[group][0]]
        else:
            first, previous = groups[0], groups[group - 1]
            support = _concat(ops.xp, [decoded[..., first[0] : first[1]],
                                       decoded[..., previous[0] : previous[1]]])  # fmt: skip
        context = ops.network(f"channel_context_{group}", support)
        return GroupFeatures(_concat(ops.xp, [context, hyper]))


@dataclasses.dataclass(frozen=True)
class LatentResidualPrediction:
    """y_hat_k += 0.5 tanh(lrp_k([mean support, y_hat_k])) after group k is decoded (ms2020);
    the mean support is the conditioning part's `state`."""

    networks: tuple[Network, ...]

    def modules(self, composition) -> dict[str, Any]:
        return {"lrp_transforms": [network.build() for network in self.networks]}

    def prior_path_networks(self, composition) -> list[str]:
        return [f"lrp_transforms_{k}" for k in range(len(self.networks))]

    def apply(self, ops, group: int, features: GroupFeatures, y_hat):
        lrp_input = _concat(ops.xp, [features.state, y_hat])
        return y_hat + ops.half_tanh(ops.network(f"lrp_transforms_{group}", lrp_input))


# ---------------------------------------------------------------------------------------------
# Parameters: features (+ spatial context) -> the distribution of y.
# ---------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class EntropyParameters:
    """1x1 convs over the concatenated features: `order` names them ('hyper' the group's
    features, 'context' its spatial context), e.g. Minnen 2018's [hyper, context]."""

    networks: tuple[Network, ...]  # one per group
    order: tuple[str, ...] = ("hyper", "context")

    def modules(self, composition) -> dict[str, Any]:
        if len(self.networks) == 1:
            return {"entropy_parameters": self.networks[0].build()}
        return {"entropy_parameters": [network.build() for network in self.networks]}

    def prior_path_networks(self, composition) -> list[str]:
        return [_name("entropy_parameters", k, composition) for k in range(len(self.networks))]

    def distribution(self, codec, ops, group: int, features, context) -> dict:
        named = {"hyper": features, "context": context}
        inputs = [named[name] for name in self.order if named[name] is not None]
        params = ops.network(_name("entropy_parameters", group, codec.composition),
                             _concat(ops.xp, inputs))  # fmt: skip
        return ops.split_parameters(params)


@dataclasses.dataclass(frozen=True)
class DirectParameters:
    """The features are the distribution parameters: 'gaussian' splits [scales, means] (or a
    mixture's), 'scales' is a zero-mean Gaussian (Balle 2018), 'dict' takes the conditioning
    part's {'scales', 'means'} as they are, 'medians' a learned factorized density's."""

    kind: str = "gaussian"

    def modules(self, composition) -> dict[str, Any]:
        return {}

    def prior_path_networks(self, composition) -> list[str]:
        return []

    def distribution(self, codec, ops, group: int, features, context) -> dict:
        if self.kind == "gaussian":
            return ops.split_parameters(features)
        if self.kind == "scales":
            return {"scales": features, "means": ops.xp.zeros_like(features)}
        if self.kind == "dict":
            return dict(features)
        medians = codec.y_density.medians()  # the factorized prior: only the shape is read
        return {"medians": jnp.broadcast_to(medians, features.shape[:-1] + medians.shape)}


# ---------------------------------------------------------------------------------------------
# Spatial context and schedules.
# ---------------------------------------------------------------------------------------------
def _gather(features, step: CodingStep):
    """Group features (maps (1, h, w, C), or a dict of them) at a step's positions -> rows."""
    if features is None:
        return None
    if isinstance(features, dict):
        return {name: _gather(value, step) for name, value in features.items()}
    return features[0][step.rows, step.cols]


@dataclasses.dataclass(frozen=True)
class NoContext:
    """No spatial context: a group is coded in one step, every position at once."""

    padding: tuple[int, int, int, int] = (0, 0, 0, 0)

    def modules(self, composition) -> dict[str, Any]:
        return {}

    def prior_path_networks(self, composition) -> list[str]:
        return []

    def schedule(self, height, width, group, channels) -> list[CodingStep]:
        return [full_grid_step(height, width, group=group, channels=channels)]

    def context_map(self, codec, group: int, y_hat):
        return None

    def evaluate(self, codec, y, distribution, straight_through: bool):
        """(rate input, decoder input, dist) as the coder rounds: around the means."""
        dist = distribution(jnp.round(y))
        y_hat = quantize(y, codec.y_offset(dist))
        if straight_through:
            return y_hat, straight_through_quantize(y, codec.y_offset(dist)), dist
        return y_hat, y_hat, dist

    def coding_constants(self, codec) -> dict:
        return {}

    def step_inputs(self, step: CodingStep, y_pad, features) -> tuple:
        """(the step's features (P, C) (None without),): factorized priors read only the
        step's (zero) y_hat's shape."""
        if features.values is None:  # the factorized prior: the shape of the step's y_hat
            return (y_pad[step.rows, step.cols],)
        return (_gather(features.values, step),)

    def step_parameters(self, codec, ops, group: int, kind: int, inputs) -> dict:
        (features,) = inputs
        return codec.composition.parameters.distribution(codec, ops, group, features, None)


@dataclasses.dataclass(frozen=True)
class MaskedContext:
    """A masked 5x5 conv (`context_prediction`, one per group: group channels -> `features`)
    on the decoded y_hat of the group; on the coding side a step's context is the matmul of the
    decoded values at the taps the mask keeps around its positions with those taps of the
    kernel (taken out once per coder, `coding_constants`)."""

    features: tuple[int, ...]  # output channels of each group's context model
    kernel_size = 5

    def mask(self) -> np.ndarray:
        raise NotImplementedError

    @property
    def taps(self) -> np.ndarray:
        """The T taps the mask keeps, as flat row-major indices into the 5x5 kernel."""
        return np.flatnonzero(self.mask())

    def modules(self, composition) -> dict[str, Any]:
        mask_fn = type(self).mask_fn
        layers = [MaskedConv(channels, self.kernel_size, mask_fn) for channels in self.features]
        if len(layers) == 1:
            return {"context_prediction": layers[0]}
        return {"context_prediction": layers}

    def layer_name(self, codec, group: int) -> str:
        return _name("context_prediction", group, codec.composition)

    def prior_path_networks(self, composition) -> list[str]:
        return [_name("context_prediction", k, composition) for k in range(len(self.features))]

    def coding_constants(self, codec) -> dict:
        constants = {}
        for group in range(len(self.features)):
            name = self.layer_name(codec, group)
            kernel = codec.network(name).variables["params"]["kernel"]
            taps = kernel.reshape(-1, *kernel.shape[2:])[self.taps]
            constants[name] = taps.reshape(-1, kernel.shape[-1])
        return constants

    def windows(self, y_pad: np.ndarray, step: CodingStep) -> np.ndarray:
        """(P, T C): the decoded y_hat of the step's group at the taps around its positions
        (y_pad is padded by 2 rows and columns before, so a window's corner is (row, col))."""
        if step.channels is not None:
            y_pad = y_pad[..., step.channels[0] : step.channels[1]]
        return gather_patches(y_pad, step.rows, step.cols, self.taps, self.kernel_size)

    def step_context(self, codec, ops, group: int, windows):
        return ops.context(self.layer_name(codec, group), windows, self.taps)


@dataclasses.dataclass(frozen=True)
class RasterContext(MaskedContext):
    """The 5x5 mask-A (raster-scan) context of Minnen et al. 2018, coded in wavefronts:
    positions on the wavefront 3 r + c = t depend only on earlier wavefronts (the mask reaches
    rows r-2..r-1, cols c-2..c+2 and row r, cols c-2..c-1), so an h x w latent takes
    3 (h - 1) + w steps."""

    padding = (2, 0, 2, 2)  # the 3x5 windows reach 2 rows up, 2 columns either side

    mask_fn = staticmethod(causal_mask)

    def mask(self) -> np.ndarray:
        return causal_mask(self.kernel_size)

    def context_map(self, codec, group: int, y_hat):
        return codec.network(self.layer_name(codec, group))(y_hat)

    def evaluate(self, codec, y, distribution, straight_through: bool):
        """CompressAI's one-pass evaluation: the context model and the decoder read round(y); y
        is rounded around the means this gives (the exact coded rate comes from the coder)."""
        y_rounded = jnp.round(y)
        dist = distribution(y_rounded)
        return quantize(y, codec.y_offset(dist)), y_rounded, dist

    def schedule(self, height, width, group, channels) -> list[CodingStep]:
        rows, cols, counts = wavefront_schedule(height, width)
        return [
            CodingStep(r, c, int(n), group=group, channels=channels)
            for r, c, n in zip(rows, cols, counts, strict=True)
        ]

    def step_inputs(self, step: CodingStep, y_pad, features) -> tuple:
        """(the step's features (P, C) or None, its causal windows (P, 12 C))."""
        return _gather(features.values, step), self.windows(y_pad, step)

    def step_parameters(self, codec, ops, group: int, kind: int, inputs) -> dict:
        features, windows = inputs
        context = self.step_context(codec, ops, group, windows)
        return codec.composition.parameters.distribution(codec, ops, group, features, context)


def wavefront_schedule(height: int, width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Positions of each wavefront 3 r + c = t, padded to a fixed width P.

    Returns rows (T, P), cols (T, P) int64 (padding entries point at (0, 0)) and counts (T,),
    T = 3 (height - 1) + width.
    """
    steps = 3 * (height - 1) + width
    width_p = min(height, (width + 2) // 3)
    rows = np.zeros((steps, width_p), np.int64)
    cols = np.zeros((steps, width_p), np.int64)
    counts = np.zeros(steps, np.int64)
    for t in range(steps):
        r = np.arange(max(0, -(-(t - width + 1) // 3)), min(height - 1, t // 3) + 1)
        counts[t] = r.size
        rows[t, : r.size] = r
        cols[t, : r.size] = t - 3 * r
    return rows, cols, counts


ANCHOR, NON_ANCHOR = 0, 1  # the checkerboard's step kinds


def checkerboard_mask(kernel_size: int = 5) -> np.ndarray:
    """(k, k) float32: 1 on the taps of the other parity than the centre (the anchors around a
    non-anchor)."""
    taps = np.add.outer(np.arange(kernel_size), np.arange(kernel_size))
    return ((taps - 2 * (kernel_size // 2)) % 2).astype(np.float32)


def anchor_map(height: int, width: int, parity: int = 1) -> np.ndarray:
    """(h, w) bool: True at the anchors, the positions with (r + c) % 2 == parity."""
    return np.add.outer(np.arange(height), np.arange(width)) % 2 == parity


@dataclasses.dataclass(frozen=True)
class CheckerboardContext(MaskedContext):
    """He et al. 2021: the anchors ((r + c) % 2 == `parity`; 1 is our `checkerboard` prior's
    convention, 0 CompressAI's `CheckerboardLatentCodec` default) are coded first with a zero
    context; the other half then from a 5x5 conv over the decoded anchors. Two steps per group
    whatever the size."""

    parity: int = 1
    padding = (2, 2, 2, 2)

    mask_fn = staticmethod(checkerboard_mask)

    def mask(self) -> np.ndarray:
        return checkerboard_mask(self.kernel_size)

    def _anchors(self, y_hat):
        return jnp.asarray(anchor_map(*y_hat.shape[1:3], self.parity), y_hat.dtype)[
            None, :, :, None
        ]

    def context_map(self, codec, group: int, y_hat):
        anchors = self._anchors(y_hat)
        layer = codec.network(self.layer_name(codec, group))
        return layer(y_hat * anchors) * (1.0 - anchors)

    def evaluate(self, codec, y, distribution, straight_through: bool):
        """The coder's two passes: anchors around their means given no context, then the rest
        around the means their context gives."""
        rounding = straight_through_quantize if straight_through else quantize
        anchors = self._anchors(y)
        first = distribution(jnp.zeros_like(y))  # right at the anchors
        y_anchors = rounding(y, codec.y_offset(first)) * anchors
        dist = distribution(y_anchors)
        y_hat = quantize(y, codec.y_offset(dist))
        if not straight_through:
            return y_hat, y_hat, dist
        y_rest = straight_through_quantize(y, codec.y_offset(dist))
        return y_hat, y_anchors + y_rest * (1.0 - anchors), dist

    def schedule(self, height, width, group, channels) -> list[CodingStep]:
        anchors = anchor_map(height, width, self.parity)
        steps = []
        for kind, positions in ((ANCHOR, anchors), (NON_ANCHOR, ~anchors)):
            rows, cols = np.nonzero(positions)
            rows, cols = rows.astype(np.int64), cols.astype(np.int64)
            steps.append(CodingStep(rows, cols, rows.size, kind, group, channels))
        return steps

    def step_inputs(self, step: CodingStep, y_pad, features) -> tuple:
        """Anchors: (features (P, C),); the rest: (features, the 12 anchors of their 5x5
        windows (P, 12 C))."""
        gathered = _gather(features.values, step)
        if step.kind == ANCHOR:
            return (gathered,)
        return gathered, self.windows(y_pad, step)

    def step_parameters(self, codec, ops, group: int, kind: int, inputs) -> dict:
        features, *windows = inputs
        if kind == ANCHOR:
            rows = _rows(features)
            context = ops.xp.zeros((rows, self.features[group]), _dtype(ops, features))
        else:
            context = self.step_context(codec, ops, group, windows[0])
        return codec.composition.parameters.distribution(codec, ops, group, features, context)


def _rows(features) -> int:
    if isinstance(features, dict):
        return _rows(next(iter(features.values())))
    return features.shape[0]


def _dtype(ops, features):
    if isinstance(features, dict):
        return _dtype(ops, next(iter(features.values())))
    return features.dtype


def _concat(xp, arrays: list) -> Any:
    return arrays[0] if len(arrays) == 1 else xp.concatenate(arrays, axis=-1)


# ---------------------------------------------------------------------------------------------
# Networks shared by several priors.
# ---------------------------------------------------------------------------------------------
def entropy_parameters_network(in_channels: int, out_channels: int) -> nn.Module:
    """Minnen 2018's entropy parameters: 1x1 convs -> 10M/3 -> 8M/3 -> out_channels, LeakyReLU
    between (`in_channels` = 4M for [hyper 2M, context 2M])."""
    m = in_channels // 4
    return nn.Sequential(
        [
            Conv(m * 10 // 3, 1, 1), leaky_relu,
            Conv(m * 8 // 3, 1, 1), leaky_relu,
            Conv(out_channels, 1, 1),
        ]
    )  # fmt: skip
