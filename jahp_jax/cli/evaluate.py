"""jahp-eval: evaluate checkpoints on a data set through real compressed files.

    jahp-eval --checkpoint=runs/joint_0.0067 --checkpoint=runs/joint_0.013 \\
        --data_dir=../shared/data/kodak --output=runs/eval/joint.json

    jahp-eval --checkpoint=runs/joint_vr --qualities=0,0.25,0.5,0.75,1 \\
        --data_dir=../shared/data/kodak --output=runs/eval/joint_vr.json

Each --checkpoint (one model family: the same prior and sizes) is one point of an RD curve, or,
for a variable-rate model, each of its --qualities is: every image is compressed to .jahp bytes
and decompressed, and the real rate, PSNR, MS-SSIM and coding times are averaged over the images.
Writes the curve in CompressAI's results-JSON format to --output and one row per image and point
to the CSV beside it. `python -m jahp_jax.cli.evaluate` is the same command.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from absl import flags

from jahp_jax import console
from jahp_jax.cli.command import Command, UsageError
from jahp_jax.evaluation.evaluate import evaluate_checkpoints, write_results

COMMAND = Command("jahp-eval", __doc__)
FLAGS = COMMAND.flags
flags.DEFINE_multi_string("checkpoint", [], "A training workdir or checkpoint folder; repeat "
                          "for the points of one curve. Required.",
                          flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("dataset", "kodak", "A tfds name, or 'folder': the images of --data_dir.",
                    flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("data_dir", None, "The data set's offline copy, e.g. ../shared/data/kodak; "
                    "with --dataset=folder, any folder of images.",
                    flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("output", None, "Results JSON to write (the per-image CSV goes beside it). "
                    "Required.", flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("name", None, "Curve name in the JSON and plots (default: from the model).",
                    flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("prior", None, "Refuse checkpoints of another prior.", flag_values=FLAGS)
flags.DEFINE_integer("limit", None, "Only the first N images.", flag_values=FLAGS)
flags.DEFINE_list("qualities", None, "Variable-rate checkpoints: the qualities in [0, 1] of the "
                  "curve's points, comma-separated (e.g. 0,0.25,0.5,0.75,1).",
                  flag_values=FLAGS)  # fmt: skip


def _evaluate(_: list[str]) -> int:
    if not FLAGS.checkpoint:
        raise UsageError("give at least one --checkpoint=WORKDIR")
    if FLAGS.output is None or Path(FLAGS.output).suffix != ".json":
        raise UsageError(f"--output must be a .json file to write, got {FLAGS.output}")
    qualities = None
    if FLAGS.qualities is not None:
        try:
            qualities = [float(value) for value in FLAGS.qualities]
        except ValueError:
            raise UsageError(f"--qualities must be numbers in [0, 1], got {FLAGS.qualities}"
                             ) from None  # fmt: skip
        if not qualities or len(set(qualities)) != len(qualities):
            raise UsageError(f"--qualities must be distinct numbers, got {FLAGS.qualities}")
    from jahp_jax.coding.codec import CodecError
    from jahp_jax.data.pipeline import DatasetError, ImageError, eval_images
    from jahp_jax.io.checkpoints import CheckpointError
    from jahp_jax.runtime import enable_compilation_cache

    enable_compilation_cache()
    console.setup()
    output = Path(FLAGS.output)
    try:
        dataset = None if FLAGS.dataset == "folder" else FLAGS.dataset
        images = list(eval_images(dataset, data_dir=FLAGS.data_dir, limit=FLAGS.limit))
        results, rows = evaluate_checkpoints(FLAGS.checkpoint, images, FLAGS.name, FLAGS.prior,
                                             log=lambda line: print(line, flush=True),
                                             qualities=qualities)  # fmt: skip
    except (CheckpointError, CodecError, DatasetError, ImageError, ValueError, OSError) as error:
        print(f"error: {' '.join(str(error).split()) or type(error).__name__}", file=sys.stderr)
        return 1
    json_path, csv_path = write_results(output.parent, output.stem, results, rows)
    r = results["results"]
    for i, quality in enumerate(r["quality"]):
        print(
            f"{quality}: {r['bpp'][i]:.4f} bpp (estimated {r['estimated-bpp'][i]:.4f}), "
            f"PSNR {r['psnr-rgb'][i]:.2f} dB, MS-SSIM {r['ms-ssim-rgb-db'][i]:.2f} dB, "
            f"encode {r['encoding_time'][i]:.3f} s, decode {r['decoding_time'][i]:.3f} s"
        )
    if results["errors"]:
        print(f"{len(results['errors'])} image(s) failed; see {csv_path}", file=sys.stderr)
    print(f"wrote {json_path} and {csv_path}")
    return 1 if results["errors"] else 0


def main(argv: Sequence[str] | None = None) -> int:
    """The `jahp-eval` command; argv: its arguments (default: sys.argv[1:])."""
    return COMMAND.run(_evaluate, argv)


if __name__ == "__main__":
    sys.exit(main())
