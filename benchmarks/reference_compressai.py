"""The reference: CompressAI's train step of the same joint model, timed on this machine.

    REFVENV/bin/python benchmarks/reference_compressai.py [--settings=joint128,cpu] [--steps=5]

Runs in a separate environment with PyTorch and CompressAI (not this project's; e.g.
`python3.11 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install torch==2.13.0 compressai==1.2.8`)
and imports nothing from jahp_jax. One step = forward, CompressAI's RateDistortionLoss
(lambda 0.0067, MSE), backward, clip_grad_norm 1.0, Adam step, then the aux loss's backward and
its Adam step: what `compressai/examples/train.py` does per batch. The model is
`mbt2018` (JointAutoregressiveHierarchicalPriors) at the same N, M, batch and crop as
`benchmarks.bench_train`'s settings, on a random batch, all cores (torch's default threads).
Writes benchmarks/results/reference_compressai.json, which `bench_train --reference=` reads so
that both sides of the ratio come from the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import compressai
import torch
from compressai.losses import RateDistortionLoss
from compressai.models import JointAutoregressiveHierarchicalPriors

# name -> (N, M, batch, patch): the joint settings of benchmarks/bench_train.py.
SETTINGS = {"joint256": (192, 192, 8, 256), "joint128": (192, 192, 8, 128), "cpu": (64, 64, 8, 128)}
RESULTS = Path(__file__).resolve().parent / "results" / "reference_compressai.json"


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def time_setting(name: str, steps: int) -> dict:
    n, m, batch, patch = SETTINGS[name]
    torch.manual_seed(0)
    model = JointAutoregressiveHierarchicalPriors(N=n, M=m).train()
    aux_names = {name for name, _ in model.named_parameters() if name.endswith(".quantiles")}
    main = [p for name, p in model.named_parameters() if name not in aux_names]
    aux = [p for name, p in model.named_parameters() if name in aux_names]
    optimizer, aux_optimizer = torch.optim.Adam(main, 1e-4), torch.optim.Adam(aux, 1e-3)
    criterion = RateDistortionLoss(lmbda=0.0067)
    x = torch.rand(batch, 3, patch, patch)

    def step() -> None:
        optimizer.zero_grad()
        aux_optimizer.zero_grad()
        loss = criterion(model(x), x)["loss"]
        loss.backward()
        torch.nn.utils.clip_grad_norm_(main, 1.0)
        optimizer.step()
        model.aux_loss().backward()
        aux_optimizer.step()

    step()  # warm-up
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return {"setting": name, "N": n, "M": m, "batch": batch, "patch": patch,
            "s_per_step": statistics.median(times), "step_times": times}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", default="joint128,cpu")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args()
    rows = []
    for name in args.settings.split(","):
        load = os.getloadavg()[0]
        row = time_setting(name, args.steps)
        row["load_before"], row["load_after"] = load, os.getloadavg()[0]
        rows.append(row)
        print(f"CompressAI {name}: {row['s_per_step']:.3f} s/step (load {load:.2f})", flush=True)
    result = {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
              "compressai": compressai.__version__, "threads": torch.get_num_threads(),
              "rows": rows}  # fmt: skip
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(tmp, output)
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
