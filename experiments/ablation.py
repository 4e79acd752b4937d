"""The paper's ablation (factorized < hyperprior < mean_scale < joint), with the follow-up
priors (checkerboard, channelwise) and the named models after it (cheng2020, ELIC, TCM), at any
scale.

    ./launch.sh ablation [--priors=...] [--lmbdas=...] [--num_steps=N] [--root=DIR] ...
    ./launch.sh ablation --priors=joint,cheng2020-anchor,elic2022-official,tcm ...

For every prior (or named model, `--model`'s names: its transform, prior and options at this
scale's N and M) x lambda it trains one model (resuming an unfinished run) and evaluates it on
Kodak through real files: one point, `points/<prior>_lmbda<lambda>.json` in --output_dir, with its
recipe, commit and machine. A run whose point is there already is skipped, so a sweep longer than
one machine's day goes on elsewhere from the committed points (a changed recipe is refused). Each
prior's points make its curve, `<prior>.json`; then it writes an RD plot with the classical curves
of --classical_dir, and a BD-rate table against `hyperprior`, `joint`, JPEG 4:2:0 and HEVC intra.

Budget: the CPU default (N=M=64, batch 8, 128x128 crops, lr 5e-4, 4 lambdas, 1,000 steps each)
trains at about 5 steps/s for every 2018 prior on a 2-core CPU (190-260 s a run); with the Kodak
evaluation of all 16 checkpoints through real files (about 3 minutes) the run of those four priors
took 57 minutes (results/ablation/run.json and log.txt); checkerboard and channelwise add 8 runs
(88 minutes on a loaded 2-core Xeon), cheng2020-anchor 4 runs at 1.5 steps/s (49 minutes with
its evaluation: run_cheng2020.json), elic2022-official at 1.7 steps/s (53 minutes:
run_elic2022.json), elic2022-chandelier at 1.6 steps/s (48 minutes), cheng2020-attn at
1.15 steps/s (59 minutes), cheng2020-anchor-checkerboard at 1.5 steps/s (47 minutes), tcm at
0.235 steps/s (71 minutes a run, about 5 hours). The paper's setting is the same script with flags
alone, on accelerators:

    ./launch.sh ablation --num_filters=192 --num_latents=192 --high_rate_min_lmbda=0.0483 \
        --patch_size=256 --batch_size=8 --num_steps=1000000 --learning_rate=1e-4 \
        --lmbdas=0.0018,0.0035,0.0067,0.013,0.025,0.0483,0.0932,0.18 --dataset=clic
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

MIN_RATE_POINTS = 4  # report.bd_rate interpolates curves of >= 4 points


COMMAND = Command("./launch.sh ablation", __doc__)
FLAGS = COMMAND.flags
flags.DEFINE_string("priors", "factorized,hyperprior,mean_scale,joint,checkerboard,channelwise",
                    "Priors or named models (--model's names) to train, comma-separated.",
                    flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("lmbdas", "0.0035,0.013,0.0483,0.18", f"Lambdas, comma-separated: at least "
                    f"{MIN_RATE_POINTS}, as BD-rate needs that many points per curve.",
                    flag_values=FLAGS)  # fmt: skip
flags.DEFINE_float("high_rate_min_lmbda", None, "Lambdas >= this train with "
                   "--high_rate_num_latents latents (the paper: 0.0483).",
                   flag_values=FLAGS)  # fmt: skip
flags.DEFINE_integer("high_rate_num_latents", 320, "M of the high-rate runs.", flag_values=FLAGS)
flags.DEFINE_string("root", "runs/ablation", "One workdir per run below this folder.",
                    flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("output_dir", "runs/ablation/report", "Results, tables and plots (the "
                    "committed reference: results/ablation).", flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("classical_dir", "results/classical", "The classical codecs' results JSONs.",
                    flag_values=FLAGS)  # fmt: skip
flags.DEFINE_bool("report_only", False, "Only rewrite the tables and plots from the results "
                  "JSONs in --output_dir.", flag_values=FLAGS)  # fmt: skip
define_experiment_flags(FLAGS, num_steps=1000)


def main(argv: Sequence[str] | None = None) -> int:
    """./launch.sh ablation; argv: its arguments (default: sys.argv[1:])."""
    return COMMAND.run(functools.partial(_ablation, argv=argv), argv)


def _ablation(_: list[str], argv: Sequence[str] | None) -> int:
    args = FLAGS
    from jahp_jax import console

    try:
        console.setup(args.verbosity)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    from jahp_jax.data.pipeline import DatasetError, ImageError
    from jahp_jax.evaluation import evaluate
    from jahp_jax.io.images import write_text
    from jahp_jax.models.latent_codecs import PRIORS
    from jahp_jax.models.presets import MODELS
    from jahp_jax.training.train import ConfigError, TrainingError, train_and_evaluate

    priors = [p.strip() for p in args.priors.split(",") if p.strip()]
    unknown = sorted(set(priors) - set(PRIORS) - set(MODELS))
    try:
        lmbdas = [float(v) for v in args.lmbdas.split(",") if v.strip()]
    except ValueError:
        lmbdas = []
    if unknown or not priors:
        print(f"error: unknown --priors {unknown}; choose from {sorted(PRIORS)} or "
              f"{sorted(MODELS)}", file=sys.stderr)  # fmt: skip
        return 2
    if len(set(lmbdas)) < MIN_RATE_POINTS or min(lmbdas) <= 0:
        print(
            f"error: --lmbdas='{args.lmbdas}' must be at least {MIN_RATE_POINTS} distinct positive "
            "numbers: BD-rates interpolate an RD curve of that many points",
            file=sys.stderr,
        )
        return 2
    output_dir = Path(args.output_dir)
    if args.report_only:
        try:
            print(write_report(output_dir, priors, Path(args.classical_dir)))
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        return 0
    sources = start_sources(args)
    if isinstance(sources, int):
        return sources
    console.setup(args.verbosity, Path(args.root) / console.LOG_FILE)
    started, started_at = time.perf_counter(), start_record()
    training_seconds, images = {}, None

    def elapsed() -> str:
        return f"({time.perf_counter() - started:.0f} s)"

    try:
        for prior in priors:
            claimed = MODELS[prior].prior if prior in MODELS else prior
            for lmbda in lmbdas:
                workdir = Path(args.root) / f"{prior}_lmbda{lmbda}"
                config = train_config(args, sources, prior, lmbda, num_latents(args, lmbda),
                                      model=model_at_scale(prior, args))  # fmt: skip
                point = output_dir / POINTS_DIR / f"{workdir.name}.json"
                if point.exists():
                    check_recipe(point, config)
                    print(f"== {workdir.name}: trained and evaluated before ({point})", flush=True)
                    continue
                print(f"== training {workdir} {elapsed()}", flush=True)
                run_started = time.perf_counter()
                train_and_evaluate(config, workdir)
                training_seconds[workdir.name] = round(time.perf_counter() - run_started, 1)
                print(f"== evaluating {workdir} {elapsed()}", flush=True)
                images = images or eval_images_of(sources, args.limit)
                results, rows = evaluate.evaluate_checkpoints([str(workdir)], images,
                                                              claimed_prior=claimed)  # fmt: skip
                run = provenance("ablation", argv, started_at, time.perf_counter() - started)
                del run["wall_seconds"]  # the invocation's, not this run's
                results["run"] = {"recipe": recipe(config),
                                  "training_seconds": training_seconds[workdir.name], **run}
                evaluate.write_results(point.parent, point.stem, results, rows)
            write_curve(output_dir, prior, lmbdas)
    except (ConfigError, TrainingError, DatasetError, ImageError, ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    table = write_report(output_dir, priors, Path(args.classical_dir))
    run = provenance("ablation", argv, started_at, time.perf_counter() - started)
    run["training_seconds"] = training_seconds  # this invocation's; a resumed run shows less
    write_text(output_dir / "run.json", json.dumps(run, indent=2) + "\n")
    print(table)
    print(f"wrote {output_dir} in {run['wall_seconds']:.0f} s at commit {run['commit'][:12]}")
    return 0


# Where each run's evaluated point lies, below --output_dir: a run whose point is there (e.g.
# committed from another machine) is neither trained nor evaluated again.
POINTS_DIR = "points"
# TrainConfig fields that say where the data lies and how often a run validates, logs and saves,
# not what it trains.
_NOT_RECIPE = ("data_dir", "tfds_data_dir", "val_data_dir", "eval_every", "eval_images",
               "log_every", "checkpoint_every", "keep_checkpoints")  # fmt: skip


def recipe(config) -> dict:
    """What a run trains: its TrainConfig less `_NOT_RECIPE`, as JSON values."""
    fields = {k: v for k, v in dataclasses.asdict(config).items() if k not in _NOT_RECIPE}
    return json.loads(json.dumps(fields))  # tuples as lists, as they come back from a file


def check_recipe(point: Path, config) -> None:
    """ValueError (one line) where the point in file `point` was trained to another recipe."""
    try:
        stored = json.loads(point.read_text())["run"]["recipe"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise ValueError(f"cannot read the run's recipe in {point} ({type(error).__name__}: "
                         f"{error}); delete it to train that run again") from None  # fmt: skip
    changed = {k: (stored.get(k), v) for k, v in recipe(config).items() if stored.get(k) != v}
    if changed:
        differences = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changed.items())
        raise ValueError(f"{point} was trained to another recipe ({differences}); delete it to "
                         "train that run again, or pass another --output_dir")  # fmt: skip


def write_curve(output_dir: Path, prior: str, lmbdas: Sequence[float]) -> None:
    """`<prior>.json` and `.images.csv` in output_dir: the points of its runs at `lmbdas`, one
    curve, each run's provenance (commit, machine, recipe) under "runs"."""
    from jahp_jax.evaluation import evaluate

    runs = [f"{prior}_lmbda{lmbda}" for lmbda in lmbdas]
    points = output_dir / POINTS_DIR
    parts = [evaluate.load_results(points / f"{run}.json") for run in runs]
    rows = [row for run in runs for row in evaluate.read_rows(points / f"{run}.images.csv")]
    curve = evaluate.merge_results(parts)
    curve["runs"] = {run: part["run"] for run, part in zip(runs, parts, strict=True)}
    evaluate.write_results(output_dir, prior, curve, rows)


# Named models whose reference structure needs another M than --num_latents at CPU scale: TCM's
# Swin attention on the slice supports (M + k M / 5 channels) uses heads of 16 channels.
CPU_SCALE_LATENTS = {"tcm": 80}


def model_at_scale(name: str, args: flags.FlagValues) -> dict | None:
    """The ModelConfig fields of named model `name` at this run's N and M (None for a prior)."""
    from jahp_jax.models.presets import MODELS

    if name not in MODELS:
        return None
    fields = MODELS[name].fields()
    fields["num_filters"] = args.num_filters
    fields["num_latents"] = CPU_SCALE_LATENTS.get(name, args.num_latents)
    return fields


def num_latents(args: flags.FlagValues, lmbda: float) -> int | None:
    """M of the run at `lmbda`: --high_rate_num_latents from --high_rate_min_lmbda on, else
    None (the --num_latents of every other run)."""
    high = args.high_rate_min_lmbda is not None and lmbda >= args.high_rate_min_lmbda
    return args.high_rate_num_latents if high else None


def points_table(curves: list) -> str:
    """Markdown table of every measured point: prior, lambda, real and estimated bpp, quality."""
    lines = [
        "| curve | point | bpp (file) | bpp (estimated) | PSNR (dB) | MS-SSIM (dB) |",
        "|---|---|---|---|---|---|",
    ]
    for c in curves:
        r = c.data["results"]
        for i, quality in enumerate(r["quality"]):
            lines.append(
                f"| {c.label} | {quality} | {r['bpp'][i]:.3f} | {r['estimated-bpp'][i]:.3f} | "
                f"{r['psnr-rgb'][i]:.2f} | {r['ms-ssim-rgb-db'][i]:.2f} |"
            )
    return "\n".join(lines) + "\n"


def write_report(output_dir: Path, priors: list[str], classical_dir: Path) -> str:
    """From `<prior>.json` in output_dir (and the classical JSONs): bd_rate.md, points.md, rd.png
    (with JPEG 4:2:0, HEVC intra, WebP) and rd_priors.png (the priors alone, zoomed in).
    Returns the BD table."""
    from jahp_jax.evaluation import report
    from jahp_jax.io.images import write_text

    ours = [str(output_dir / f"{prior}.json") for prior in priors]
    classical = [
        str(p)
        for key in ("jpeg420", "hevc444", "webp")
        if (p := classical_dir / f"{key}.json").exists()
    ]
    curves = report.load_curves(ours + classical)
    anchors = ("hyperprior", "joint", "jpeg420", "hevc444")
    references = [c for c in curves if Path(c.path).stem in anchors]
    table = report.bd_table(curves, references)
    write_text(output_dir / "bd_rate.md", table + "\n")
    priors_only = curves[: len(ours)]
    write_text(output_dir / "points.md", points_table(priors_only))
    report.plot_rd(curves, output_dir / "rd.png")
    max_bpp = max(max(c.data["results"]["bpp"]) for c in priors_only)
    zoom = round(1.1 * max_bpp + 0.05, 1)  # at CPU scale the priors sit close together
    report.plot_rd(priors_only, output_dir / "rd_priors.png", max_bpp=zoom)
    return table


if __name__ == "__main__":
    raise SystemExit(main())
