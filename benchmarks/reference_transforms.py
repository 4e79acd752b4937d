"""The references' transforms, forward + backward, timed on this machine (bench_transforms' other
column).

    REFVENV/bin/python benchmarks/reference_transforms.py [--models=cheng2020-anchor,...]
        [--tcm=/path/to/LIC_TCM/models/tcm.py] [--batch=8] [--patch=256] [--repeats=3]

Runs in a separate environment with PyTorch, einops and CompressAI 1.2.8 (e.g.
`python3.11 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install torch einops compressai==1.2.8`;
the recorded figures used torch 2.13.0+cpu, installed after those with `pip install --no-deps
--force-reinstall torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu` and
`pip uninstall torchvision`)
and imports nothing from jahp_jax. One step, as `benchmarks.bench_transforms` times it: the MSE of
g_s(g_a(x)) against x on a random batch, then its backward to every parameter of both
transforms (a fresh graph each step, gradients zeroed), in wall and in process CPU seconds; each
model in a process of its own, whose peak resident memory is recorded.
Models: CompressAI's Cheng2020Anchor and
Cheng2020Attention (N = 192), Elic2022Official (N = 192, M = 320), and the authors' TCM
(N = 128, M = 320; `models/tcm.py` of github.com/jmliu206/LIC_TCM, given by --tcm, skipped
without it). torchvision and timm are not needed: CompressAI imports torchvision only for its
registry of data transforms and TCM imports timm only for a weight initialiser, so stand-ins for
both are put in `sys.modules`. All cores (torch's default threads). Writes
benchmarks/results/reference_transforms.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import sys
import time
import types
from pathlib import Path

import torch

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

RESULTS = Path(__file__).resolve().parent / "results" / "reference_transforms.json"
MODELS = ("cheng2020-anchor", "cheng2020-attn", "elic2022", "tcm")


def stand_ins() -> None:
    """Empty torchvision.transforms and timm's two layer helpers (see the module docstring)."""
    torchvision = types.ModuleType("torchvision")
    torchvision.transforms = types.ModuleType("torchvision.transforms")
    sys.modules.update({"torchvision": torchvision,
                        "torchvision.transforms": torchvision.transforms})  # fmt: skip
    layers = types.ModuleType("timm.models.layers")
    layers.trunc_normal_ = torch.nn.init.trunc_normal_

    class DropPath(torch.nn.Module):
        def __init__(self, rate: float):
            raise NotImplementedError("TCM is timed with drop_path_rate 0")

    layers.DropPath = DropPath
    timm, models = types.ModuleType("timm"), types.ModuleType("timm.models")
    timm.models, models.layers = models, layers
    sys.modules.update({"timm": timm, "timm.models": models, "timm.models.layers": layers})


def build(name: str, tcm_path: Path | None) -> tuple[torch.nn.Module, int, int]:
    """(the model, N, M)."""
    import compressai.models

    if name == "cheng2020-anchor":
        return compressai.models.Cheng2020Anchor(N=192), 192, 192
    if name == "cheng2020-attn":
        return compressai.models.Cheng2020Attention(N=192), 192, 192
    if name == "elic2022":
        return compressai.models.Elic2022Official(N=192, M=320), 192, 320
    spec = importlib.util.spec_from_file_location("lic_tcm", tcm_path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.TCM(N=128, M=320), 128, 320


def time_model(name: str, tcm_path: Path | None, batch: int, patch: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model, n, m = build(name, tcm_path)
    model.train()
    parameters = [*model.g_a.parameters(), *model.g_s.parameters()]
    x = torch.rand(batch, 3, patch, patch)

    def step() -> None:
        for parameter in parameters:
            parameter.grad = None
        torch.mean(torch.square(model.g_s(model.g_a(x)) - x)).backward()

    start = time.perf_counter()
    step()
    first_s = time.perf_counter() - start
    times, cpu_times = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu_start)
    return {"model": name, "N": n, "M": m, "batch": batch, "patch": patch,
            "params": sum(p.numel() for p in parameters),
            "s_per_step": statistics.median(times), "step_times": times,
            "cpu_s_per_step": statistics.median(cpu_times),
            "first_step_s": first_s}  # fmt: skip


def tcm_skipped(tcm_path: Path | None) -> dict[str, str]:
    """`selected_models`' `skipped` for --tcm: tcm, unless its file is given."""
    return {} if tcm_path is not None and tcm_path.is_file() else {"tcm": "no --tcm file"}


def measure(name: str, tcm_path: Path | None, batch: int, patch: int, repeats: int) -> dict:
    """`time_model` in a process of its own (`in_fresh_process`), the stand-ins installed."""
    stand_ins()
    return time_model(name, tcm_path, batch, patch, repeats)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--tcm", type=Path, help="LIC_TCM's models/tcm.py (for the tcm model)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--patch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args()
    names = selected_models(args.models, MODELS, tcm_skipped(args.tcm))
    stand_ins()
    import compressai

    rows = []
    for name in names:
        load = os.getloadavg()[0]
        row = in_fresh_process(measure, name, args.tcm, args.batch, args.patch, args.repeats)
        row["load_before"], row["load_after"] = load, os.getloadavg()[0]
        row.update(provenance())  # rows of several runs can share the file
        rows.append(row)
        print(f"{name}: {row['s_per_step']:.2f} s/step, {row['cpu_s_per_step']:.2f} CPU-s/step, "
              f"peak {row['peak_rss_gib']:.2f} GiB (first {row['first_step_s']:.1f} s, load "
              f"{load:.2f})", flush=True)  # fmt: skip
    output = Path(args.output)
    earlier = json.loads(output.read_text()) if output.is_file() else {}
    if earlier.get("cpu") == cpu_model():  # keep the other models of an earlier run here
        rows += [row for row in earlier.get("rows", []) if row["model"] not in names]
    result = {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
              "compressai": compressai.__version__, "threads": torch.get_num_threads(),
              "rows": rows}  # fmt: skip
    write_json(output, result)


if __name__ == "__main__":
    main()
