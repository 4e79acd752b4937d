"""The follow-up references' codecs, timed on this machine (bench_followups' other column).

    REFVENV/bin/python benchmarks/reference_followups.py [--models=cheng2020-anchor,...]
        [--tcm=/path/to/LIC_TCM/models/tcm.py] [--image=../shared/data/kodak/kodim23.png]
        [--repeats=2]

Runs in the reference environment of `benchmarks/reference_transforms.py` (PyTorch, einops,
CompressAI 1.2.8; its stand-ins for torchvision and timm) and imports nothing from jahp_jax. Each
model at its published size (CompressAI's Cheng2020Anchor, Cheng2020Attention,
Cheng2020AnchorCheckerboard with N = 192; Elic2022Official and Elic2022Chandelier with N = 192,
M = 320; the authors' TCM with N = 128, M = 320, given by --tcm), random-init with g_a's last
strided conv kernel scaled by --g_a_scale (so that y is not all zeros; bench_followups' too),
`update(force=True)`, then compress and decompress of one Kodak image: one warm-up, then the best
of --repeats, wall seconds, all cores. Writes benchmarks/results/reference_followups.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.machine import cpu_model, provenance, selected_models, write_json  # noqa: E402
from benchmarks.reference_transforms import stand_ins, tcm_skipped  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "reference_followups.json"
KODIM23 = Path(__file__).resolve().parents[2] / "shared" / "data" / "kodak" / "kodim23.png"
MODELS = ("cheng2020-anchor", "cheng2020-attn", "cheng2020-anchor-checkerboard",
          "elic2022-official", "elic2022-chandelier", "tcm")  # fmt: skip


def build(name: str, tcm_path: Path | None) -> torch.nn.Module:
    import compressai.models as models

    if name == "tcm":
        spec = importlib.util.spec_from_file_location("lic_tcm", tcm_path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module.TCM(N=128, M=320)
    return {
        "cheng2020-anchor": lambda: models.Cheng2020Anchor(N=192),
        "cheng2020-attn": lambda: models.Cheng2020Attention(N=192),
        "cheng2020-anchor-checkerboard": lambda: models.Cheng2020AnchorCheckerboard(N=192),
        "elic2022-official": lambda: models.Elic2022Official(N=192, M=320),
        "elic2022-chandelier": lambda: models.Elic2022Chandelier(N=192, M=320),
    }[name]()


def time_codec(name: str, tcm_path: Path | None, image: np.ndarray, repeats: int,
               g_a_scale: float) -> dict:
    torch.manual_seed(0)
    model = build(name, tcm_path).eval()
    last = [m for m in model.g_a.modules()
            if isinstance(m, torch.nn.Conv2d) and m.stride == (2, 2)][-1]  # fmt: skip
    with torch.no_grad():
        last.weight.mul_(g_a_scale)
    model.update(force=True)
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    encode, decode = [], []
    with torch.no_grad():
        for _ in range(repeats + 1):  # the first is the warm-up
            start = time.perf_counter()
            out = model.compress(x)
            encode.append(time.perf_counter() - start)
            start = time.perf_counter()
            model.decompress(out["strings"], out["shape"])
            decode.append(time.perf_counter() - start)
    size = sum(len(s[0]) for s in out["strings"])
    return {"model": name, "bytes": size, "encode_s": min(encode[1:]),
            "decode_s": min(decode[1:]), "first_encode_s": encode[0],
            "first_decode_s": decode[0]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--tcm", type=Path, help="LIC_TCM's models/tcm.py (for the tcm model)")
    parser.add_argument("--image", type=Path, default=KODIM23)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--g_a_scale", type=float, default=1.0,
                        help="factor of g_a's last strided conv kernel (bench_followups' too)")
    parser.add_argument("--output", default=str(RESULTS))
    args = parser.parse_args()
    names = selected_models(args.models, MODELS, tcm_skipped(args.tcm))
    if not args.image.is_file():
        raise SystemExit(f"error: --image {args.image} is not a file")
    stand_ins()
    import compressai
    from PIL import Image

    image = np.asarray(Image.open(args.image).convert("RGB"))
    rows = []
    for name in names:
        load = os.getloadavg()[0]
        row = time_codec(name, args.tcm, image, args.repeats, args.g_a_scale)
        row["load_before"], row["load_after"] = load, os.getloadavg()[0]
        rows.append(row)
        print(f"{name}: encode {row['encode_s']:.2f} s, decode {row['decode_s']:.2f} s, "
              f"{row['bytes']} bytes (load {load:.2f})", flush=True)  # fmt: skip
    result = {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
              "compressai": compressai.__version__, "threads": torch.get_num_threads(),
              "image": args.image.name, "g_a_scale": args.g_a_scale, **provenance(),
              "rows": rows}  # fmt: skip
    write_json(args.output, result)


if __name__ == "__main__":
    main()
