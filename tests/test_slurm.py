"""Sweeps through Slurm: a real single-node Slurm (slurmctld + slurmd + munge, Debian's slurm-wlm),
configured and started here, runs a 2-task sweep array to completion, and its workdirs evaluate.

`./launch.sh test` installs slurm-wlm and munge with apt-get when it runs as root; where Slurm is
missing (or not root), the cluster tests skip with the reason, or fail under CI=true (CI must
have Slurm: `conftest.require`), and the dry-run tests still run. Nothing is mocked. Waits end on
events (the cluster idle, the job gone from the queue), with timeouts that only stop a hang.
"""

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO_ROOT, SHARED, free_port, require

BSDS = SHARED / "data" / "train" / "bsds500"
KODAK = SHARED / "data" / "kodak"
# test_train's toy run (model, lambda 0.01, steps, seed): the tasks load its compiled programs.
STEPS = 4
TINY = ["--num_filters=8", "--num_latents=8", "--patch_size=64", "--batch_size=2", "--seed=3",
        f"--num_steps={STEPS}", "--checkpoint_every=2", "--eval_every=0",
        "--log_every=1"]  # fmt: skip
SLURM_TOOLS = ("slurmctld", "slurmd", "sbatch", "squeue", "sinfo", "munged", "munge")
HANG_S = 1200  # a wait longer than this is a hang, not a slow machine


def sweep(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "experiments.sweep", *args]
    return subprocess.run(command, cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300, check=False)  # fmt: skip


def test_dry_run_prints_one_array_script_with_the_resources(tmp_path):
    proc = sweep("--launcher=slurm", "--dry_run", f"--root={tmp_path}", "--priors=joint,hyperprior",
                 "--lmbdas=0.0018,0.0067", "--partition=gpu", "--gpus_per_task=1",
                 "--time=1-12:30:00", "--nodes=2", "--processes_per_node=4", "--mem=64G",
                 "--setup=module load cuda", "--data_dir=IMAGES")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    script = proc.stdout
    for line in ("#SBATCH --array=0-3%4", "#SBATCH --partition=gpu", "#SBATCH --gpus-per-task=1",
                 "#SBATCH --time=2190", "#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=4",
                 "#SBATCH --mem=64G", "module load cuda", "srun "):  # fmt: skip
        assert line in script, line
    tasks = [line for line in script.splitlines() if line.startswith("# array task ")]
    assert len(tasks) == 4
    assert f"--workdir={tmp_path / 'joint_lmbda0.0018'}" in tasks[0]
    assert f"--workdir={tmp_path / 'hyperprior_lmbda0.0067'}" in tasks[3]
    assert all(task.endswith("--multihost") and "--data_dir=IMAGES" in task for task in tasks)
    assert not list(tmp_path.iterdir())  # A dry run writes nothing.


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--time=soon"], "--time='soon' is not MM, HH:MM:SS or D-HH:MM:SS"),
        (["--num_tasks=2"], "with --launcher=slurm every run is its own array task"),
    ],
)
def test_bad_slurm_flags_get_one_line(tmp_path, flags, message):
    proc = sweep("--launcher=slurm", f"--root={tmp_path}", "--lmbdas=0.01", *flags)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1 and message in lines[0], proc.stderr


def test_submitting_without_slurm_says_so(tmp_path):
    env = {**os.environ, "PATH": str(Path(sys.executable).parent)}  # Python, but no sbatch.
    proc = sweep("--launcher=slurm", f"--root={tmp_path}", "--lmbdas=0.01", env=env)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.startswith("error: sbatch is not on PATH") and "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def slurm_env(tmp_path_factory):
    """A running single-node Slurm cluster; yields the environment its clients need."""
    missing = [tool for tool in SLURM_TOOLS if shutil.which(tool) is None]
    if missing:
        require("slurm", f"Slurm is not installed ({', '.join(missing)} not found): ./launch.sh "
                "test installs Debian's slurm-wlm and munge when run as root")  # fmt: skip
    if os.geteuid() != 0:
        require("slurm", "starting slurmd needs root")
    root = tmp_path_factory.mktemp("slurm")
    started: list[Path] = []  # pid files of the daemons started here
    if subprocess.run(["munge", "-n"], capture_output=True, check=False).returncode:
        Path("/run/munge").mkdir(parents=True, exist_ok=True)
        shutil.chown("/run/munge", "munge", "munge")
        subprocess.run(["runuser", "-u", "munge", "--", shutil.which("munged")], check=True)
        started.append(Path("/run/munge/munged.pid"))
    node = socket.gethostname().split(".")[0]
    (root / "state").mkdir()
    (root / "spool").mkdir()
    conf = root / "slurm.conf"
    conf.write_text("\n".join([
        "ClusterName=jahptest", f"SlurmctldHost={node}(127.0.0.1)", "SlurmUser=root",
        f"SlurmctldPort={free_port()}", f"SlurmdPort={free_port()}", "AuthType=auth/munge",
        f"StateSaveLocation={root / 'state'}", f"SlurmdSpoolDir={root / 'spool'}",
        f"SlurmctldPidFile={root / 'slurmctld.pid'}", f"SlurmdPidFile={root / 'slurmd.pid'}",
        f"SlurmctldLogFile={root / 'slurmctld.log'}", f"SlurmdLogFile={root / 'slurmd.log'}",
        "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none",
        "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU",
        "JobAcctGatherType=jobacct_gather/none", "MpiDefault=none", "ReturnToService=2",
        f"NodeName={node} NodeAddr=127.0.0.1 CPUs={os.cpu_count()} State=UNKNOWN",
        "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=YES",
    ]) + "\n")  # fmt: skip
    env = {**os.environ, "SLURM_CONF": str(conf)}
    for daemon in ("slurmctld", "slurmd"):
        subprocess.run([daemon, "-c"], env=env, check=True)
        started.append(root / f"{daemon}.pid")
    try:
        deadline = time.monotonic() + HANG_S
        while "idle" not in subprocess.run(["sinfo", "-h", "-o", "%T"], env=env, text=True,
                                           capture_output=True, check=False).stdout:  # fmt: skip
            if time.monotonic() > deadline:
                pytest.fail(f"the test Slurm cluster did not come up in {HANG_S} s:\n"
                            + (root / "slurmctld.log").read_text()[-2000:])  # fmt: skip
            time.sleep(1)
        yield env
    finally:
        subprocess.run(["scancel", "--full", "--user", "root"], env=env, check=False)
        for pid_file in reversed(started):
            if pid_file.exists():
                try:
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGTERM)
                except (ProcessLookupError, ValueError):
                    pass


def wait_for(submitted: subprocess.CompletedProcess, env: dict[str, str]) -> dict[str, str]:
    """Wait until the job the sweep printed has left the queue; {workdir: log text}."""
    assert submitted.returncode == 0, submitted.stderr[-3000:]
    assert "squeue -j" in submitted.stdout
    job_id = submitted.stdout.split("submitted Slurm job ")[1].split(":")[0]
    deadline = time.monotonic() + HANG_S
    while subprocess.run(["squeue", "-h", "-j", job_id], env=env, text=True,
                         capture_output=True, check=False).stdout.strip():  # fmt: skip
        assert time.monotonic() < deadline, f"Slurm job {job_id} did not finish in {HANG_S} s"
        time.sleep(2)
    runs = [line.split()[1:4:2] for line in submitted.stdout.splitlines() if "  log: " in line]
    return {workdir: Path(log).read_text() for workdir, log in runs}


def job_inputs(tmp_path: Path, slurm_env: dict[str, str]) -> tuple[Path, dict[str, str]]:
    """A folder of 2 training images and the environment of the sweep and its tasks."""
    images = tmp_path / "images"
    images.mkdir()
    for path in sorted(BSDS.glob("*.jpg"))[:2]:
        shutil.copy(path, images / path.name)
    env = {**slurm_env, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2",
           "TFDS_DATA_DIR": str(tmp_path / "tfds")}  # fmt: skip
    return images, env


@pytest.mark.slow
def test_a_slurm_array_sweep_runs_to_completion_and_its_workdirs_evaluate(slurm_env, tmp_path):
    images, env = job_inputs(tmp_path, slurm_env)
    root = tmp_path / "sweep"
    command = ["--launcher=slurm", f"--root={root}", "--priors=joint", "--lmbdas=0.01,0.02",
               "--time=20", *TINY, f"--data_dir={images}", f"--tfds_data_dir={tmp_path / 'tfds'}"]
    logs = wait_for(sweep(*command, env=env), env)
    workdirs = [root / "joint_lmbda0.01", root / "joint_lmbda0.02"]
    assert sorted(logs) == [str(w) for w in workdirs]
    for workdir, text in logs.items():
        assert "jahp_jax.cli.train" in text and "Traceback" not in text, text[-3000:]
        assert f"--workdir={workdir}" in text
        assert (Path(workdir) / "checkpoints" / str(STEPS) / "params").is_dir(), text[-3000:]

    # Resubmitting the same sweep: every task resumes its own finished workdir, trains nothing.
    for text in wait_for(sweep(*command, env=env), env).values():
        assert f"already trained {STEPS} >= --num_steps={STEPS} steps" in text, text[-3000:]

    output = tmp_path / "eval" / "sweep.json"
    (tmp_path / "kodak").mkdir()
    shutil.copy(KODAK / "kodim23.png", tmp_path / "kodak")
    evaluated = subprocess.run(
        [sys.executable, "-m", "jahp_jax.cli.evaluate", *(f"--checkpoint={w}" for w in workdirs),
         "--dataset=folder", f"--data_dir={tmp_path / 'kodak'}", f"--output={output}"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    results = json.loads(output.read_text())["results"]
    assert len(results["bpp"]) == 2 and all(bpp > 0 for bpp in results["bpp"])


@pytest.mark.slow
def test_a_slurm_task_can_be_one_multi_process_run(slurm_env, tmp_path):
    """--processes_per_node=2: srun starts 2 training processes with --multihost, which find each
    other through JAX's Slurm detection (no address given) and train one model on 2 devices."""
    images, env = job_inputs(tmp_path, slurm_env)
    env["JAX_NUM_CPU_DEVICES"] = "1"  # Each of the 2 processes: 1 device.
    root = tmp_path / "sweep"
    submitted = sweep("--launcher=slurm", f"--root={root}", "--priors=joint", "--lmbdas=0.01",
                      "--processes_per_node=2", "--time=20", *TINY, f"--data_dir={images}",
                      env=env)  # fmt: skip
    [(workdir, rank0)] = wait_for(submitted, env).items()
    assert "on 2 device(s), 2 process(es)" in rank0, rank0[-3000:]
    rank1 = Path(submitted.stdout.split("  log: ")[1].split()[0].replace("_0_log", "_1_log"))
    assert "--multihost" in rank1.read_text() and "Traceback" not in rank1.read_text()
    assert (Path(workdir) / "checkpoints" / str(STEPS) / "params").is_dir()
