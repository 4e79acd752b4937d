"""conftest's rule for missing components, run on a clone without ../shared and without Slurm:
locally a test skips with the reason; with CI=true it fails where CI must provide the component
(Slurm always, ../shared unless JAHP_TEST_SHARED=off, CI's plain-clone pass)."""

import os
import re
import shutil
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

PROBE = '''
from conftest import SHARED, require

def test_needs_shared():
    require("shared", "needs ../shared")

def test_needs_slurm():
    require("slurm", "needs Slurm")

def test_sees_the_committed_data():
    assert SHARED.name == "shared" and SHARED.parent.name == "data"
'''


@pytest.fixture(scope="module")
def clone(tmp_path_factory):
    """A repository folder with this conftest and the probe tests, and no ../shared beside it."""
    root = tmp_path_factory.mktemp("parent") / "repo"
    (root / "tests").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "tests" / "conftest.py", root / "tests")
    (root / "tests" / "test_probe.py").write_text(PROBE)
    return root


@pytest.mark.parametrize(
    "variables, outcomes",
    [
        ({}, {"needs_shared": "SKIPPED", "needs_slurm": "SKIPPED"}),
        ({"CI": "true"}, {"needs_shared": "FAILED", "needs_slurm": "FAILED"}),
        ({"CI": "true", "JAHP_TEST_SHARED": "off"},
         {"needs_shared": "SKIPPED", "needs_slurm": "FAILED"}),
    ],
)  # fmt: skip
def test_a_missing_component_skips_locally_and_fails_in_ci(clone, variables, outcomes):
    env = {name: value for name, value in os.environ.items()
           if name not in ("CI", "JAHP_TEST_SHARED", "PYTEST_ADDOPTS")}  # fmt: skip
    env = {**env, **variables, "PYTHONPATH": str(REPO_ROOT), "JAHP_COMPILATION_CACHE": "off"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-v", "-rs",
         str(clone / "tests" / "test_probe.py")],
        cwd=clone, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    found = dict(re.findall(r"::test_(\w+) (PASSED|FAILED|SKIPPED)", proc.stdout))
    assert found == {**outcomes, "sees_the_committed_data": "PASSED"}, proc.stdout[-3000:]
    if "FAILED" in outcomes.values():
        assert "CI=true and CI must provide this" in proc.stdout, proc.stdout[-3000:]
    if "SKIPPED" in outcomes.values():  # -rs lists the skipped tests with their reasons
        assert "SKIPPED [1] " in proc.stdout and "needs" in proc.stdout, proc.stdout[-3000:]
