"""Reading other libraries' weights: `.pth`/`.pth.tar` (PyTorch) or `.npz` state_dicts, under
CompressAI's current names, and the constants a converted model must agree with."""

from __future__ import annotations

import re
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from jahp_jax.models.entropy_models import LIKELIHOOD_BOUND, SCALE_BOUND
from jahp_jax.nn.layers import REPARAM_PEDESTAL

NPZ_PREFIX = "param/"


class ConversionError(ValueError):
    """A source file that cannot be read, or that does not hold the named architecture."""


# ---------------------------------------------------------------------------------------------
# Reading a state_dict.
# ---------------------------------------------------------------------------------------------
def _read_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as archive:
            names = archive.files
            if any(name.startswith(NPZ_PREFIX) for name in names):
                names = [name for name in names if name.startswith(NPZ_PREFIX)]
                return {name[len(NPZ_PREFIX) :]: np.asarray(archive[name]) for name in names}
            return {name: np.asarray(archive[name]) for name in names}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, KeyError) as error:
        raise ConversionError(
            f"cannot read '{path}' as an .npz of arrays (truncated or not an .npz?): "
            f"{first_sentence(error)}"
        ) from None


def _read_torch(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise ConversionError(
            f"reading '{path.name}' needs PyTorch, which is not installed: run "
            "`pip install -e '.[torch]'` (or convert an .npz of the state_dict instead)"
        ) from None
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises RuntimeError, EOFError, UnpicklingError, ...
        raise ConversionError(
            f"cannot read '{path}' with torch.load (truncated or not a PyTorch file?): "
            f"{first_sentence(error)}"
        ) from None
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]  # a CompressAI training checkpoint
    if not isinstance(loaded, Mapping) or not all(
        isinstance(value, torch.Tensor) for value in loaded.values()
    ):
        raise ConversionError(
            f"'{path}' holds neither a state_dict (name -> tensor) nor a checkpoint with a "
            "'state_dict' entry"
        )
    return {
        str(name): value.detach().cpu().float().numpy()
        if value.is_floating_point()
        else value.detach().cpu().numpy()
        for name, value in loaded.items()
    }


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a `.pth`/`.pth.tar`/`.pt` (PyTorch) or `.npz` file, by CompressAI name."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"input file '{path}' does not exist")
    return _read_npz(path) if path.suffix == ".npz" else _read_torch(path)


_DENSITY_NAME = re.compile(
    r"^entropy_bottleneck\.(?:_?(matrices|biases|factors)\.|_(matrix|bias|factor))(\d+)$"
)
_PLURAL = {"matrix": "matrices", "bias": "biases", "factor": "factors"}


def normalize_names(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """CompressAI 1.2 names: drop `module.`, and map the entropy bottleneck's `_matrix{k}` (1.1)
    and `_matrices.{k}` (the v1 zoo files) to `matrices.{k}` (likewise biases, factors)."""
    normalized = {}
    for name, value in state.items():
        if name.startswith("module."):
            name = name[len("module.") :]
        match = _DENSITY_NAME.match(name)
        if match:
            kind = match.group(1) or _PLURAL[match.group(2)]
            name = f"entropy_bottleneck.{kind}.{match.group(3)}"
        if name in normalized:
            raise ConversionError(f"the file holds '{name}' twice (under two naming schemes)")
        normalized[name] = value
    return normalized


def first_sentence(error: BaseException) -> str:
    """The first sentence of a library's error message (they append long explanations)."""
    text = str(error).strip()
    return text.splitlines()[0].split(". ")[0] if text else type(error).__name__


def constant_checks(name: str) -> float | None:
    """The value a CompressAI constant buffer must hold for our model to compute the same thing."""
    gdn_bounds = {
        "beta_reparam.pedestal": REPARAM_PEDESTAL,
        "gamma_reparam.pedestal": REPARAM_PEDESTAL,
        "beta_reparam.lower_bound.bound": float(np.sqrt(1e-6 + REPARAM_PEDESTAL)),
        "gamma_reparam.lower_bound.bound": float(np.sqrt(REPARAM_PEDESTAL)),
    }
    for suffix, value in gdn_bounds.items():
        if name.endswith("." + suffix):
            return value
    if name.endswith("likelihood_lower_bound.bound"):
        return LIKELIHOOD_BOUND
    if name in ("gaussian_conditional.scale_bound", "gaussian_conditional.lower_bound_scale.bound"):
        return SCALE_BOUND
    return None
