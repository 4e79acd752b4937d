"""The reference: CompressAI's train step and codecs of the same models, timed on this machine.

    REFVENV/bin/python benchmarks/reference_compressai.py [--settings=joint128,cpu] [--steps=5]
        [--codecs=mean_scale,joint] [--image=../shared/data/kodak/kodim23.png] [--repeats=3]

Runs in a separate environment with PyTorch and CompressAI (not this project's; e.g.
`python3.11 -m venv /tmp/refvenv && /tmp/refvenv/bin/pip install torch==2.13.0 compressai==1.2.8`)
and imports nothing from jahp_jax. One step = forward, CompressAI's RateDistortionLoss
(lambda 0.0067, MSE), backward, clip_grad_norm 1.0, Adam step, then the aux loss's backward and
its Adam step: what `compressai/examples/train.py` does per batch. The model is
`mbt2018` (JointAutoregressiveHierarchicalPriors) at the same N, M, batch and crop as
`benchmarks.bench_train`'s settings, on a random batch, all cores (torch's default threads).
The codecs (`--codecs`, '' for none) are CompressAI's `MeanScaleHyperprior` and
`JointAutoregressiveHierarchicalPriors` at N=M=192, random-init with g_a's last kernel scaled x20
(as in `benchmarks.bench_codec`), `update(force=True)`, then compress and decompress of one image
(best of --repeats, after one warm-up). Writes benchmarks/results/reference_compressai.json
(keeping the other section of an earlier run on the same CPU), which `bench_train` and
`bench_codec` read so that both sides of each ratio come from the same machine.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import compressai
import numpy as np
import torch
from compressai.losses import RateDistortionLoss
from compressai.models import JointAutoregressiveHierarchicalPriors, MeanScaleHyperprior
from PIL import Image

# The reference venv does not install this project: benchmarks.machine (standard library only)
# is imported from the checkout.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.machine import cpu_model, provenance, write_json  # noqa: E402

# name -> (N, M, batch, patch): the joint settings of benchmarks/bench_train.py.
SETTINGS = {"joint256": (192, 192, 8, 256), "joint128": (192, 192, 8, 128), "cpu": (64, 64, 8, 128)}
CODECS = {"mean_scale": MeanScaleHyperprior, "joint": JointAutoregressiveHierarchicalPriors}
CODEC_SIZE = 192  # N = M, as bench_codec's default
RESULTS = Path(__file__).resolve().parent / "results" / "reference_compressai.json"
KODIM23 = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak" / "kodim23.png"


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


def best_of(repeats: int, function, *args):
    """(the last result, the fewest seconds of `repeats` calls)."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = function(*args)
        best = min(best, time.perf_counter() - start)
    return result, best


@torch.no_grad()
def time_codec(name: str, image: Path, repeats: int) -> dict:
    torch.manual_seed(0)
    model = CODECS[name](N=CODEC_SIZE, M=CODEC_SIZE).eval()
    model.g_a[-1].weight.mul_(20.0)
    model.update(force=True)
    pixels = np.asarray(Image.open(image).convert("RGB"), np.float32) / 255.0
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None].contiguous()
    if x.shape[2] % 64 or x.shape[3] % 64:
        raise SystemExit(f"error: {image} is {x.shape[2]}x{x.shape[3]}; use a multiple of 64")
    compressed = model.compress(x)  # warm-up
    model.decompress(compressed["strings"], compressed["shape"])
    compressed, encode_s = best_of(repeats, model.compress, x)
    _, decode_s = best_of(repeats, model.decompress, compressed["strings"], compressed["shape"])
    size = sum(len(s[0]) for s in compressed["strings"])
    return {"prior": name, "N": CODEC_SIZE, "M": CODEC_SIZE, "image": image.name,
            "encode_s": encode_s, "decode_s": decode_s, "bytes": size}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settings", default="joint128,cpu")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--codecs", default="mean_scale,joint")
    parser.add_argument("--image", default=str(KODIM23), help="a PNG, sides multiples of 64")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args()
    if args.codecs and not Path(args.image).is_file():  # before any timing
        raise SystemExit(f"error: no image {args.image}; give --image=PNG (or --codecs='')")
    output = Path(args.output)
    earlier = json.loads(output.read_text()) if output.is_file() else {}
    if earlier.get("cpu") != cpu_model():
        earlier = {}
    rows, codecs = [], []
    for name in filter(None, args.settings.split(",")):
        load = os.getloadavg()[0]
        row = time_setting(name, args.steps)
        row["load_before"], row["load_after"] = load, os.getloadavg()[0]
        row.update(provenance())  # rows of several runs can share the file
        rows.append(row)
        print(f"CompressAI {name}: {row['s_per_step']:.3f} s/step (load {load:.2f})", flush=True)
    for name in filter(None, args.codecs.split(",")):
        load = os.getloadavg()[0]
        row = time_codec(name, Path(args.image), args.repeats)
        row["load_before"], row["load_after"] = load, os.getloadavg()[0]
        row.update(provenance())  # rows of several runs can share the file
        codecs.append(row)
        print(f"CompressAI {name} N=M={CODEC_SIZE}: encode {row['encode_s']:.3f} s, decode "
              f"{row['decode_s']:.3f} s, {row['bytes']} bytes (load {load:.2f})")  # fmt: skip
    result = {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
              "compressai": compressai.__version__, "threads": torch.get_num_threads(),
              "rows": rows or earlier.get("rows", []),
              "codecs": codecs or earlier.get("codecs", [])}  # fmt: skip
    write_json(output, result)


if __name__ == "__main__":
    main()
