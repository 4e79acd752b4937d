"""Training-step benchmark: seconds per step (median, after compile), compile time, peak RSS.

    .venv/bin/python -m benchmarks.bench_train [--settings=joint256,joint128,cpu] [--steps=5]

Each setting runs in its own subprocess so its peak RSS (ru_maxrss) is its own. The step is
`jahp_jax.train.train_step`, jitted as in training, on a random batch (the input pipeline is not
timed). Writes a table to stdout and JSON to benchmarks/results/bench_train.json. The machine
load (`os.getloadavg`) is recorded with the figures: on a shared 2-core machine it matters.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from absl import app, flags

RESULTS = Path(__file__).resolve().parent / "results" / "bench_train.json"
# name -> (prior, N, M, batch, patch)
SETTINGS = {
    "joint256": ("joint", 192, 192, 8, 256),
    "joint128": ("joint", 192, 192, 8, 128),
    "cpu": ("joint", 64, 64, 8, 128),
}
# CompressAI 1.2.8 (PyTorch, CPU) on this 2-core machine, s/step and peak GiB (from the brief).
REFERENCE = {"joint256": (5.15, 2.4), "joint128": (1.05, None)}

flags.DEFINE_list("settings", list(SETTINGS), f"Which of {list(SETTINGS)}.")
flags.DEFINE_integer("steps", 5, "Timed steps per setting (median reported).")
flags.DEFINE_string("worker", None, "Internal: run one setting and print its JSON.")
flags.DEFINE_string("output", str(RESULTS), "Where the JSON goes.")
FLAGS = flags.FLAGS


def run_setting(name: str, steps: int) -> dict:
    """Compile and time the jitted train step of one setting (in this process)."""
    import functools

    import jax
    import numpy as np
    from jax.sharding import NamedSharding
    from jax.sharding import PartitionSpec as P

    from jahp_jax import train

    prior, n, m, batch, patch = SETTINGS[name]
    config = train.TrainConfig(lmbda=0.0067, prior=prior, num_filters=n, num_latents=m,
                               batch_size=batch, patch_size=patch)  # fmt: skip
    mesh = train.make_mesh()
    model = config.model_config.build()
    tx = train.create_optimizer(config)
    state = train.create_train_state(model, tx, config.seed, mesh)
    batch_sharding = NamedSharding(mesh, P(train.DATA_AXIS))
    step_fn = jax.jit(
        functools.partial(train.train_step, model=model, tx=tx, lmbda=config.lmbda,
                          distortion="mse"),
        in_shardings=(NamedSharding(mesh, P()), batch_sharding),
        donate_argnums=0,
    )  # fmt: skip
    images = np.random.default_rng(0).random((batch, patch, patch, 3), np.float32)
    x = jax.device_put(images, batch_sharding)
    start = time.perf_counter()
    compiled = step_fn.lower(state, x).compile()
    compile_s = time.perf_counter() - start
    state, stats = compiled(state, x)  # Warm-up.
    jax.block_until_ready(stats)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        state, stats = compiled(state, x)
        jax.block_until_ready(stats)
        times.append(time.perf_counter() - start)
    return {
        "setting": name, "prior": prior, "N": n, "M": m, "batch": batch, "patch": patch,
        "s_per_step": statistics.median(times), "steps_per_s": 1 / statistics.median(times),
        "step_times": times, "compile_s": compile_s,
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "devices": jax.device_count(), "platform": jax.default_backend(),
    }  # fmt: skip


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.worker:
        print("RESULT " + json.dumps(run_setting(FLAGS.worker, FLAGS.steps)))
        return
    unknown = [name for name in FLAGS.settings if name not in SETTINGS]
    if unknown:
        sys.exit(f"error: unknown setting(s) {unknown}; choose from {list(SETTINGS)}")
    rows = []
    for name in FLAGS.settings:
        load_before = os.getloadavg()
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_train", f"--worker={name}",
             f"--steps={FLAGS.steps}"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode or not lines:
            sys.exit(f"error: setting {name} failed: {proc.stderr.strip().splitlines()[-1:]}")
        row = json.loads(lines[-1][len("RESULT "):])
        row["load_before"], row["load_after"] = load_before, os.getloadavg()
        reference = REFERENCE.get(name)
        if reference:
            row["reference_s_per_step"], row["reference_peak_gib"] = reference
            row["speedup_vs_reference"] = reference[0] / row["s_per_step"]
        rows.append(row)
    print(f"{'setting':10} {'N/M':>8} {'batch':>5} {'patch':>5} {'s/step':>8} {'steps/s':>8} "
          f"{'compile s':>9} {'peak GiB':>8} {'ref s/step':>10} {'speedup':>7} {'load 1m':>8}")
    for r in rows:
        ref = f"{r['reference_s_per_step']:.2f}" if "reference_s_per_step" in r else "-"
        speed = f"{r['speedup_vs_reference']:.2f}x" if "speedup_vs_reference" in r else "-"
        print(f"{r['setting']:10} {r['N']:>4}/{r['M']:<3} {r['batch']:>5} {r['patch']:>5} "
              f"{r['s_per_step']:>8.3f} {r['steps_per_s']:>8.3f} {r['compile_s']:>9.1f} "
              f"{r['peak_rss_gib']:>8.2f} {ref:>10} {speed:>7} {r['load_before'][0]:>8.2f}")
    output = Path(FLAGS.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"rows": rows, "cpu_count": os.cpu_count()}, indent=2) + "\n")
    os.replace(tmp, output)
    print(f"wrote {output}")


if __name__ == "__main__":
    app.run(main)
