"""jahp-convert: other libraries' weights to checkpoints; float models to integer-prior ones.

    jahp-convert --from=compressai --arch=mbt2018 mbt2018-3-22901978.pth.tar OUT_DIR
    jahp-convert --from=compressai --arch=elic2022-chandelier ELIC_0450_ft_3980_Plateau.pth.tar OUT
    jahp-convert --from=tcm --arch=tcm mse_lambda_0.0035.pth.tar OUT_DIR
    jahp-convert --to=integer FLOAT_CHECKPOINT OUT_DIR

Two positional arguments: the input and the output folder. With --arch: a state_dict of that
architecture from that library (.pth or .pth.tar, which needs `pip install -e '.[torch]'`, or
.npz; CompressAI's 2018 models, cheng2020-* and elic2022-*, LIC_TCM's tcm),
written as an ordinary checkpoint under OUT_DIR (a workdir) that every other command loads. With
--to=integer: a jahp_jax checkpoint (workdir, checkpoint folder or step folder), written with an
integer prior path into the new folder OUT_DIR (its files decode bit-exactly on any machine:
docs/portable_files.md). `python -m jahp_jax.cli.convert` is the same command.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import flags

from jahp_jax.cli.command import Command, UsageError
from jahp_jax.io.convert import SOURCES, convert_file, convert_to_integer

COMMAND = Command("jahp-convert", __doc__, takes_args=True)
FLAGS = COMMAND.flags
flags.DEFINE_enum("from", "compressai", list(SOURCES), "The library the weights come from.",
                  flag_values=FLAGS)  # fmt: skip
flags.DEFINE_enum("arch", None, sorted({arch for archs in SOURCES.values() for arch in archs}),
                  "The model's architecture in that library (the input is its weights).",
                  flag_values=FLAGS)  # fmt: skip
flags.DEFINE_enum("to", None, ["integer"], "Convert a jahp_jax float model (the input is its "
                  "checkpoint) to an integer-prior model.", flag_values=FLAGS)  # fmt: skip


def _convert(args: list[str]) -> int:
    if len(args) != 2:
        raise UsageError(f"expected INPUT OUT_DIR, got {args}")
    if (FLAGS.to is None) == (FLAGS.arch is None):
        raise UsageError("give --arch (another library's file) or --to=integer (a jahp_jax model)")
    source, out_dir = args
    try:
        if FLAGS.to:
            step_dir = convert_to_integer(source, out_dir, log=print)
        else:
            step_dir = convert_file(
                source, FLAGS.arch, out_dir, log=print, source_format=FLAGS["from"].value
            )
    except (ValueError, OSError) as error:
        message = (str(error).strip() or type(error).__name__).splitlines()[0]
        print(f"error: {message}", file=sys.stderr)
        return 1
    print(f"wrote {step_dir}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The `jahp-convert` command; argv: its arguments (default: sys.argv[1:])."""
    return COMMAND.run(_convert, argv)


if __name__ == "__main__":
    sys.exit(main())
