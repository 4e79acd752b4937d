"""Quickstart: train a small joint model, code Kodak to real files, compare with JPEG and WebP.

    ./launch.sh quickstart [--num_steps=N] [--data_root=DIR] [--output_dir=DIR] ...

1. trains (or resumes) a small `joint` model (N=M=64, 128x128 crops) on <data_root>/train (or,
   without local data, the tfds download of tf_flowers), from scratch or, with --init_from, from
   a trained checkpoint such as the shipped one,
2. exports it in integer form (`jahp-export`'s default: files that decode bit-exactly on any
   machine) to --model_dir and compresses and decompresses every Kodak image to real `.jahp`
   bytes with that model,
3. runs JPEG 4:2:0 and WebP over the same images,
4. prints our operating point beside JPEG and WebP interpolated to the same bpp, and writes the
   results JSONs and an RD plot to --output_dir (runs/quickstart; the committed reference is
   regenerated only with --output_dir=results/quickstart).
Defaults take about 5 minutes on an idle 2-core CPU (see README, "Quickstart").
"""

from __future__ import annotations

import functools
import json
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from absl import flags

from experiments.common import (
    define_experiment_flags,
    eval_images_of,
    provenance,
    start_record,
    start_sources,
    train_config,
)
from jahp_jax.cli.command import Command

# A shorter classical sweep than baselines' own (0.1 to ~1.3 bpp): metrics dominate its time.
QUICK_QUALITIES = {"jpeg420": (5, 10, 20, 30, 50, 75), "webp": (0, 10, 30, 50, 75, 90)}


COMMAND = Command("./launch.sh quickstart", __doc__)
FLAGS = COMMAND.flags
define_experiment_flags(FLAGS, num_steps=1000)
flags.DEFINE_string("workdir", "runs/quickstart/train", "Training workdir (rerun to resume).",
                    flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("output_dir", "runs/quickstart", "Results, table, plot and run.json.",
                    flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("model_dir", "runs/quickstart/model", "Where the trained model is "
                    "exported in integer form (a previous export there is replaced).",
                    flag_values=FLAGS)  # fmt: skip
flags.DEFINE_float("lmbda", 0.0130, "Rate-distortion trade-off of the model.", flag_values=FLAGS)
flags.DEFINE_string("init_from", None, "Fine-tune this checkpoint (e.g. the shipped "
                    "models/joint_n64_lmbda0.013) instead of training from scratch.",
                    flag_values=FLAGS)  # fmt: skip


def _interpolate(curve: dict, bpp: float, key: str) -> float:
    """Quality of a classical curve at `bpp` (linear in log-rate); NaN outside its range."""
    rates = np.log(np.asarray(curve["bpp"]))
    order = np.argsort(rates)
    values = np.asarray(curve[key])[order]
    rates = rates[order]
    if not rates[0] <= np.log(bpp) <= rates[-1]:
        return float("nan")
    return float(np.interp(np.log(bpp), rates, values))


def comparison_table(ours: dict, classical: dict[str, dict]) -> str:
    """Markdown table: our point, then each classical codec at our bpp."""
    r = ours["results"]
    lines = [
        "| codec | bpp | PSNR (dB) | MS-SSIM (dB) | encode (s) | decode (s) |",
        "|---|---|---|---|---|---|",
        f"| {ours['name']} | {r['bpp'][0]:.3f} | {r['psnr-rgb'][0]:.2f} | "
        f"{r['ms-ssim-rgb-db'][0]:.2f} | {r['encoding_time'][0]:.3f} | "
        f"{r['decoding_time'][0]:.3f} |",
    ]
    for name, data in classical.items():
        curve = data["results"]
        psnr = _interpolate(curve, r["bpp"][0], "psnr-rgb")
        msssim = _interpolate(curve, r["bpp"][0], "ms-ssim-rgb-db")
        enc = _interpolate(curve, r["bpp"][0], "encoding_time")
        dec = _interpolate(curve, r["bpp"][0], "decoding_time")
        lines.append(
            f"| {name} (same bpp) | {r['bpp'][0]:.3f} | {psnr:.2f} | {msssim:.2f} | "
            f"{enc:.3f} | {dec:.3f} |"
        )
    return "\n".join(lines)


def export_integer_model(workdir: str | Path, model_dir: str | Path) -> Path:
    """The latest model of `workdir` in integer form as the checkpoint root `model_dir`, which
    may hold a previous export (replaced) but nothing else; returns the step folder written."""
    from jahp_jax.io.checkpoints import CheckpointError, export_model, resolve_checkpoint

    model_dir = Path(model_dir)
    if model_dir.exists():
        try:
            resolve_checkpoint(model_dir)
        except CheckpointError:
            raise CheckpointError(
                f"--model_dir={model_dir} exists and holds no model; choose another folder"
            ) from None
        shutil.rmtree(model_dir)
    model_dir.parent.mkdir(parents=True, exist_ok=True)
    return export_model(workdir, model_dir, arithmetic="integer")


def main(argv: Sequence[str] | None = None) -> int:
    """./launch.sh quickstart; argv: its arguments (default: sys.argv[1:])."""
    return COMMAND.run(functools.partial(_quickstart, argv=argv), argv)


def _quickstart(_: list[str], argv: Sequence[str] | None) -> int:
    args = FLAGS
    # Imported here so that --help answers at once (console first: it quiets TensorFlow).
    from jahp_jax import console

    try:
        console.setup(args.verbosity)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from jahp_jax.data.pipeline import DatasetError, ImageError
    from jahp_jax.evaluation import baselines, evaluate, report
    from jahp_jax.io.images import write_text
    from jahp_jax.training.train import ConfigError, TrainingError, train_and_evaluate

    sources = start_sources(args)
    if isinstance(sources, int):
        return sources
    console.setup(args.verbosity, Path(args.workdir) / console.LOG_FILE)
    started, started_at = time.perf_counter(), start_record()
    output_dir = Path(args.output_dir)
    config = train_config(args, sources, "joint", args.lmbda)
    try:
        print(
            f"== 1/3 {'fine-tuning' if args.init_from else 'training'} a joint model "
            f"(N={args.num_filters}, M={args.num_latents}, lambda={args.lmbda}, "
            f"{args.num_steps} steps) in {args.workdir}",
            flush=True,
        )
        train_and_evaluate(config, args.workdir)
        trained = time.perf_counter()
        evaluation = "Kodak" if sources.eval_dataset else f"the images of {sources.eval_dir}"
        print(f"== 2/3 exporting the model in integer form to {args.model_dir} and coding "
              f"{evaluation} to real files with it ({trained - started:.0f} s so far)",
              flush=True)  # fmt: skip
        export_integer_model(args.workdir, args.model_dir)
        images = eval_images_of(sources, args.limit)
        name = f"jahp_jax joint (N={args.num_filters}, M={args.num_latents}, integer prior)"
        ours, rows = evaluate.evaluate_checkpoints([args.model_dir], images, name=name)
        evaluate.write_results(output_dir, "joint", ours, rows)
        print(
            f"== 3/3 JPEG and WebP on the same images ({time.perf_counter() - started:.0f} s)",
            flush=True,
        )
        baselines.run(
            ["jpeg420", "webp"], str(output_dir), sources.eval_dataset, sources.eval_dir,
            args.limit, QUICK_QUALITIES,
        )  # fmt: skip
    except (ConfigError, TrainingError, DatasetError, ImageError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    classical = {
        evaluate.load_results(output_dir / f"{key}.json")["name"]: evaluate.load_results(
            output_dir / f"{key}.json"
        )
        for key in ("jpeg420", "webp")
    }
    table = comparison_table(ours, classical)
    write_text(output_dir / "table.md", table + "\n")
    curves = report.load_curves(
        [str(output_dir / f"{key}.json") for key in ("joint", "jpeg420", "webp")], []
    )
    report.plot_rd(curves, output_dir / "rd.png")
    run = provenance("quickstart", argv, started_at, time.perf_counter() - started)
    write_text(output_dir / "run.json", json.dumps(run, indent=2) + "\n")
    print()
    print(table)
    print(
        f"\nwrote {output_dir}/{{joint,jpeg420,webp}}.json, table.md, rd.png and run.json "
        f"in {run['wall_seconds']:.0f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
