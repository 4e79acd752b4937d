"""`checkerboard`: the mean-scale hyperprior with a checkerboard 5x5 context (He et al., CVPR 2021).

Anchors, the positions with r + c odd (CompressAI's convention), are coded first from the
hyperprior alone (their context features are zero); the other half is then coded from the
hyperprior and a 5x5 conv over the decoded anchors. Two coding steps whatever the image size.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jahp_jax.models.entropy_models import quantize
from jahp_jax.models.latent_codecs.base import CodingStep, ContextCodec
from jahp_jax.nn.layers import MaskedConv

Array = jax.Array

ANCHOR, NON_ANCHOR = 0, 1  # the step kinds


def checkerboard_mask(kernel_size: int = 5) -> np.ndarray:
    """(k, k) float32: 1 on the taps of the other parity than the centre (the anchors around a
    non-anchor)."""
    taps = np.add.outer(np.arange(kernel_size), np.arange(kernel_size))
    return ((taps - 2 * (kernel_size // 2)) % 2).astype(np.float32)


def anchor_map(height: int, width: int) -> np.ndarray:
    """(h, w) bool: True at the anchors (r + c odd)."""
    return np.add.outer(np.arange(height), np.arange(width)) % 2 == 1


class CheckerboardPrior(ContextCodec):
    """Mean-scale hyperprior + checkerboard context: two-pass parallel decoding."""

    description = "mean-scale hyperprior + checkerboard 5x5 context, two passes (He 2021)"
    hyperprior = True
    context_mask = checkerboard_mask(5)
    coding_padding = (2, 2, 2, 2)

    def make_context_model(self) -> nn.Module:
        return MaskedConv(2 * self.num_latents, 5, mask_fn=checkerboard_mask)

    def distribution(self, hyper: Array | None, y_hat: Array) -> dict[str, Array]:
        anchors = jnp.asarray(anchor_map(*y_hat.shape[1:3]), y_hat.dtype)[None, :, :, None]
        context = self.context_prediction(y_hat * anchors) * (1.0 - anchors)
        return self.parameters_from_features(hyper, context)

    def quantize_for_evaluation(self, y, hyper):
        """The coder's two passes: anchors around their hyperprior means, then the rest around
        the means their context gives."""
        anchors = jnp.asarray(anchor_map(*y.shape[1:3]), y.dtype)[None, :, :, None]
        first = self.distribution(hyper, jnp.zeros_like(y))  # right at the anchors
        y_anchors = quantize(y, self.y_offset(first)) * anchors
        dist = self.distribution(hyper, y_anchors)
        y_hat = quantize(y, self.y_offset(dist))
        return y_hat, y_hat, dist

    def schedule(self, height: int, width: int) -> list[CodingStep]:
        anchors = anchor_map(height, width)
        steps = []
        for kind, positions in ((ANCHOR, anchors), (NON_ANCHOR, ~anchors)):
            rows, cols = np.nonzero(positions)
            steps.append(CodingStep(rows.astype(np.int64), cols.astype(np.int64), rows.size, kind))
        return steps

    def step_inputs(self, step, y_pad, hyper):
        """Anchors: (hyper (P, 2M),); the rest: (hyper, the 12 anchors of their 5x5 windows
        (P, 12 M))."""
        features = hyper[step.rows, step.cols]
        if step.kind == ANCHOR:
            return (features,)
        return features, self.context_windows(y_pad, step)

    def step_distribution(self, kind: int, *inputs: Array) -> dict[str, Array]:
        kernel_taps, hyper, *windows = inputs
        if kind == ANCHOR:
            context = jnp.zeros((hyper.shape[0], 2 * self.num_latents), hyper.dtype)
        else:
            context = self.context_from_windows(windows[0], kernel_taps)
        return self.step_parameters(hyper, context)
