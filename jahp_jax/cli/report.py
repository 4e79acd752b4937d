"""jahp-report: BD-rate tables, RD plots and visual comparison sheets from results files.

    jahp-report runs/classical/*.json runs/eval/joint.json --reference=jpeg420 \\
        --reference=hevc444 --plot=rd.png --table=bd_rate.md
    jahp-report runs/eval/joint.json --anchors=../shared/anchors/kodak/jpeg.json --plot=rd.png

The positional arguments are results JSON files (jahp-eval's, jahp-baselines', CompressAI's
format), as are --results; --anchors are published results, drawn and tabled as such. The table
gives each curve's BD-rate (and BD-PSNR) against every --reference curve (a file stem, curve name
or path among the results); it is printed unless --table names a file. --sheet writes a visual
comparison of one Kodak image at one rate. `python -m jahp_jax.cli.report` is the same command.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from absl import flags

from jahp_jax.cli.command import Command, UsageError
from jahp_jax.evaluation.report import (
    BD_METHODS,
    DEFAULT_REFERENCES,
    SHEET_CODECS,
    bd_table,
    find_curve,
    load_curves,
    plot_rd,
    write_sheet,
)
from jahp_jax.io.images import write_text

COMMAND = Command("jahp-report", __doc__, takes_args=True)
FLAGS = COMMAND.flags
flags.DEFINE_multi_string("results", [], "A results JSON file (repeatable), as the positional "
                          "arguments are.", flag_values=FLAGS)  # fmt: skip
flags.DEFINE_multi_string("anchors", [], "A published results JSON (repeatable), e.g. "
                          "../shared/anchors/kodak/jpeg.json.", flag_values=FLAGS)  # fmt: skip
flags.DEFINE_multi_string("reference", list(DEFAULT_REFERENCES), "A reference curve of the "
                          "table (repeatable): file stem, name or path.",
                          flag_values=FLAGS)  # fmt: skip
flags.DEFINE_enum("method", BD_METHODS[0], BD_METHODS, "BD interpolation: piecewise cubic "
                  "Hermite (the JVET sheets') or the original cubic fit.",
                  flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("plot", None, "RD plot PNG to write.", flag_values=FLAGS)
flags.DEFINE_float("max_bpp", 2.0, "x-axis limit of the plot.", flag_values=FLAGS)
flags.DEFINE_string("table", None, "Markdown BD-rate table to write (printed if not given).",
                    flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("sheet", None, "Visual comparison PNG to write.", flag_values=FLAGS)
flags.DEFINE_string("sheet_image", "kodim23", "Kodak image of the sheet.", flag_values=FLAGS)
flags.DEFINE_float("sheet_bpp", 0.3, "Target bpp of the sheet's codecs.", flag_values=FLAGS)
flags.DEFINE_list("sheet_codecs", list(SHEET_CODECS), "Classical codecs of the sheet.",
                  flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("sheet_crop", None, "The sheet's crop: top,left,height,width (default: the "
                    "central 256x256).", flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("sheet_checkpoint", None, "Put our model's decoded image first; the codecs "
                    "are then matched to its bpp.", flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("data_dir", None, "Kodak folder for the sheet (default: the download).",
                    flag_values=FLAGS)  # fmt: skip


def _sheet_crop() -> tuple[int, int, int, int] | None:
    if FLAGS.sheet_crop is None:
        return None
    try:
        crop = tuple(int(v) for v in FLAGS.sheet_crop.split(","))
    except ValueError:
        crop = ()
    if len(crop) != 4:
        raise UsageError(f"--sheet_crop={FLAGS.sheet_crop} is not four integers: "
                         "top,left,height,width")  # fmt: skip
    return crop


def _report(args: list[str]) -> int:
    paths = [*FLAGS.results, *args]
    if not paths:
        raise UsageError("give the results JSON files (as arguments or --results)")
    crop = _sheet_crop()
    try:
        curves = load_curves(paths, FLAGS.anchors)
        references = []
        for key in FLAGS.reference:
            found = find_curve(curves, key)
            if found is None:
                print(f"reference {key!r} is not among the results; left out of the table",
                      file=sys.stderr)  # fmt: skip
            else:
                references.append(found)
        if references:
            table = bd_table(curves, references, FLAGS.method)
            if FLAGS.table:
                write_text(FLAGS.table, table)
                print(f"wrote {FLAGS.table}")
            else:
                print(table)
        if FLAGS.plot:
            plot_rd(curves, FLAGS.plot, FLAGS.max_bpp)
            print(f"wrote {FLAGS.plot}")
        if FLAGS.sheet:
            write_sheet(FLAGS.sheet, FLAGS.sheet_image, FLAGS.data_dir, FLAGS.sheet_codecs,
                        FLAGS.sheet_bpp, crop, FLAGS.sheet_checkpoint)  # fmt: skip
            print(f"wrote {FLAGS.sheet}")
    except (ValueError, OSError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The `jahp-report` command; argv: its arguments (default: sys.argv[1:])."""
    return COMMAND.run(_report, argv)


if __name__ == "__main__":
    sys.exit(main())
