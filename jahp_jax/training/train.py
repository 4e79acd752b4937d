"""Training: `train_and_evaluate(TrainConfig(...), workdir)`; the command is `jahp-train`
(`jahp_jax.cli.train`).

Data-parallel on every device: one jitted `train_step`, the global batch sharded over a 1-D
device mesh ('data'), parameters and optimiser state replicated; jit's sharding propagation
averages the gradients. Multi-process (`jahp-train --multihost`, see
`jahp_jax.training.distributed`): every process feeds its own rows of the global batch, which
is the same as a single-process run's; all processes write each checkpoint together; logs and
summaries come from process 0.

Optimisation as in the published setups: Adam (lr 1e-4, x0.1 near the end), gradient clipping
at global norm 1.0, and a separate Adam (lr 1e-3) for the factorized densities' `quantiles`,
which only `model.aux_loss()` trains. Checkpoints (orbax, `<workdir>/checkpoints`, the layout of
`jahp_jax.io.checkpoints`) are written every --checkpoint_every steps and at the end; rerunning the
same command resumes from the latest one, including the data order. TensorBoard summaries go to
`<workdir>/tensorboard`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import struct
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jahp_jax import console
from jahp_jax.coding import integer as integer_prior
from jahp_jax.io.checkpoints import (
    abstract_params,
    checkpoint_root,
    load_model,
    read_config,
    resolve_checkpoint,
    restore_training_checkpoint,
    save_training_checkpoint,
    training_manager,
)
from jahp_jax.models import metrics
from jahp_jax.models.compression_model import CompressionModel, init_params
from jahp_jax.models.config import ModelConfig
from jahp_jax.models.gain import initial_gains, lmbda_of_quality
from jahp_jax.models.latent_codecs import PRIORS
from jahp_jax.models.losses import DISTORTIONS, rate_distortion_loss
from jahp_jax.models.transforms import TRANSFORMS

Array = jax.Array
DATA_AXIS = "data"
AUX_PARAM = "quantiles"  # The only parameters the auxiliary optimiser trains.
QUALITY_STREAM = 1  # fold_in of a step's noise key that draws a variable-rate model's quality
VALIDATION_QUALITIES = (0.0, 0.5, 1.0)  # where a variable-rate model is validated
DEFAULT_GAIN_LEVELS = 6
MS_SSIM_MIN_SIZE = metrics.SSIM_FILTER_SIZE * 2 ** (len(metrics.MS_SSIM_WEIGHTS) - 1)


class ConfigError(ValueError):
    """A training configuration that cannot run (message says what to change)."""


class TrainingError(RuntimeError):
    """Training stopped: a non-finite loss (message names the step and the last checkpoint)."""


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


def _field(default: Any = dataclasses.MISSING, *, help: str) -> Any:
    """A TrainConfig field: its default and its one-line help (that of its `jahp-train` flag)."""
    return dataclasses.field(default=default, metadata={"help": help})


_MODEL_DEFAULTS = {field.name: field.default for field in dataclasses.fields(ModelConfig)}


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything a run depends on. `jahp-train`'s flags are made from these fields (name,
    type, default, metadata["help"]; `jahp_jax.cli.command`). The model fields (prior ...
    transform) take ModelConfig's defaults and make `model_config`, the model's identity."""

    lmbda: float | None = _field(
        None, help="Rate-distortion trade-off (MSE: 0.0018 ... 0.18); required unless "
        "--variable_rate."
    )
    prior: str = _field(_MODEL_DEFAULTS["prior"], help=f"One of: {', '.join(PRIORS)}.")
    num_filters: int = _field(_MODEL_DEFAULTS["num_filters"], help="N: transform channels.")
    num_latents: int = _field(_MODEL_DEFAULTS["num_latents"], help="M: latent channels.")
    mixture_components: int = _field(
        _MODEL_DEFAULTS["mixture_components"], help="K: Gaussian mixture components (1: Gaussian)."
    )
    prior_options: tuple[tuple[str, Any], ...] = _field(
        _MODEL_DEFAULTS["prior_options"],
        help="NAME=VALUE: an option of the prior (repeatable), e.g. --prior_option=num_slices=5 "
        "for channelwise",
    )
    integer_prior: bool = _field(
        _MODEL_DEFAULTS["integer_prior"],
        help="Integer arithmetic in the prior path (portable files; see docs/portable_files.md).",
    )
    transform: str = _field(
        _MODEL_DEFAULTS["transform"], help=f"g_a/g_s family, one of: {', '.join(TRANSFORMS)}."
    )
    variable_rate: bool = _field(
        False,
        help="One model for every rate of --lmbda_range: lambda drawn per batch, log-uniform, "
        "the model conditioned on it by gain units (docs/variable_rate.md).",
    )
    lmbda_range: str | None = _field(
        None, help="LOW,HIGH: the lambdas of a --variable_rate model's quality 0 and 1."
    )
    gain_levels: int = _field(
        DEFAULT_GAIN_LEVELS,
        help="Gain vectors of a --variable_rate model, at log-uniform lambdas over "
        "--lmbda_range; the qualities between interpolate.",
    )
    distortion: str = _field("mse", help=f"One of: {', '.join(DISTORTIONS)}.")
    batch_size: int = _field(8, help="Global batch size, over all devices and hosts.")
    patch_size: int = _field(256, help="Square training crop side.")
    num_steps: int = _field(1_000_000, help="Total training steps.")
    learning_rate: float = _field(1e-4, help="Adam learning rate of the main parameters.")
    lr_drop_fraction: float = _field(0.9, help="Fraction of --num_steps at which the rate drops.")
    lr_drop_factor: float = _field(0.1, help="Factor of the learning-rate drop.")
    aux_learning_rate: float = _field(1e-3, help="Adam learning rate of the density quantiles.")
    clip_norm: float = _field(1.0, help="Gradient clipping (global norm of the main "
                              "parameters); 0 disables.")  # fmt: skip
    seed: int = _field(0, help="Seed of the initialisation, the noise and the data order.")
    data_dir: str | None = _field(None, help="A local folder of training images.")
    dataset: str | None = _field(None, help="A tfds data set name (split 'train'), not a folder.")
    tfds_data_dir: str | None = _field(
        None, help="Where tfds keeps prepared data (default: tfds's)."
    )
    val_data_dir: str | None = _field(None, help="A local folder of validation images.")
    val_split: str = _field("validation", help="Validation split of --dataset (no val folder).")
    eval_every: int = _field(5000, help="Validate every K steps; 0: never.")
    eval_images: int = _field(16, help="Validation images (center crops), at most.")
    log_every: int = _field(100, help="Console line and summaries every K steps.")
    checkpoint_every: int = _field(1000, help="Checkpoint every K steps (and at the end).")
    keep_checkpoints: int = _field(3, help="How many of the latest checkpoints to keep.")
    init_from: str | None = _field(
        None,
        help="Fine-tune: start from the parameters of this checkpoint (workdir or step folder) "
        "of the same model, or of its fixed-rate form for a --variable_rate run; fresh "
        "optimiser, step 0. A --workdir that has checkpoints resumes instead.",
    )

    @property
    def model_config(self) -> ModelConfig:
        """The model's identity (ValueError, one line, for a bad model or rate configuration)."""
        if self.lmbda_range is not None and not self.variable_rate:
            raise ValueError("--lmbda_range is for a --variable_rate model; add --variable_rate")
        lmbda_range = parse_lmbda_range(self.lmbda_range) if self.variable_rate else None
        return ModelConfig(
            self.prior,
            self.num_filters,
            self.num_latents,
            self.mixture_components,
            self.prior_options,
            self.integer_prior,
            self.transform,
            lmbda_range,
            self.gain_levels if self.variable_rate else 0,
        )

    @property
    def validates(self) -> bool:
        return self.eval_every > 0 and (self.val_data_dir is not None or self.dataset is not None)


def parse_lmbda_range(text: str | None) -> tuple[float, float]:
    """'LOW,HIGH' -> (low, high); ValueError (one line) otherwise."""
    if text is None:
        raise ValueError("--variable_rate needs --lmbda_range=LOW,HIGH (e.g. 0.0018,0.18)")
    try:
        low, high = (float(value) for value in text.split(","))
    except ValueError:
        raise ValueError(
            f"--lmbda_range must be LOW,HIGH (e.g. 0.0018,0.18), got '{text}'"
        ) from None
    if not 0 < low < high < float("inf"):
        raise ValueError(f"--lmbda_range needs 0 < LOW < HIGH, got '{text}'")
    return low, high


def check_train_config(config: TrainConfig, device_count: int | None) -> None:
    """Raise ConfigError (one clear line) for a configuration that cannot train; device_count
    None checks all but the batch's split over the devices (before jax.distributed is up)."""
    try:
        model = config.model_config
    except ValueError as error:
        raise ConfigError(str(error)) from None
    if config.variable_rate and config.lmbda is not None:
        raise ConfigError(
            "--lmbda is for a fixed-rate model; a --variable_rate model trains for every "
            "lambda of --lmbda_range"
        )
    if not config.variable_rate and not (config.lmbda is not None and config.lmbda > 0):
        raise ConfigError(f"--lmbda must be > 0 (or train --variable_rate), got {config.lmbda}")
    if config.distortion not in DISTORTIONS:
        raise ConfigError(
            f"unknown --distortion '{config.distortion}'; choose one of {', '.join(DISTORTIONS)}"
        )
    positive = ("batch_size", "patch_size", "num_steps", "checkpoint_every", "keep_checkpoints",
                "log_every", "eval_images")  # fmt: skip
    for name in positive:
        if getattr(config, name) < 1:
            raise ConfigError(f"--{name} must be >= 1, got {getattr(config, name)}")
    if device_count is not None and config.batch_size % device_count:
        raise ConfigError(
            f"--batch_size={config.batch_size} is not divisible by the {device_count} devices; "
            f"use a multiple of {device_count}"
        )
    stride = model.patch_multiple
    if config.patch_size % stride:
        raise ConfigError(
            f"--patch_size={config.patch_size} must be a multiple of {stride} for prior "
            f"'{model.prior}'"
        )
    if config.distortion == "ms-ssim" and config.patch_size < MS_SSIM_MIN_SIZE:
        raise ConfigError(f"--distortion=ms-ssim needs --patch_size >= {MS_SSIM_MIN_SIZE}")
    if not (config.learning_rate > 0 and config.aux_learning_rate > 0 and config.clip_norm >= 0):
        raise ConfigError("need --learning_rate > 0, --aux_learning_rate > 0, --clip_norm >= 0")
    if not (0 < config.lr_drop_fraction <= 1 and config.lr_drop_factor > 0):
        raise ConfigError("need 0 < --lr_drop_fraction <= 1 and --lr_drop_factor > 0")
    if config.eval_every < 0:
        raise ConfigError(f"--eval_every must be >= 0, got {config.eval_every}")


# --------------------------------------------------------------------------------------------
# Train state, optimiser, steps
# --------------------------------------------------------------------------------------------


@struct.dataclass
class TrainState:
    """step: int32 () steps done; rng: uint32 key data, the base of every step's noise key."""

    step: Array
    params: Any
    opt_state: Any
    rng: Array

    def checkpoint_items(self) -> dict[str, Any]:
        """What the `train_state` checkpoint item holds (params are their own item)."""
        return {"step": self.step, "opt_state": self.opt_state, "rng": self.rng}


@struct.dataclass
class Hyperparams:
    """The run's numbers that are arguments, not constants, of the compiled train and eval
    steps: runs that differ only in these (a lambda sweep, another --num_steps or --seed) run
    one XLA program and share its compilation-cache entry. float32 () each, lr_drop_step int32."""

    lmbda: Array
    learning_rate: Array
    lr_drop_step: Array  # From this Adam step count on, the rate is ...
    lr_drop_factor: Array  # ... learning_rate times this.
    aux_learning_rate: Array
    clip_norm: Array  # Used where config.clip_norm > 0 (which the program's structure depends on).


def hyperparams(config: TrainConfig) -> Hyperparams:
    """The `Hyperparams` of `config`, as host scalars."""
    return Hyperparams(
        lmbda=np.float32(config.lmbda or 0.0),  # a variable-rate model draws its own
        learning_rate=np.float32(config.learning_rate),
        lr_drop_step=np.int32(round(config.lr_drop_fraction * config.num_steps)),
        lr_drop_factor=np.float32(config.lr_drop_factor),
        aux_learning_rate=np.float32(config.aux_learning_rate),
        clip_norm=np.float32(config.clip_norm),
    )


def learning_rate_schedule(hparams: Hyperparams) -> optax.Schedule:
    """learning_rate, times lr_drop_factor from Adam step lr_drop_step on."""
    return lambda count: jnp.where(
        count < hparams.lr_drop_step,
        hparams.learning_rate,
        hparams.learning_rate * hparams.lr_drop_factor,
    )


def _param_labels(params: Any) -> Any:
    """'aux' for the factorized densities' quantiles, 'main' for everything else."""
    return jax.tree_util.tree_map_with_path(
        lambda path, _: "aux" if path[-1].key == AUX_PARAM else "main", params
    )


def create_optimizer(hparams: Hyperparams, clip_gradients: bool) -> optax.GradientTransformation:
    """Adam (clipped to global norm hparams.clip_norm where `clip_gradients`) on the main
    parameters, a separate Adam on the quantiles. Its state's structure depends only on
    `clip_gradients`, so it is built from traced `hparams` inside the step."""
    main = [optax.adam(learning_rate_schedule(hparams))]
    if clip_gradients:
        main.insert(0, optax.clip_by_global_norm(hparams.clip_norm))
    return optax.multi_transform(
        {"main": optax.chain(*main), "aux": optax.adam(hparams.aux_learning_rate)}, _param_labels
    )


def make_mesh(devices: list | None = None) -> jax.sharding.Mesh:
    """A 1-D 'data' mesh over `devices` (default: all devices of all hosts)."""
    devices = jax.devices() if devices is None else devices
    return jax.make_mesh(
        (len(devices),), (DATA_AXIS,), (jax.sharding.AxisType.Auto,), devices=devices
    )


def create_train_state(
    config: TrainConfig, model: CompressionModel, mesh: jax.sharding.Mesh
) -> TrainState:
    """Fresh parameters and optimiser state from config.seed, replicated over `mesh`. The seed
    is an argument of the compiled init, so runs with other seeds reuse its program."""
    tx = create_optimizer(hyperparams(config), config.clip_norm > 0)

    def init(seed: Array) -> TrainState:
        init_key, noise_key = jax.random.split(jax.random.key(seed))
        params = init_params(model, init_key)
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=tx.init(params),
            rng=jax.random.key_data(noise_key),
        )

    replicated = NamedSharding(mesh, P())
    return jax.jit(init, out_shardings=replicated)(replicate(np.uint32(config.seed), replicated))


def prior_arithmetic(model: CompressionModel) -> contextlib.AbstractContextManager:
    """Where the model's forward pass is traced: an integer-prior model's prior path is
    fake-quantized as its integer conversion computes (`integer_prior.fake_quantization`)."""
    if model.config.integer_prior:
        return integer_prior.fake_quantization(model.make_latent_codec())
    return contextlib.nullcontext()


def saved_params(model: CompressionModel, params: Any) -> Any:
    """The params a checkpoint holds: for an integer-prior model the float params plus their
    integer conversion (`integer_prior.convert_params`), so that every checkpoint of the run is
    a model `codec` and `evaluate` load."""
    if not model.config.integer_prior:
        return params
    local = jax.tree_util.tree_map(lambda leaf: np.asarray(leaf.addressable_data(0)), params)
    return integer_prior.convert_params(model, local)


def train_step(
    state: TrainState,
    batch: Array,
    hparams: Hyperparams,
    *,
    model: CompressionModel,
    distortion: str,
    clip_gradients: bool,
) -> tuple[TrainState, dict[str, Array]]:
    """One step on the global batch (B, H, W, 3) in [0, 1].

    The loss is the rate-distortion loss plus the aux loss (which reaches only the quantiles).
    A variable-rate model draws the step's quality q uniformly in [0, 1] (so lambda log-uniformly
    over its range) for the whole batch. A non-finite loss or gradient leaves the state unchanged
    and sets stats['finite'] False.
    """
    noise_key = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
    quality, lmbda = None, hparams.lmbda
    if model.config.variable_rate:
        quality = jax.random.uniform(jax.random.fold_in(noise_key, QUALITY_STREAM))
        lmbda = lmbda_of_quality(quality, model.config.lmbda_range)

    def loss_fn(params):
        with prior_arithmetic(model):
            outputs = model.apply({"params": params}, batch, train=True, quality=quality,
                                  rngs={"noise": noise_key})  # fmt: skip
        loss, stats = rate_distortion_loss(batch, outputs, lmbda, distortion)
        aux_loss = model.apply({"params": params}, method="aux_loss")
        stats["aux_loss"] = aux_loss
        if "ms_ssim" not in stats and min(batch.shape[1:3]) >= MS_SSIM_MIN_SIZE:
            x_hat = jax.lax.stop_gradient(jnp.clip(outputs["x_hat"], 0.0, 1.0))
            stats["ms_ssim"] = jnp.mean(metrics.ms_ssim(batch, x_hat))
        return loss + aux_loss, stats

    grads, stats = jax.grad(loss_fn, has_aux=True)(state.params)
    tx = create_optimizer(hparams, clip_gradients)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    new_state = state.replace(
        step=state.step + 1, params=optax.apply_updates(state.params, updates), opt_state=opt_state
    )
    grad_norm = optax.tree.norm(grads)
    finite = jnp.isfinite(stats["loss"]) & jnp.isfinite(stats["aux_loss"]) & jnp.isfinite(grad_norm)
    new_state = jax.tree_util.tree_map(
        lambda new, old: jnp.where(finite, new, old), new_state, state
    )
    return new_state, {**stats, "grad_norm": grad_norm, "finite": finite}


def eval_step(params: Any, batch: Array, lmbda: Array, quality: Array | None = None, *,
              model: CompressionModel, distortion: str) -> dict[str, Array]:  # fmt: skip
    """Eval-mode (rounded) forward on (B, H, W, 3): estimated rate and distortion, batch means;
    a variable-rate model at `quality` (then `lmbda` is that quality's)."""
    with prior_arithmetic(model):
        outputs = model.apply({"params": params}, batch, train=False, quality=quality)
    _, stats = rate_distortion_loss(batch, outputs, lmbda, distortion)
    if "ms_ssim" not in stats and min(batch.shape[1:3]) >= MS_SSIM_MIN_SIZE:
        x_hat = jnp.clip(outputs["x_hat"], 0.0, 1.0)
        stats["ms_ssim"] = jnp.mean(metrics.ms_ssim(batch, x_hat))
    return stats


StepFn = Callable[[TrainState, Array, Hyperparams], tuple[TrainState, dict[str, Array]]]


def jit_train_step(config: TrainConfig, model: CompressionModel, mesh: jax.sharding.Mesh
                   ) -> StepFn:  # fmt: skip
    """`train_step` compiled for `mesh`: state and hparams replicated, the batch sharded over
    'data', the old state donated. Call it as step(state, batch, hparams)."""
    replicated = NamedSharding(mesh, P())
    step = functools.partial(train_step, model=model, distortion=config.distortion,
                             clip_gradients=config.clip_norm > 0)  # fmt: skip
    return jax.jit(
        step,
        in_shardings=(replicated, NamedSharding(mesh, P(DATA_AXIS)), replicated),
        out_shardings=(replicated, replicated),
        donate_argnums=0,
    )


def replicate(tree: Any, sharding: NamedSharding) -> Any:
    """Host values, the same on every process -> global arrays replicated over `sharding`
    (`jax.device_put` cannot place them on other processes' devices)."""

    def place(leaf: Any) -> Array:
        value = np.asarray(leaf)
        return jax.make_array_from_callback(value.shape, sharding, lambda index: value[index])

    return jax.tree_util.tree_map(place, tree)


def global_batch(local_batch: np.ndarray, sharding: NamedSharding) -> Array:
    """This process's rows -> the global batch array, sharded along its first axis."""
    return jax.make_array_from_process_local_data(sharding, local_batch)


def evaluate(
    eval_fn: Callable[..., dict[str, Array]],
    params: Any,
    lmbda: Array,
    chunks: list[np.ndarray],
    sharding: NamedSharding,
    quality: Array | None = None,
) -> dict[str, float]:
    """Mean eval stats over equal-sized chunks of validation crops (this process's rows)."""
    totals: dict[str, float] = {}
    for chunk in chunks:
        stats = jax.device_get(eval_fn(params, global_batch(chunk, sharding), lmbda, quality))
        for name, value in stats.items():
            totals[name] = totals.get(name, 0.0) + float(value) / len(chunks)
    return totals


# --------------------------------------------------------------------------------------------
# The training loop
# --------------------------------------------------------------------------------------------


def _format_duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _checkpoint_extra(config: TrainConfig) -> dict[str, Any]:
    return {"lmbda": config.lmbda, "distortion": config.distortion,
            "train_config": dataclasses.asdict(config)}  # fmt: skip


def pretrained_params(config: TrainConfig) -> Any:
    """The (float) parameters of `config.init_from` (a workdir, checkpoints folder or step
    folder), which must hold the model this run trains, with either arithmetic (a float model
    fine-tunes into an integer-prior one), or its fixed-rate form for a variable-rate run: its
    gain units start at gain 1 at the source's lambda (`gain.initial_gains`), so the model starts
    as the source there. CheckpointError / ConfigError otherwise."""
    _, params, saved = load_model(config.init_from)
    wanted = config.model_config
    rate = {"lmbda_range": wanted.lmbda_range, "gain_levels": wanted.gain_levels}
    if dataclasses.replace(saved, integer_prior=wanted.integer_prior, **rate) != wanted or (
        saved.variable_rate and saved.lmbda_range != wanted.lmbda_range
    ):
        raise ConfigError(
            f"--init_from '{config.init_from}' holds a {saved.describe()} model, not the "
            f"{wanted.describe()} this run trains"
        )
    params = integer_prior.split_params(params)[0]
    if wanted.variable_rate and not saved.variable_rate:
        _, extra = read_config(resolve_checkpoint(config.init_from))
        source_lmbda = extra.get("lmbda")
        params = {**params, "gain_units": initial_gains(
            wanted.lmbda_range, wanted.gain_levels, wanted.num_latents, source_lmbda
        )}  # fmt: skip
    return params


def check_workdir(config: TrainConfig, workdir: Path) -> int | None:
    """The latest checkpointed step in `workdir` (None if none); ConfigError if it is a run
    of another model or objective."""
    root = checkpoint_root(workdir)
    if not root.is_dir():
        return None
    steps = [int(p.name) for p in root.iterdir() if p.name.isdigit() and p.is_dir()]
    if not steps:
        return None
    latest = root / str(max(steps))
    saved, extra = read_config(latest)
    if not (latest / "train_state").is_dir():  # a converted or exported model, not a run
        raise ConfigError(
            f"{workdir} holds a model without training state (step {max(steps)}: converted or "
            f"exported), not a run to resume; fine-tune it with --init_from={workdir} and a new "
            "--workdir"
        )
    wanted = config.model_config
    if saved != wanted:
        raise ConfigError(
            f"{workdir} holds a checkpoint of a different model ({saved.describe()}) than "
            f"requested ({wanted.describe()}); use another --workdir"
        )
    for name in ("lmbda", "distortion"):
        if name in extra and extra[name] != getattr(config, name):
            raise ConfigError(
                f"{workdir} holds a run with --{name}={extra[name]}, not "
                f"{getattr(config, name)}; use another --workdir"
            )
    return max(steps)


def _validation_chunks(config: TrainConfig) -> list[np.ndarray]:
    """This process's rows of each global-batch-sized chunk of validation crops."""
    from jahp_jax.data.pipeline import DatasetError, validation_batches  # TensorFlow: imported late

    crops = validation_batches(
        dataset=None if config.val_data_dir else config.dataset,
        data_dir=config.val_data_dir,
        patch_size=config.patch_size,
        max_images=config.eval_images,
        split=None if config.val_data_dir else config.val_split,
        tfds_data_dir=config.tfds_data_dir,
    )
    usable = len(crops) // config.batch_size * config.batch_size
    if not usable:
        raise DatasetError(
            f"validation needs at least --batch_size={config.batch_size} images of at least "
            f"{config.patch_size}x{config.patch_size}, found {len(crops)}"
        )
    local = config.batch_size // jax.process_count()
    first = jax.process_index() * local
    return [
        crops[start + first : start + first + local]
        for start in range(0, usable, config.batch_size)
    ]


TESTONLY_KILL_ENV = "JAHP_TESTONLY_KILL"


def testonly_kill_point() -> tuple[str, int] | None:
    """The tests' preemption hook (not a flag: no user sets it), from $JAHP_TESTONLY_KILL:
    "saved:STEP" SIGKILLs this process once the step-STEP checkpoint is complete on disk,
    "saving:STEP" right after its asynchronous write has started (the write in flight, not
    committed). None when unset; ConfigError for another value."""
    value = os.environ.get(TESTONLY_KILL_ENV)
    if not value:
        return None
    moment, _, step = value.partition(":")
    if moment not in ("saved", "saving") or not step.isdigit() or int(step) < 1:
        raise ConfigError(
            f"${TESTONLY_KILL_ENV}={value!r} is not saved:STEP or saving:STEP (a test hook; "
            "unset it)"
        )
    return moment, int(step)


def train_and_evaluate(config: TrainConfig, workdir: str | os.PathLike) -> TrainState:
    """Train (or resume) in `workdir` up to config.num_steps; returns the final state.

    Raises:
      ConfigError, DatasetError, CheckpointError: before any compute, for bad input.
      TrainingError: a non-finite loss; the last checkpoint is kept as it was.
    """
    from jahp_jax.data import pipeline as data  # TensorFlow: imported late

    workdir = Path(workdir)
    kill = testonly_kill_point()
    mesh = make_mesh()
    check_train_config(config, jax.device_count())
    start_step = check_workdir(config, workdir) or 0
    # A resumed run continues from its own checkpoint; --init_from only seeds a fresh one.
    initial_params = pretrained_params(config) if config.init_from and not start_step else None
    batches: Iterator[np.ndarray] = data.train_batches(
        dataset=config.dataset,
        data_dir=config.data_dir,
        batch_size=config.batch_size,
        patch_size=config.patch_size,
        seed=config.seed,
        start_step=start_step,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        tfds_data_dir=config.tfds_data_dir,
        expected_batches=config.num_steps - start_step,
    )
    val_chunks = _validation_chunks(config) if config.validates else []
    if not config.validates:
        logging.info("no validation (give --val_data_dir, or --dataset with a validation split)")

    model = CompressionModel(config.model_config)
    host_hparams = hyperparams(config)
    schedule = learning_rate_schedule(host_hparams)  # for the logged learning rate
    replicated = NamedSharding(mesh, P())
    batch_sharding = NamedSharding(mesh, P(DATA_AXIS))
    state = create_train_state(config, model, mesh)
    if initial_params is not None:
        state = state.replace(params=replicate(initial_params, replicated))
        logging.info("starting from the parameters of %s (fine-tuning)", config.init_from)
    manager = training_manager(workdir, config.keep_checkpoints)
    if start_step:
        params, items = restore_training_checkpoint(  # integer arrays too, for an integer prior
            manager, start_step, abstract_params(model, replicated), state.checkpoint_items()
        )
        state = TrainState(params=integer_prior.split_params(params)[0], **items)
        logging.info("resuming from the step-%d checkpoint in %s", start_step, manager.directory)
    if start_step >= config.num_steps:
        logging.info("already trained %d >= --num_steps=%d steps", start_step, config.num_steps)
        manager.close()
        return state

    hparams = replicate(host_hparams, replicated)
    p_train_step = jit_train_step(config, model, mesh)
    p_eval_step = jax.jit(
        functools.partial(eval_step, model=model, distortion=config.distortion),
        out_shardings=replicated,
    )
    is_chief = jax.process_index() == 0
    writer = _summary_writer(workdir) if is_chief else None
    logging.info(
        "training %s%s on %d device(s), %d process(es), global batch %d",
        config.model_config.describe(),
        "" if config.variable_rate else f" lambda={config.lmbda:g}",
        jax.device_count(), jax.process_count(), config.batch_size,
    )  # fmt: skip

    window: list[dict[str, float]] = []
    window_start = time.perf_counter()
    window_first_step = start_step
    means: dict[str, float] = {}  # of the last logged window of steps
    window_size = 0
    trained_from = time.perf_counter()
    bar = console.progress(total=config.num_steps, initial=start_step, desc="training", unit="step")
    try:
        for step in range(start_step + 1, config.num_steps + 1):
            state, stats = p_train_step(state, global_batch(next(batches), batch_sharding), hparams)
            stats = jax.device_get(stats)
            if not stats.pop("finite"):
                manager.wait_until_finished()
                latest = manager.latest_step()
                raise TrainingError(
                    f"non-finite loss or gradient at step {step} (loss {stats['loss']}); "
                    f"stopped. The last good checkpoint is step {latest} in {manager.directory}"
                )
            window.append({name: float(value) for name, value in stats.items()})
            bar.update()
            if step == start_step + 1:  # Time from here on: the first step includes compiling.
                window_start, window_first_step = time.perf_counter(), step
            last = step == config.num_steps
            if step % config.log_every == 0 or last:
                means = {name: float(np.mean([w[name] for w in window])) for name in window[0]}
                window_size = len(window)
                means["learning_rate"] = float(schedule(step - 1))
                speed = "compiling"
                if step > window_first_step:  # Else only the first (compiling) step was run.
                    elapsed = time.perf_counter() - window_start
                    steps_per_sec = (step - window_first_step) / elapsed
                    means["steps_per_sec"] = steps_per_sec
                    eta = _format_duration((config.num_steps - step) / steps_per_sec)
                    speed = f"{steps_per_sec:.3f} steps/s  ETA {eta}"
                logging.info(
                    "step %d/%d  loss %.4f  bpp %.4f  PSNR %.2f dB  %s",
                    step, config.num_steps, means["loss"], means["bpp"], means["psnr"], speed,
                    extra=console.DETAIL,
                )  # fmt: skip
                bar.set_postfix_str(
                    f"loss {means['loss']:.4f} bpp {means['bpp']:.4f} PSNR {means['psnr']:.2f} dB"
                )
                _write_summaries(writer, "train", means, step)
                window, window_start, window_first_step = [], time.perf_counter(), step
            if val_chunks and (step % config.eval_every == 0 or last):
                _validate(p_eval_step, state.params, config, hparams, val_chunks, batch_sharding,
                          writer, step)  # fmt: skip
            if step % config.checkpoint_every == 0 or last:
                save_training_checkpoint(
                    manager, step, config.model_config, saved_params(model, state.params),
                    state.checkpoint_items(), _checkpoint_extra(config),
                )  # fmt: skip
                if kill is not None and kill[1] == step:
                    if kill[0] == "saved":
                        manager.wait_until_finished()
                    os.kill(os.getpid(), signal.SIGKILL)  # "saving": the write is in flight
        manager.wait_until_finished()
        bar.close()
        seconds = time.perf_counter() - trained_from
        logging.info(
            "done: %d steps (%d in this run, %s, %.2f steps/s); last %d steps: loss %.4f  "
            "bpp %.4f  PSNR %.2f dB; checkpoints in %s",
            config.num_steps, config.num_steps - start_step, _format_duration(seconds),
            (config.num_steps - start_step) / seconds, window_size, means["loss"], means["bpp"],
            means["psnr"], manager.directory,
        )  # fmt: skip
    finally:
        bar.close()
        manager.close()
        if writer is not None:
            writer.close()
    return state


def _validate(eval_fn, params, config: TrainConfig, hparams: Hyperparams, chunks, sharding,
              writer, step: int) -> None:  # fmt: skip
    """Validate (a variable-rate model at each of VALIDATION_QUALITIES), log, write summaries."""
    model = config.model_config
    qualities = VALIDATION_QUALITIES if model.variable_rate else (None,)
    for quality in qualities:
        lmbda, prefix, label = hparams.lmbda, "validation", ""
        if quality is not None:
            replicated = NamedSharding(sharding.mesh, P())
            lmbda = replicate(np.float32(lmbda_of_quality(quality, model.lmbda_range)), replicated)
            prefix, label = f"validation_q{quality:g}", f" (quality {quality:g})"
            quality = replicate(np.float32(quality), replicated)
        val = evaluate(eval_fn, params, lmbda, chunks, sharding, quality)
        logging.info(
            "validation at step %d%s: loss %.4f  bpp %.4f  PSNR %.2f dB",
            step, label, val["loss"], val["bpp"], val["psnr"],
        )  # fmt: skip
        _write_summaries(writer, prefix, val, step)


def _summary_writer(workdir: Path):
    """A TensorBoard event writer for `<workdir>/tensorboard` (tf.summary; tf is already loaded
    by the input pipeline)."""
    import tensorflow as tf

    return tf.summary.create_file_writer(str(workdir / "tensorboard"))


def _write_summaries(writer, prefix: str, values: dict[str, float], step: int) -> None:
    """Scalars `<prefix>/<name>` in TensorBoard's scalar format, written with tf.summary.write
    (the `tensorboard` package is needed only to view them)."""
    if writer is None:
        return
    import tensorflow as tf
    from tensorflow.core.framework import summary_pb2

    metadata = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars"),
        data_class=summary_pb2.DATA_CLASS_SCALAR,
    ).SerializeToString()
    with writer.as_default(step=step):
        for name, value in values.items():
            tf.summary.write(f"{prefix}/{name}", tf.constant(value, tf.float32), metadata=metadata)
    writer.flush()
