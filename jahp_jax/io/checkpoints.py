"""Model checkpoints on disk (orbax): one layout shared by training, conversion and inference.

A checkpoint root is an orbax `CheckpointManager` directory, `<workdir>/checkpoints`, holding one
folder per step with the items
  - `config`: JSON, the `ModelConfig` (`jahp_jax.models.config`) plus free-form `extra` metadata,
  - `params`: the model parameters (a pytree of arrays),
  - `train_state`: optimiser state etc. (written by training only; never needed for inference).
`load_model` accepts a training workdir, a checkpoint root, or one step folder.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

from jahp_jax.coding import integer as integer_prior
from jahp_jax.coding.codec import Codec
from jahp_jax.coding.integer import INTEGER_KEY
from jahp_jax.models.compression_model import CompressionModel, init_params
from jahp_jax.models.config import ModelConfig
from jahp_jax.models.config import params_fingerprint as params_fingerprint  # re-exported

CHECKPOINTS_SUBDIR = "checkpoints"


class CheckpointError(ValueError):
    """A checkpoint path that does not exist, holds no checkpoint, or does not match."""


def checkpoint_root(workdir: str | Path) -> Path:
    """The orbax manager directory of a training workdir."""
    return Path(workdir) / CHECKPOINTS_SUBDIR


def _is_step_dir(path: Path) -> bool:
    return (path / "params").is_dir() and (path / "config").is_dir()


def _step_dirs(root: Path) -> list[Path]:
    steps = [p for p in root.iterdir() if p.is_dir() and p.name.isdigit() and _is_step_dir(p)]
    return sorted(steps, key=lambda p: int(p.name))


def resolve_checkpoint(path: str | Path) -> Path:
    """A workdir, a checkpoint root or a step folder -> the step folder to load (latest step)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint path '{path}' does not exist")
    if _is_step_dir(path):
        return path
    for root in (checkpoint_root(path), path):
        if root.is_dir():
            steps = _step_dirs(root)
            if steps:
                return steps[-1]
    raise CheckpointError(
        f"'{path}' holds no checkpoint: expected a training workdir, its '{CHECKPOINTS_SUBDIR}/' "
        "folder, or one step folder containing 'params/' and 'config/'"
    )


def read_config(step_dir: Path) -> tuple[ModelConfig, dict[str, Any]]:
    """(ModelConfig, extra metadata) of a step folder."""
    config_path = step_dir / "config" / "metadata"  # where orbax's JsonSave puts the JSON
    try:
        values = json.loads(config_path.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot read the model config in '{step_dir}': {error}") from None
    try:
        return ModelConfig.from_dict(values), dict(values.get("extra", {}))
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"invalid model config in '{step_dir}': {error}") from None


def save_model(
    root: str | Path,
    step: int,
    config: ModelConfig,
    params: Any,
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write an inference checkpoint (config + params) as step `step` under `root`; atomic."""
    root = Path(root)
    with ocp.CheckpointManager(root.resolve()) as manager:
        manager.save(
            step,
            args=ocp.args.Composite(
                params=ocp.args.StandardSave(params),
                config=ocp.args.JsonSave({**config.to_dict(), "extra": extra or {}}),
            ),
            force=True,
        )
        manager.wait_until_finished()
    return root / str(step)


def training_manager(workdir: str | Path, max_to_keep: int = 3) -> ocp.CheckpointManager:
    """The orbax manager of a training workdir (`<workdir>/checkpoints`), keeping the last few.

    Saves are asynchronous and atomic (written to a temporary folder, renamed when complete);
    call `wait_until_finished()` before relying on one.
    """
    options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True)
    return ocp.CheckpointManager(checkpoint_root(workdir).resolve(), options=options)


def save_training_checkpoint(
    manager: ocp.CheckpointManager,
    step: int,
    config: ModelConfig,
    params: Any,
    train_state: Any,
    extra: dict[str, Any] | None = None,
) -> None:
    """Start saving step `step`: the items `params`, `config` and `train_state` (a pytree)."""
    manager.save(
        step,
        args=ocp.args.Composite(
            params=ocp.args.StandardSave(params),
            config=ocp.args.JsonSave({**config.to_dict(), "extra": extra or {}}),
            train_state=ocp.args.StandardSave(train_state),
        ),
        force=True,
    )


def restore_training_checkpoint(
    manager: ocp.CheckpointManager, step: int, params_target: Any, train_state_target: Any
) -> tuple[Any, Any]:
    """(params, train_state) of step `step`, restored into the structure, shapes and shardings of
    the targets (pytrees of arrays or `jax.ShapeDtypeStruct`s)."""
    try:
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                params=ocp.args.StandardRestore(params_target),
                train_state=ocp.args.StandardRestore(train_state_target),
            ),
        )
    except (ValueError, KeyError, FileNotFoundError) as error:
        first = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(
            f"cannot resume from step {step} in '{manager.directory}': {first}"
        ) from None
    return restored["params"], restored["train_state"]


def abstract_params(model: CompressionModel, sharding: jax.sharding.Sharding | None = None) -> Any:
    """The parameter tree of `model` (with `params["integer_prior"]` for an integer-prior model)
    as `jax.ShapeDtypeStruct`s placed by `sharding`, default this process's first device.

    Restoring into explicit shardings is what makes a checkpoint independent of the device
    layout that wrote it: without them orbax re-creates the writer's shardings and refuses a
    reader with another number of devices or processes ("Topology mismatch").
    """
    sharding = sharding or jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    shapes = jax.eval_shape(lambda: init_params(model, jax.random.key(0)))
    if model.config.integer_prior:  # the converted prior path's integer arrays
        shapes = {**shapes, INTEGER_KEY: integer_prior.abstract_arrays(model, shapes)}
    return jax.tree_util.tree_map(
        lambda leaf: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=sharding), shapes
    )


def load_model(path: str | Path) -> tuple[CompressionModel, Any, ModelConfig]:
    """Load (model, params, config) from a workdir, checkpoint root or step folder.

    Params are restored onto this process's first device, whatever the number of devices or
    processes that wrote them, with the shapes the config implies; a checkpoint whose arrays do
    not match its config raises CheckpointError.
    """
    step_dir = resolve_checkpoint(path)
    config, _ = read_config(step_dir)
    model = CompressionModel(config)
    handler = ocp.StandardCheckpointer()
    try:
        params = handler.restore(step_dir.resolve() / "params", abstract_params(model))
    except (ValueError, KeyError, FileNotFoundError) as error:
        raise CheckpointError(
            f"the parameters in '{step_dir}' do not match a {config.describe()} model: "
            f"{str(error).splitlines()[0] if str(error) else type(error).__name__}"
        ) from None
    return model, params, config


def load_codec(path: str | Path) -> Codec:
    """A Codec (compress / decompress) from a training workdir (latest step), a checkpoint root
    or one step folder."""
    model, params, _ = load_model(path)
    return Codec(model, params)


def integer_form(
    config: ModelConfig, params: Any, extra: dict[str, Any], source: str | Path
) -> tuple[ModelConfig, Any, dict[str, Any]]:
    """(config, params, extra) of the integer-prior form of the float model `config`/`params`
    read from `source`: `integer_prior=True`, params plus `params["integer_prior"]`, and the
    source recorded in the metadata. ValueError (one line) for a prior or K the integer path
    does not cover."""
    integer_config = dataclasses.replace(config, integer_prior=True)
    extra = {
        **extra,
        "integer_prior_source": {
            "checkpoint": str(source),
            "params_fingerprint": params_fingerprint(params).hex(),
        },
    }
    return integer_config, integer_prior.convert_params(CompressionModel(config), params), extra


EXPORT_ARITHMETIC = ("integer", "float")


def export_model(source: str | Path, destination: str | Path, arithmetic: str = "integer") -> Path:
    """Write the inference part of `source` (config and params, no optimiser state: a third of a
    training checkpoint's size) as the new checkpoint root `destination`, at the same step and
    with the same metadata, its prior path in `arithmetic`:
      * 'integer' (the default): files that decode bit-exactly on any machine
        (docs/portable_files.md); a float model is converted as `jahp-convert --to=integer` does;
      * 'float': files that decode only where the float arithmetic matches the encoder's; an
        integer-prior model gives the float weights it keeps.
    Returns the step folder written."""
    if arithmetic not in EXPORT_ARITHMETIC:
        raise CheckpointError(f"arithmetic must be one of {EXPORT_ARITHMETIC}, not '{arithmetic}'")
    step_dir = resolve_checkpoint(source)
    destination = Path(destination)
    if destination.exists():
        raise CheckpointError(f"'{destination}' already exists; export into a new folder")
    _, params, config = load_model(step_dir)
    _, extra = read_config(step_dir)
    if arithmetic == "integer" and not config.integer_prior:
        try:
            config, params, extra = integer_form(config, params, extra, step_dir)
        except ValueError as error:
            raise CheckpointError(
                f"{error}: export its float form with --arithmetic=float (its files decode only "
                "where the float arithmetic matches the encoder's)"
            ) from None
    elif arithmetic == "float" and config.integer_prior:
        params = {k: v for k, v in params.items() if k != INTEGER_KEY}
        config = dataclasses.replace(config, integer_prior=False)
    return save_model(destination, int(step_dir.name), config, params, extra)
