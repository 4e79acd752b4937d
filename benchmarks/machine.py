"""The machine a benchmark ran on: CPU model, load, and its dense-matmul rate (the practical limit).

Every benchmark prints these beside its figures, so that figures from different machines (or from
one machine under different load) can be compared through the achieved fraction of the limit.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

MATMUL_SIDE = 2048
REFERENCE_FILE = Path(__file__).resolve().parent / "results" / "reference_compressai.json"


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


def load_average() -> float:
    """The 1-minute load average (what `uptime` prints first)."""
    return os.getloadavg()[0]


def write_result(path: str | Path, result: dict[str, Any]) -> None:
    """Write a benchmark's result JSON (atomically), with the machine it ran on added."""
    import jax

    machine = {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "machine": platform.platform(),
               "jax": jax.__version__, "backend": jax.default_backend()}  # fmt: skip
    output = Path(path)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(output.suffix + ".tmp")
    tmp.write_text(json.dumps({**machine, **result}, indent=2) + "\n")
    os.replace(tmp, output)
    print(f"wrote {output}")


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
