"""`context` and `joint`: the 5x5 mask-A (raster-scan) context model of Minnen et al. 2018,
alone or with the mean-scale hyperprior, coded in wavefronts.

Positions on the wavefront 3 r + c = t depend only on earlier wavefronts (the mask-A kernel reaches
rows r-2..r-1, cols c-2..c+2 and row r, cols c-2..c-1, all with 3 r' + c' <= 3 r + c - 1), so an
h x w latent takes 3 (h - 1) + w steps, each one jitted call on the 3x5 causal windows of its
positions (a (P, 12 M) x (12 M, 2M) matmul over the 12 taps the mask keeps) plus the
entropy-parameter 1x1 convs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

from jahp_jax.models.entropy_models import quantize
from jahp_jax.models.latent_codecs.base import CodingStep, ContextCodec
from jahp_jax.nn.layers import MaskedConv, causal_mask

Array = jax.Array


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


class ContextPrior(ContextCodec):
    """Gaussian (or mixture) y from the autoregressive 5x5 context alone."""

    description = "Gaussian from an autoregressive 5x5 context model only"
    context_mask = causal_mask(5)
    coding_padding = (2, 0, 2, 2)  # the 3x5 windows reach 2 rows up, 2 columns either side

    def make_context_model(self) -> nn.Module:
        return MaskedConv(2 * self.num_latents, 5)

    def distribution(self, hyper: Array | None, y_hat: Array) -> dict[str, Array]:
        return self.parameters_from_features(hyper, self.context_prediction(y_hat))

    def quantize_for_evaluation(self, y, hyper):
        """CompressAI's one-pass evaluation: the context model and the decoder read round(y); y is
        rounded around the means this gives (the exact coded rate comes from the coder)."""
        y_rounded = jnp.round(y)
        dist = self.distribution(hyper, y_rounded)
        return quantize(y, self.y_offset(dist)), y_rounded, dist

    def schedule(self, height: int, width: int) -> list[CodingStep]:
        rows, cols, counts = wavefront_schedule(height, width)
        return [CodingStep(r, c, int(n)) for r, c, n in zip(rows, cols, counts, strict=True)]

    def step_inputs(self, step, y_pad, hyper):
        """(P, 12 M) causal windows (the decoded taps of rows r-2..r, cols c-2..c+2) [, hyper
        features (P, 2M)]."""
        windows = self.context_windows(y_pad, step)
        return (windows,) if hyper is None else (windows, hyper[step.rows, step.cols])

    def step_distribution(self, kind: int, *inputs: Array) -> dict[str, Array]:
        kernel_taps, windows, *hyper = inputs
        context = self.context_from_windows(windows, kernel_taps)
        return self.step_parameters(hyper[0] if hyper else None, context)


class JointPrior(ContextPrior):
    """The 5x5 context model beside the mean-scale hyperprior (Minnen et al. 2018)."""

    description = "context model + mean-scale hyperprior (Minnen 2018)"
    hyperprior = True
