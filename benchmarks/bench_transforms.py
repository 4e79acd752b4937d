"""Forward + backward of the follow-up models' transforms, g_s(g_a(x)), on this machine.

    .venv/bin/python -m benchmarks.bench_transforms [--models=cheng2020-anchor,...] [--batch=8]
        [--patch=256] [--repeats=3] [--reference=benchmarks/results/reference_transforms.json]

One step: the MSE of g_s(g_a(x)) against x on a random (batch, patch, patch, 3) batch and its
gradient with respect to every parameter of both transforms (`jax.value_and_grad`, jitted), at the
published sizes: cheng2020 N = M = 192 (anchor and attention), ELIC N = 192, M = 320 (the official
and Chandelier models share these transforms), TCM N = 128, M = 320. The median of --repeats steps
after a warm-up (whose time, compile included, is reported apart), in wall seconds and in CPU
seconds of the process (all its threads; on a shared machine the fairer measure of the work, as
wall time follows the other processes' load). Each model runs in a process of its own, whose peak
resident memory (compiled programs included) is recorded. The project's conv layers and
their CPU paths (`jahp_jax.nn.layers`) are used as in training. Beside it the same step of the
references (`benchmarks/reference_transforms.py`, run in a PyTorch environment) when its JSON
names this CPU and the batch is the same. Writes a Markdown table to stdout and JSON to
benchmarks/results/bench_transforms.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from benchmarks.machine import (
    cpu_model,
    in_fresh_process,
    provenance,
    selected_models,
    write_result,
)
from jahp_jax.models.transforms import cheng2020, elic2022, tcm

RESULTS = Path(__file__).resolve().parent / "results" / "bench_transforms.json"
REFERENCE = Path(__file__).resolve().parent / "results" / "reference_transforms.json"
# name -> (family module, N, M, builder options)
MODELS = {
    "cheng2020-anchor": (cheng2020, 192, 192, {}),
    "cheng2020-attn": (cheng2020, 192, 192, {"attention": True}),
    "elic2022": (elic2022, 192, 320, {}),
    "tcm": (tcm, 128, 320, {}),
}


def time_model(name: str, batch: int, patch: int, repeats: int) -> dict:
    family, n, m, options = MODELS[name]
    analysis, synthesis = family.analysis(n, m, **options), family.synthesis(n, m, **options)
    x = jax.random.uniform(jax.random.key(0), (batch, patch, patch, 3), jnp.float32)
    keys = jax.random.split(jax.random.key(1))
    params = {"g_a": analysis.init(keys[0], x[:1])["params"]}
    y = jax.eval_shape(lambda: analysis.apply({"params": params["g_a"]}, x[:1]))
    params["g_s"] = synthesis.init(keys[1], jnp.zeros(y.shape, y.dtype))["params"]

    def loss(params, x):
        y = analysis.apply({"params": params["g_a"]}, x)
        return jnp.mean(jnp.square(synthesis.apply({"params": params["g_s"]}, y) - x))

    step = jax.jit(jax.value_and_grad(loss))
    start = time.perf_counter()
    jax.block_until_ready(step(params, x))
    first_s = time.perf_counter() - start
    times, cpu_times = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        jax.block_until_ready(step(params, x))
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    count = sum(int(leaf.size) for leaf in jax.tree_util.tree_leaves(params))
    return {"model": name, "N": n, "M": m, "batch": batch, "patch": patch, "params": count,
            "s_per_step": statistics.median(times), "step_times": times,
            "cpu_s_per_step": statistics.median(cpu_times),
            "first_step_s": first_s}  # fmt: skip


def reference_rows(path: Path) -> tuple[dict[str, dict], str]:
    """The reference's rows by model, and where they come from, if measured on this CPU."""
    if not path.is_file():
        return {}, f"no {path}"
    measured = json.loads(path.read_text())
    if measured.get("cpu") != cpu_model():
        return {}, f"{path} was measured on another CPU ({measured.get('cpu')})"
    source = (f"torch {measured['torch']}, CompressAI {measured['compressai']}, "
              f"{measured['threads']} threads")  # fmt: skip
    return {row["model"]: row for row in measured["rows"]}, source


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=256, help="a multiple of 128 (TCM's windows)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--reference", default=str(REFERENCE))
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args()
    names = selected_models(args.models, tuple(MODELS))
    if args.patch % 128 or args.batch < 1 or args.repeats < 1:
        raise SystemExit("error: --patch must be a multiple of 128 (TCM's windows), --batch and "
                         "--repeats at least 1")  # fmt: skip
    reference, source = reference_rows(Path(args.reference))
    rows = []
    for name in names:
        load = os.getloadavg()[0]
        row = in_fresh_process(time_model, name, args.batch, args.patch, args.repeats)
        row["load_before"], row["load_after"] = load, os.getloadavg()[0]
        row.update(provenance())  # rows of several runs can share the file
        if name in reference and reference[name]["batch"] == args.batch:
            ref = reference[name]
            row["reference_s_per_step"] = ref["s_per_step"]
            row["reference_cpu_s_per_step"] = ref["cpu_s_per_step"]
            row["reference_load"] = ref["load_before"]
            row["speedup_vs_reference"] = ref["s_per_step"] / row["s_per_step"]
            row["cpu_speedup_vs_reference"] = ref["cpu_s_per_step"] / row["cpu_s_per_step"]
            if "peak_rss_gib" in ref:
                row["reference_peak_rss_gib"] = ref["peak_rss_gib"]
        rows.append(row)
        print(f"{name}: {row['s_per_step']:.2f} s/step, {row['cpu_s_per_step']:.2f} CPU-s/step, "
              f"peak {row['peak_rss_gib']:.2f} GiB (first {row['first_step_s']:.1f} s, load "
              f"{load:.2f})", flush=True)  # fmt: skip
    print(f"\ng_a + g_s forward + backward, batch {args.batch}, {args.patch}x{args.patch}, "
          f"{cpu_model()}; reference: {source}\n")  # fmt: skip
    print("| model | N | M | params | s/step (CPU-s) | reference s/step (CPU-s) | speedup "
          "(CPU) | peak GiB (reference's) | load (reference's) |")  # fmt: skip
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        ours = f"{r['s_per_step']:.2f} ({r['cpu_s_per_step']:.1f})"
        ref, speed, load = "-", "-", f"{r['load_before']:.1f}"
        peak = f"{r['peak_rss_gib']:.2f}"
        if "reference_s_per_step" in r:
            ref = f"{r['reference_s_per_step']:.2f} ({r['reference_cpu_s_per_step']:.1f})"
            speed = f"{r['speedup_vs_reference']:.2f}x ({r['cpu_speedup_vs_reference']:.2f}x)"
            load += f" ({r['reference_load']:.1f})"
        if "reference_peak_rss_gib" in r:
            peak += f" ({r['reference_peak_rss_gib']:.2f})"
        print(f"| {r['model']} | {r['N']} | {r['M']} | {r['params'] / 1e6:.2f} M | {ours} | "
              f"{ref} | {speed} | {peak} | {load} |")  # fmt: skip
    output = Path(args.output)
    earlier = json.loads(output.read_text()) if output.is_file() else {}
    if earlier.get("cpu") == cpu_model():  # keep the other models of an earlier run here
        rows += [row for row in earlier.get("rows", []) if row["model"] not in names]
    write_result(output, {"reference_source": source, "rows": rows})


if __name__ == "__main__":
    main()
