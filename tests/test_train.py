"""Tests for jahp_jax.training.train: resume after SIGKILL, data parallelism, non-finite losses, bad
input.

Training runs in subprocesses (a SIGKILL, XLA flags that must precede jax's start) with a tiny
joint model (N=M=8, 64x64 crops, batch 2); they share the run's persistent compilation cache
(conftest), so only the first run of a configuration compiles.
"""

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
import tensorflow as tf
from conftest import SHARED, damage_largest_file, suite_xla_flags

from jahp_jax.data.pipeline import DatasetError
from jahp_jax.io.checkpoints import (
    CheckpointError,
    checkpoint_root,
    load_model,
    resolve_checkpoint,
    save_model,
)
from jahp_jax.models.compression_model import CompressionModel, init_params
from jahp_jax.training import train

REPO_ROOT = Path(__file__).resolve().parents[1]
BSDS = SHARED / "data" / "train" / "bsds500"
BSDS_VAL = SHARED / "data" / "val" / "bsds500"
STEPS, EVERY = 4, 2
TINY = ["--prior=joint", "--lmbda=0.01", "--num_filters=8", "--num_latents=8",
        "--patch_size=64", "--batch_size=2", "--log_every=1", "--seed=3"]  # fmt: skip


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    """Subprocess environment: the repository importable, the run's compilation cache (conftest)."""
    return {**os.environ, "PYTHONPATH": str(REPO_ROOT), "TF_CPP_MIN_LOG_LEVEL": "2"}


@pytest.fixture(scope="module")
def data_args(tmp_path_factory) -> list[str]:
    """Flags for a 4-image training folder and a 2-image validation folder."""
    root = tmp_path_factory.mktemp("images")
    for folder, source, count in (("train", BSDS, 4), ("val", BSDS_VAL, 2)):
        (root / folder).mkdir()
        for path in sorted(source.glob("*.jpg"))[:count]:
            shutil.copy(path, root / folder / path.name)
    return [f"--data_dir={root / 'train'}", f"--val_data_dir={root / 'val'}",
            f"--tfds_data_dir={root / 'tfds'}", "--eval_images=2"]  # fmt: skip


def run_train(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jahp_jax.cli.train", *args],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip


def assert_params_close(a, b, atol: float) -> None:
    leaves_a = jax.tree_util.tree_leaves_with_path(a)
    leaves_b = jax.tree_util.tree_leaves(b)
    for (path, x), y in zip(leaves_a, leaves_b, strict=True):
        np.testing.assert_allclose(
            np.asarray(x), np.asarray(y), rtol=0, atol=atol, err_msg=jax.tree_util.keystr(path)
        )


@pytest.fixture(scope="module")
def runs(tmp_path_factory, env, data_args) -> dict[str, Path]:
    """'straight': 4 steps in one go; 'resumed': SIGKILLed while its step-4 checkpoint is being
    written (the test hook $JAHP_TESTONLY_KILL=saving:4: right after the asynchronous save
    started), then the same command again."""
    root = tmp_path_factory.mktemp("runs")
    common = [*TINY, *data_args, f"--num_steps={STEPS}", f"--checkpoint_every={EVERY}",
              f"--eval_every={EVERY}"]  # fmt: skip
    straight = run_train([*common, f"--workdir={root / 'straight'}"], env)
    assert straight.returncode == 0, straight.stderr[-3000:]

    args = [*common, f"--workdir={root / 'resumed'}"]
    killed = run_train(args, {**env, train.TESTONLY_KILL_ENV: f"saving:{STEPS}"})
    assert killed.returncode == -9, killed.stderr[-3000:]
    # Killed in flight: step 4 only in orbax's temporary folder, step 2 the last complete one.
    checkpoints = checkpoint_root(root / "resumed")
    partial = [p.name for p in checkpoints.iterdir() if p.name.startswith(f"{STEPS}.")]
    assert partial and not (checkpoints / str(STEPS)).exists(), sorted(checkpoints.iterdir())
    assert resolve_checkpoint(root / "resumed").name == str(EVERY)
    resumed = run_train(args, env)  # The same command: resumes from the last complete checkpoint.
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from the step-{EVERY} checkpoint" in resumed.stderr
    assert f"step {EVERY + 1}/{STEPS}" in resumed.stderr and "step 1/" not in resumed.stderr
    assert sorted(p.name for p in checkpoints.iterdir()) == [str(EVERY), str(STEPS)]
    return {"straight": root / "straight", "resumed": root / "resumed", "log": straight.stderr}


@pytest.mark.slow
def test_a_run_killed_while_saving_resumes_and_ends_as_an_uninterrupted_one(runs):
    _, straight, config = load_model(runs["straight"])
    _, resumed, resumed_config = load_model(runs["resumed"])
    assert config == resumed_config and config.prior == "joint" and config.num_latents == 8
    assert resolve_checkpoint(runs["straight"]).name == str(STEPS)
    assert_params_close(straight, resumed, atol=1e-6)
    _, initial, _ = load_model(runs["straight"] / "checkpoints" / str(EVERY))
    with pytest.raises(AssertionError):  # The run did train: step 2 and step 4 differ.
        assert_params_close(straight, initial, atol=1e-6)


@pytest.mark.slow
def test_init_from_fine_tunes_a_trained_checkpoint(runs, tmp_path, env, data_args):
    _, trained, _ = load_model(runs["straight"])
    args = [*TINY, *data_args, "--num_steps=1", "--eval_every=0", "--seed=5"]
    tuned = run_train([*args, f"--workdir={tmp_path / 'tuned'}",
                       f"--init_from={runs['straight']}"], env)  # fmt: skip
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    assert "starting from the parameters of" in tuned.stderr
    model, params, _ = load_model(tmp_path / "tuned")
    # One Adam step moves a parameter by at most its learning rate (1e-4 main, 1e-3 quantiles);
    # a fresh initialisation (with the seed 5 of this run) is far away.
    assert_params_close(params, trained, atol=1.1e-3)
    with pytest.raises(AssertionError):
        assert_params_close(init_params(model, jax.random.key(5)), trained, atol=1.1e-3)

    other = [a for a in TINY if not a.startswith("--num_filters")] + ["--num_filters=4"]
    wrong = run_train([*other, *data_args, "--num_steps=1", f"--workdir={tmp_path / 'wrong'}",
                       f"--init_from={runs['straight']}"], env)  # fmt: skip
    assert wrong.returncode == 1
    assert wrong.stderr.strip().splitlines()[-1].startswith("error: --init_from")
    assert "N=8" in wrong.stderr and "N=4" in wrong.stderr
    missing = run_train([*args, f"--workdir={tmp_path / 'missing'}",
                         f"--init_from={tmp_path / 'nope'}"], env)  # fmt: skip
    assert missing.returncode == 1 and "error:" in missing.stderr.strip().splitlines()[-1]


def test_progress_line_and_tensorboard_summaries(runs):
    assert "loss" in runs["log"] and "PSNR" in runs["log"] and "steps/s  ETA" in runs["log"]
    assert "validation at step 2" in runs["log"]
    events = list((runs["straight"] / "tensorboard").glob("events.out.tfevents.*"))
    assert events
    tags = {
        value.tag
        for path in events
        for event in tf.compat.v1.train.summary_iterator(str(path))
        for value in event.summary.value
    }
    for tag in ("train/loss", "train/bpp_y", "train/bpp_z", "train/mse", "train/psnr",
                "train/learning_rate", "train/steps_per_sec", "validation/bpp", "validation/psnr"):
        assert tag in tags, f"{tag} missing from {sorted(tags)}"  # fmt: skip


@pytest.mark.parametrize("item, how", [("params", "garble"), ("train_state", "truncate")])
def test_resuming_from_a_corrupt_checkpoint_is_one_clear_error(runs, data_args, tmp_path, item,
                                                              how):  # fmt: skip
    workdir = tmp_path / "run"
    shutil.copytree(runs["straight"], workdir)
    damage_largest_file(workdir / "checkpoints" / str(STEPS) / item, how)
    flags = dict(arg[2:].split("=", 1) for arg in data_args)
    config = train.TrainConfig(lmbda=0.01, num_filters=8, num_latents=8, patch_size=64,
                               batch_size=2, seed=3, num_steps=STEPS + 2, eval_every=0,
                               data_dir=flags["data_dir"],
                               tfds_data_dir=flags["tfds_data_dir"])  # fmt: skip
    with pytest.raises(CheckpointError) as error:
        train.train_and_evaluate(config, workdir)
    message = str(error.value)
    assert f"step {STEPS}" in message or f"checkpoints/{STEPS}" in message, message
    assert "\n" not in message and len(message) < 500, message


def test_workdir_of_another_model_or_lambda_is_refused(runs):
    base = train.TrainConfig(lmbda=0.01, num_filters=8, num_latents=8, patch_size=64,
                             batch_size=2, data_dir=str(BSDS))  # fmt: skip
    with pytest.raises(train.ConfigError, match="different model .*joint N=8 M=8"):
        train.train_and_evaluate(
            dataclasses.replace(base, prior="hyperprior"), runs["straight"]
        )
    with pytest.raises(train.ConfigError, match="--lmbda=0.01"):
        train.train_and_evaluate(
            dataclasses.replace(base, lmbda=0.02), runs["straight"]
        )


def test_workdir_holding_a_model_without_training_state_is_refused(tmp_path):
    # A converted (step 0) or exported model: resuming it would silently start from scratch next
    # to it (step 0) or fail deep in orbax; the error points to --init_from instead.
    config = train.TrainConfig(lmbda=0.01, num_filters=8, num_latents=8)
    params = init_params(CompressionModel(config.model_config), jax.random.key(0))
    for step in (0, 8000):
        workdir = tmp_path / f"model{step}"
        save_model(checkpoint_root(workdir), step, config.model_config, params)
        with pytest.raises(train.ConfigError, match=f"step {step}: .*--init_from={workdir}"):
            train.check_workdir(config, workdir)


MULTI_DEVICE_SCRIPT = """
import json
import jax, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from jahp_jax.training import train

config = train.TrainConfig(lmbda=0.01, prior="factorized", num_filters=8, num_latents=8,
                           patch_size=32, batch_size=4)
model = train.CompressionModel(config.model_config)
hparams = train.hyperparams(config)
batches = np.random.default_rng(0).random((3, 4, 32, 32, 3), np.float32)
result = {"device_count": jax.device_count()}
for count in (1, 4):
    mesh = train.make_mesh(jax.devices()[:count])
    batch_sharding = NamedSharding(mesh, P(train.DATA_AXIS))
    step = train.jit_train_step(config, model, mesh)
    state = train.create_train_state(config, model, mesh)
    for batch in batches:
        x = train.global_batch(batch, batch_sharding)
        result[f"batch_devices_{count}"] = len(x.sharding.device_set)
        state, stats = step(state, x, hparams)
    result[f"params_{count}"] = jax.tree_util.tree_map(lambda p: np.asarray(p).tolist(),
                                                       state.params)
    result[f"param_devices_{count}"] = len(
        jax.tree_util.tree_leaves(state.params)[0].sharding.device_set)
    if count == 4:  # A non-finite loss leaves the state as it was.
        bad = train.global_batch(np.full_like(batches[0], np.nan), batch_sharding)
        before = jax.device_get(state.params)  # The step donates `state`.
        after, stats = step(state, bad, hparams)
        result["nan_finite"] = bool(stats["finite"])
        result["nan_changed"] = max(
            float(np.max(np.abs(np.asarray(a) - np.asarray(b))))
            for a, b in zip(jax.tree_util.tree_leaves(after.params),
                            jax.tree_util.tree_leaves(before)))
print("RESULT " + json.dumps(result))
"""


@pytest.mark.slow
def test_four_devices_train_like_one(env):
    """3 steps with the batch sharded over 4 (host-platform) devices == 3 steps on 1 device.

    The cheapest prior to compile (factorized: the sharding does not depend on the prior); its
    y density's quantiles exercise the aux optimiser."""
    proc = subprocess.run(
        [sys.executable, "-c", MULTI_DEVICE_SCRIPT],
        env={**env, "XLA_FLAGS": suite_xla_flags("--xla_force_host_platform_device_count=4")},
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    assert result["device_count"] == 4
    assert result["batch_devices_1"] == 1 and result["batch_devices_4"] == 4
    assert result["param_devices_4"] == 4  # Replicated.
    assert_params_close(result["params_1"], result["params_4"], atol=1e-5)
    assert result["nan_finite"] is False and result["nan_changed"] == 0.0


ONE_PROGRAM_SCRIPT = """
import sys
from pathlib import Path
import jax, numpy as np
cache = Path(sys.argv[1])
jax.config.update("jax_compilation_cache_dir", str(cache))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
from jahp_jax.training import train
entries = []
for lmbda, seed, num_steps in ((0.01, 0, 100), (0.05, 7, 3000)):
    config = train.TrainConfig(lmbda=lmbda, seed=seed, num_steps=num_steps, prior="hyperprior",
                               num_filters=4, num_latents=4, patch_size=64, batch_size=2)
    mesh = train.make_mesh()
    model = train.CompressionModel(config.model_config)
    state = train.create_train_state(config, model, mesh)
    step = train.jit_train_step(config, model, mesh)
    state, stats = step(state, np.zeros((2, 64, 64, 3), np.float32), train.hyperparams(config))
    jax.block_until_ready(stats)
    entries.append(sorted(path.name for path in cache.iterdir()))
print("RESULT", len(entries[0]), entries[0] == entries[1])
"""


def test_runs_differing_in_lambda_seed_or_steps_share_one_program(env, tmp_path):
    """Another --lmbda, --seed and --num_steps compile no new init or train step: they are
    arguments of the programs, so the second run only reads the compilation cache."""
    proc = subprocess.run(
        [sys.executable, "-c", ONE_PROGRAM_SCRIPT, str(tmp_path / "cache")],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))
    _, count, same = line.split()
    assert int(count) >= 2 and same == "True", line  # init + step, nothing more the second time


NAN_SCRIPT = """
import sys
import numpy as np
from jahp_jax.cli import train as train_cli
from jahp_jax.data import pipeline as data

real = data.train_batches
def poisoned(**kwargs):  # Step 3's batch (index 2 from step 0) is NaN.
    for index, batch in enumerate(real(**kwargs), start=kwargs["start_step"]):
        yield np.full_like(batch, np.nan) if index == 2 else batch
data.train_batches = poisoned
sys.exit(train_cli.main(sys.argv[1:]))
"""


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, env, data_args):
    workdir = tmp_path / "nan"
    args = [*TINY, *data_args, f"--num_steps={STEPS}", f"--checkpoint_every={EVERY}",
            "--eval_every=0", f"--workdir={workdir}"]  # fmt: skip
    proc = subprocess.run(
        [sys.executable, "-c", NAN_SCRIPT, *args],
        env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    last_line = proc.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: non-finite loss or gradient at step 3"), last_line
    assert "last good checkpoint is step 2" in last_line
    assert "Traceback" not in proc.stderr
    assert resolve_checkpoint(workdir).name == "2"
    _, params, _ = load_model(workdir)
    assert all(np.isfinite(np.asarray(p)).all() for p in jax.tree.leaves(params))


@pytest.mark.plain_clone
def test_bad_command_lines_get_one_line_errors(tmp_path, env, data_args):
    cases = {
        "lambda": ([*TINY, "--lmbda=0", *data_args], "--lmbda must be > 0"),
        "missing data": ([*TINY, f"--data_dir={tmp_path / 'none'}"], "does not exist"),
    }
    for name, (args, message) in cases.items():
        proc = run_train([*args, f"--workdir={tmp_path / 'w'}", "--num_steps=1"], env)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode != 0, name
        assert lines[-1].startswith("error: ") and message in lines[-1], (name, lines[-3:])
        assert "Traceback" not in proc.stderr, name
        assert not (tmp_path / "w" / "checkpoints").exists()


@pytest.mark.plain_clone
@pytest.mark.parametrize(
    "changes, error, message",
    [
        ({"lmbda": -1.0}, train.ConfigError, "--lmbda must be > 0"),
        ({"prior": "gauss"}, train.ConfigError, "unknown prior 'gauss'"),
        ({"distortion": "l1"}, train.ConfigError, "unknown --distortion"),
        ({"patch_size": 96}, train.ConfigError, "multiple of 64"),
        ({"distortion": "ms-ssim"}, train.ConfigError, "patch_size >= 176"),
        ({"batch_size": 0}, train.ConfigError, "--batch_size must be >= 1"),
        ({"data_dir": None}, DatasetError, "no data source"),
        ({"data_dir": "EMPTY"}, DatasetError, "holds no image files"),
    ],
)
def test_bad_configs_are_refused_before_any_compute(tmp_path, changes, error, message):
    if changes.get("data_dir") == "EMPTY":
        (tmp_path / "empty").mkdir()
        changes = {"data_dir": str(tmp_path / "empty")}
    config = train.TrainConfig(
        **{"lmbda": 0.01, "num_filters": 8, "num_latents": 8, "patch_size": 64, "batch_size": 2,
           "data_dir": str(BSDS), "tfds_data_dir": str(tmp_path / "tfds"), **changes}
    )  # fmt: skip
    with pytest.raises(error, match=message):
        train.train_and_evaluate(config, tmp_path / "work")
    assert not (tmp_path / "work" / "checkpoints").exists()


def test_batch_must_divide_the_device_count():
    config = train.TrainConfig(lmbda=0.01, batch_size=6)
    train.check_train_config(config, device_count=3)
    with pytest.raises(train.ConfigError, match="not divisible by the 4 devices"):
        train.check_train_config(config, device_count=4)


def test_unreadable_checkpoint_is_a_checkpoint_error(tmp_path):
    step = tmp_path / "checkpoints" / "5"
    (step / "params").mkdir(parents=True)
    (step / "config").mkdir()
    (step / "config" / "metadata").write_text("{not json")
    config = train.TrainConfig(lmbda=0.01, data_dir=str(BSDS))
    with pytest.raises(CheckpointError, match="cannot read the model config"):
        train.train_and_evaluate(config, tmp_path)


def test_optimizer_partitions_quantiles_to_the_aux_adam():
    config = train.TrainConfig(lmbda=0.01, prior="hyperprior", num_filters=4, num_latents=4,
                               learning_rate=1e-4, aux_learning_rate=1e-3)  # fmt: skip
    params = jax.eval_shape(
        lambda: train.init_params(CompressionModel(config.model_config), jax.random.key(0))
    )
    labels = train._param_labels(params)
    assert labels["z_density"]["quantiles"] == "aux"
    assert labels["z_density"]["matrices_0"] == "main"
    assert labels["g_a"]["layers_0"]["kernel"] == "main"
    schedule = train.learning_rate_schedule(train.hyperparams(
        train.TrainConfig(lmbda=0.01, num_steps=100, lr_drop_fraction=0.8, lr_drop_factor=0.1)
    ))  # fmt: skip
    assert float(schedule(79)) == pytest.approx(1e-4) and float(schedule(80)) == pytest.approx(1e-5)


def test_sweep_plans_one_workdir_per_prior_and_lambda(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.sweep", "--flagfile=experiments/paper_sweep.flags",
         "--priors=joint,hyperprior", f"--root={tmp_path}", "--data_dir=IMAGES", "--dry_run",
         "--task_index=1", "--num_tasks=2"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    commands = proc.stdout.strip().splitlines()
    assert len(commands) == 8  # 2 priors x 8 lambdas, every second one on this host.
    assert f"--workdir={tmp_path / 'joint_lmbda0.0035'}" in commands[0]
    assert "--preset=low" in commands[0] and "--data_dir=IMAGES" in commands[0]
    assert "--lmbda=0.0483" in commands[2] and "--preset=high" in commands[2]
    assert f"--workdir={tmp_path / 'hyperprior_lmbda0.0035'}" in commands[4]
    refused = subprocess.run(
        [sys.executable, "-m", "experiments.sweep", f"--root={tmp_path}", "--lmbdas=0.01",
         "--workdir=elsewhere"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert refused.returncode == 1 and "set per run by the sweep" in refused.stderr
