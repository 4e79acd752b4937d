"""One variable-rate model against one fixed-rate model per lambda, trained side by side, compared
on Kodak through real files (docs/variable_rate.md).

    ./launch.sh python -m experiments.variable_rate [--prior=joint] [--lmbdas=...] [--num_steps=N]

Trains a fixed-rate model at each of --lmbdas (--num_steps each, the ablation's CPU recipe:
N=M=64, batch 8, 128x128 crops, lr 5e-4) and one `--variable_rate` model over their range with
--gain_levels levels for --variable_rate_steps (default: the fixed models' total), resuming
unfinished runs; then codes Kodak with every fixed model and with the variable-rate model at each
of --qualities, and reports the BD-rate of the variable-rate curve against the fixed-rate one
over their overlapping range (`jahp_jax.evaluation.report.bd_rate`), with the training cost of
each side (--fixed_results: compare with an earlier run's fixed-rate models instead of training
them). --targets measures `Codec.compress_to_bpp` on every image. Writes `<prior>_fixed.json`,
`<prior>_variable.json` (+ .images.csv), `targets.csv`, `summary.md`, `rd.png` and `run.json` to
--output_dir (the committed reference: results/variable_rate).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

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

COMMAND = Command("python -m experiments.variable_rate", __doc__)
FLAGS = COMMAND.flags
flags.DEFINE_string("prior", "joint", "The prior of every model.", flag_values=FLAGS)
flags.DEFINE_string("lmbdas", "0.0035,0.013,0.0483,0.18", "The fixed-rate models' lambdas; the "
                    "variable-rate model's range is their min and max.",
                    flag_values=FLAGS)  # fmt: skip
flags.DEFINE_integer("gain_levels", None, "Gain levels of the variable-rate model (default: one "
                     "per lambda; log-uniform levels then sit at log-uniform --lmbdas).",
                     flag_values=FLAGS)  # fmt: skip
flags.DEFINE_integer("variable_rate_steps", None, "Training steps of the variable-rate model "
                     "(default: --num_steps times the number of lambdas).",
                     flag_values=FLAGS)  # fmt: skip
flags.DEFINE_list("qualities", ["0", "0.1667", "0.3333", "0.5", "0.6667", "0.8333", "1"],
                  "The variable-rate model's evaluated qualities.", flag_values=FLAGS)  # fmt: skip
flags.DEFINE_list("targets", ["0.2", "0.3", "0.4"], "Target bpps for compress_to_bpp on every "
                  "image (empty: skip).", flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("fixed_results", "", "A results JSON of fixed-rate models to compare with "
                    "instead of training them (e.g. results/ablation/joint.json, the ablation's "
                    "four at the same recipe); the training seconds come from the run.json "
                    "beside it.", flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("reference", "results/ablation/joint.json", "A results JSON of earlier "
                    "fixed-rate models to compare with too (empty: none).",
                    flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("root", "runs/variable_rate", "One workdir per run below this folder.",
                    flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("output_dir", "runs/variable_rate/report", "Results, tables and the plot.",
                    flag_values=FLAGS)  # fmt: skip
define_experiment_flags(FLAGS, num_steps=1000)


def main(argv: Sequence[str] | None = None) -> int:
    return COMMAND.run(functools.partial(_experiment, argv=argv), argv)


def _experiment(_: list[str], argv: Sequence[str] | None) -> int:
    args = FLAGS
    from jahp_jax import console

    try:
        console.setup(args.verbosity)
        lmbdas = sorted(float(value) for value in args.lmbdas.split(","))
        qualities = [float(value) for value in args.qualities]
        targets = [float(value) for value in args.targets]
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if len(set(lmbdas)) < 4 or min(lmbdas) <= 0 or len(qualities) < 4:
        print("error: need >= 4 distinct positive --lmbdas and >= 4 --qualities (BD-rates "
              "interpolate curves of 4 points or more)", file=sys.stderr)  # fmt: skip
        return 2
    sources = start_sources(args)
    if isinstance(sources, int):
        return sources
    from jahp_jax.data.pipeline import DatasetError, ImageError
    from jahp_jax.evaluation import evaluate
    from jahp_jax.io.checkpoints import load_codec
    from jahp_jax.training.train import ConfigError, TrainingError, train_and_evaluate

    root, output_dir = Path(args.root), Path(args.output_dir)
    console.setup(args.verbosity, root / console.LOG_FILE)
    started, started_at = time.perf_counter(), start_record()
    prior = args.prior
    levels = args.gain_levels or len(lmbdas)
    vr_steps = args.variable_rate_steps or args.num_steps * len(lmbdas)
    training: dict[str, dict] = {}
    try:
        fixed_dirs = []
        if args.fixed_results:
            training.update(_earlier_training(Path(args.fixed_results), prior))
        for lmbda in lmbdas if not args.fixed_results else ():
            workdir = root / f"{prior}_lmbda{lmbda}"
            config = train_config(args, sources, prior, lmbda)
            training[workdir.name] = _train(train_and_evaluate, config, workdir, started)
            fixed_dirs.append(str(workdir))
        workdir = root / f"{prior}_variable"
        config = dataclasses.replace(
            train_config(args, sources, prior, None), variable_rate=True,
            lmbda_range=f"{lmbdas[0]},{lmbdas[-1]}", gain_levels=levels, num_steps=vr_steps,
            eval_every=vr_steps if sources.val_dir else 0,
            checkpoint_every=max(min(vr_steps // 4, 10_000), 1),
        )  # fmt: skip
        training[workdir.name] = _train(train_and_evaluate, config, workdir, started)
        images = eval_images_of(sources, args.limit)
        print(f"== evaluating ({time.perf_counter() - started:.0f} s)", flush=True)
        if fixed_dirs:
            results, rows = evaluate.evaluate_checkpoints(fixed_dirs, images, claimed_prior=prior)
            evaluate.write_results(output_dir, f"{prior}_fixed", results, rows)
        results, rows = evaluate.evaluate_checkpoints([str(workdir)], images,
                                                      claimed_prior=prior, qualities=qualities)
        evaluate.write_results(output_dir, f"{prior}_variable", results, rows)
        target_rows = _targets(load_codec(workdir), images, targets)
    except (ConfigError, TrainingError, DatasetError, ImageError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    run = provenance("python -m experiments.variable_rate", argv, started_at,
                     time.perf_counter() - started)  # fmt: skip
    run["training"] = training
    fixed_path = Path(args.fixed_results or output_dir / f"{prior}_fixed.json")
    summary = write_report(output_dir, prior, fixed_path, training, target_rows,
                           args.reference or None, run)  # fmt: skip
    from jahp_jax.io.images import write_text

    write_text(output_dir / "run.json", json.dumps(run, indent=2) + "\n")
    print(summary)
    print(f"wrote {output_dir} in {run['wall_seconds']:.0f} s at commit {run['commit'][:12]}")
    return 0


def _train(train_and_evaluate, config, workdir: Path, started: float) -> dict:
    """Train (or resume) one run; its steps, this invocation's seconds and CPU seconds."""
    import resource

    print(f"== training {workdir} ({time.perf_counter() - started:.0f} s)", flush=True)
    wall, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    train_and_evaluate(config, workdir)
    after = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "num_steps": config.num_steps,
        "seconds": round(time.perf_counter() - wall, 1),
        "cpu_seconds": round(after.ru_utime + after.ru_stime - cpu.ru_utime - cpu.ru_stime, 1),
    }


def _earlier_training(results_path: Path, prior: str) -> dict[str, dict]:
    """The fixed-rate runs of an earlier experiment (its run.json beside `results_path`): their
    training seconds (steps and CPU seconds where recorded)."""
    run_path = results_path.parent / "run.json"
    if not results_path.is_file():
        raise OSError(f"--fixed_results {results_path} is not a file")
    if not run_path.is_file():
        raise OSError(f"{run_path} (the run beside --fixed_results) is missing: its training "
                      "cost is part of the comparison")  # fmt: skip
    run = json.loads(run_path.read_text())
    steps = _flag_value(run.get("command", ""), "num_steps")
    return {name: {"num_steps": steps, "seconds": seconds, "cpu_seconds": None}
            for name, seconds in run.get("training_seconds", {}).items()
            if name.startswith(f"{prior}_")}  # fmt: skip


def _flag_value(command: str, name: str) -> int | None:
    """--name=INT in a recorded command line, else None."""
    for word in command.split():
        if word.startswith(f"--{name}="):
            return int(word.split("=", 1)[1])
    return None


def _targets(codec, images, targets: list[float]) -> list[dict]:
    """compress_to_bpp at each target on each image: the bpp it landed at, or the error."""
    rows = []
    for name, image in images:
        for target in targets:
            row = {"image": name, "target_bpp": target, "bpp": None, "quality": None,
                   "encodes": None, "error": ""}  # fmt: skip
            try:
                _, stats = codec.compress_to_bpp(image, target)
                row.update(bpp=stats.bits_per_pixel, quality=stats.quality, encodes=stats.encodes)
            except ValueError as error:  # CodecError: out of reach, the nearest rate named
                row["error"] = str(error)
            rows.append(row)
    return rows


def write_report(output_dir: Path, prior: str, fixed_path: Path, training: dict,
                 target_rows: list[dict], reference: str | None, run: dict) -> str:  # fmt: skip
    """summary.md (BD-rates, training cost, targets), targets.csv and rd.png; returns the md."""
    import csv
    import io

    from jahp_jax.evaluation import report
    from jahp_jax.io.images import write_text

    variable_path = output_dir / f"{prior}_variable.json"
    references = [fixed_path] + ([Path(reference)] if reference and Path(reference) != fixed_path
                                 else [])  # fmt: skip
    curves = report.load_curves([str(variable_path), *map(str, references)])
    variable, fixed = curves[0], curves[1]
    lines = [
        "| reference | BD-rate PSNR | BD-rate MS-SSIM | BD-PSNR | overlap (bpp) |",
        "|---|---|---|---|---|",
    ]
    for ref in curves[1:]:
        cells = []
        for metric in ("psnr-rgb", "ms-ssim-rgb-db"):
            try:
                value = report.bd_rate(*report.curve(ref.data, metric),
                                       *report.curve(variable.data, metric))  # fmt: skip
                cells.append(f"{100 * value:+.2f}%")
            except ValueError as error:
                cells.append(f"n/a ({error})")
        try:
            bd_psnr = report.bd_quality(*report.curve(ref.data, "psnr-rgb"),
                                        *report.curve(variable.data, "psnr-rgb"))  # fmt: skip
            cells.append(f"{bd_psnr:+.3f} dB")
        except ValueError:
            cells.append("n/a")
        rates = [report.curve(c.data, "psnr-rgb")[0] for c in (ref, variable)]
        overlap = (max(r.min() for r in rates), min(r.max() for r in rates))
        cells.append(f"{overlap[0]:.3f} ... {overlap[1]:.3f}" if overlap[0] < overlap[1]
                     else "none")  # fmt: skip
        lines.append(f"| {ref.label} ({ref.path}) | " + " | ".join(cells) + " |")
    bd = "\n".join(lines)
    cost = ["| run | steps | training wall s | training CPU s |", "|---|---|---|---|"]
    fixed_total: dict[str, float | None] = {"num_steps": 0, "seconds": 0.0, "cpu_seconds": 0.0}

    def cell(value: float | None) -> str:
        return "not recorded" if value is None else f"{value:.0f}"

    for name, entry in training.items():
        cost.append(f"| {name} | {cell(entry['num_steps'])} | {cell(entry['seconds'])} | "
                    f"{cell(entry['cpu_seconds'])} |")  # fmt: skip
        if not name.endswith("_variable"):
            for key, total in fixed_total.items():
                value = entry[key]
                fixed_total[key] = None if total is None or value is None else total + value
    cost.append(f"| the {len(training) - 1} fixed-rate models together | "
                f"{cell(fixed_total['num_steps'])} | {cell(fixed_total['seconds'])} | "
                f"{cell(fixed_total['cpu_seconds'])} |")  # fmt: skip
    landed = [r for r in target_rows if not r["error"]]
    ratios = [r["bpp"] / r["target_bpp"] for r in landed]
    encodes = [r["encodes"] for r in landed]
    targets = (
        f"{len(landed)} of {len(target_rows)} (image, target) pairs reachable; landed at "
        f"{100 * min(ratios):.2f} ... {100 * max(ratios):.2f}% of the target "
        f"(mean {100 * sum(ratios) / len(ratios):.2f}%) after {min(encodes)} ... "
        f"{max(encodes)} encodes (mean {sum(encodes) / len(encodes):.1f})"
        if ratios else "no targets measured"
    )  # fmt: skip
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, ["image", "target_bpp", "bpp", "quality", "encodes", "error"],
                            lineterminator="\n")  # fmt: skip
    writer.writeheader()
    writer.writerows(target_rows)
    write_text(output_dir / "targets.csv", buffer.getvalue())
    points = ["| curve | point | bpp (file) | bpp (estimated) | PSNR (dB) | MS-SSIM (dB) |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for c in curves:
        r = c.data["results"]
        for i, quality in enumerate(r["quality"]):
            estimated = r.get("estimated-bpp", [None] * len(r["bpp"]))[i]
            points.append(
                f"| {c.label} | {quality} | {r['bpp'][i]:.4f} | "
                + (f"{estimated:.4f}" if estimated is not None else "-")
                + f" | {r['psnr-rgb'][i]:.2f} | {r['ms-ssim-rgb-db'][i]:.2f} |"
            )
    machine, num_images = run["machine"], fixed.data["results"]["num_images"][0]
    summary = "\n".join([
        f"Variable-rate {prior} model vs fixed-rate {prior} models, Kodak ({num_images} images), "
        "real files.",
        "",
        f"Command: `{run['command']}`; commit {run['commit'][:12]}"
        + (" (with uncommitted changes)" if run["uncommitted_changes"] else "")
        + f"; {machine['cpu']}, {machine['cores']} cores; {run['started_utc']} to "
        f"{run['finished_utc']}.",
        "",
        "BD-rate of the variable-rate curve against each reference (positive: more bits at "
        "equal quality), over the overlapping range (pchip on log-rate):",
        "",
        bd,
        "",
        "Training cost (this invocation's; a resumed run shows only its remainder):",
        "",
        "\n".join(cost),
        "",
        f"--target_bpp (Codec.compress_to_bpp) on every image: {targets}.",
        "",
        "Every point:",
        "",
        "\n".join(points),
        "",
    ])  # fmt: skip
    write_text(output_dir / "summary.md", summary)
    max_bpp = max(max(c.data["results"]["bpp"]) for c in curves)
    report.plot_rd(curves, output_dir / "rd.png", max_bpp=round(1.1 * max_bpp + 0.05, 1))
    return summary


if __name__ == "__main__":
    raise SystemExit(main())
