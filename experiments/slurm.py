"""Sweeps on Slurm through submitit: one `sbatch --array` job, one array task per training run.

Each array task runs one `python -m jahp_jax.cli.train` command (with `--multihost` when a task
spans
several processes: `srun` starts one per GPU/node and JAX reads the Slurm environment). A task
that reaches its time limit or is preempted is requeued by submitit and its rerun resumes its own
workdir from the last complete checkpoint. submitit keeps the job's sbatch script and logs in
`<root>/slurm/`.
"""

from __future__ import annotations

import dataclasses
import re
import shutil
import subprocess
from pathlib import Path

import submitit
from submitit.slurm import slurm as submitit_slurm

Run = tuple[Path, list[str]]  # (workdir, training command)


class SlurmError(RuntimeError):
    """The sweep cannot be submitted (message says what to fix)."""


@dataclasses.dataclass(frozen=True)
class SlurmResources:
    """What every array task asks for; None leaves the cluster's default."""

    partition: str | None = None
    time_minutes: int = 24 * 60
    nodes: int = 1
    processes_per_node: int = 1  # One training process each (e.g. one per GPU).
    gpus_per_task: int | None = None
    cpus_per_task: int | None = None
    mem: str | None = None  # Per node, in Slurm's notation (e.g. 64G).
    account: str | None = None
    qos: str | None = None
    array_parallelism: int = 256  # At most this many runs at once.
    job_name: str = "jahp-sweep"
    setup: tuple[str, ...] = ()  # Shell lines run before the task (e.g. `module load cuda`).

    @property
    def multi_process(self) -> bool:
        return self.nodes * self.processes_per_node > 1


def parse_time_minutes(value: str) -> int:
    """Slurm's time notation ("MM", "HH:MM:SS", "D-HH:MM[:SS]") -> whole minutes (>= 1)."""
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", value.strip())
    if not match:
        raise SlurmError(f"--time={value!r} is not MM, HH:MM:SS or D-HH:MM:SS")
    days, first, second, third = (int(g) if g else None for g in match.groups())
    if second is None:  # "MM" or "D-HH"
        minutes = (days or 0) * 1440 + (first * 60 if days is not None else first)
    elif third is None:  # "HH:MM" after a day count, else "MM:SS"
        minutes = (days * 1440 + first * 60 + second) if days is not None else first + second / 60
    else:
        minutes = (days or 0) * 1440 + first * 60 + second + third / 60
    if minutes < 1:
        raise SlurmError(f"--time={value!r} is shorter than a minute")
    return int(-(-minutes // 1))


class TrainRun(submitit.helpers.Checkpointable):
    """One array task: a training command, resumable (requeued on timeout or preemption)."""

    def __init__(self, command: list[str], cwd: str):
        self.command = command
        self.cwd = cwd

    def __call__(self) -> str:
        print("[sweep]", " ".join(self.command), flush=True)
        returncode = subprocess.run(self.command, cwd=self.cwd, check=False).returncode
        if returncode:
            raise RuntimeError(f"training exited with status {returncode}; see the log above")
        return self.command[-1]


def _executor(root: Path, resources: SlurmResources) -> submitit.SlurmExecutor:
    executor = submitit.SlurmExecutor(folder=root / "slurm" / "%j")
    parameters = {
        "job_name": resources.job_name,
        "time": resources.time_minutes,
        "nodes": resources.nodes,
        "ntasks_per_node": resources.processes_per_node,
        "array_parallelism": resources.array_parallelism,
        "setup": list(resources.setup),
        "stderr_to_stdout": True,
    }
    optional = {"partition": resources.partition, "gpus_per_task": resources.gpus_per_task,
                "cpus_per_task": resources.cpus_per_task, "mem": resources.mem,
                "account": resources.account, "qos": resources.qos}  # fmt: skip
    executor.update_parameters(**parameters, **{k: v for k, v in optional.items() if v})
    return executor


def _task_commands(runs: list[Run], resources: SlurmResources) -> list[list[str]]:
    extra = ["--multihost"] if resources.multi_process else []
    return [[*command, *extra] for _, command in runs]


def sbatch_script(runs: list[Run], root: Path, resources: SlurmResources) -> str:
    """The sbatch array script submitit writes for these runs, then the command of each task."""
    executor = _executor(root, resources)
    script = submitit_slurm._make_sbatch_string(  # the very text submitit submits
        command=executor._submitit_command_str, folder=executor.folder,
        map_count=len(runs), **executor.parameters,
    )  # fmt: skip
    tasks = [f"# array task {index}: {' '.join(command)}"
             for index, command in enumerate(_task_commands(runs, resources))]  # fmt: skip
    return script + "\n# Each array task runs one training command:\n" + "\n".join(tasks) + "\n"


def submit(runs: list[Run], root: Path, resources: SlurmResources,
           cwd: Path) -> tuple[str, list[Path]]:  # fmt: skip
    """Submit one array job (one task per run; a plain job for one run); returns the Slurm job
    id and each run's log file (of its first process)."""
    if shutil.which("sbatch") is None:
        raise SlurmError(
            "sbatch is not on PATH: --launcher=slurm runs on a Slurm login node (or use "
            "--dry_run to see the script)"
        )
    executor = _executor(root, resources)
    try:
        with executor.batch():
            jobs = [executor.submit(TrainRun(command, str(cwd)))
                    for command in _task_commands(runs, resources)]  # fmt: skip
    except (submitit.core.utils.FailedJobError, submitit.core.utils.FailedSubmissionError,
            OSError) as error:  # fmt: skip
        first = str(error).strip().splitlines()
        raise SlurmError(f"sbatch refused the sweep: {first[-1] if first else error}") from None
    return jobs[0].job_id.split("_")[0], [job.paths.stdout for job in jobs]
