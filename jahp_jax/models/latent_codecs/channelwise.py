"""`channelwise`: the channel-wise autoregressive prior of Minnen & Singh, ICIP 2020 (ms2020).

y is split into `num_slices` channel slices (10 of 32 channels at the published M = 320; any M
is split as evenly as possible). Slice i is coded in one step, all positions at once, with a
Gaussian whose mean and scale come from 5x5-conv "slice transforms" of the mean (resp. scale)
hyper-synthesis output and of the first min(i, `max_support_slices`) decoded slices; the decoded
slice is then corrected by latent residual prediction, y_hat += 0.5 tanh(lrp(mean support,
y_hat)). Separate mean and scale hyper-synthesis transforms (`h_s`, `h_s_scales`). As in
tensorflow-compression's models/ms2020.py, the slices the decoder and the later slices see are
rounded with a straight-through gradient also in training (only the rate term sees noise); the
`straight_through` flag is therefore moot here. Hidden widths of the slice transforms: 224 and 128
at M = 320, scaled with M. The hyper transforms are those of `mean_scale` (LeakyReLU).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import linen as nn

from jahp_jax.models.entropy_models import (
    FactorizedDensity,
    GaussianConditional,
    add_uniform_noise,
    quantize,
    straight_through_quantize,
)
from jahp_jax.models.latent_codecs.base import (
    CodingStep,
    LatentCodec,
    check_positive_int,
    full_grid_step,
    mean_scale_hyper_analysis,
    mean_scale_hyper_synthesis,
)
from jahp_jax.nn.layers import Conv

Array = jax.Array

NUM_SLICES = 10
MAX_SUPPORT_SLICES = 5


def slice_bounds(num_latents: int, num_slices: int = NUM_SLICES) -> list[tuple[int, int]]:
    """[(start, stop)] of each channel slice: min(num_slices, M) slices, as even as possible."""
    count = min(num_slices, num_latents)
    edges = [round(i * num_latents / count) for i in range(count + 1)]
    return list(zip(edges[:-1], edges[1:], strict=True))


def slice_transform(m: int, out_channels: int) -> nn.Module:
    """conv 5x5/1 (7M/10), conv 5x5/1 (2M/5), conv 3x3/1 (out_channels), ReLU between."""
    return nn.Sequential(
        [
            Conv(max(1, m * 7 // 10), 5, 1), nn.relu,
            Conv(max(1, m * 2 // 5), 5, 1), nn.relu,
            Conv(out_channels, 3, 1),
        ]
    )  # fmt: skip


class ChannelwisePrior(LatentCodec):
    """Mean and scale hyperpriors + channel-slice autoregression + latent residual prediction."""

    num_slices: int = NUM_SLICES
    max_support_slices: int = MAX_SUPPORT_SLICES

    description = "channel-wise autoregressive slices + LRP (Minnen & Singh 2020)"
    hyperprior = True
    supports_mixture = False
    finalizes = True
    options = ("num_slices", "max_support_slices")

    @classmethod
    def check_options(cls, options: dict) -> None:
        for name, value in options.items():
            check_positive_int(f"channelwise option {name}", value)

    @property
    def conditional(self) -> GaussianConditional:
        return GaussianConditional()

    @property
    def bounds(self) -> list[tuple[int, int]]:
        return slice_bounds(self.num_latents, self.num_slices)

    def setup(self):
        n, m = self.num_filters, self.num_latents
        self.h_a = mean_scale_hyper_analysis(n)
        self.h_s = mean_scale_hyper_synthesis(m, m)  # the means' hyper synthesis
        self.h_s_scales = mean_scale_hyper_synthesis(m, m)
        self.z_density = FactorizedDensity(n)
        widths = [stop - start for start, stop in self.bounds]
        self.cc_mean_transforms = [slice_transform(m, width) for width in widths]
        self.cc_scale_transforms = [slice_transform(m, width) for width in widths]
        self.lrp_transforms = [slice_transform(m, width) for width in widths]

    def hyper_synthesis(self, z_hat: Array) -> Array:
        """z_hat -> [mean features (M), scale features (M)] (B, h, w, 2M)."""
        return jnp.concatenate([self.h_s(z_hat), self.h_s_scales(z_hat)], axis=-1)

    # --- one slice ----------------------------------------------------------------------------
    def _support(self, hyper: Array, decoded: Array, index: int) -> tuple[Array, Array]:
        """(mean support, scale support) of slice `index`: the hyper features and the first
        min(index, max_support_slices) slices of `decoded` (B, h, w, M)."""
        mean_hyper, scale_hyper = jnp.split(hyper, 2, axis=-1)
        stop = self.bounds[min(index, self.max_support_slices)][0]
        support = decoded[..., :stop]
        return (
            jnp.concatenate([mean_hyper, support], axis=-1),
            jnp.concatenate([scale_hyper, support], axis=-1),
        )

    def _slice_distribution(self, hyper: Array, decoded: Array, index: int):
        mean_support, scale_support = self._support(hyper, decoded, index)
        dist = {
            "scales": self.cc_scale_transforms[index](scale_support),
            "means": self.cc_mean_transforms[index](mean_support),
        }
        return dist, mean_support

    def _residual(self, mean_support: Array, y_hat_slice: Array, index: int) -> Array:
        """Latent residual prediction 0.5 tanh(lrp(mean support, y_hat slice))."""
        lrp_input = jnp.concatenate([mean_support, y_hat_slice], axis=-1)
        return 0.5 * jnp.tanh(self.lrp_transforms[index](lrp_input))

    # --- the differentiable pass --------------------------------------------------------------
    def distribution(self, hyper: Array | None, y_hat: Array) -> dict[str, Array]:
        """Every slice's parameters given all of y_hat (after LRP), concatenated over channels."""
        dists = [self._slice_distribution(hyper, y_hat, i)[0] for i in range(len(self.bounds))]
        return {k: jnp.concatenate([d[k] for d in dists], axis=-1) for k in ("scales", "means")}

    def __call__(self, y: Array, train: bool = False) -> dict:
        hyper, likelihoods = self.side(y, train)
        y_noisy = add_uniform_noise(y, self.make_rng("noise")) if train else None
        decoded = jnp.zeros_like(y)
        slice_likelihoods = []
        for index, (start, stop) in enumerate(self.bounds):
            dist, mean_support = self._slice_distribution(hyper, decoded, index)
            y_slice = y[..., start:stop]
            rate_input = y_noisy[..., start:stop] if train else quantize(y_slice, dist["means"])
            slice_likelihoods.append(self.y_likelihood(rate_input, dist))
            y_hat_slice = straight_through_quantize(y_slice, dist["means"])
            y_hat_slice = y_hat_slice + self._residual(mean_support, y_hat_slice, index)
            decoded = decoded.at[..., start:stop].set(y_hat_slice)
        likelihoods["y"] = jnp.concatenate(slice_likelihoods, axis=-1)
        return {"y_hat": decoded, "decoder_input": decoded, "likelihoods": likelihoods}

    # --- the coding schedule: one step per slice ----------------------------------------------
    def schedule(self, height: int, width: int) -> list[CodingStep]:
        grid = full_grid_step(height, width)
        return [
            CodingStep(grid.rows, grid.cols, grid.count, index, bounds)
            for index, bounds in enumerate(self.bounds)
        ]

    def step_inputs(self, step, y_pad, hyper):
        """(hyper (h, w, 2M), decoded y_hat (h, w, M)): whole maps (the slice transforms are
        5x5 convs)."""
        return hyper, y_pad

    def step_distribution(self, kind: int, *inputs: Array) -> dict[str, Array]:
        hyper, decoded = inputs
        dist, _ = self._slice_distribution(hyper[None], decoded[None], kind)
        return {k: v.reshape(-1, v.shape[-1]) for k, v in dist.items()}

    def step_finalize(self, kind: int, values: Array, *inputs: Array) -> Array:
        hyper, decoded = inputs
        mean_support, _ = self._support(hyper[None], decoded[None], kind)
        y_hat_slice = values.reshape(*decoded.shape[:2], -1)[None]
        corrected = y_hat_slice + self._residual(mean_support, y_hat_slice, kind)
        return corrected.reshape(values.shape)
