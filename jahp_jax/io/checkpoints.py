"""Model checkpoints on disk (orbax): one layout shared by training, conversion and inference.

A checkpoint root is an orbax `CheckpointManager` directory, `<workdir>/checkpoints`, holding one
folder per step with the items
  - `config`: JSON, the `ModelConfig` (`jahp_jax.models.config`) plus free-form `extra` metadata
    and the `fingerprints` of the other items (`params_fingerprint`, hex),
  - `params`: the model parameters (a pytree of arrays),
  - `train_state`: optimiser state etc. (written by training only; never needed for inference).
`load_model` accepts a training workdir, a checkpoint root, or one step folder.

Orbax's files carry no checksums: a garbled data file can restore as other numbers. Loading and
resuming therefore compare what they restored with the saved fingerprints, and every failure to
read a checkpoint (a truncated, emptied or garbled file) is one `CheckpointError`. Checkpoints
written before the fingerprints were saved load unchecked. What orbax's other reads print once
they fail behind it (tracebacks of abandoned tasks and coroutines, at any later moment) is dropped.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import traceback
import warnings
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
FINGERPRINTS_KEY = "fingerprints"  # in the config item: {item name: params_fingerprint hex}


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


def _config_item(step_dir: Path) -> dict[str, Any]:
    """The JSON of a step folder's `config` item."""
    config_path = step_dir / "config" / "metadata"  # where orbax's JsonSave puts the JSON
    try:
        values = json.loads(config_path.read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"cannot read the model config in '{step_dir}': {error}") from None
    if not isinstance(values, dict):
        raise CheckpointError(f"invalid model config in '{step_dir}': not a JSON object")
    return values


def read_config(step_dir: Path) -> tuple[ModelConfig, dict[str, Any]]:
    """(ModelConfig, extra metadata) of a step folder."""
    values = _config_item(step_dir)
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
                config=ocp.args.JsonSave(_config_json(config, extra, params=params)),
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
    config_json = _config_json(config, extra, params=params, train_state=train_state)
    manager.save(
        step,
        args=ocp.args.Composite(
            params=ocp.args.StandardSave(params),
            config=ocp.args.JsonSave(config_json),
            train_state=ocp.args.StandardSave(train_state),
        ),
        force=True,
    )


def _config_json(config: ModelConfig, extra: dict[str, Any] | None, **items: Any) -> dict:
    """The `config` item: the model config, `extra`, and the fingerprints of `items`."""
    fingerprints = {name: params_fingerprint(tree).hex() for name, tree in items.items()}
    return {**config.to_dict(), "extra": extra or {}, FINGERPRINTS_KEY: fingerprints}


def _check_fingerprint(step_dir: Path, name: str, tree: Any) -> None:
    """CheckpointError where item `name` of `step_dir`, restored as `tree`, is not what was
    saved (nothing to check in checkpoints written without fingerprints)."""
    saved = _config_item(step_dir).get(FINGERPRINTS_KEY, {}).get(name)
    if saved is not None and params_fingerprint(tree).hex() != saved:
        raise CheckpointError(
            f"the {name} in '{step_dir}' are corrupt: they read back with fingerprint "
            f"{params_fingerprint(tree).hex()}, not the {saved} they were saved with; restore "
            "the folder from a copy or use another checkpoint"
        )


_ORBAX_DIR = str(Path(ocp.__file__).parent)


def _is_abandoned_read(error: BaseException | None) -> bool:
    """An error of the reads that orbax leaves behind when a restore fails: raised in orbax's
    code, or by asyncio when a read completes after orbax closed its event loop."""
    if error is None:
        return False
    codes = [frame.f_code for frame, _ in traceback.walk_tb(error.__traceback__)]
    if isinstance(error, RuntimeError) and str(error) == "Event loop is closed":
        return any(code.co_name == "call_soon_threadsafe" for code in codes)
    return any(code.co_filename.startswith(_ORBAX_DIR) for code in codes)


def _drop_abandoned_reads() -> None:
    """From now on in this process, drop the reports of orbax's abandoned reads.

    Orbax reads an item's arrays concurrently in an event loop of its own; when one read fails
    (a corrupt file, a checkpoint of another shape) it raises at once and closes the loop with
    the other reads pending (the restore returns nothing, and later restores use fresh loops:
    tests/test_checkpoints.py). Whenever they are collected, often after the one CheckpointError
    line, those reads report themselves through `sys.unraisablehook` (coroutines, callbacks),
    the 'asyncio' logger (tasks) and warnings (coroutines never started). Idempotent."""
    warnings.filterwarnings(
        "ignore", "coroutine '_read_array_index_and_device_put' was never awaited", RuntimeWarning
    )
    previous = sys.unraisablehook
    if not getattr(previous, "drops_abandoned_reads", False):

        def hook(unraisable: sys.UnraisableHookArgs) -> None:
            if not _is_abandoned_read(unraisable.exc_value):
                previous(unraisable)

        hook.drops_abandoned_reads = True
        sys.unraisablehook = hook
    asyncio_logger = logging.getLogger("asyncio")
    if _keep_asyncio_record not in asyncio_logger.filters:
        asyncio_logger.addFilter(_keep_asyncio_record)


def _keep_asyncio_record(record: logging.LogRecord) -> bool:
    """False for asyncio's "Task exception was never retrieved" of an abandoned orbax read."""
    return not (record.exc_info and _is_abandoned_read(record.exc_info[1]))


def _first_line(error: BaseException, limit: int = 200) -> str:
    """The type and first sentence of a library's error message (tensorstore appends a whole
    spec), at most `limit` characters."""
    text = str(error).strip()
    first = text.splitlines()[0].split(". ")[0] if text else ""
    first = first if len(first) <= limit else first[: limit - 3] + "..."
    return f"{type(error).__name__}: {first}" if first else type(error).__name__


def restore_training_checkpoint(
    manager: ocp.CheckpointManager, step: int, params_target: Any, train_state_target: Any
) -> tuple[Any, Any]:
    """(params, train_state) of step `step`, restored into the structure, shapes and shardings of
    the targets (pytrees of arrays or `jax.ShapeDtypeStruct`s)."""
    _drop_abandoned_reads()
    try:
        restored = manager.restore(
            step,
            args=ocp.args.Composite(
                params=ocp.args.StandardRestore(params_target),
                train_state=ocp.args.StandardRestore(train_state_target),
            ),
        )
    except Exception as error:  # orbax and tensorstore raise many types on unreadable files
        raise CheckpointError(
            f"cannot resume from step {step} in '{manager.directory}': {_first_line(error)}"
        ) from None
    step_dir = Path(manager.directory) / str(step)
    for name in ("params", "train_state"):
        _check_fingerprint(step_dir, name, restored[name])
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
    _drop_abandoned_reads()
    try:
        params = handler.restore(step_dir.resolve() / "params", abstract_params(model))
    except Exception as error:  # orbax and tensorstore raise many types on unreadable files
        raise CheckpointError(
            f"the parameters in '{step_dir}' do not match a {config.describe()} model or are "
            f"corrupt: {_first_line(error)}"
        ) from None
    _check_fingerprint(step_dir, "params", params)
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
