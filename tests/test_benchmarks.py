"""benchmarks/: bad arguments are refused in one line before any timing starts."""

import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["bench_codec", "--priors=joint,bogus"], "unknown prior(s) ['bogus']"),
        (["bench_codec", "--kodak_dir=/nonexistent"], "/nonexistent/kodim23.png: no such file"),
        (["bench_train", "--settings=joint128,bogus"], "unknown setting(s)"),
    ],
)
def test_bad_arguments_get_one_line(arguments, message):
    module, *flags = arguments
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *flags],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0
    assert lines and lines[-1].startswith("error: ") and message in lines[-1], proc.stderr
    assert "Traceback" not in proc.stderr
