"""What the CPU-scale experiments (quickstart, ablation) share: data folders, model and training
flags, and the TrainConfig they build."""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def add_experiment_args(parser: argparse.ArgumentParser, num_steps: int) -> None:
    """Data folders, Kodak subset and the small-model training flags."""
    parser.add_argument("--train_dir", default=str(SHARED_DATA / "train" / "bsds500"))
    parser.add_argument("--val_dir", default=str(SHARED_DATA / "val" / "bsds500"))
    parser.add_argument(
        "--dataset",
        default=None,
        help="train on this tfds data set (e.g. clic) instead of --train_dir; validates on its "
        "'validation' split",
    )
    parser.add_argument(
        "--kodak_dir",
        default=str(SHARED_DATA / "kodak"),
        help="offline Kodak folder; 'download' fetches it through tfds",
    )
    parser.add_argument("--limit", type=int, default=None, help="only the first N Kodak images")
    parser.add_argument("--num_steps", type=int, default=num_steps)
    parser.add_argument("--num_filters", type=int, default=64)
    parser.add_argument("--num_latents", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--patch_size", type=int, default=128)
    parser.add_argument("--learning_rate", type=float, default=5e-4)


def kodak_dir(args: argparse.Namespace) -> str | None:
    """The offline Kodak folder, or None to download through the tfds builder."""
    return None if args.kodak_dir == "download" else args.kodak_dir


def train_config(
    args: argparse.Namespace, prior: str, lmbda: float, num_latents: int | None = None
):
    """The TrainConfig of one experiment run (validation once, at the end).

    num_latents overrides --num_latents (the paper's high rates use M=320).
    """
    from jahp_jax.train import TrainConfig

    dataset = args.dataset
    return TrainConfig(
        lmbda=lmbda,
        prior=prior,
        num_filters=args.num_filters,
        num_latents=num_latents or args.num_latents,
        batch_size=args.batch_size,
        patch_size=args.patch_size,
        num_steps=args.num_steps,
        learning_rate=args.learning_rate,
        data_dir=None if dataset else args.train_dir,
        dataset=dataset,
        val_data_dir=args.val_dir if not dataset and Path(args.val_dir).is_dir() else None,
        eval_every=args.num_steps,
        eval_images=8,
        checkpoint_every=max(min(args.num_steps // 4, 10_000), 1),
        init_from=getattr(args, "init_from", None),
    )


def _git(*args: str) -> str:
    try:
        out = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True)
    except OSError:
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


def start_record() -> dict:
    """The code and time a job starts from (taken at the start: the tree may change meanwhile)."""
    return {
        "commit": _git("rev-parse", "HEAD") or "unknown",
        "uncommitted_changes": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "started_utc": utc_now(),
    }


def provenance(script: str, argv: list[str] | None, start: dict, wall_seconds: float) -> dict:
    """What a results folder needs to be rerun and trusted: command, commit, time, machine.

    argv: the script's arguments, None for the process's command line.
    """
    import jax

    arguments = sys.argv[1:] if argv is None else argv
    return {
        "command": " ".join(["./launch.sh", script, *arguments]),
        **start,
        "finished_utc": utc_now(),
        "wall_seconds": round(wall_seconds, 1),
        "machine": {
            "cpu": _cpu_name(),
            "cores": os.cpu_count(),
            "jax": jax.__version__,
            "backend": jax.default_backend(),
            "devices": jax.device_count(),
        },
    }


def utc_now() -> str:
    """The current UTC time, ISO 8601 to the second."""
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
