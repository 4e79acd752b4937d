"""How fast the codec command line starts: `python -m jahp_jax.cli.codec decompress` of one image.

    python -m benchmarks.bench_cli [--image=kodim23.png] [--checkpoint=models/joint_n64_lmbda0.013]

Compresses the image once, then runs the same decompress command `--repeats` + 1 times in fresh
processes sharing one new JAX compilation cache: the first run compiles (cold), the later ones
read the cache (warm; issue 12's target: <= 3 s). Reports wall and CPU (user + sys) seconds per
run, because on a loaded machine wall time grows with the load while CPU time does not.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from absl import flags

from benchmarks.machine import cpu_model, load_average, write_result
from jahp_jax.cli.command import Command

REPO = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = REPO.parent / "shared" / "data" / "kodak" / "kodim23.png"


def _run(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall s, CPU s of the child) of one command, which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(command, env=env, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode:
        sys.exit(f"error: {' '.join(command[2:4])} failed: {proc.stderr.strip()[-300:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


COMMAND = Command("python -m benchmarks.bench_cli", __doc__)
FLAGS = COMMAND.flags
flags.DEFINE_string("image", str(DEFAULT_IMAGE), "The image to compress and decompress.",
                    flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("checkpoint", str(REPO / "models" / "joint_n64_lmbda0.013"), "The model.",
                    flag_values=FLAGS)  # fmt: skip
flags.DEFINE_integer("repeats", 3, "Warm decompress runs (median reported).", flag_values=FLAGS)
flags.DEFINE_string("output", str(REPO / "benchmarks" / "results" / "bench_cli.json"),
                    "Where the JSON goes.", flag_values=FLAGS)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    return COMMAND.run(_bench_cli, argv)


def _bench_cli(_: list[str]) -> int:
    args = FLAGS
    if not Path(args.image).is_file():
        sys.exit(f"error: no image at {args.image}; pass --image=PNG")
    load_before = load_average()
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "JAHP_COMPILATION_CACHE": str(Path(tmp) / "cache")}
        codec = [sys.executable, "-m", "jahp_jax.cli.codec"]
        jahp, png = str(Path(tmp) / "image.jahp"), str(Path(tmp) / "image.png")
        compress_s = _run([*codec, "compress", f"--checkpoint={args.checkpoint}",
                           args.image, jahp], env)  # fmt: skip
        decompress = [*codec, "decompress", f"--checkpoint={args.checkpoint}", jahp, png]
        # The compress above filled the cache with what both directions share (g_a aside);
        # a cache of its own makes the first decompress a cold start.
        cold_env = {**env, "JAHP_COMPILATION_CACHE": str(Path(tmp) / "cold")}
        cold = _run(decompress, cold_env)
        warm = [_run(decompress, cold_env) for _ in range(args.repeats)]
    result = {
        "image": Path(args.image).name,
        "checkpoint": Path(args.checkpoint).name,
        "load_average": [round(load_before, 2), round(load_average(), 2)],
        "compress_first_wall_s": round(compress_s[0], 2),
        "decompress_cold_wall_s": round(cold[0], 2),
        "decompress_cold_cpu_s": round(cold[1], 2),
        "decompress_warm_wall_s": round(statistics.median(w for w, _ in warm), 2),
        "decompress_warm_cpu_s": round(statistics.median(c for _, c in warm), 2),
    }
    print(f"{cpu_model()}, load {result['load_average']}")
    print(
        f"decompress {result['image']}: cold {cold[0]:.2f} s wall ({cold[1]:.2f} s CPU), warm "
        f"{result['decompress_warm_wall_s']:.2f} s wall ({result['decompress_warm_cpu_s']:.2f} s "
        "CPU, median) [target: warm <= 3 s]"
    )
    write_result(args.output, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
