"""Per-op profile of the joint model's convolutions: FLOPs, ms and GFLOP/s, stock XLA vs ours.

    .venv/bin/python -m benchmarks.bench_conv [--size=192] [--batch=8] [--patch=128] [--repeats=3]

Every conv of the joint model (g_a, h_a, h_s, context, entropy parameters, g_s) is a strided conv
S with a (k, k, I, O) kernel; training runs three ops per layer: S, its transpose S^T (the input
gradient of a conv, the forward pass of a transposed conv and of decoding) and the weight
gradient dW. Each op is jitted alone and timed with
`jahp_jax.nn.layers.conv_implementation('stock')`
(XLA's conv ops and their autodiff) and with 'auto' (what this machine's backend gets), the
repetitions interleaved, and set against the dense-matmul rate measured in the same run (the
machine's practical limit). GDN's 1x1 normalisation is not among them (`bench_pointwise` times
such products). Writes a Markdown table
to stdout and JSON to benchmarks/results/bench_conv.json; `uptime`'s load is recorded beside it.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
from absl import flags

from benchmarks.flops import conv_flops, joint_layers
from benchmarks.machine import cpu_model, matmul_gflops, write_result
from jahp_jax.cli.command import Command
from jahp_jax.nn import layers

RESULTS = Path(__file__).resolve().parent / "results" / "bench_conv.json"
OPS = ("S", "S^T", "dW")


def layer_ops(
    batch: int, side: int, k: int, stride: int, c_in: int, c_out: int
) -> tuple[dict[str, tuple[Callable, tuple]], float]:
    """The three ops of one layer as (function, arguments), and the FLOPs of each."""
    keys = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(keys[0], (batch, side, side, c_in), jnp.float32)
    kernel = jax.random.normal(keys[1], (k, k, c_in, c_out), jnp.float32) / (k * c_in**0.5)
    out_side = -(-side // stride)
    g = jax.random.normal(keys[2], (batch, out_side, out_side, c_out), jnp.float32)

    def weight_grad(x, g):
        return jax.vjp(lambda w: layers.strided_conv(x, w, stride), kernel)[1](g)[0]

    ops = {
        "S": (lambda x, w: layers.strided_conv(x, w, stride), (x, kernel)),
        "S^T": (lambda g, w: layers.conv_transpose(g, w, stride), (g, kernel)),
        "dW": (weight_grad, (x, g)),
    }
    return ops, conv_flops(batch, side, k, stride, c_in, c_out)


def compiled_layer_ops(
    batch: int, side: int, k: int, stride: int, c_in: int, c_out: int
) -> tuple[dict[tuple[str, str], tuple[Callable, tuple]], float]:
    """The layer's three ops compiled with XLA's stock convs and with ours ('auto'): {(
    implementation, op): (compiled, arguments)}, and the FLOPs of each op. Each implementation
    traces functions of its own: jax caches a trace per function object, without the
    implementation choice, so reusing one function would compile the first choice twice."""
    compiled = {}
    for implementation in ("stock", "auto"):
        functions, flops = layer_ops(batch, side, k, stride, c_in, c_out)
        with layers.conv_implementation(implementation):
            for op, (function, op_args) in functions.items():
                program = jax.jit(function).lower(*op_args).compile()
                compiled[(implementation, op)] = (program, op_args)
    return compiled, flops


def time_interleaved(functions: dict[str, tuple[Callable, tuple]], repeats: int) -> dict:
    """Median seconds of each compiled function, the repetitions interleaved."""
    for function, args in functions.values():
        jax.block_until_ready(function(*args))
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, (function, args) in functions.items():
            start = time.perf_counter()
            jax.block_until_ready(function(*args))
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(values) for name, values in times.items()}


COMMAND = Command("python -m benchmarks.bench_conv", __doc__)
FLAGS = COMMAND.flags
flags.DEFINE_integer("size", 192, "N = M.", flag_values=FLAGS)
flags.DEFINE_integer("batch", 8, "Batch size.", flag_values=FLAGS)
flags.DEFINE_integer("patch", 128, "Crop side.", flag_values=FLAGS)
flags.DEFINE_integer("repeats", 3, "Timed runs (median reported).", flag_values=FLAGS)
flags.DEFINE_string("output", str(RESULTS), "Where the JSON goes.", flag_values=FLAGS)


def main(argv: list[str] | None = None) -> int:
    return COMMAND.run(_bench_conv, argv)


def _bench_conv(_: list[str]) -> None:
    args = FLAGS
    load_before = os.getloadavg()
    limit = matmul_gflops(args.repeats)
    rows = []
    for name, side, k, stride, c_in, c_out in joint_layers(args.size, args.patch):
        jitted, flops = compiled_layer_ops(args.batch, side, k, stride, c_in, c_out)
        seconds = time_interleaved(jitted, args.repeats)
        for op in OPS:
            stock, ours = seconds[("stock", op)], seconds[("auto", op)]
            rows.append({
                "layer": name, "op": op, "gflop": flops / 1e9,
                "stock_ms": 1e3 * stock, "ours_ms": 1e3 * ours,
                "stock_gflops": flops / stock / 1e9, "ours_gflops": flops / ours / 1e9,
                "ours_fraction_of_limit": flops / ours / 1e9 / limit,
            })  # fmt: skip
            row = rows[-1]
            print(
                f"{name:24} {op:4} {row['gflop']:7.3f} GFLOP  stock {row['stock_ms']:8.1f} ms "
                f"{row['stock_gflops']:6.1f} GFLOP/s  ours {row['ours_ms']:8.1f} ms "
                f"{row['ours_gflops']:6.1f} GFLOP/s",
                flush=True,
            )
    totals = {key: sum(row[key] for row in rows) for key in ("gflop", "stock_ms", "ours_ms")}
    load_after = os.getloadavg()
    print()
    print(f"CPU {cpu_model()}, {os.cpu_count()} cores; dense matmul 2048^3: {limit:.1f} GFLOP/s; "
          f"load average {load_before[0]:.2f} -> {load_after[0]:.2f}")  # fmt: skip
    print(f"joint N=M={args.size}, batch {args.batch}, {args.patch}x{args.patch}, "
          f"backend {jax.default_backend()}, jax {jax.__version__}")  # fmt: skip
    print()
    print(
        "| layer | op | GFLOP | stock ms | stock GFLOP/s | ours ms | ours GFLOP/s | ours / limit |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['layer']} | {row['op']} | {row['gflop']:.3f} | {row['stock_ms']:.1f} | "
              f"{row['stock_gflops']:.1f} | {row['ours_ms']:.1f} | {row['ours_gflops']:.1f} | "
              f"{row['ours_fraction_of_limit']:.0%} |")  # fmt: skip
    print(f"| all convs | | {totals['gflop']:.2f} | {totals['stock_ms']:.0f} | "
          f"{totals['gflop'] / totals['stock_ms'] * 1e3:.1f} | {totals['ours_ms']:.0f} | "
          f"{totals['gflop'] / totals['ours_ms'] * 1e3:.1f} | "
          f"{totals['gflop'] / totals['ours_ms'] * 1e3 / limit:.0%} |")  # fmt: skip
    result = {
        "matmul_gflops": limit,
        "size": args.size, "batch": args.batch, "patch": args.patch, "repeats": args.repeats,
        "loadavg_before": load_before, "loadavg_after": load_after, "totals": totals,
        "rows": rows,
    }  # fmt: skip
    write_result(args.output, result)


if __name__ == "__main__":
    raise SystemExit(main())
