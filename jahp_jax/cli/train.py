"""jahp-train: train a model, or resume one (`python -m jahp_jax.cli.train` is the same).

    jahp-train --prior=joint --lmbda=0.0067 --workdir=runs/joint_0.0067 --data_dir=IMAGES
    jahp-train --flagfile=experiments/cpu.flags --lmbda=0.0067 --workdir=runs/cpu_0.0067
    jahp-train ... --prior=channelwise --prior_option=num_slices=5
    jahp-train ... --variable_rate --lmbda_range=0.0018,0.18   (one model for every rate)
    jahp-train ... --multihost      (one process of a multi-process run: docs/multihost.md)

Rerunning a command resumes its --workdir from the latest checkpoint. The model and training
flags are the fields of jahp_jax.training.train.TrainConfig, the multi-process ones those of
jahp_jax.training.distributed.ClusterSettings (their defaults and help texts live there);
docs/training.md says what they do. Bad flags stop with one `error: ...` line before anything
heavy (TensorFlow, data, compiling) starts.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
from absl import flags, logging

from jahp_jax import console, runtime
from jahp_jax.cli.command import HELP, Command
from jahp_jax.io.checkpoints import CheckpointError
from jahp_jax.models.compression_model import PRESETS
from jahp_jax.models.presets import MODELS
from jahp_jax.training import distributed
from jahp_jax.training.train import (
    ConfigError,
    TrainConfig,
    TrainingError,
    check_train_config,
    train_and_evaluate,
)

COMMAND = Command("jahp-train", __doc__)
FLAGS = COMMAND.flags
# Every TrainConfig field is a flag of its name but one: --prior_option (below, repeatable)
# fills prior_options.
CONFIG_FLAGS = COMMAND.define_fields(TrainConfig, exclude=("prior_options",))
CLUSTER_FLAGS = COMMAND.define_fields(distributed.ClusterSettings)
_FIELDS = {field.name: field for field in dataclasses.fields(TrainConfig)}
flags.DEFINE_multi_string("prior_option", [], _FIELDS["prior_options"].metadata[HELP],
                          flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("workdir", None, "Folder for checkpoints, summaries and the log; rerun to "
                    "resume. Required.", flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("preset", None, f"Named (N, M): {PRESETS}; sets --num_filters and "
                    "--num_latents.", flag_values=FLAGS)  # fmt: skip
flags.DEFINE_enum("model", None, list(MODELS), "A named model (transform + prior + options + "
                  "the reference's sizes, docs/architecture.md); --transform, --prior, "
                  "--num_filters, ... given beside it override its values.",
                  flag_values=FLAGS)  # fmt: skip
flags.DEFINE_bool("multihost", False, "One process of a multi-process run (one per host or "
                  "GPU): settings from --coordinator_address/--num_processes/--process_id, "
                  "JAX_COORDINATOR_ADDRESS/JAX_NUM_PROCESSES/JAX_PROCESS_ID, or JAX's detection "
                  "of Slurm, TPU VMs and Open MPI.", flag_values=FLAGS)  # fmt: skip
flags.DEFINE_integer("distributed_timeout", distributed.TIMEOUT_S, "Multi-process: seconds to "
                     "wait for the coordinator and for every process to join.",
                     flag_values=FLAGS)  # fmt: skip
flags.DEFINE_integer("heartbeat_timeout", distributed.HEARTBEAT_TIMEOUT_S, "Multi-process: "
                     "seconds after which a process that stopped responding ends the run on "
                     "every process.", flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("verbosity", "warning", "Third-party logging (orbax, tfds, ...) on the "
                    "console: error, warning, info or debug, or absl's numbers (0: info, "
                    "1: debug). The log file in --workdir keeps everything.", short_name="v",
                    flag_values=FLAGS)  # fmt: skip


def config_from_flags(flag_values: flags.FlagValues = FLAGS) -> TrainConfig:
    """The TrainConfig the parsed flags describe (ConfigError for missing or conflicting ones)."""
    if flag_values.lmbda is None and not flag_values.variable_rate:
        raise ConfigError(
            "--lmbda is required (e.g. --lmbda=0.0067), or --variable_rate --lmbda_range=LOW,HIGH"
        )
    values = {name: flag_values[name].value for name in CONFIG_FLAGS}
    prior_options = parse_prior_options(flag_values.prior_option)
    if flag_values.model is not None:
        model = MODELS[flag_values.model].fields()
        model["prior_options"] = dict((*model["prior_options"], *prior_options))
        given = {name for name in model if name in CONFIG_FLAGS and flag_values[name].present}
        values.update({name: value for name, value in model.items() if name not in given})
        prior_options = tuple(sorted(values.pop("prior_options").items()))
    if flag_values.preset is not None:
        if flag_values.preset not in PRESETS:
            raise ConfigError(f"unknown --preset '{flag_values.preset}'; choose one of {PRESETS}")
        preset = dict(zip(("num_filters", "num_latents"), PRESETS[flag_values.preset],
                          strict=True))  # fmt: skip
        for name, value in preset.items():
            if flag_values[name].present and values[name] != value:
                raise ConfigError(f"--preset={flag_values.preset} sets --{name}={value}, "
                                  f"but --{name}={values[name]} was given")  # fmt: skip
        values.update(preset)
    return TrainConfig(**values, prior_options=prior_options)


def parse_prior_options(items: list[str]) -> tuple[tuple[str, Any], ...]:
    """['num_slices=5', ...] -> (('num_slices', 5), ...): values as int, float, bool or str."""
    options = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise ConfigError(f"--prior_option={item!r} is not NAME=VALUE")
        if name in options:
            raise ConfigError(f"--prior_option {name} is given twice")
        options[name] = _option_value(text)
    return tuple(sorted(options.items()))


def _option_value(text: str) -> Any:
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def _error(error: Exception) -> int:
    print(f"error: {error}", file=sys.stderr)
    return 1


def _train(_: list[str]) -> int:
    try:
        if FLAGS.workdir is None:
            raise ConfigError("--workdir is required (checkpoints and summaries go there)")
        config = config_from_flags()
        check_train_config(config, None)
        console.verbosity_level(FLAGS.verbosity)
    except ValueError as error:  # ConfigError, or an unknown --verbosity
        return _error(error)
    # The data pipelines import TensorFlow (~5 s on 2 cores): only once the flags are valid, so
    # that --help and a mistyped flag answer in the time of importing jax.
    from jahp_jax.data.pipeline import DatasetError

    try:
        console.setup(FLAGS.verbosity, Path(FLAGS.workdir) / console.LOG_FILE)
        runtime.enable_compilation_cache()
        if FLAGS.multihost or any(FLAGS[name].present for name in CLUSTER_FLAGS):
            distributed.initialize(
                distributed.cluster_settings(**COMMAND.values(CLUSTER_FLAGS)),
                timeout_s=FLAGS.distributed_timeout,
                heartbeat_timeout_s=FLAGS.heartbeat_timeout,
            )
            if jax.process_index() != 0:  # Logs and summaries come from process 0 only.
                logging.set_verbosity(logging.WARNING)
        train_and_evaluate(config, FLAGS.workdir)
    except (ConfigError, DatasetError, CheckpointError, TrainingError,
            distributed.DistributedError) as error:  # fmt: skip
        return _error(error)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The `jahp-train` command; argv: its arguments (default: sys.argv[1:])."""
    return COMMAND.run(_train, argv)


if __name__ == "__main__":
    sys.exit(main())
