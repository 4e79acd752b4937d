"""The convolutions alone of a follow-up model's g_a + g_s train step, in jahp_jax and in PyTorch,
on this machine: how much of bench_transforms' ratio the convs can give.

    .venv/bin/python -m benchmarks.conv_chain --framework=jax [--models=cheng2020-anchor,elic2022]
    REFVENV/bin/python benchmarks/conv_chain.py --framework=torch [--models=...]
        [--batch=8] [--patch=256] [--repeats=3]

One step: every conv of the model's g_a then g_s (`CHAINS`, at the published widths: cheng2020
N = M = 192, ELIC N = 192, M = 320) on a random (batch, patch, patch, 3) batch, forward, then the
backward of the sum of squares of the output to every kernel. Nothing else runs: no bias,
activation, GDN, sigmoid gate or identity add, so the step costs what the convs cost. cheng2020's
1x1 and sub-pixel skip convs read their block's input and are added to the block's output (the
only adds); ELIC's attention-block branches run one after the other. Sub-pixel convs end in a
pixel shuffle, transposed convs are ELIC's 5x5/2 (PyTorch's output_padding 1). jahp_jax runs its
own conv layers (`jahp_jax.nn.layers.strided_conv`, `conv_transpose`: the CPU paths training
uses), PyTorch its `conv2d`, `conv_transpose2d` and `pixel_shuffle` on all cores. The median of
--repeats steps after a warm-up, wall seconds, each model in a process of its own.

The two environments write their rows into benchmarks/results/conv_chain.json (rows of the other
framework, and of other models, measured on this CPU are kept); once both are there for a model,
the run prints PyTorch's time over jahp_jax's. The torch run imports nothing from jahp_jax.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

# The reference venv does not install this project: benchmarks.machine (standard library only)
# is imported from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.machine import (  # noqa: E402
    cpu_model,
    in_fresh_process,
    provenance,
    selected_models,
    write_json,
)

RESULTS = Path(__file__).resolve().parent / "results" / "conv_chain.json"
FRAMEWORKS = ("jax", "torch")


def _cheng2020(n: int = 192) -> list[tuple]:
    """(op, k, in, out, stride or upscale, reads the block input) per conv; ("mark",) saves the
    block input."""
    def with_stride(i: int, o: int) -> list[tuple]:
        return [("mark",), ("conv", 3, i, o, 2, False), ("conv", 3, o, o, 1, False),
                ("conv", 1, i, o, 2, True)]  # fmt: skip

    def residual(c: int) -> list[tuple]:
        return [("conv", 3, c, c, 1, False), ("conv", 3, c, c, 1, False)]

    def upsample(c: int) -> list[tuple]:
        return [("mark",), ("subpel", 3, c, 4 * c, 2, False), ("conv", 3, c, c, 1, False),
                ("subpel", 3, c, 4 * c, 2, True)]  # fmt: skip

    g_a = [*with_stride(3, n), *residual(n), *with_stride(n, n), *residual(n),
           *with_stride(n, n), *residual(n), ("conv", 3, n, n, 2, False)]  # fmt: skip
    g_s = [*residual(n), *upsample(n), *residual(n), *upsample(n), *residual(n), *upsample(n),
           *residual(n), ("subpel", 3, n, 12, 2, False)]  # fmt: skip
    return g_a + g_s


def _elic2022(n: int = 192, m: int = 320) -> list[tuple]:
    def unit(c: int) -> list[tuple]:  # a residual bottleneck block or an attention residual unit
        return [("conv", 1, c, c // 2, 1, False), ("conv", 3, c // 2, c // 2, 1, False),
                ("conv", 1, c // 2, c, 1, False)]  # fmt: skip

    def bottlenecks(c: int) -> list[tuple]:
        return unit(c) * 3

    def attention(c: int) -> list[tuple]:  # trunk, then the mask branch with its 1x1 conv
        return unit(c) * 6 + [("conv", 1, c, c, 1, False)]

    def down(i: int, o: int) -> tuple:
        return ("conv", 5, i, o, 2, False)

    def up(i: int, o: int) -> tuple:
        return ("deconv", 5, i, o, 2, False)

    g_a = [down(3, n), *bottlenecks(n), down(n, n), *bottlenecks(n), *attention(n), down(n, n),
           *bottlenecks(n), down(n, m), *attention(m)]  # fmt: skip
    g_s = [*attention(m), up(m, n), *bottlenecks(n), up(n, n), *attention(n), *bottlenecks(n),
           up(n, n), *bottlenecks(n), up(n, 3)]  # fmt: skip
    return g_a + g_s


CHAINS = {"cheng2020-anchor": _cheng2020, "elic2022": _elic2022}


def _kernel_shapes(chain: list[tuple]) -> list[tuple[int, int, int]]:
    """(k, in, out) of every conv's kernel, in order."""
    return [(k, i, o) for op, k, i, o, *_ in (s for s in chain if s[0] != "mark")]


def _run_chain(chain: list[tuple], x, kernels, apply):
    """The chain's output from input x, in either framework: apply(op, h, kernel, k, scale) runs
    one conv; skip convs read the block input saved at the last ("mark",) and are added."""
    h, block, convs = x, x, iter(kernels)
    for spec in chain:
        if spec[0] == "mark":
            block = h
            continue
        op, k, _, _, scale, skip = spec
        if skip:
            h = h + apply(op, block, next(convs), k, scale)
        else:
            h = apply(op, h, next(convs), k, scale)
    return h


def _jax_step(chain: list[tuple], batch: int, patch: int):
    import jax
    import jax.numpy as jnp
    import numpy as np

    import jahp_jax  # noqa: F401 (XLA's CPU conv kernels, as training gets them)
    from jahp_jax.nn.blocks import pixel_shuffle
    from jahp_jax.nn.layers import conv_transpose, strided_conv

    def apply(op: str, x, kernel, k: int, scale: int):
        del k  # the kernel's shape gives it
        if op == "conv":
            return strided_conv(x, kernel, scale)
        if op == "subpel":
            return pixel_shuffle(strided_conv(x, kernel, 1), scale)
        return conv_transpose(x, jnp.swapaxes(kernel, 2, 3), scale)  # (k, k, out, in)

    def loss(kernels, x):
        return jnp.sum(jnp.square(_run_chain(chain, x, kernels, apply)))

    keys = jax.random.split(jax.random.key(0), len(_kernel_shapes(chain)) + 1)
    kernels = [jax.random.normal(key, (k, k, i, o)) / np.sqrt(k * k * i)
               for key, (k, i, o) in zip(keys[1:], _kernel_shapes(chain), strict=True)]  # fmt: skip
    x = jax.random.normal(keys[0], (batch, patch, patch, 3))
    step = jax.jit(jax.grad(loss))
    return lambda: jax.block_until_ready(step(kernels, x))


def _torch_step(chain: list[tuple], batch: int, patch: int):
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    kernels = []
    for k, i, o in _kernel_shapes(chain):
        kernels.append((torch.randn(o, i, k, k) / (k * k * i) ** 0.5).requires_grad_())
    x = torch.randn(batch, 3, patch, patch)

    def apply(op: str, h, kernel, k: int, scale: int):
        if op == "conv":
            return F.conv2d(h, kernel, stride=scale, padding=k // 2)
        if op == "subpel":
            return F.pixel_shuffle(F.conv2d(h, kernel, padding=k // 2), scale)
        # ConvTranspose2d's weight is (in, out, k, k): the (out, in) kernel transposed
        return F.conv_transpose2d(h, kernel.transpose(0, 1), stride=scale, padding=k // 2,
                                  output_padding=scale - 1)  # fmt: skip

    def step() -> None:
        (_run_chain(chain, x, kernels, apply) ** 2).sum().backward()
        for kernel in kernels:
            kernel.grad = None

    return step


def time_chain(name: str, framework: str, batch: int, patch: int, repeats: int) -> dict:
    """One model's chain in one framework: median wall seconds per step (a module-level function,
    so that `in_fresh_process` can run it)."""
    chain = CHAINS[name]()
    make = _jax_step if framework == "jax" else _torch_step
    start = time.perf_counter()
    step = make(chain, batch, patch)
    step()
    first_s = time.perf_counter() - start
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    if framework == "jax":
        import jax

        version = jax.__version__
    else:
        import torch

        version = torch.__version__
    return {"model": name, "framework": framework, "version": version, "batch": batch,
            "patch": patch, "convs": len(_kernel_shapes(chain)),
            "s_per_step": statistics.median(times), "step_times": times,
            "first_step_s": first_s}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--framework", choices=FRAMEWORKS, required=True)
    parser.add_argument("--models", default=",".join(CHAINS))
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args(argv)
    names = selected_models(args.models, tuple(CHAINS))
    if args.batch < 1 or args.repeats < 1 or args.patch < 16 or args.patch % 16:
        print("error: need --batch and --repeats >= 1 and --patch a multiple of 16; got "
              f"{args.batch}, {args.repeats}, {args.patch}", file=sys.stderr)  # fmt: skip
        return 2
    output = Path(args.output)
    earlier = json.loads(output.read_text()) if output.is_file() else {}
    kept = earlier.get("rows", []) if earlier.get("cpu") == cpu_model() else []
    rows = []
    for name in names:
        row = in_fresh_process(time_chain, name, args.framework, args.batch, args.patch,
                               args.repeats)  # fmt: skip
        row.update(provenance())
        rows.append(row)
        print(f"{name} ({args.framework} {row['version']}): {row['convs']} convs, "
              f"{row['s_per_step']:.2f} s/step, peak {row['peak_rss_gib']:.2f} GiB", flush=True)
    new = {(row["model"], row["framework"]) for row in rows}
    rows += [row for row in kept if (row["model"], row["framework"]) not in new]
    by_key = {(row["model"], row["framework"]): row for row in rows}
    for name in names:
        ours, torch_row = by_key.get((name, "jax")), by_key.get((name, "torch"))
        if ours and torch_row and ours["batch"] == torch_row["batch"] \
                and ours["patch"] == torch_row["patch"]:  # fmt: skip
            ratio = torch_row["s_per_step"] / ours["s_per_step"]
            ours["torch_s_per_step"], ours["speedup_vs_torch"] = torch_row["s_per_step"], ratio
            print(f"{name}: the convs alone, PyTorch {torch_row['s_per_step']:.2f} s / jahp_jax "
                  f"{ours['s_per_step']:.2f} s = {ratio:.2f}x")  # fmt: skip
    rows.sort(key=lambda row: (row["model"], row["framework"]))
    write_json(output, {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
