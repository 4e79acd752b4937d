"""jahp-export: write a checkpoint's model (config and parameters) for inference or shipping.

    jahp-export [--arithmetic=integer|float] SOURCE DESTINATION

Two positional arguments: SOURCE, a training workdir (its latest step), checkpoint folder or
step folder, and DESTINATION, a new folder. The export keeps the step and the metadata and drops
the optimiser state (a third of a training checkpoint's size); every command that reads a model
reads it. By default the model is written in integer form (a float model converted as
`jahp-convert --to=integer` does): its files decode bit-exactly on any machine.
`--arithmetic=float` writes the float form, whose files decode only where the float arithmetic
matches the encoder's (a prior without integer form, e.g. factorized or a mixture, needs it).
`python -m jahp_jax.cli.export` is the same command.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import flags

from jahp_jax.cli.command import Command, UsageError
from jahp_jax.io.checkpoints import (
    EXPORT_ARITHMETIC,
    CheckpointError,
    export_model,
    load_model,
    params_fingerprint,
)

COMMAND = Command("jahp-export", __doc__, takes_args=True)
FLAGS = COMMAND.flags
flags.DEFINE_enum("arithmetic", "integer", list(EXPORT_ARITHMETIC), "The prior path of the "
                  "exported model: integer (its files decode bit-exactly on any machine) or float "
                  "(only where the float arithmetic matches the encoder's).",
                  flag_values=FLAGS)  # fmt: skip


def _export(args: list[str]) -> int:
    if len(args) != 2:
        raise UsageError(f"expected SOURCE DESTINATION, got {args}")
    try:
        step_dir = export_model(*args, arithmetic=FLAGS.arithmetic)
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    _, params, config = load_model(step_dir)
    print(f"wrote {step_dir} ({config.describe()}, fingerprint {params_fingerprint(params).hex()})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The `jahp-export` command; argv: its arguments (default: sys.argv[1:])."""
    return COMMAND.run(_export, argv)


if __name__ == "__main__":
    sys.exit(main())
