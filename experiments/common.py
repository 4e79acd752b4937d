"""What the CPU-scale experiments (quickstart, ablation) share: data sources, model and training
flags, the TrainConfig they build and the provenance record of their results."""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path

from absl import flags

REPO_ROOT = Path(__file__).resolve().parents[1]
# Trained on, through its tfds download, when no local data folder is found: 3,670 flower photos
# (218 MB, CC-BY 2.0), most at least 240x320.
DOWNLOAD_TRAIN_DATASET = "tf_flowers"


def define_experiment_flags(flag_values: flags.FlagValues, num_steps: int) -> None:
    """Data sources, Kodak subset, console and the small-model training flags."""
    fv = flag_values
    flags.DEFINE_string("data_root", None, "Local data folder holding train/, val/ and kodak/ "
                        "(default: $JAHP_DATA, else ../shared/data when it exists); 'download' "
                        "uses the tfds downloads.", flag_values=fv)  # fmt: skip
    flags.DEFINE_string("train_dir", None, "Training images (default: <data_root>/train).",
                        flag_values=fv)  # fmt: skip
    flags.DEFINE_string("val_dir", None, "Validation images (default: <data_root>/val).",
                        flag_values=fv)  # fmt: skip
    flags.DEFINE_string("dataset", None, "Train on this tfds data set (e.g. clic) instead of a "
                        "folder; validates on its 'validation' split.",
                        flag_values=fv)  # fmt: skip
    flags.DEFINE_string("kodak_dir", None, "Evaluation images (default: <data_root>/kodak): the "
                        "24 Kodak PNGs, or any folder of images; 'download' fetches Kodak "
                        "through tfds.", flag_values=fv)  # fmt: skip
    flags.DEFINE_integer("limit", None, "Only the first N Kodak images.", flag_values=fv)
    flags.DEFINE_bool("check_data", False, "Print the data sources (and downloads) this run "
                      "would use, then stop.", flag_values=fv)  # fmt: skip
    flags.DEFINE_string("verbosity", "warning", "Third-party logging shown on the console: "
                        "error, warning, info or debug.", flag_values=fv)  # fmt: skip
    flags.DEFINE_integer("num_steps", num_steps, "Training steps of each model.", flag_values=fv)
    flags.DEFINE_integer("num_filters", 64, "N: transform channels.", flag_values=fv)
    flags.DEFINE_integer("num_latents", 64, "M: latent channels.", flag_values=fv)
    flags.DEFINE_integer("batch_size", 8, "Batch size.", flag_values=fv)
    flags.DEFINE_integer("patch_size", 128, "Square training crop side.", flag_values=fv)
    flags.DEFINE_float("learning_rate", 5e-4, "Adam learning rate of the main parameters.",
                       flag_values=fv)  # fmt: skip


@dataclasses.dataclass(frozen=True)
class DataSources:
    """Where an experiment reads its images: a training folder or tfds data set, an optional
    validation folder, and the evaluation images (the `kodak` builder, or a plain folder)."""

    train_dir: str | None
    dataset: str | None
    val_dir: str | None
    eval_dataset: str | None  # "kodak", or None for the folder eval_dir
    eval_dir: str | None  # None with eval_dataset "kodak": the tfds download
    note: str  # one line saying where the data comes from

    def describe(self) -> str:
        """One line per source, for --check_data."""
        train = self.train_dir or f"tfds '{self.dataset}'" + (
            f" (download: {DOWNLOAD_TRAIN_DATASET}, 218 MB)"
            if self.dataset == DOWNLOAD_TRAIN_DATASET
            else ""
        )
        evaluation = self.eval_dir or "tfds 'kodak' (download: the 24 Kodak PNGs, 15 MB)"
        if self.eval_dir and self.eval_dataset == "kodak":
            evaluation += " (the 24 Kodak PNGs)"
        return "\n".join([
            self.note,
            f"train:      {train}",
            f"validation: {self.val_dir or 'none'}",
            f"evaluation: {evaluation}",
        ])  # fmt: skip


def resolve_data(args: flags.FlagValues) -> DataSources:
    """The data sources of --data_root/--train_dir/--val_dir/--dataset/--kodak_dir.

    Explicit folders win; then <data_root>/{train,val,kodak}; without a data root, training uses
    the tfds download of DOWNLOAD_TRAIN_DATASET and evaluation the `kodak` builder's download.

    Raises:
      DatasetError: a given folder does not exist (one line naming the flag).
    """
    from jahp_jax.data.pipeline import KODAK_NAMES, DatasetError, resolve_data_root

    for label, folder in (("--train_dir", args.train_dir), ("--val_dir", args.val_dir),
                          ("--kodak_dir", args.kodak_dir)):  # fmt: skip
        if folder not in (None, "download") and not Path(folder).is_dir():
            raise DatasetError(f"{label} '{folder}' is not a folder; pass {label}=PATH")
    root = resolve_data_root(args.data_root)
    local = root / "train" if root is not None and (root / "train").is_dir() else None
    train_dir = args.train_dir or (None if args.dataset else local and str(local))
    dataset = args.dataset or (None if train_dir else DOWNLOAD_TRAIN_DATASET)
    val_dir = args.val_dir
    if val_dir is None and train_dir and root is not None and (root / "val").is_dir():
        val_dir = str(root / "val")
    eval_dir = args.kodak_dir
    if eval_dir is None and root is not None and (root / "kodak").is_dir():
        eval_dir = str(root / "kodak")
    if eval_dir == "download":
        eval_dir = None
    complete_kodak = eval_dir is None or all(
        (Path(eval_dir) / f"{name}.png").is_file() for name in KODAK_NAMES
    )
    if root is None:
        note = (
            "no local data folder (--data_root, $JAHP_DATA or ../shared/data): using the tfds "
            "downloads (see README, 'Data')"
        )
    else:
        note = f"data root: {root}"
    return DataSources(
        train_dir=train_dir,
        dataset=dataset,
        val_dir=val_dir,
        eval_dataset="kodak" if complete_kodak else None,
        eval_dir=eval_dir,
        note=note,
    )


def check_downloads(sources: DataSources) -> None:
    """Fails fast (DatasetError, one line) when a download the sources need cannot be reached;
    data sets already prepared by tfds need no network."""
    from jahp_jax.data.pipeline import check_reachable, is_prepared

    hint = "pass --data_root=FOLDER holding train/, val/ and kodak/ (see README, 'Data')"
    needed = ([sources.dataset] if sources.dataset else []) + (
        ["kodak"] if sources.eval_dir is None else []
    )
    for name in needed:
        if not is_prepared(name):
            check_reachable(name, hint)


def eval_images_of(sources: DataSources, limit: int | None) -> list:
    """(name, uint8 (H, W, 3)) of the evaluation images, sorted by name."""
    from jahp_jax.data.pipeline import eval_images

    return list(eval_images(sources.eval_dataset, data_dir=sources.eval_dir, limit=limit))


def train_config(
    args: flags.FlagValues,
    sources: DataSources,
    prior: str,
    lmbda: float,
    num_latents: int | None = None,
    model: dict | None = None,
):
    """The TrainConfig of one experiment run (validation once, at the end).

    num_latents overrides --num_latents (the paper's high rates use M=320); `model` (ModelConfig
    fields of a named model) overrides the prior and sizes. The download fallback (tf_flowers)
    has no validation split, so it trains without validation.
    """
    from jahp_jax.training.train import TrainConfig

    validates = sources.val_dir is not None or (
        sources.dataset not in (None, DOWNLOAD_TRAIN_DATASET)
    )
    sizes = {"prior": prior, "num_filters": args.num_filters,
             "num_latents": num_latents or args.num_latents}  # fmt: skip
    return TrainConfig(
        lmbda=lmbda,
        **(model or sizes),
        batch_size=args.batch_size,
        patch_size=args.patch_size,
        num_steps=args.num_steps,
        learning_rate=args.learning_rate,
        data_dir=sources.train_dir,
        dataset=sources.dataset,
        val_data_dir=sources.val_dir,
        eval_every=args.num_steps if validates else 0,
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


def start_sources(args: flags.FlagValues) -> DataSources | int:
    """An experiment's data sources, with every download they need reachable, and their note
    printed; or the exit status: 0 after --check_data printed them, 2 after a one-line error."""
    from jahp_jax.data.pipeline import DatasetError

    try:
        sources = resolve_data(args)
        if args.check_data:
            print(sources.describe())
            return 0
        print(sources.note, flush=True)
        check_downloads(sources)
    except DatasetError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return sources
