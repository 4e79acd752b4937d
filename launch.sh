#!/usr/bin/env bash
# jahp_jax launcher: creates the virtual environment on first use, then runs a job.
#
#   ./launch.sh quickstart         train a small joint model, compress Kodak to real files, compare
#   ./launch.sh test               run the test suite (what CI runs; beside ../shared, the tests
#                                  of the data roots run again as in a plain clone)
#   ./launch.sh train [FLAGS...]   jahp-train FLAGS... (python -m jahp_jax.cli.train)
#   ./launch.sh sweep [FLAGS...]   priors x lambdas, one workdir each (see README, "Sweeps")
#   ./launch.sh ablation [FLAGS...] the CPU-scale ablation of experiments/ablation.py
#   ./launch.sh setup              only create/update the environment
set -euo pipefail
cd "$(dirname "$0")"
ROOT=$(pwd)
VENV=${JAHP_VENV:-$ROOT/.venv}
PY=${PYTHON:-python3.11}
UV_VERSION=0.13.8  # the installer (PyPI: uv), verified with the pins of pyproject.toml
command -v "$PY" >/dev/null 2>&1 || PY=python3

setup() {
  local stamp="$VENV/.jahp-installed"
  local want
  want=$(sha256sum pyproject.toml | cut -c1-16)
  if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
    return 0
  fi
  echo "[launch] setting up $VENV (first use or pyproject.toml changed)" >&2
  [[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
  local log="$VENV/install.log" status=0
  # uv installs the same pins in about half pip's time (docs/performance.md, "Test suite"); pip
  # is the fallback, for instance where only pip is configured for a private package index.
  # --compile-bytecode: where PYTHONDONTWRITEBYTECODE is set (as in many containers), nothing
  # else writes the .pyc files, and every process of a run would compile the libraries' sources.
  if ! { "$VENV/bin/python" -m pip install "uv==$UV_VERSION" &&
         "$VENV/bin/python" -m uv pip install --compile-bytecode --python "$VENV/bin/python" \
           -e ".[dev]"; } > "$log" 2>&1; then
    echo "[launch] uv could not install the environment; trying pip (log: $log)" >&2
    "$VENV/bin/python" -m pip install -e ".[dev]" >> "$log" 2>&1 || status=$?
  fi
  if [[ $status -ne 0 ]]; then
    tail -n 20 "$log" >&2
    echo "[launch] installing the environment failed; full log: $log" >&2
    exit 1
  fi
  echo "$want" > "$stamp"
}

# The Slurm sweep tests (tests/test_slurm.py) start a real single-node Slurm: install Debian's
# slurm-wlm and munge once when we can (root with apt-get); otherwise those tests skip and say so,
# or fail under CI=true (CI must test Slurm; see tests/conftest.py).
install_slurm() {
  command -v slurmctld >/dev/null 2>&1 && command -v munged >/dev/null 2>&1 && return 0
  local outcome="skip"
  [[ ${CI:-} == true || ${CI:-} == 1 ]] && outcome="fail (CI=true)"
  if [[ $(id -u) -ne 0 ]] || ! command -v apt-get >/dev/null 2>&1; then
    echo "[launch] Slurm is not installed and this is not root with apt-get: its tests will $outcome" >&2
    return 0
  fi
  echo "[launch] installing slurm-wlm and munge (apt-get) for the Slurm sweep test" >&2
  local log="$VENV/apt-slurm.log"
  if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q slurm-wlm munge; } \
      > "$log" 2>&1; then
    echo "[launch] installing Slurm failed (log: $log): its tests will $outcome" >&2
  fi
}

# The test files holding tests marked `plain_clone`: those whose outcome depends on which data
# folders exist (data roots, their defaults, the quickstart's data); the others read images that
# the committed stand-in holds as well, at paths the tests pass.
PLAIN_CLONE_TESTS=(tests/test_data.py tests/test_train.py tests/test_experiments.py)

cmd=${1:-help}
[[ $# -gt 0 ]] && shift
case "$cmd" in
  setup) setup ;;
  test)
    # One pytest-xdist worker per core, at most 4 (each holds ~6 GB of compiled programs at its
    # peak); a test file stays on one worker, so its module fixtures are built once.
    # JAHP_TEST_WORKERS=0 runs in this process; -n on the command line also wins.
    workers=${JAHP_TEST_WORKERS:-$(nproc)}
    if [[ ! $workers =~ ^[0-9]+$ ]]; then
      echo "launch.sh: JAHP_TEST_WORKERS='$workers' is not a whole number; use e.g. 2, or 0 for one process" >&2
      exit 2
    fi
    workers=$((10#$workers)); (( workers > 4 )) && workers=4
    setup
    install_slurm
    export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-$VENV/jax-cache}"  # reruns skip compiles
    "$VENV/bin/python" -m ruff check jahp_jax tests experiments benchmarks
    status=0
    "$VENV/bin/python" -m pytest -q -rs -n "$workers" --dist loadfile "$@" || status=$?
    # The whole suite (no arguments) beside ../shared also runs the `plain_clone` tests again as
    # a plain clone would (JAHP_TEST_SHARED=off: the committed stand-in only), so that the
    # set-up without ../shared cannot break unseen.
    if [[ $# -eq 0 && -d ../shared && ${JAHP_TEST_SHARED:-auto} != off ]]; then
      echo "[launch] again as in a plain clone (JAHP_TEST_SHARED=off): ${PLAIN_CLONE_TESTS[*]}" >&2
      JAHP_TEST_SHARED=off "$VENV/bin/python" -m pytest -q -rs -n "$workers" --dist loadfile \
        -m plain_clone "${PLAIN_CLONE_TESTS[@]}" || status=$?
    fi
    exit "$status"
    ;;
  train) setup; exec "$VENV/bin/python" -m jahp_jax.cli.train "$@" ;;
  quickstart) setup; exec "$VENV/bin/python" -m experiments.quickstart "$@" ;;
  sweep) setup; exec "$VENV/bin/python" -m experiments.sweep "$@" ;;
  ablation) setup; exec "$VENV/bin/python" -m experiments.ablation "$@" ;;
  python) setup; exec "$VENV/bin/python" "$@" ;;
  help|-h|--help) sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' ;;
  *) echo "launch.sh: unknown command '$cmd'; run ./launch.sh help" >&2; exit 2 ;;
esac
