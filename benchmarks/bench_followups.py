"""Encode and decode of one Kodak image with the follow-up models at their published sizes, against
the references measured on the same machine.

    ./launch.sh python -m benchmarks.bench_followups [--models=cheng2020-anchor,...]
        [--image=kodim23] [--repeats=2]

Each `--model` preset (cheng2020-anchor, cheng2020-attn, cheng2020-anchor-checkerboard,
elic2022-official, elic2022-chandelier, tcm) with random-init weights, g_a's last strided conv
kernel (its last layer that is a conv, not a block) scaled by --g_a_scale (as the reference
script's; Flax's and PyTorch's initialisers differ, so compare the recorded file sizes: 0.04 here
and 1 there give files of similar size): a Codec, then compress and
decompress of the image, one warm-up (compiles) and the best of --repeats, wall seconds; also
g_s alone on the decoded y_hat (`synthesis_s`, the part of the decode that is not the prior), its
FLOPs (`synthesis_gflop`, XLA's cost analysis of the compiled program: convs and dots) and rate
(`synthesis_gflops`). `best_gflops` is the fastest dense rate measured in the run: a jitted
2048^3 matmul (`matmul_gflops`) or any model's g_s. At that rate g_s takes `synthesis_floor_s`,
so with direct convolutions (no Winograd or FFT, which do fewer FLOPs) and a prior that costs
nothing, a decode can be at most `decode_speedup_bound` = reference decode / synthesis_floor_s
faster than the reference's. The
references' figures come from `benchmarks/reference_followups.py` (run in the PyTorch venv just
before, on the same CPU: its JSON is read and the ratios reference / ours are recorded only when
its CPU is this one).
Writes benchmarks/results/bench_followups.json.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from absl import flags

from benchmarks.machine import cpu_model, matmul_gflops, selected_models, write_result
from jahp_jax.cli.command import Command

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
KODAK = REPO.parent / "shared" / "data" / "kodak"
MODELS = ("cheng2020-anchor", "cheng2020-attn", "cheng2020-anchor-checkerboard",
          "elic2022-official", "elic2022-chandelier", "tcm")  # fmt: skip

COMMAND = Command("python -m benchmarks.bench_followups", __doc__)
FLAGS = COMMAND.flags
flags.DEFINE_list("models", list(MODELS), "The --model presets to time.", flag_values=FLAGS)
flags.DEFINE_string("image", "kodim23", "Kodak image name.", flag_values=FLAGS)
flags.DEFINE_string("kodak_dir", str(KODAK), "Folder of the Kodak PNGs.", flag_values=FLAGS)
flags.DEFINE_integer("repeats", 2, "Timed runs after the warm-up (best reported).",
                     flag_values=FLAGS)  # fmt: skip
flags.DEFINE_float("g_a_scale", 1.0, "Factor of g_a's last strided conv kernel (the reference "
                   "script's --g_a_scale).", flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("reference", str(RESULTS / "reference_followups.json"), "The references' "
                    "timings (benchmarks/reference_followups.py).", flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("output", str(RESULTS / "bench_followups.json"), "Result JSON.",
                    flag_values=FLAGS)  # fmt: skip


def time_model(name: str, image, repeats: int, g_a_scale: float) -> dict:
    import jax
    import numpy as np

    from jahp_jax.coding.codec import Codec
    from jahp_jax.coding.programs import compiled_functions
    from jahp_jax.models.compression_model import CompressionModel, init_params
    from jahp_jax.models.config import ModelConfig
    from jahp_jax.models.presets import MODELS as PRESETS

    model = CompressionModel(ModelConfig(**PRESETS[name].fields()))
    params = jax.tree_util.tree_map(np.asarray, init_params(model, jax.random.key(0)))
    convs = sorted((key for key in params["g_a"] if "kernel" in params["g_a"][key]),
                   key=lambda key: int(key.rsplit("_", 1)[-1]))  # fmt: skip
    last = params["g_a"][convs[-1]]
    params["g_a"][convs[-1]] = {**last, "kernel": last["kernel"] * g_a_scale}
    start = time.perf_counter()
    codec = Codec(model, params)
    setup_s = time.perf_counter() - start
    synthesis = compiled_functions(model)["synthesis"]
    encode, decode, synthesize = [], [], []
    for _ in range(repeats + 1):  # the first compiles
        start = time.perf_counter()
        data = codec.compress(image)
        encode.append(time.perf_counter() - start)
        start = time.perf_counter()
        _, y_hat = codec.decompress_with_latents(data)
        decode.append(time.perf_counter() - start)
        y_hat = y_hat[None].astype(np.float32)
        start = time.perf_counter()
        jax.block_until_ready(synthesis(params, y_hat))
        synthesize.append(time.perf_counter() - start)
    gflop = synthesis.lower(params, y_hat).cost_analysis()["flops"] / 1e9
    return {"model": name, "bytes": len(data), "encode_s": min(encode[1:]),
            "decode_s": min(decode[1:]), "synthesis_s": min(synthesize[1:]),
            "synthesis_gflop": gflop,
            "first_encode_s": encode[0], "first_decode_s": decode[0],
            "setup_s": setup_s}  # fmt: skip


def _benchmark(_: list[str]) -> int:
    args = FLAGS
    names = selected_models(args.models, MODELS)
    from jahp_jax.io.images import read_image
    from jahp_jax.runtime import enable_compilation_cache

    enable_compilation_cache()
    image = read_image(Path(args.kodak_dir) / f"{args.image}.png")
    reference_path = Path(args.reference)
    reference = json.loads(reference_path.read_text()) if reference_path.is_file() else {}
    same_cpu = reference.get("cpu") == cpu_model()
    references = {row["model"]: row for row in reference.get("rows", [])} if same_cpu else {}
    limit = matmul_gflops()
    print(f"dense matmul 2048^3: {limit:.1f} GFLOP/s", flush=True)
    rows = []
    for name in names:
        load = os.getloadavg()[0]
        row = time_model(name, image, args.repeats, args.g_a_scale)
        row["load_before"], row["load_after"] = load, os.getloadavg()[0]
        row["synthesis_gflops"] = row["synthesis_gflop"] / row["synthesis_s"]
        if name in references:
            ref = references[name]
            row["reference_encode_s"], row["reference_decode_s"] = ref["encode_s"], ref["decode_s"]
            row["reference_bytes"] = ref["bytes"]
            row["decode_speedup"] = ref["decode_s"] / row["decode_s"]
            row["encode_speedup"] = ref["encode_s"] / row["encode_s"]
        rows.append(row)
        versus = (f" (reference {row['reference_decode_s']:.2f} s: {row['decode_speedup']:.2f}x)"
                  if "decode_speedup" in row else "")  # fmt: skip
        print(f"{name}: encode {row['encode_s']:.2f} s, decode {row['decode_s']:.2f} s{versus} "
              f"(g_s {row['synthesis_s']:.2f} s: {row['synthesis_gflop']:.0f} GFLOP at "
              f"{row['synthesis_gflops']:.0f} GFLOP/s), "
              f"{row['bytes']} bytes (load {load:.2f})", flush=True)  # fmt: skip
    best = max([limit] + [row["synthesis_gflops"] for row in rows])
    for row in rows:
        row["synthesis_floor_s"] = row["synthesis_gflop"] / best
        if "decode_speedup" in row:
            row["decode_speedup_bound"] = row["reference_decode_s"] / row["synthesis_floor_s"]
            print(f"{row['model']}: g_s at {best:.0f} GFLOP/s takes "
                  f"{row['synthesis_floor_s']:.2f} s, so a decode is at most "
                  f"{row['decode_speedup_bound']:.2f}x faster than the reference's")  # fmt: skip
    write_result(args.output, {"image": args.image, "repeats": args.repeats,
                               "matmul_gflops": limit, "best_gflops": best,
                               "g_a_scale": args.g_a_scale,
                               "reference": reference_path.name if references else None,
                               "reference_date": reference.get("date") if references else None,
                               "rows": rows})  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    return COMMAND.run(_benchmark, argv)


if __name__ == "__main__":
    raise SystemExit(main())
