"""jahp-export: write a checkpoint's model (config and parameters) for inference or shipping.

    jahp-export SOURCE DESTINATION

Two positional arguments: SOURCE, a training workdir (its latest step), checkpoint folder or
step folder, and DESTINATION, a new folder. The export keeps the step and the metadata and drops
the optimiser state (a third of a training checkpoint's size); every command that reads a model
reads it. `python -m jahp_jax.cli.export` is the same command.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from jahp_jax.cli.command import Command, UsageError
from jahp_jax.io.checkpoints import CheckpointError, export_model, load_model, params_fingerprint

COMMAND = Command("jahp-export", __doc__, takes_args=True)
FLAGS = COMMAND.flags


def _export(args: list[str]) -> int:
    if len(args) != 2:
        raise UsageError(f"expected SOURCE DESTINATION, got {args}")
    try:
        step_dir = export_model(*args)
    except CheckpointError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    _, params, _ = load_model(step_dir)
    print(f"wrote {step_dir} (fingerprint {params_fingerprint(params).hex()[:16]})")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The `jahp-export` command; argv: its arguments (default: sys.argv[1:])."""
    return COMMAND.run(_export, argv)


if __name__ == "__main__":
    sys.exit(main())
