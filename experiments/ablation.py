"""The paper's ablation (factorized < hyperprior < mean_scale < joint), with the follow-up
priors (checkerboard, channelwise) and the named models after it (cheng2020, ELIC, TCM), at any
scale.

    ./launch.sh ablation [--priors=...] [--lmbdas=...] [--num_steps=N] [--root=DIR] ...
    ./launch.sh ablation --priors=joint,cheng2020-anchor,elic2022-official,tcm ...

For every prior (or named model, `--model`'s names: its transform, prior and options at this
scale's N and M) x lambda it trains one model (resuming an unfinished run), then evaluates each
curve's checkpoints on Kodak through real files (one RD curve each), and writes the JSONs, an RD
plot with the classical curves of --classical_dir, and a BD-rate table against `hyperprior`,
`joint`, JPEG 4:2:0 and HEVC intra to --output_dir.

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
    training_seconds = {}
    try:
        runs = {prior: [] for prior in priors}
        for prior in priors:
            for lmbda in lmbdas:
                workdir = Path(args.root) / f"{prior}_lmbda{lmbda}"
                print(f"== training {workdir} ({time.perf_counter() - started:.0f} s)", flush=True)
                config = train_config(args, sources, prior, lmbda, num_latents(args, lmbda),
                                      model=model_at_scale(prior, args))  # fmt: skip
                run_started = time.perf_counter()
                train_and_evaluate(config, workdir)
                training_seconds[workdir.name] = round(time.perf_counter() - run_started, 1)
                runs[prior].append(str(workdir))
        images = eval_images_of(sources, args.limit)
        for prior, workdirs in runs.items():
            print(f"== evaluating {prior} ({time.perf_counter() - started:.0f} s)", flush=True)
            claimed = MODELS[prior].prior if prior in MODELS else prior
            results, rows = evaluate.evaluate_checkpoints(workdirs, images, claimed_prior=claimed)
            evaluate.write_results(output_dir, prior, results, rows)
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
