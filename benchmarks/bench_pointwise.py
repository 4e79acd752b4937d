"""1x1 convs (products over channels): YNNPACK's matmul against oneDNN's conv, by positions.

    .venv/bin/python -m benchmarks.bench_pointwise [--repeats=7]

A 1x1 conv, GDN's gamma and a Dense layer of the attention blocks multiply a (positions, I)
matrix by an (I, O) one. On CPU, `jahp_jax.nn.layers` runs it as a matmul (`_POINTWISE`, which
XLA hands to YNNPACK) below `layers.ONEDNN_POINTWISE_POSITIONS` positions and as XLA's 1x1 conv
(`_ONEDNN_POINTWISE`, in oneDNN under the default `JAHP_CPU_CONVS`) from there on. For the models'
widths (I -> O) and positions from 16 (a coding step) to 98304 (TCM's H/2 map of a 768x512
image) this times both: the forward product (decoding), and forward + input gradient + weight
gradient (training, each path's custom VJP), the repetitions interleaved, median ms. Writes
benchmarks/results/bench_pointwise.json.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
from absl import flags

from benchmarks.bench_conv import time_interleaved
from benchmarks.machine import cpu_model, write_result
from jahp_jax import runtime
from jahp_jax.cli.command import Command
from jahp_jax.nn import layers

RESULTS = Path(__file__).resolve().parent / "results" / "bench_pointwise.json"
# (I, O): GDN at N = 192, TCM's conv1_1 / qkv / MLP, TCM's slice transform at 48x32, the joint
# model's first entropy-parameter layer (M = 192: 12 M / 3 -> 10 M / 3)
WIDTHS = ((192, 192), (256, 256), (128, 384), (128, 512), (320, 224), (768, 640))
POSITIONS = (16, 64, 256, 1024, 4096, 16384, 98304)
MAX_GFLOP = 20.0  # skip the (width, positions) pairs of more forward FLOPs than this
PATHS = {"matmul": layers._POINTWISE, "onednn": layers._ONEDNN_POINTWISE}

COMMAND = Command("python -m benchmarks.bench_pointwise", __doc__)
FLAGS = COMMAND.flags
flags.DEFINE_integer("repeats", 7, "Timed runs of each op (median reported).", flag_values=FLAGS)
flags.DEFINE_string("output", str(RESULTS), "Where the JSON goes.", flag_values=FLAGS)


def main(argv: list[str] | None = None) -> int:
    return COMMAND.run(_bench_pointwise, argv)


def _programs(positions: int, c_in: int, c_out: int) -> dict:
    """{(path, 'forward' | 'train'): (compiled, arguments)} for one width and position count."""
    keys = jax.random.split(jax.random.key(0), 3)
    x = jax.random.normal(keys[0], (1, positions, 1, c_in), jnp.float32)
    kernel = jax.random.normal(keys[1], (1, 1, c_in, c_out), jnp.float32) / c_in**0.5
    g = jax.random.normal(keys[2], (1, positions, 1, c_out), jnp.float32)
    programs = {}
    for name, path in PATHS.items():
        conv = layers._conv_with_vjp(path)

        def forward(x, kernel, conv=conv):
            return conv(x, kernel, 1)

        def train(x, kernel, g, conv=conv):
            y, pullback = jax.vjp(lambda x, kernel: conv(x, kernel, 1), x, kernel)
            return y, pullback(g)

        programs[(name, "forward")] = (jax.jit(forward).lower(x, kernel).compile(), (x, kernel))
        programs[(name, "train")] = (jax.jit(train).lower(x, kernel, g).compile(), (x, kernel, g))
    return programs


def _bench_pointwise(_: list[str]) -> int:
    if jax.default_backend() != "cpu" or not runtime.convs_in_onednn():
        print("error: this compares XLA:CPU's matmul with its oneDNN conv; run it on CPU without "
              f"{runtime.CPU_CONVS_ENV}=xla")  # fmt: skip
        return 2
    rows = []
    print(f"CPU {cpu_model()}; median of {FLAGS.repeats} ms, matmul / oneDNN conv")
    for c_in, c_out in WIDTHS:
        for positions in POSITIONS:
            if 2 * positions * c_in * c_out / 1e9 > MAX_GFLOP:
                continue
            seconds = time_interleaved(_programs(positions, c_in, c_out), FLAGS.repeats)
            row = {"c_in": c_in, "c_out": c_out, "positions": positions}
            for kind in ("forward", "train"):
                matmul, onednn = seconds[("matmul", kind)], seconds[("onednn", kind)]
                row |= {f"{kind}_matmul_ms": 1e3 * matmul, f"{kind}_onednn_ms": 1e3 * onednn,
                        f"{kind}_onednn_speedup": matmul / onednn}  # fmt: skip
            rows.append(row)
            print(f"{c_in:4} -> {c_out:4} at {positions:6} positions: forward "
                  f"{row['forward_matmul_ms']:8.3f} / {row['forward_onednn_ms']:8.3f} ms "
                  f"({row['forward_onednn_speedup']:.2f}x); train {row['train_matmul_ms']:8.3f} "
                  f"/ {row['train_onednn_ms']:8.3f} ms ({row['train_onednn_speedup']:.2f}x)",
                  flush=True)  # fmt: skip
    write_result(FLAGS.output, {"repeats": FLAGS.repeats,
                                "threshold_positions": layers.ONEDNN_POINTWISE_POSITIONS,
                                "rows": rows})  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
