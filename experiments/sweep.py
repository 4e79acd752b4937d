"""Priors x lambdas: one training run each, in its own workdir `<root>/<prior>_lmbda<value>`.

    python -m experiments.sweep --root=runs --priors=joint,hyperprior \\
        --lmbdas=0.0018,0.0067 --flagfile=experiments/cpu.flags

Flags this module does not define are passed to every `python -m jahp_jax.train` run unchanged
(data, steps, sizes, ...); --prior, --lmbda and --workdir are set per run. Runs are sequential
(CPU), or with --gpus=0,1,... one run per listed GPU at a time (CUDA_VISIBLE_DEVICES). Each
run's output goes to `<workdir>/train.log`; rerunning the sweep resumes every unfinished run.
Across hosts: give every host the same flags plus --task_index=i --num_tasks=n; host i runs the
runs i, i+n, i+2n, ... of the sweep (in the order priors x lambdas).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from absl import flags

flags.DEFINE_list("priors", ["joint"], "Priors to train.")
flags.DEFINE_list("lmbdas", None, "Lambdas to train, as written in the workdir names.")
flags.DEFINE_string("root", None, "Folder holding one workdir per run.")
flags.DEFINE_float("high_rate_min_lmbda", None,
                   "If set: --preset=high for lambdas >= this, --preset=low below it.")  # fmt: skip
flags.DEFINE_list("gpus", [], "GPU ids to run on in parallel, one run per GPU; empty: sequential.")
flags.DEFINE_integer("task_index", 0, "This host's index among --num_tasks hosts.")
flags.DEFINE_integer("num_tasks", 1, "Hosts sharing the sweep.")
flags.DEFINE_bool("dry_run", False, "Print the runs' commands without running them.")
FLAGS = flags.FLAGS
PER_RUN_FLAGS = ("--prior", "--lmbda", "--workdir", "--preset")


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
            runs.append((workdir, [sys.executable, "-m", "jahp_jax.train", *args, *train_args]))
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


def main(argv: list[str]) -> int:
    train_args = FLAGS(argv, known_only=True)[1:]
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
    runs = plan_runs(FLAGS.priors, FLAGS.lmbdas, Path(FLAGS.root), train_args,
                     FLAGS.high_rate_min_lmbda)[FLAGS.task_index :: FLAGS.num_tasks]  # fmt: skip
    if FLAGS.dry_run:
        for _, command in runs:
            print(" ".join(command))
        return 0
    failed = run_all(runs, FLAGS.gpus)
    if failed:
        return _error(f"{len(failed)} of {len(runs)} runs failed: {', '.join(failed)}")
    print(f"[sweep] all {len(runs)} runs done under {FLAGS.root}")
    return 0


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
