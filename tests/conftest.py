"""Shared test fixtures: the data next to the repository, or the committed stand-in.

`SHARED` is `../shared` when it exists (the full Kodak and BSDS500 sets, CompressAI's golden
outputs) and else `tests/data/shared`, a few of the same files committed with the tests (see
tests/data/README.md), so that a plain clone runs the suite offline. Tests that need what only
the full folder has use the `kodak_dir` fixture or `golden_path` (which call `require`).

Two environment variables decide what a missing component does (`require`):
  - `JAHP_TEST_SHARED=off` hides `../shared`: the suite runs as in a plain clone, on the
    committed stand-in only (and `$JAHP_DATA`, the library's default data root, points there
    too), so the tests that need the full folder skip. Unset (or `auto`): `../shared` if it
    exists.
  - `CI=true`: a test whose component CI must have fails instead of skipping: a real Slurm
    always, `../shared` unless `JAHP_TEST_SHARED=off` (CI's plain-clone pass, where those tests
    skip and `-rs` lists them). Without CI a test skips with the reason printed.

The whole run shares one persistent XLA compilation cache: this process and every subprocess a
test starts (training runs, CLIs, Slurm tasks inherit the environment), so a program compiled by
one test (a training step, a codec at one image shape) is loaded from disk by every later test and
by the next run. The folder is the CLIs' own (`jahp_jax.runtime.compilation_cache_dir()`:
`$JAHP_COMPILATION_CACHE`, else `$JAX_COMPILATION_CACHE_DIR`, which `./launch.sh test` sets to
`.venv/jax-cache`, else `~/.cache/jahp_jax/xla`); `JAHP_COMPILATION_CACHE=off` runs without.
The test workers (`./launch.sh test` runs pytest-xdist) share it too: JAX writes an entry in
place, and a worker that reads one while another writes it gets a read error, which JAX turns
into a warning and a compile.
"""

import os
import socket
from pathlib import Path
from typing import NoReturn

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FULL_SHARED = REPO_ROOT.parent / "shared"
COMMITTED_SHARED = REPO_ROOT / "tests" / "data" / "shared"
SHARED_SWITCH = os.environ.get("JAHP_TEST_SHARED", "auto").lower()
if SHARED_SWITCH not in ("auto", "off"):
    raise pytest.UsageError(f"JAHP_TEST_SHARED={SHARED_SWITCH!r}: use 'off' (a plain clone's "
                            "data only) or leave it unset")  # fmt: skip
SHARED = FULL_SHARED if SHARED_SWITCH == "auto" and FULL_SHARED.is_dir() else COMMITTED_SHARED
GOLDEN = SHARED / "golden" / "compressai"  # CompressAI's reference outputs: ../shared only
IN_CI = os.environ.get("CI", "").lower() in ("true", "1")
KODAK_NAMES = tuple(f"kodim{i:02d}" for i in range(1, 25))
if SHARED_SWITCH == "off":  # the library's default data root (../shared/data) hidden as well
    os.environ["JAHP_DATA"] = str(COMMITTED_SHARED / "data")


def require(component: str, reason: str) -> NoReturn:
    """Stop a test whose `component` ('slurm' or 'shared') is missing: fail where CI must have
    it (CI=true; 'shared' only unless JAHP_TEST_SHARED=off), else skip. `reason` says what is
    missing and how to provide it."""
    if component not in ("slurm", "shared"):
        raise ValueError(f"unknown test component {component!r}")
    if IN_CI and (component == "slurm" or SHARED_SWITCH != "off"):
        pytest.fail(f"CI=true and CI must provide this: {reason}", pytrace=False)
    pytest.skip(reason)


def _share_one_compilation_cache() -> None:
    """Before jax is imported: the cache folder and "cache every program" in the environment."""
    from jahp_jax.runtime import compilation_cache_dir  # imports no jax

    folder = compilation_cache_dir()
    if folder is None:
        return
    os.environ["JAX_COMPILATION_CACHE_DIR"] = str(folder)
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"


_share_one_compilation_cache()


FAST_COMPILE_FLAGS = ("--xla_backend_optimization_level=0", "--xla_cpu_use_fusion_emitters=false")
DEFAULT_CODEGEN_ENV = "JAHP_TEST_DEFAULT_CODEGEN"  # "1": a subprocess that must compile as users do


def _compile_quickly() -> None:
    """Before jax is imported: XLA:CPU compiles for speed of compiling (FAST_COMPILE_FLAGS) in
    this process and the subprocesses that inherit its environment, unless XLA_FLAGS already
    sets either option.

    The suite's time is compiling many small programs. LLVM at optimisation level 0 halves it (a
    toy joint train step: 32 -> 16 CPU-s from a cold start); XLA:CPU's older elemental fusion
    emitter instead of its MLIR fusion emitters cuts it further (the toy step's gradient program
    1.9 -> 0.8 s, its eager initialisation 7.5 -> 4.2 s, an eager op 50 -> 33 ms). Both change the
    results only to float rounding (the convs and dots are library kernels either way). The
    benchmarks, the quickstart and every command a user runs keep XLA's defaults; so do the tests
    whose point is the float rounding of a user's run on this CPU (they run it in a
    `default_codegen` subprocess).
    """
    from jahp_jax.runtime import add_xla_flags  # imports no jax

    if os.environ.get(DEFAULT_CODEGEN_ENV) != "1":
        add_xla_flags(*FAST_COMPILE_FLAGS)


_compile_quickly()


def suite_xla_flags(*flags: str) -> str:
    """XLA_FLAGS for a test's subprocess: `flags` and the suite's FAST_COMPILE_FLAGS (if on)."""
    current = os.environ.get("XLA_FLAGS", "")
    return " ".join([*flags, *(flag for flag in FAST_COMPILE_FLAGS if flag in current)])


# Another CPU's numerics for a subprocess's environment: XLA code limited to SSE4.2 and another
# OpenBLAS kernel family, compiled with the suite's options (what the portable-files tests decode
# under; the writer runs as a user's run compiles, `default_codegen`).
SSE4_2_SETUP = {"XLA_FLAGS": suite_xla_flags("--xla_cpu_max_isa=SSE4_2"),
                "OPENBLAS_CORETYPE": "Prescott"}  # fmt: skip


def default_codegen(env: dict[str, str]) -> dict[str, str]:
    """`env` for a subprocess that compiles as a user's run does (XLA's defaults), even where it
    imports this file: XLA_FLAGS without FAST_COMPILE_FLAGS."""
    flags = env.get("XLA_FLAGS", "")
    for flag in FAST_COMPILE_FLAGS:
        flags = flags.replace(flag, "")
    return {**env, "XLA_FLAGS": " ".join(flags.split()), DEFAULT_CODEGEN_ENV: "1"}


# Options that make the suite's tiny models quicker to compile: the slice priors with fewer slices
# (channelwise 3 instead of 10, TCM 2 instead of 5: fewer networks, fewer coding programs; their
# default slice counts are coded by the golden tests and by test_codec's trained models).
QUICK_PRIOR_OPTIONS = {"channelwise": {"num_slices": 3}, "tcm": {"num_slices": 2}}


def quick_model(prior: str, num_filters: int, num_latents: int, components: int = 1):
    """`create_model` with QUICK_PRIOR_OPTIONS for `prior`."""
    from jahp_jax.models.compression_model import create_model

    options = QUICK_PRIOR_OPTIONS.get(prior, {})
    return create_model(prior, num_filters, num_latents, components, **options)


def free_port() -> int:
    """A TCP port on localhost that nothing listens on now (for test servers and coordinators)."""
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def pytest_configure(config: pytest.Config) -> None:
    """pytest-xdist keeps the order of pytest_collection_modifyitems: by default its `loadfile`
    scheduling would hand out the files with the most tests first instead, leaving the long
    files of few tests (two-process and Slurm runs, cross-ISA decodes) to the end of the run."""
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Test files holding a `slow` (end-to-end, process-starting) test run first: `./launch.sh
    test`'s workers start on them, and the many short files fill the end of the run evenly."""
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)


def pytest_report_header() -> str:
    where = "" if SHARED == FULL_SHARED else " (committed stand-in, JAHP_TEST_SHARED=" \
        f"{SHARED_SWITCH})"
    return f"test data: {SHARED}{where}" + ("; CI=true: missing components fail" if IN_CI else "")


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """`../shared`, or the committed stand-in with the same layout."""
    return SHARED


@pytest.fixture(scope="session")
def kodak_dir() -> Path:
    """The folder of all 24 Kodak PNGs (what the `kodak` builder accepts offline); skips without."""
    folder = SHARED / "data" / "kodak"
    missing = [name for name in KODAK_NAMES if not (folder / f"{name}.png").is_file()]
    if missing:
        require("shared", f"needs the 24 Kodak PNGs of {FULL_SHARED / 'data' / 'kodak'} "
                          f"({len(missing)} missing in {folder})")  # fmt: skip
    return folder


def golden_path(name: str) -> Path:
    """A file of CompressAI's reference outputs (`../shared/golden/compressai`, not committed);
    `require`s them."""
    if not GOLDEN.is_dir():
        require("shared", f"needs CompressAI's reference outputs in "
                          f"{FULL_SHARED / 'golden' / 'compressai'} (not committed)")  # fmt: skip
    return GOLDEN / name


def damage_largest_file(folder: Path, how: str) -> None:
    """Truncate (to half) or garble (8 bytes in the middle of) the largest file under `folder`:
    an orbax item's array data."""
    path = max((p for p in folder.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
    data = bytearray(path.read_bytes())
    if how == "truncate":
        data = data[: len(data) // 2]
    else:
        middle = len(data) // 2
        data[middle : middle + 8] = bytes(b ^ 0x5A for b in data[middle : middle + 8])
    path.write_bytes(bytes(data))
