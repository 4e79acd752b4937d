"""Priors x lambdas: one training run each, in its own workdir `<root>/<prior>_lmbda<value>`.

    ./launch.sh sweep --root=runs/sweep --priors=joint,hyperprior \\
        --lmbdas=0.0018,0.0067 --flagfile=experiments/cpu.flags             # here, one by one
    ./launch.sh sweep --launcher=slurm --partition=gpu --gpus_per_task=1 --time=2-00:00:00 \\
        --root=runs/sweep --priors=joint --lmbdas=0.0018,0.0067 ...         # a Slurm array job

Flags the sweep does not define are passed to every `python -m jahp_jax.cli.train` run unchanged
(data, steps, sizes, ...: `jahp-train --help`); --prior, --lmbda and --workdir are set per run.
Rerunning the sweep resumes every unfinished run.

--launcher=local: runs are sequential (CPU), or with --gpus=0,1,... one run per listed GPU at a
time (CUDA_VISIBLE_DEVICES); each run's output goes to `<workdir>/train.log`. Across hosts without
a scheduler: give every host the same flags plus --task_index=i --num_tasks=n; host i runs the
runs i, i+n, i+2n, ... of the sweep (in the order priors x lambdas).

--launcher=slurm: one `sbatch --array` job with one task per run (`experiments.slurm`), resources
per task from --partition, --time, --gpus_per_task, --cpus_per_task, --mem, ...; with --nodes or
--processes_per_node above 1 a task is one multi-process run (`srun` + `--multihost`). Prints the
job id and how to follow it; --dry_run prints the sbatch script instead of submitting.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from absl import flags

from jahp_jax.cli.command import Command

COMMAND = Command("./launch.sh sweep", __doc__, known_only=True)  # Others: jahp-train's.
FLAGS = COMMAND.flags
flags.DEFINE_list("priors", ["joint"], "Priors to train.", flag_values=FLAGS)
flags.DEFINE_list("lmbdas", None, "Lambdas to train, as written in the workdir names.",
                  flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("root", None, "Folder holding one workdir per run.", flag_values=FLAGS)
flags.DEFINE_float("high_rate_min_lmbda", None, "If set: --preset=high for lambdas >= this, "
                   "--preset=low below it.", flag_values=FLAGS)  # fmt: skip
flags.DEFINE_enum("launcher", "local", ["local", "slurm"], "local: run here; slurm: submit one "
                  "sbatch array job.", flag_values=FLAGS)  # fmt: skip
flags.DEFINE_bool("dry_run", False, "Print the runs' commands (local) or the sbatch script "
                  "(slurm) without running or submitting anything.",
                  flag_values=FLAGS)  # fmt: skip
flags.DEFINE_list("gpus", [], "local: GPU ids to run on in parallel, one run per GPU; empty: "
                  "sequential.", flag_values=FLAGS)  # fmt: skip
flags.DEFINE_integer("task_index", 0, "local: this host's index among --num_tasks hosts.",
                     flag_values=FLAGS)  # fmt: skip
flags.DEFINE_integer("num_tasks", 1, "local: hosts sharing the sweep.", flag_values=FLAGS)
flags.DEFINE_string("partition", None, "slurm: partition (default: the cluster's).",
                    flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("time", "1-00:00:00", "slurm: time limit per task (MM, HH:MM:SS or "
                    "D-HH:MM:SS); a task that reaches it is requeued and resumes.",
                    flag_values=FLAGS)  # fmt: skip
flags.DEFINE_integer("nodes", 1, "slurm: nodes per task (one multi-process run).",
                     flag_values=FLAGS)  # fmt: skip
flags.DEFINE_integer("processes_per_node", 1, "slurm: training processes per node, e.g. one per "
                     "GPU.", flag_values=FLAGS)  # fmt: skip
flags.DEFINE_integer("gpus_per_task", None, "slurm: GPUs per training process.", flag_values=FLAGS)
flags.DEFINE_integer("cpus_per_task", None, "slurm: CPUs per training process.", flag_values=FLAGS)
flags.DEFINE_string("mem", None, "slurm: memory per node, e.g. 64G.", flag_values=FLAGS)
flags.DEFINE_string("account", None, "slurm: account to charge.", flag_values=FLAGS)
flags.DEFINE_string("qos", None, "slurm: quality of service.", flag_values=FLAGS)
flags.DEFINE_integer("array_parallelism", 256, "slurm: at most this many runs at once.",
                     flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("job_name", "jahp-sweep", "slurm: job name.", flag_values=FLAGS)
flags.DEFINE_multi_string("setup", [], "slurm: a shell line run before each task (repeatable), "
                          "e.g. --setup='module load cuda'.", flag_values=FLAGS)  # fmt: skip
PER_RUN_FLAGS = ("--prior", "--lmbda", "--workdir", "--preset")
REPO_ROOT = Path(__file__).resolve().parents[1]


def plan_runs(
    priors: list[str],
    lmbdas: list[str],
    root: Path,
    train_args: list[str],
    high_rate_min_lmbda: float | None = None,
) -> list[tuple[Path, list[str]]]:
    """(workdir, train command) of every prior x lambda pair, priors outermost."""
    runs = []
    for prior in priors:
        for lmbda in lmbdas:
            workdir = root / f"{prior}_lmbda{lmbda}"
            args = [f"--prior={prior}", f"--lmbda={lmbda}", f"--workdir={workdir}"]
            if high_rate_min_lmbda is not None:
                preset = "high" if float(lmbda) >= high_rate_min_lmbda else "low"
                args.append(f"--preset={preset}")
            runs.append((workdir, [sys.executable, "-m", "jahp_jax.cli.train", *args, *train_args]))
    return runs


def _start(workdir: Path, command: list[str], gpu: str | None) -> subprocess.Popen:
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    with open(workdir / "train.log", "a") as log:
        print(f"[sweep] start {workdir.name}" + (f" on GPU {gpu}" if gpu else ""), flush=True)
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)


def run_all(runs: list[tuple[Path, list[str]]], gpus: list[str]) -> list[str]:
    """Run everything (at most one run per GPU at a time); returns the failed workdirs' names."""
    slots: list[str | None] = list(gpus) or [None]
    pending = list(runs)
    active: dict[str | None, tuple[Path, subprocess.Popen]] = {}
    failed = []
    while pending or active:
        for slot in slots:
            if slot not in active and pending:
                workdir, command = pending.pop(0)
                active[slot] = (workdir, _start(workdir, command, slot))
        time.sleep(1)
        for slot, (workdir, proc) in list(active.items()):
            if proc.poll() is None:
                continue
            del active[slot]
            status = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
            print(f"[sweep] {status}: {workdir.name} (log: {workdir / 'train.log'})", flush=True)
            if proc.returncode:
                failed.append(workdir.name)
    return failed


def run_local(runs: list[tuple[Path, list[str]]]) -> int:
    if FLAGS.dry_run:
        for _, command in runs:
            print(" ".join(command))
        return 0
    failed = run_all(runs, FLAGS.gpus)
    if failed:
        return _error(f"{len(failed)} of {len(runs)} runs failed: {', '.join(failed)}")
    print(f"[sweep] all {len(runs)} runs done under {FLAGS.root}")
    return 0


def run_slurm(runs: list[tuple[Path, list[str]]]) -> int:
    from experiments import slurm

    try:
        resources = slurm.SlurmResources(
            partition=FLAGS.partition, time_minutes=slurm.parse_time_minutes(FLAGS.time),
            nodes=FLAGS.nodes, processes_per_node=FLAGS.processes_per_node,
            gpus_per_task=FLAGS.gpus_per_task, cpus_per_task=FLAGS.cpus_per_task, mem=FLAGS.mem,
            account=FLAGS.account, qos=FLAGS.qos, array_parallelism=FLAGS.array_parallelism,
            job_name=FLAGS.job_name, setup=tuple(FLAGS.setup),
        )  # fmt: skip
        root = Path(FLAGS.root).resolve()
        if FLAGS.dry_run:
            print(slurm.sbatch_script(runs, root, resources), end="")
            return 0
        job_id, logs = slurm.submit(runs, root, resources, cwd=REPO_ROOT)
    except slurm.SlurmError as error:
        return _error(str(error))
    print(f"[sweep] submitted Slurm job {job_id}: {len(runs)} run(s), one array task each")
    for (workdir, _), log in zip(runs, logs, strict=True):
        print(f"[sweep]   {workdir}  log: {log}")
    print(f"[sweep] follow it with: squeue -j {job_id}   (after it ends: sacct -j {job_id})")
    print("[sweep] resubmitting the same command resumes every unfinished run")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """./launch.sh sweep; argv: its arguments (default: sys.argv[1:]), of which those the sweep
    does not define go to every training run."""
    return COMMAND.run(_sweep, argv)


def _sweep(train_args: list[str]) -> int:
    bad = [arg for arg in train_args if arg.split("=")[0] in PER_RUN_FLAGS]
    if bad:
        return _error(f"{bad[0]} is set per run by the sweep; use --priors/--lmbdas/--root")
    if not FLAGS.lmbdas or FLAGS.root is None:
        return _error("--lmbdas and --root are required")
    try:
        [float(lmbda) for lmbda in FLAGS.lmbdas]
    except ValueError:
        return _error(f"--lmbdas must be numbers, got {FLAGS.lmbdas}")
    if not 0 <= FLAGS.task_index < FLAGS.num_tasks:
        return _error(f"need 0 <= --task_index < --num_tasks, got {FLAGS.task_index}")
    if FLAGS.launcher == "slurm" and FLAGS.num_tasks != 1:
        return _error("--task_index/--num_tasks split a sweep by hand; with --launcher=slurm "
                      "every run is its own array task")  # fmt: skip
    runs = plan_runs(FLAGS.priors, FLAGS.lmbdas, Path(FLAGS.root).resolve(), train_args,
                     FLAGS.high_rate_min_lmbda)[FLAGS.task_index :: FLAGS.num_tasks]  # fmt: skip
    return run_slurm(runs) if FLAGS.launcher == "slurm" else run_local(runs)


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
