"""Convert CompressAI and LIC_TCM models to jahp_jax checkpoints, and float models to
integer-prior ones.

    jahp-convert --from=compressai --arch=mbt2018 mbt2018-3-22901978.pth.tar out_dir
    jahp-convert --from=compressai --arch=cheng2020-anchor cheng2020-anchor-3-e49be189.pth.tar out
    jahp-convert --from=tcm --arch=tcm mse_lambda_0.0035.pth.tar out_dir
    jahp-convert --to=integer FLOAT_CHECKPOINT out_dir

The 2018 models (`ARCHS`) are converted here; cheng2020, ELIC and TCM by
`jahp_jax.io.convert_followups` (sizes, groups and options read from the weights).

`convert_to_integer` reads a jahp_jax checkpoint (a workdir, its checkpoints/ folder or a step
folder) and writes, into the new folder out_dir, the same model with an integer prior path
(`jahp_jax.coding.integer`): its files decode bit-exactly on any machine
(docs/portable_files.md). The command is `jahp_jax.cli.convert`.

The CompressAI conversion (`convert_file`) reads a CompressAI `state_dict` (a `.pth`/`.pth.tar`
file holding the bare state_dict or a training checkpoint with a `state_dict` entry, or an `.npz`
of the same arrays, optionally prefixed `param/`), checks that it is exactly the named
architecture, infers N and M from the weights and writes an ordinary jahp_jax checkpoint
(`checkpoints.save_model`, step 0) under `out_dir`, which every other command (evaluate, codec,
train) loads.

Layout changes: conv weights (out, in, kh, kw) -> HWIO; transposed conv weights (in, out, kh, kw)
-> our (kh, kw, out, in) (the same axis permutation); GDN `beta`/`gamma` and the entropy
bottleneck's parameters are copied as stored (CompressAI uses our reparameterisation, which is
checked against the file's `*_reparam` buffers). The coder's tables (`_quantized_cdf`, `_offset`,
`_cdf_length`, `scale_table`) are ignored: our coder builds its own. Reading `.pth` needs PyTorch
(`pip install -e '.[torch]'`); `.npz` input does not.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

from jahp_jax.io.checkpoints import (
    checkpoint_root,
    integer_form,
    load_model,
    read_config,
    resolve_checkpoint,
    save_model,
)
from jahp_jax.io.convert_followups import ARCHS as FOLLOWUP_ARCHS
from jahp_jax.io.convert_followups import convert_followup_model
from jahp_jax.io.state_dicts import (
    ConversionError,
    constant_checks,
    normalize_names,
    read_state_dict,
)
from jahp_jax.models.compression_model import CompressionModel, init_params
from jahp_jax.models.config import ModelConfig
from jahp_jax.nn.layers import causal_mask

# CompressAI zoo architecture name -> our prior.
ARCHS: dict[str, str] = {
    "bmshj2018-factorized": "factorized",
    "bmshj2018-hyperprior": "hyperprior",
    "mbt2018-mean": "mean_scale",
    "mbt2018": "joint",
}

# The architectures each source library offers (`--from`, `--arch`).
SOURCES: dict[str, tuple[str, ...]] = {
    "compressai": (*ARCHS, *(arch for arch in FOLLOWUP_ARCHS if arch != "tcm")),
    "tcm": ("tcm",),  # the authors' LIC_TCM checkpoints
}
CONVERTED_STEP = 0  # the step a converted model is saved at

# Buffers CompressAI keeps in its state_dict that hold no learned value for us: the coder's tables
# (we build our own), the aux-loss target, and constants checked by `_check_constants`.
_IGNORED_SUFFIXES = (
    "._quantized_cdf",
    "._offset",
    "._cdf_length",
    ".scale_table",
    "entropy_bottleneck.target",
)


def _source_name(path: tuple[str, ...]) -> str:
    """Our parameter path -> the CompressAI state_dict name it comes from."""
    module, *rest = path
    if module in ("y_density", "z_density"):
        (leaf,) = rest
        if leaf == "quantiles":
            return "entropy_bottleneck.quantiles"
        kind, index = leaf.rsplit("_", 1)
        return f"entropy_bottleneck.{kind}.{index}"
    if module == "context_prediction":
        (leaf,) = rest
        return f"context_prediction.{'weight' if leaf == 'kernel' else leaf}"
    layer, leaf = rest
    index = layer.removeprefix("layers_")
    return f"{module}.{index}.{'weight' if leaf == 'kernel' else leaf}"


def _to_ours(name: str, array: np.ndarray) -> np.ndarray:
    """A CompressAI array in our layout: 4-D conv weights (out, in, kh, kw) -> (kh, kw, in, out);
    transposed-conv weights (in, out, kh, kw) -> (kh, kw, out, in): the same permutation."""
    if name.endswith(".weight") and array.ndim == 4:
        array = np.transpose(array, (2, 3, 1, 0))
    return np.ascontiguousarray(array, dtype=np.float32)


def _expected_shapes(config: ModelConfig) -> dict[tuple[str, ...], tuple[int, ...]]:
    model = CompressionModel(config)
    abstract = jax.eval_shape(lambda: init_params(model, jax.random.key(0)))
    return {
        tuple(entry.key for entry in path): tuple(leaf.shape)
        for path, leaf in jax.tree_util.tree_flatten_with_path(abstract)[0]
    }


def _torch_shape(name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Our shape of `name` back in CompressAI's layout (for error messages)."""
    if name.endswith(".weight") and len(shape) == 4:
        return (shape[3], shape[2], shape[0], shape[1])
    return shape


# ---------------------------------------------------------------------------------------------
# Checks of the constants our model hard-codes.
# ---------------------------------------------------------------------------------------------
def _check_constants(state: Mapping[str, np.ndarray]) -> None:
    """Verify the constant buffers and the context model's mask, where the file has them."""
    for name, array in state.items():
        expected = constant_checks(name)
        if expected is None:
            continue
        if array.size != 1 or not np.isclose(float(array.reshape(())), expected, rtol=1e-5):
            raise ConversionError(
                f"'{name}' is {array.reshape(-1)[:4]}, but jahp_jax's model fixes it to "
                f"{expected:.6g}; this model was built with non-default settings that jahp_jax "
                "does not support"
            )
    if "context_prediction.mask" in state:
        mask = state["context_prediction.mask"]
        kernel = state.get("context_prediction.weight")
        expected_mask = np.broadcast_to(causal_mask(mask.shape[-1]), mask.shape)
        if mask.ndim != 4 or (kernel is not None and mask.shape != kernel.shape):
            raise ConversionError(
                f"'context_prediction.mask' has shape {mask.shape}, expected the context "
                "weight's shape (out, in, k, k)"
            )
        if not np.array_equal(mask, expected_mask):
            raise ConversionError(
                "'context_prediction.mask' is not the causal mask of type A that jahp_jax's "
                "context model uses"
            )


# ---------------------------------------------------------------------------------------------
# Conversion.
# ---------------------------------------------------------------------------------------------
def _infer_sizes(state: Mapping[str, np.ndarray], arch: str) -> tuple[int, int]:
    """(N, M) from g_a's first and last convolutions."""
    first, last = state.get("g_a.0.weight"), state.get("g_a.6.weight")
    if first is None or last is None or first.ndim != 4 or last.ndim != 4:
        raise ConversionError(
            f"cannot infer N and M of a CompressAI {arch} model: the file has no 4-D "
            "'g_a.0.weight' and 'g_a.6.weight' (analysis transform); is it a CompressAI "
            "bmshj2018/mbt2018 state_dict?"
        )
    return int(first.shape[0]), int(last.shape[0])


def _match(
    state: Mapping[str, np.ndarray], config: ModelConfig
) -> tuple[dict[str, Any], dict[str, list[str]]]:
    """Map `state` onto the parameter tree of `config` -> (params, problems), where problems
    maps 'missing', 'unexpected' and 'wrong shape' to the offending entries (empty if none)."""
    params: dict[str, Any] = {}
    problems: dict[str, list[str]] = {"missing": [], "unexpected": [], "wrong shape": []}
    used = set()
    for path, shape in _expected_shapes(config).items():
        name = _source_name(path)
        if name not in state:
            problems["missing"].append(f"'{name}'")
            continue
        used.add(name)
        array = state[name]
        if array.dtype.kind != "f":
            problems["wrong shape"].append(f"'{name}' {array.dtype} instead of floats")
            continue
        if tuple(array.shape) != _torch_shape(name, shape):
            problems["wrong shape"].append(
                f"'{name}' {tuple(array.shape)} instead of {_torch_shape(name, shape)}"
            )
            continue
        node = params
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = _to_ours(name, array)
    ignored = {name for name in state if name.endswith(_IGNORED_SUFFIXES)}
    constants = {name for name in state if constant_checks(name) is not None}
    constants |= {"context_prediction.mask"} & set(state)
    unexpected = sorted(set(state) - used - ignored - constants)
    problems["unexpected"] = [f"'{name}'" for name in unexpected]
    return params, {kind: entries for kind, entries in problems.items() if entries}


def _matching_archs(state: Mapping[str, np.ndarray]) -> list[str]:
    """The architectures `state` converts to without a problem (for the error message)."""
    matches = []
    for arch, prior in ARCHS.items():
        try:
            num_filters, num_latents = _infer_sizes(state, arch)
            config = ModelConfig(prior, num_filters, num_latents)
        except ValueError:
            continue
        if not _match(state, config)[1]:
            matches.append(arch)
    return matches


def convert_state_dict(
    state: Mapping[str, np.ndarray], arch: str, source: str = "the state_dict"
) -> tuple[ModelConfig, dict[str, Any]]:
    """A CompressAI state_dict of `arch` -> (ModelConfig, jahp_jax params as numpy float32).

    Raises ConversionError naming the missing, unexpected and misshapen entries when `state` is
    not exactly a CompressAI `arch` model.
    """
    if arch not in ARCHS:
        raise ConversionError(f"unknown --arch '{arch}'; choose one of: {', '.join(ARCHS)}")
    state = normalize_names(state)
    num_filters, num_latents = _infer_sizes(state, arch)
    try:
        config = ModelConfig(ARCHS[arch], num_filters, num_latents)
    except ValueError as error:
        raise ConversionError(f"{source}: {error}") from None
    params, problems = _match(state, config)
    if problems:
        shown = "; ".join(
            f"{kind} {len(entries)} ({', '.join(entries[:3])}{', ...' if len(entries) > 3 else ''})"
            for kind, entries in problems.items()
        )
        others = [other for other in _matching_archs(state) if other != arch]
        hint = f" (it matches --arch={others[0]})" if others else ""
        raise ConversionError(
            f"{source} is not a CompressAI {arch} model with N={num_filters}, "
            f"M={num_latents}{hint}: {shown}"
        )
    _check_constants(state)
    return config, params


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def convert_file(
    source_path: str | Path,
    arch: str,
    out_dir: str | Path,
    log: Callable[[str], None] = lambda _line: None,
    source_format: str = "compressai",
) -> Path:
    """Convert a file of `arch` from `source_format` (`SOURCES`) into a checkpoint under
    `out_dir` (a workdir); returns the step folder written. Refuses an `out_dir` that already
    holds checkpoints."""
    if source_format not in SOURCES:
        raise ConversionError(
            f"unknown source '{source_format}'; choose one of: {', '.join(SOURCES)}"
        )
    if arch not in SOURCES[source_format]:
        raise ConversionError(
            f"--from={source_format} has no architecture '{arch}'; choose one of: "
            f"{', '.join(SOURCES[source_format])}"
        )
    source_path = Path(source_path)
    root = checkpoint_root(out_dir)
    if root.exists() and any(root.iterdir()):
        raise ConversionError(
            f"'{root}' already holds checkpoints; choose an empty or new output folder"
        )
    state = read_state_dict(source_path)
    source = f"'{source_path.name}'"
    if arch in ARCHS:
        config, params = convert_state_dict(state, arch, source=source)
    else:
        config, params = convert_followup_model(state, arch, source=source)
    extra = {
        "source": {
            "format": source_format,
            "arch": arch,
            "file": source_path.name,
            "sha256": file_sha256(source_path),
        }
    }
    log(f"{source_path.name}: {source_format} {arch} -> {config.describe()}")
    return save_model(root, CONVERTED_STEP, config, params, extra=extra)


def convert_to_integer(
    source: str | Path, out_dir: str | Path, log: Callable[[str], None] = lambda _line: None
) -> Path:
    """Write the float model of checkpoint `source` with an integer prior path as a new workdir
    `out_dir` (same step, `integer_prior=True`, params plus `params["integer_prior"]`); returns
    the step folder written. All or nothing: written beside out_dir, then renamed."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise ConversionError(f"'{out_dir}' already exists; convert into a new folder")
    if not out_dir.parent.is_dir():
        raise ConversionError(f"folder '{out_dir.parent}' does not exist; create it first")
    step_dir = resolve_checkpoint(source)
    _, params, config = load_model(step_dir)
    if config.integer_prior:
        raise ConversionError(f"'{source}' already holds an integer-prior model")
    try:
        integer_config, converted, extra = integer_form(
            config, params, read_config(step_dir)[1], step_dir
        )
    except ValueError as error:
        raise ConversionError(f"cannot convert '{source}': {error}") from None
    partial = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    try:
        save_model(checkpoint_root(partial), int(step_dir.name), integer_config, converted, extra)
        partial.rename(out_dir)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    log(f"{step_dir}: {config.describe()} -> {integer_config.describe()}")
    return checkpoint_root(out_dir) / step_dir.name


