"""jahp-baselines: classical codecs (JPEG, WebP, JPEG 2000, HEVC, AVIF, JPEG XL) on a data set.

    jahp-baselines --dataset=kodak --data_dir=../shared/data/kodak \\
        --codecs=jpeg420,jpeg444,webp,jpeg2000,hevc444,avif,jxl --output_dir=results/classical

Every image is coded by each codec over its sweep of qualities through pip-installed libraries
(Pillow, pillow-heif, pillow-jxl-plugin), measured like our models (jahp-eval): writes
<key>.json (CompressAI's results format) and <key>.images.csv per codec to --output_dir. A codec
whose library is missing is skipped with one line. `python -m jahp_jax.cli.baselines` is the same
command.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import flags

from jahp_jax import console
from jahp_jax.cli.command import Command
from jahp_jax.evaluation.baselines import CODECS, run

COMMAND = Command("jahp-baselines", __doc__)
FLAGS = COMMAND.flags
flags.DEFINE_string("dataset", "kodak", "A tfds image data set.", flag_values=FLAGS)
flags.DEFINE_string("data_dir", None, "The data set's offline copy, e.g. ../shared/data/kodak.",
                    flag_values=FLAGS)  # fmt: skip
flags.DEFINE_list("codecs", list(CODECS), "Codec keys, comma-separated.", flag_values=FLAGS)
flags.DEFINE_string("output_dir", "results/classical", "Folder for the results files.",
                    flag_values=FLAGS)  # fmt: skip
flags.DEFINE_integer("limit", None, "Only the first N images.", flag_values=FLAGS)


def _baselines(_: list[str]) -> int:
    console.setup()
    try:
        codecs = [key for key in FLAGS.codecs if key]
        run(codecs, FLAGS.output_dir, FLAGS.dataset, FLAGS.data_dir, FLAGS.limit)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The `jahp-baselines` command; argv: its arguments (default: sys.argv[1:])."""
    return COMMAND.run(_baselines, argv)


if __name__ == "__main__":
    sys.exit(main())
