"""Training-step benchmark: s/step (median, after compile) against the limit and CompressAI.

    .venv/bin/python -m benchmarks.bench_train [--settings=joint256,joint128,cpu] [--steps=5]
        [--compare_stock]

Each setting runs in its own subprocess so its peak RSS (ru_maxrss) is its own. The step is
`jahp_jax.training.train.train_step`, jitted as in training, on a random batch (the input pipeline
is not timed). Printed beside each setting: the dense-matmul rate of this machine measured in the
same run (`benchmarks.machine`), the step's FLOPs counted from the layer shapes
(`benchmarks.flops`), the achieved GFLOP/s and fraction of that limit, and the ratio to CompressAI's
s/step: measured on this machine by `benchmarks/reference_compressai.py` (in its own PyTorch
environment; read from --reference when that file names this CPU), else the REFERENCE constants of
issue 12's reference run on another machine (said so in the output). `--compare_stock` also times
the step traced with XLA's stock conv ops (`layers.conv_implementation('stock')`), the repetitions
interleaved with ours in one process (its peak RSS then covers both). Writes JSON to
benchmarks/results/bench_train.json; the load average is recorded with the figures. """

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

from benchmarks.flops import train_step_flops
from benchmarks.machine import (
    REFERENCE_FILE,
    cpu_model,
    matmul_gflops,
    reference_figures,
    write_result,
)

RESULTS = Path(__file__).resolve().parent / "results" / "bench_train.json"
# name -> (prior, N, M, batch, patch)
SETTINGS = {
    "joint256": ("joint", 192, 192, 8, 256),
    "joint128": ("joint", 192, 192, 8, 128),
    "cpu": ("joint", 64, 64, 8, 128),
}
# Given constants of a reference run, not measured by this script: CompressAI 1.2.8 on PyTorch
# 2.13 (oneDNN), same model and batch, on the 2-core AMD EPYC (AVX2) machine of issue 12:
# (s/step, where it comes from).
REFERENCE = {
    "joint128": (2.03, "CompressAI 1.2.8 reference run, issue 12"),
    "cpu": (0.357, "CompressAI 1.2.8 reference run, issue 12: 1,000 steps in 357 s incl. data"),
}

flags.DEFINE_list("settings", list(SETTINGS), f"Which of {list(SETTINGS)}.")
flags.DEFINE_integer("steps", 5, "Timed steps per setting (median reported).")
flags.DEFINE_bool("compare_stock", False, "Also time the step with XLA's stock conv ops.")
flags.DEFINE_string("worker", None, "Internal: run one setting and print its JSON.")
flags.DEFINE_string("output", str(RESULTS), "Where the JSON goes.")
flags.DEFINE_string("reference", str(REFERENCE_FILE),
                    "CompressAI timings from benchmarks/reference_compressai.py.")  # fmt: skip
FLAGS = flags.FLAGS


def run_setting(name: str, steps: int, compare_stock: bool) -> dict:
    """Compile and time the jitted train step of one setting (in this process)."""

    import jax

    from benchmarks.programs import train_step_setup
    from jahp_jax.nn import layers
    from jahp_jax.training import train

    prior, n, m, batch, patch = SETTINGS[name]
    config, model, mesh, hparams, x = train_step_setup(prior, n, m, batch, patch)
    runs = {}
    for implementation in ("auto", "stock") if compare_stock else ("auto",):
        state = train.create_train_state(config, model, mesh)
        step_fn = train.jit_train_step(config, model, mesh)
        start = time.perf_counter()
        with layers.conv_implementation(implementation):
            compiled = step_fn.lower(state, x, hparams).compile()
        compile_s = time.perf_counter() - start
        state, stats = compiled(state, x, hparams)  # Warm-up.
        jax.block_until_ready(stats)
        runs[implementation] = {"step": compiled, "state": state, "compile_s": compile_s,
                                "times": []}  # fmt: skip
    for _ in range(steps):
        for run in runs.values():
            start = time.perf_counter()
            run["state"], stats = run["step"](run["state"], x, hparams)
            jax.block_until_ready(stats)
            run["times"].append(time.perf_counter() - start)
    row = {
        "setting": name, "prior": prior, "N": n, "M": m, "batch": batch, "patch": patch,
        "s_per_step": statistics.median(runs["auto"]["times"]),
        "step_times": runs["auto"]["times"], "compile_s": runs["auto"]["compile_s"],
        "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
        "devices": jax.device_count(), "platform": jax.default_backend(),
    }  # fmt: skip
    if compare_stock:
        row["stock_s_per_step"] = statistics.median(runs["stock"]["times"])
        row["stock_step_times"] = runs["stock"]["times"]
        row["stock_compile_s"] = runs["stock"]["compile_s"]
    return row


def main(argv: list[str]) -> None:
    del argv
    if FLAGS.worker:
        print("RESULT " + json.dumps(run_setting(FLAGS.worker, FLAGS.steps, FLAGS.compare_stock)))
        return
    unknown = [name for name in FLAGS.settings if name not in SETTINGS]
    if unknown:
        sys.exit(f"error: unknown setting(s) {unknown}; choose from {list(SETTINGS)}")
    limit = matmul_gflops()
    reference = reference_figures(FLAGS.reference, "rows", "setting", "s_per_step", REFERENCE)
    rows = []
    for name in FLAGS.settings:
        load_before = os.getloadavg()
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_train", f"--worker={name}",
             f"--steps={FLAGS.steps}", f"--compare_stock={FLAGS.compare_stock}"],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        if proc.returncode or not lines:
            sys.exit(f"error: setting {name} failed: {proc.stderr.strip().splitlines()[-1:]}")
        row = json.loads(lines[-1][len("RESULT ") :])
        row["load_before"], row["load_after"] = load_before, os.getloadavg()
        _, n, _, batch, patch = SETTINGS[name]
        row["gflop_per_step"] = train_step_flops(n, batch, patch) / 1e9
        row["gflops"] = row["gflop_per_step"] / row["s_per_step"]
        row["fraction_of_limit"] = row["gflops"] / limit
        if name in reference:
            row["reference_s_per_step"], row["reference_source"] = reference[name]
            row["speedup_vs_reference"] = row["reference_s_per_step"] / row["s_per_step"]
        rows.append(row)
    print(f"CPU {cpu_model()}, {os.cpu_count()} cores; dense matmul 2048^3 (the limit): "
          f"{limit:.1f} GFLOP/s")  # fmt: skip
    print(f"{'setting':10} {'N/M':>7} {'batch':>5} {'patch':>5} {'s/step':>7} {'GFLOP':>6} "
          f"{'GFLOP/s':>7} {'limit':>5} {'stock s':>7} {'ref s':>6} {'vs ref':>6} "
          f"{'compile':>7} {'GiB':>5} {'load':>5}")  # fmt: skip
    for r in rows:
        stock = f"{r['stock_s_per_step']:.3f}" if "stock_s_per_step" in r else "-"
        ref = f"{r['reference_s_per_step']:.2f}" if "reference_s_per_step" in r else "-"
        speed = f"{r['speedup_vs_reference']:.2f}x" if "speedup_vs_reference" in r else "-"
        print(f"{r['setting']:10} {r['N']:>3}/{r['M']:<3} {r['batch']:>5} {r['patch']:>5} "
              f"{r['s_per_step']:>7.3f} {r['gflop_per_step']:>6.1f} {r['gflops']:>7.1f} "
              f"{r['fraction_of_limit']:>5.0%} {stock:>7} {ref:>6} {speed:>6} "
              f"{r['compile_s']:>7.1f} {r['peak_rss_gib']:>5.2f} "
              f"{r['load_before'][0]:>5.2f}")  # fmt: skip
    for r in rows:
        if "reference_source" in r:
            print(f"ref s ({r['setting']}): {r['reference_source']}")
    write_result(FLAGS.output, {"rows": rows, "matmul_gflops": limit})


if __name__ == "__main__":
    app.run(main)
