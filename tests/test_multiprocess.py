"""Training beyond one process and one device layout, with real processes.

- Checkpoints do not depend on the device layout that wrote them: a model trained on 4 (host
  platform) devices is compressed, decompressed and evaluated on 1 and on 2 devices with identical
  files, and training resumed on 2 devices from a 4-device checkpoint continues exactly.
- Two processes x 2 CPU devices (`jax.distributed` on localhost, gloo collectives) train and
  fine-tune like one process; a SIGKILL of one process (the test hook $JAHP_TESTONLY_KILL) ends
  the other (after the heartbeat timeout); rerunning both commands resumes and ends where an
  uninterrupted run ends.
- A multi-process set-up that cannot work gets a one-line error, never an abort or a hang.

Waits end on process exits; their timeouts (HANG_S) only stop a hang, never time a test.
"""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import REPO_ROOT, SHARED, free_port, suite_xla_flags

from jahp_jax.io.checkpoints import load_model, resolve_checkpoint
from jahp_jax.training import train

BSDS = SHARED / "data" / "train" / "bsds500"
KODAK = SHARED / "data" / "kodak"
STEPS, EVERY, HEARTBEAT_S = 4, 2, 10
HANG_S = 900  # a process running longer than this hangs (a run here takes 10-60 s)
TINY = ["--prior=joint", "--lmbda=0.01", "--num_filters=8", "--num_latents=8",
        "--patch_size=64", "--batch_size=4", "--log_every=1", "--seed=5", "--eval_every=0",
        f"--num_steps={STEPS}", f"--checkpoint_every={EVERY}"]  # fmt: skip


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    """Subprocess environment: the repository importable, the run's compilation cache and XLA
    flags (conftest), no device count or cluster of the calling shell."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2",
           "XLA_FLAGS": suite_xla_flags()}  # fmt: skip
    for name in ("JAX_NUM_CPU_DEVICES", *(f"JAX_{n}" for n in
                 ("COORDINATOR_ADDRESS", "NUM_PROCESSES", "PROCESS_ID"))):  # fmt: skip
        env.pop(name, None)
    return env


def devices(env: dict[str, str], count: int) -> dict[str, str]:
    return {**env, "JAX_NUM_CPU_DEVICES": str(count)}


@pytest.fixture(scope="module")
def data_args(tmp_path_factory) -> list[str]:
    root = tmp_path_factory.mktemp("images")
    (root / "train").mkdir()
    for path in sorted(BSDS.glob("*.jpg"))[:8]:
        shutil.copy(path, root / "train" / path.name)
    return [f"--data_dir={root / 'train'}", f"--tfds_data_dir={root / 'tfds'}"]


def train_command(workdir: Path, data_args: list[str], *extra: str) -> list[str]:
    return [sys.executable, "-m", "jahp_jax.cli.train", *TINY, *data_args, f"--workdir={workdir}",
            *extra]  # fmt: skip


def run(command: list[str], env: dict[str, str], timeout: float = HANG_S):
    return subprocess.run(command, env=env, cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout, check=False)  # fmt: skip


def assert_params_close(a, b, atol: float, what: str) -> None:
    """Every parameter within atol; prints the largest difference (see it with pytest -s)."""
    largest = 0.0
    for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree_util.tree_leaves(b),
                            strict=True):  # fmt: skip
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=0, atol=atol,
                                   err_msg=jax.tree_util.keystr(path))  # fmt: skip
        largest = max(largest, float(np.max(np.abs(np.asarray(x) - np.asarray(y)))))
    print(f"\n[figure] {what}: max |difference| of the parameters {largest:.2e}")


@pytest.fixture(scope="module")
def four_devices(tmp_path_factory, env, data_args) -> Path:
    """The reference: one process, 4 devices, STEPS steps in one go."""
    workdir = tmp_path_factory.mktemp("runs") / "four"
    proc = run(train_command(workdir, data_args), devices(env, 4))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "on 4 device(s), 1 process(es)" in proc.stderr
    return workdir


@pytest.mark.slow
def test_resume_on_two_devices_from_a_four_device_checkpoint(four_devices, tmp_path, env,
                                                            data_args):  # fmt: skip
    command = train_command(tmp_path / "run", data_args)
    killed = run(command, {**devices(env, 4), train.TESTONLY_KILL_ENV: f"saved:{EVERY}"})
    assert killed.returncode == -9, killed.stderr[-3000:]
    resumed = run(command, devices(env, 2))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from the step-{EVERY} checkpoint" in resumed.stderr
    assert "on 2 device(s)" in resumed.stderr
    assert_params_close(load_model(four_devices)[1], load_model(tmp_path / "run")[1], atol=1e-5,
                        what="resumed on 2 devices vs 4 devices throughout")  # fmt: skip


@pytest.mark.slow
def test_a_four_device_model_codes_and_evaluates_identically_on_one_and_two_devices(
    four_devices, tmp_path, env
):
    image = KODAK / "kodim23.png"
    (tmp_path / "images").mkdir()
    shutil.copy(image, tmp_path / "images")
    env = {**env, "TFDS_DATA_DIR": str(tmp_path / "tfds")}
    outputs = {}
    for count in (1, 2):
        folder = tmp_path / f"on{count}"
        folder.mkdir()
        codec = [sys.executable, "-m", "jahp_jax.cli.codec"]
        compressed = run([*codec, "compress", f"--checkpoint={four_devices}", str(image),
                          str(folder / "kodim23.jahp")], devices(env, count))  # fmt: skip
        assert compressed.returncode == 0, compressed.stderr[-2000:]
        evaluated = run([sys.executable, "-m", "jahp_jax.cli.evaluate",
                         f"--checkpoint={four_devices}",
                         "--dataset=folder", f"--data_dir={tmp_path / 'images'}",
                         f"--output={folder / 'eval.json'}"],
                        devices(env, count))  # fmt: skip
        assert evaluated.returncode == 0, evaluated.stderr[-2000:]
        outputs[count] = folder
    for count, other in ((1, 2), (2, 1)):  # Each decodes the other's file.
        decoded = run([sys.executable, "-m", "jahp_jax.cli.codec", "decompress",
                       f"--checkpoint={four_devices}", str(outputs[other] / "kodim23.jahp"),
                       str(outputs[count] / "decoded.png")], devices(env, count))  # fmt: skip
        assert decoded.returncode == 0, decoded.stderr[-2000:]
    for name in ("kodim23.jahp", "decoded.png"):
        assert (outputs[1] / name).read_bytes() == (outputs[2] / name).read_bytes(), name
    results = [json.loads((outputs[c] / "eval.json").read_text())["results"] for c in (1, 2)]
    assert results[0]["bpp"] == results[1]["bpp"] and results[0]["psnr-rgb"] == results[1][
        "psnr-rgb"]  # fmt: skip


def start_processes(
    workdir: Path, data_args: list[str], env: dict[str, str], port: int,
    extra: dict[int, list[str]] | None = None, kill: dict[int, str] | None = None,
) -> list[subprocess.Popen]:  # fmt: skip
    """Two processes of one run, 2 CPU devices each, coordinated on localhost:port; `extra`
    flags and a $JAHP_TESTONLY_KILL value (`kill`) by process index."""
    procs = []
    for process_id in range(2):
        command = train_command(
            workdir, data_args, f"--coordinator_address=localhost:{port}", "--num_processes=2",
            f"--process_id={process_id}", f"--heartbeat_timeout={HEARTBEAT_S}",
            "--distributed_timeout=600", *(extra or {}).get(process_id, []),
        )  # fmt: skip
        process_env = devices(env, 2)
        if process_id in (kill or {}):
            process_env[train.TESTONLY_KILL_ENV] = kill[process_id]
        procs.append(subprocess.Popen(command, env=process_env, cwd=REPO_ROOT, text=True,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE))  # fmt: skip
    return procs


def finish(procs: list[subprocess.Popen]) -> list[tuple[int, str]]:
    return [(proc.wait(HANG_S), proc.communicate()[1]) for proc in procs]


@pytest.mark.slow
def test_two_processes_fine_tune_like_one(four_devices, tmp_path, env, data_args):
    """2 processes x 2 devices fine-tune (--init_from) the 4-device checkpoint for 2 steps, and
    one process on one device runs the same 2 steps (here, in this process): the same
    parameters to float rounding. (Adam moves every weight by about the learning rate whatever
    the gradient's size: only the comparison sees wrong or unsynchronised gradients.)"""
    workdir, steps, seed = tmp_path / "fine_tuned", 2, 6
    init = [f"--init_from={four_devices}", f"--num_steps={steps}", f"--seed={seed}"]
    (code0, log0), (code1, log1) = finish(
        start_processes(workdir, data_args, env, free_port(), {0: init, 1: init})
    )
    assert code0 == 0, log0[-3000:]
    assert code1 == 0, log1[-3000:]
    assert "on 4 device(s), 2 process(es)" in log0 and "starting from the parameters" in log0

    flags = dict(arg[2:].split("=", 1) for arg in data_args)
    config = train.TrainConfig(
        lmbda=0.01, prior="joint", num_filters=8, num_latents=8, patch_size=64, batch_size=4,
        seed=seed, num_steps=steps, checkpoint_every=EVERY, eval_every=0, log_every=1,
        data_dir=flags["data_dir"], tfds_data_dir=flags["tfds_data_dir"],
        init_from=str(four_devices),
    )  # fmt: skip
    assert f"--batch_size={config.batch_size}" in TINY and "--lmbda=0.01" in TINY
    train.train_and_evaluate(config, tmp_path / "one_process")
    pretrained = load_model(four_devices)[1]
    one, two = load_model(tmp_path / "one_process")[1], load_model(workdir)[1]
    assert_params_close(one, two, atol=1e-6, what="fine-tuned by 2 processes x 2 devices vs 1 x 1")
    # From the pretrained parameters (2 Adam steps of 1e-4; 1e-3 for the quantiles), not from
    # the fresh start that another seed gives.
    np.testing.assert_allclose(two["z_density"].pop("quantiles"),
                               pretrained["z_density"].pop("quantiles"), atol=2.5e-3)  # fmt: skip
    assert_params_close(pretrained, two, atol=2.5e-4, what="two fine-tuning steps")


@pytest.mark.slow
def test_two_processes_train_like_one_survive_a_kill_and_resume(four_devices, tmp_path, env,
                                                               data_args):  # fmt: skip
    """Process 1 is SIGKILLed after the step-2 checkpoint: process 0 stops (the heartbeat
    timeout: it exits, no hang); rerunning both commands finishes the run where one process with
    4 devices ends."""
    workdir = tmp_path / "killed"
    port = free_port()
    kill = {1: f"saved:{EVERY}"}
    procs = start_processes(workdir, data_args, env, port, kill=kill)
    assert procs[1].wait(HANG_S) == -9, procs[1].communicate()[1][-3000:]
    killed_at = time.monotonic()
    code0 = procs[0].wait(HANG_S)  # A hang raises TimeoutExpired here.
    stopped_after = time.monotonic() - killed_at
    log0 = procs[0].communicate()[1]
    assert "on 4 device(s), 2 process(es)" in log0
    assert code0 != 0, log0[-3000:]
    assert "JAX distributed service detected fatal errors" in log0, log0[-3000:]
    print(f"\n[figure] process 0 stopped {stopped_after:.1f} s after process 1 was killed "
          f"(--heartbeat_timeout={HEARTBEAT_S}), exit status {code0}")
    assert resolve_checkpoint(workdir).name == str(EVERY)  # The last complete checkpoint.

    # The same two commands again: both resume from that checkpoint and finish the run.
    (code0, log0), (code1, log1) = finish(start_processes(workdir, data_args, env, port,
                                                          kill=kill))  # fmt: skip
    assert code0 == 0, log0[-3000:]
    assert code1 == 0, log1[-3000:]
    assert f"resuming from the step-{EVERY} checkpoint" in log0
    assert f"step {STEPS}/{STEPS}" in log0 and f"step {STEPS}/" not in log1  # Logs: process 0.
    assert resolve_checkpoint(workdir).name == str(STEPS)
    assert_params_close(load_model(four_devices)[1], load_model(workdir)[1], atol=1e-5,
                        what="2 processes x 2 devices (killed, resumed) vs 1 x 4")  # fmt: skip


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--multihost"], "found no cluster to join"),
        (["--num_processes=2", "--process_id=2", "--coordinator_address=localhost:1234"],
         "--process_id must be in [0, 2)"),
        (["--num_processes=2", "--process_id=0", "--coordinator_address=localhost"],
         "is not host:port"),
        (["--num_processes=2", "--process_id=1", "--coordinator_address=localhost:{port}",
          "--distributed_timeout=2"], "could not reach the coordinator at localhost:"),
    ],
)
def test_a_multi_process_set_up_that_cannot_work_gets_one_line(flags, message, tmp_path, env,
                                                                data_args):  # fmt: skip
    flags = [flag.format(port=free_port()) for flag in flags]
    proc = run(train_command(tmp_path / "run", data_args, *flags), env)  # a hang: TimeoutExpired
    assert proc.returncode == 1, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and message in last, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()
