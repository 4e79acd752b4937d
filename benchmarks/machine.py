"""The machine a benchmark ran on: CPU model, load, and its dense-matmul rate (the practical limit);
and how its figures were made: the command line, the commit and the date (`provenance`).

Every benchmark prints these beside its figures, so that figures from different machines (or from
one machine under different load) can be compared through the achieved fraction of the limit.
Imports only the standard library at module level: the reference scripts, which run in a
PyTorch venv without this project's dependencies, use it too.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

MATMUL_SIDE = 2048
BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
REFERENCE_FILE = BENCHMARKS / "results" / "reference_compressai.json"


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux, else `platform.processor()`)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def matmul_gflops(repeats: int = 5) -> float:
    """GFLOP/s of a jitted float32 2048^3 matmul on the default device (median of `repeats`)."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (MATMUL_SIDE, MATMUL_SIDE), jnp.float32)
    matmul = jax.jit(lambda a: a @ a)
    jax.block_until_ready(matmul(a))
    times = []
    for _ in range(max(repeats, 1)):
        start = time.perf_counter()
        jax.block_until_ready(matmul(a))
        times.append(time.perf_counter() - start)
    return 2.0 * MATMUL_SIDE**3 / statistics.median(times) / 1e9


def in_fresh_process(function: Callable[..., dict], *args: Any) -> dict:
    """`function(*args)` (a module-level function returning a row) in a new process of its own,
    spawned and used once, with that process's peak resident memory added as "peak_rss_gib"
    (ru_maxrss): one model's memory, not the largest of the models timed before it."""
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=context, max_tasks_per_child=1) as pool:
        return pool.submit(_with_peak_rss, function, *args).result()


def _with_peak_rss(function: Callable[..., dict], *args: Any) -> dict:
    row = function(*args)
    row["peak_rss_gib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB
    return row


def selected_models(
    models: str | list[str], known: tuple[str, ...], skipped: dict[str, str] | None = None
) -> list[str]:
    """The --models (comma-separated or a list) checked against `known`: an unknown name, or none
    left to time, prints one error line and exits 2. A selected name in `skipped` (name -> why,
    e.g. the reference scripts' tcm without --tcm) is dropped with a note."""
    names = [name for name in (models.split(",") if isinstance(models, str) else models) if name]
    unknown = sorted(set(names) - set(known))
    if unknown:
        print(f"error: unknown model(s) {unknown}; choose from {', '.join(known)}", file=sys.stderr)
        raise SystemExit(2)
    for name, why in (skipped or {}).items():
        if name in names:
            print(f"note: {why}; the {name} model is skipped")
            names.remove(name)
    if not names:
        print(f"error: no model to time; choose --models from {', '.join(known)} (tcm needs "
              "--tcm in the reference scripts)", file=sys.stderr)  # fmt: skip
        raise SystemExit(2)
    return names


def load_average() -> float:
    """The 1-minute load average (what `uptime` prints first)."""
    return os.getloadavg()[0]


def command_line(argv: list[str] | None = None) -> str:
    """The command that ran this process, as one would type it in the repository root:
    `python -m benchmarks.NAME ARGS` for a module, `python benchmarks/NAME.py ARGS` for a script
    (argv: `sys.argv` by default). Environment variables set on the command line are not seen."""
    argv = sys.argv if argv is None else argv
    script = Path(argv[0]).resolve()
    main_spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if main_spec is not None and main_spec.name.startswith("benchmarks."):
        start = ["python", "-m", main_spec.name]
    elif script.is_relative_to(REPO):
        start = ["python", str(script.relative_to(REPO))]
    else:
        start = ["python", argv[0]]
    return shlex.join(start + list(argv[1:]))


def commit() -> str:
    """The checkout's commit (short hash), `+changes` when tracked files outside
    benchmarks/results differ from it; "unknown" outside a git checkout."""
    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True,
                              check=False)  # fmt: skip

    try:
        head = git("rev-parse", "--short=7", "HEAD")
        changes = git("status", "--porcelain", "--untracked-files=no", "--", ".",
                      ":(exclude)benchmarks/results")  # fmt: skip
    except OSError:  # no git
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("+changes" if changes.stdout.strip() else "")


def provenance(argv: list[str] | None = None) -> dict[str, str]:
    """How a result was made: {"command", "commit", "date" (UTC, ISO 8601)}, recorded in every
    result JSON and shown by `python -m benchmarks.summary`."""
    date = datetime.now(UTC).isoformat(timespec="seconds")
    return {"command": command_line(argv), "commit": commit(), "date": date}


def write_json(path: str | Path, result: dict[str, Any]) -> None:
    """Write a result JSON atomically (a temporary file, then a rename)."""
    output = Path(path)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(output.suffix + ".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, output)
    print(f"wrote {output}")


def write_result(path: str | Path, result: dict[str, Any]) -> None:
    """Write a benchmark's result JSON (atomically), with the machine it ran on and how
    (`provenance`) added."""
    import jax

    machine = {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "machine": platform.platform(),
               "jax": jax.__version__, "backend": jax.default_backend()}  # fmt: skip
    write_json(path, {**machine, **provenance(), **result})


def reference_figures(
    path: str | Path, section: str, key: str, value: str, given: dict[str, tuple[float, str]]
) -> dict[str, tuple[float, str]]:
    """name -> (CompressAI seconds, where they come from): from the `section` rows of the JSON of
    `benchmarks/reference_compressai.py` at `path` (rows named by `key`, seconds in `value`)
    when that file was measured on this CPU, else the `given` constants (said so)."""
    file = Path(path)
    if file.is_file():
        measured = json.loads(file.read_text())
        rows = measured.get(section, [])
        if measured.get("cpu") == cpu_model() and rows:
            source = (f"CompressAI {measured['compressai']}, torch {measured['torch']}, measured "
                      f"here by benchmarks/reference_compressai.py")  # fmt: skip
            return {row[key]: (row[value], f"{source} (load {row['load_before']:.2f})")
                    for row in rows}  # fmt: skip
        print(f"note: {file} holds no '{section}' measured on this CPU ({cpu_model()}); using "
              "the given constants")  # fmt: skip
    return {name: (seconds, f"{source} (given constant)") for name, (seconds, source) in
            given.items()}  # fmt: skip
