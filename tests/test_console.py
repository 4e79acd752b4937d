"""jahp_jax.console: a quiet console (our lines, third-party warnings), the full log in a file."""

import logging
import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import REPO_ROOT, SHARED

from jahp_jax import console

THIRD_PARTY_INFO = re.compile(r"^(\[(absl|orbax|jax|tensorflow)[^\]]*\] INFO|I\d{4} )", re.M)


def train(workdir) -> subprocess.CompletedProcess:
    """A 4-step toy training run in a subprocess (stderr is a pipe: no bars, detail lines); the
    model, lambda, steps and seed of test_train's runs, whose compiled programs it shares."""
    images = workdir.parent / "images"  # 4 training images: a folder prepares in a second
    images.mkdir()
    for path in sorted((SHARED / "data" / "train" / "bsds500").glob("*.jpg"))[:4]:
        shutil.copy(path, images / path.name)
    command = [sys.executable, "-m", "jahp_jax.cli.train", f"--workdir={workdir}", "--lmbda=0.01",
               "--num_filters=8", "--num_latents=8", "--batch_size=2", "--patch_size=64",
               "--num_steps=4", "--log_every=3", "--checkpoint_every=2", "--seed=3",
               f"--data_dir={images}", f"--tfds_data_dir={workdir.parent / 'tfds'}"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.slow
def test_training_console_is_quiet_and_ends_with_a_summary_and_the_log_keeps_everything(tmp_path):
    run = train(tmp_path / "quiet")  # --verbosity (absl's: 0 is INFO) would show them
    assert run.returncode == 0, run.stderr[-3000:]
    output = run.stdout + run.stderr
    assert not THIRD_PARTY_INFO.search(output), THIRD_PARTY_INFO.search(output).group(0)
    assert "oneDNN" not in output and "CheckpointManager" not in output
    assert "step 3/4  loss" in output  # the detail lines, as no bar is drawn on a pipe
    summary = output.strip().splitlines()[-1]
    assert re.match(r"done: 4 steps \(4 in this run, 0:\d\d:\d\d, [\d.]+ steps/s\); last 1 "
                    r"steps: loss [\d.]+  bpp [\d.]+  PSNR [\d.]+ dB; checkpoints in ", summary)
    log = (tmp_path / "quiet" / console.LOG_FILE).read_text()
    assert "CheckpointManager" in log and "step 3/4  loss" in log and "done: 4 steps" in log


def record(name: str, level: int, pathname: str = "/elsewhere/lib.py", **extra):
    entry = logging.LogRecord(name, level, pathname, 1, "message %d", (7,), None)
    entry.__dict__.update(extra)
    return entry


def test_console_shows_our_lines_and_third_party_warnings_only(monkeypatch):
    monkeypatch.setattr(console, "bars_enabled", lambda: False)
    quiet = console._ConsoleFilter(logging.WARNING)
    ours_via_absl = record("absl", logging.INFO, pathname=console.__file__)
    assert quiet.filter(ours_via_absl)
    assert quiet.filter(record("jahp_jax.data.pipeline", logging.INFO))
    assert not quiet.filter(record("absl", logging.INFO))  # orbax, tfds: through absl
    assert quiet.filter(record("absl", logging.WARNING))
    assert console._ConsoleFilter(logging.INFO).filter(record("absl", logging.INFO))
    detail = record("jahp_jax.training.train", logging.INFO, **console.DETAIL)
    assert quiet.filter(detail)
    monkeypatch.setattr(console, "bars_enabled", lambda: True)  # a terminal: the bar says it
    assert not quiet.filter(detail)
    formatter = console._ConsoleFormatter()
    assert formatter.format(record("jahp_jax.data.pipeline", logging.INFO)) == "message 7"
    warning = record("jahp_jax.data.pipeline", logging.WARNING)
    assert formatter.format(warning) == "warning: message 7"
    assert formatter.format(record("orbax", logging.WARNING)) == "[orbax] WARNING message 7"


def test_verbosity_takes_names_and_absl_numbers():
    assert console.verbosity_level("info") == logging.INFO == console.verbosity_level(0)
    assert console.verbosity_level("-1") == logging.WARNING
    assert console.verbosity_level("DEBUG") == logging.DEBUG
    with pytest.raises(ValueError, match="^unknown --verbosity 'loud'; choose one of error, "):
        console.verbosity_level("loud")


def test_setup_replaces_its_handlers_and_writes_the_log_file(tmp_path):
    root = logging.getLogger()
    before = list(root.handlers)
    try:
        console.setup("warning", tmp_path / "a" / console.LOG_FILE)
        console.setup("warning", tmp_path / "b" / console.LOG_FILE)
        ours = [h for h in root.handlers if getattr(h, "jahp_console", False)]
        assert len(ours) == 2  # one console, one file: the first call's are gone
        logging.getLogger("orbax").info("kept in the file")
        for handler in ours:
            handler.flush()
        assert "kept in the file" in (tmp_path / "b" / console.LOG_FILE).read_text()
        assert "kept in the file" not in (tmp_path / "a" / console.LOG_FILE).read_text()
    finally:
        for handler in list(root.handlers):
            if handler not in before:
                root.removeHandler(handler)
                handler.close()


def test_every_command_of_pyproject_is_a_callable_of_the_package():
    import importlib
    import tomllib

    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert {"jahp-train", "jahp-codec", "jahp-eval", "jahp-convert", "jahp-export"} <= set(scripts)
    for command, target in scripts.items():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), command


def test_a_basic_config_handler_from_before_setup_is_dropped():
    """absl.logging calls logging.basicConfig() when a library logs before any handler exists
    (orbax does at import); setup() drops that default handler, or every later third-party INFO
    line would reach the console as 'INFO:<logger>:...' and every warning twice."""
    code = (
        "import logging\n"
        "from absl import logging as absl_logging\n"
        "absl_logging.vlog(1, 'at import')\n"  # what orbax does: installs basicConfig's handler
        "from jahp_jax import console\n"
        "console.setup()\n"
        "logging.getLogger('tensorflow_datasets').info('third-party info')\n"
        "logging.getLogger('tensorflow_datasets').warning('third-party warning')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "third-party info" not in proc.stderr, proc.stderr
    assert proc.stderr.count("third-party warning") == 1, proc.stderr
