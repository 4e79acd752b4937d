"""Named models (`--model`): a transform family + a prior + its options, at the reference
implementation's default sizes. `--transform`, `--prior`, `--num_filters`, ... given beside
`--model` override its values (the parts still compose freely)."""

from __future__ import annotations

import dataclasses
from typing import Any


@dataclasses.dataclass(frozen=True)
class ModelPreset:
    """The ModelConfig fields a named model sets, and the reference it reproduces."""

    transform: str
    prior: str
    num_filters: int
    num_latents: int
    reference: str
    prior_options: tuple[tuple[str, Any], ...] = ()
    mixture_components: int = 1

    def fields(self) -> dict[str, Any]:
        """The ModelConfig fields (as keyword arguments)."""
        return {
            "transform": self.transform,
            "prior": self.prior,
            "num_filters": self.num_filters,
            "num_latents": self.num_latents,
            "mixture_components": self.mixture_components,
            "prior_options": self.prior_options,
        }


MODELS: dict[str, ModelPreset] = {
    "bmshj2018-factorized": ModelPreset(
        "mbt2018", "factorized", 128, 192, "CompressAI FactorizedPrior (zoo qualities 1-5)"
    ),
    "bmshj2018-hyperprior": ModelPreset(
        "mbt2018", "hyperprior", 128, 192, "CompressAI ScaleHyperprior (zoo qualities 1-5)"
    ),
    "mbt2018-mean": ModelPreset(
        "mbt2018", "mean_scale", 128, 192, "CompressAI MeanScaleHyperprior (zoo qualities 1-4)"
    ),
    "mbt2018": ModelPreset(
        "mbt2018", "joint", 192, 192, "CompressAI JointAutoregressiveHierarchicalPriors"
    ),
    "cheng2020-anchor": ModelPreset(
        "cheng2020-anchor", "joint", 192, 192, "CompressAI Cheng2020Anchor (1 Gaussian)"
    ),
    "cheng2020-attn": ModelPreset(
        "cheng2020-attn", "joint", 192, 192, "CompressAI Cheng2020Attention (1 Gaussian)"
    ),
    "cheng2020-anchor-gmm": ModelPreset(
        "cheng2020-anchor", "joint", 192, 192, "Cheng et al. 2020 as published (3 Gaussians)",
        mixture_components=3,
    ),  # fmt: skip
    "cheng2020-attn-gmm": ModelPreset(
        "cheng2020-attn", "joint", 192, 192, "Cheng et al. 2020 as published (3 Gaussians)",
        mixture_components=3,
    ),  # fmt: skip
    "cheng2020-anchor-checkerboard": ModelPreset(
        "cheng2020-anchor", "checkerboard", 192, 192, "CompressAI Cheng2020AnchorCheckerboard",
        prior_options=(("anchors", "even"),),
    ),  # fmt: skip
    "elic2022-official": ModelPreset(
        "elic2022", "elic2022", 192, 320, "CompressAI Elic2022Official"
    ),
    "elic2022-chandelier": ModelPreset(
        "elic2022-chandelier", "elic2022", 192, 320, "CompressAI Elic2022Chandelier",
        prior_options=(("variant", "chandelier"),),
    ),  # fmt: skip
    "tcm": ModelPreset("tcm", "tcm", 128, 320, "LIC_TCM models/tcm.py (TCM-large)"),
}


def model_fields(name: str, overrides: dict[str, Any]) -> dict[str, Any]:
    """The ModelConfig fields of model `name` with `overrides` (the fields given explicitly);
    ValueError (one line) for an unknown name."""
    if name not in MODELS:
        raise ValueError(f"unknown --model '{name}'; choose one of: {', '.join(MODELS)}")
    return {**MODELS[name].fields(), **overrides}
