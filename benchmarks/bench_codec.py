"""Encode/decode speed and rate overhead of the .jahp codec, one Kodak image, every prior.

    .venv/bin/python -m benchmarks.bench_codec [--image=kodim23] [--priors=joint,mean_scale]

Models are N=M=192 with random-init weights, g_a's last conv kernel scaled x20 so that y is not
all zeros (timing only: the rates are those of an untrained model). Per prior: the first
compress + decompress (compile included), then the best of --repeats steady-state runs. Checks
that the round trip is exact (decoded y_hat == encoder's y_hat). Writes
benchmarks/results/bench_codec.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import jax
import numpy as np

from jahp_jax.codec import Codec
from jahp_jax.data import read_image
from jahp_jax.models import PRIORS, create_model, init_params

REPO = Path(__file__).resolve().parents[1]
KODAK = REPO.parent / "shared" / "data" / "kodak"


def _timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def bench_prior(prior: str, image: np.ndarray, repeats: int, size: int) -> dict:
    model = create_model(prior, size, size)
    params = init_params(model, jax.random.key(0))
    layer = params["g_a"]["layers_6"]
    params["g_a"]["layers_6"] = {**layer, "kernel": layer["kernel"] * 20.0}
    codec, setup_s = _timed(Codec, model, params)
    (data, stats), first_encode_s = _timed(codec.compress_with_stats, image)
    (decoded, y_hat), first_decode_s = _timed(codec.decompress_with_latents, data)
    exact = bool(np.array_equal(y_hat, stats.y_hat)) and bool(
        np.array_equal(decoded, codec.reconstruct(stats.y_hat, *image.shape[:2]))
    )
    encode_s = min(_timed(codec.compress, image)[1] for _ in range(repeats))
    decode_s = min(_timed(codec.decompress, data)[1] for _ in range(repeats))
    return {
        "prior": prior,
        "num_filters": size,
        "num_latents": size,
        "bytes": len(data),
        "bpp": stats.bits_per_pixel,
        "estimated_bits": stats.estimated_bits,
        "estimated_bits_y": stats.bits_y,
        "estimated_bits_z": stats.bits_z,
        "overhead_percent": 100.0 * stats.overhead,
        "encode_s": encode_s,
        "decode_s": decode_s,
        "first_encode_s": first_encode_s,
        "first_decode_s": first_decode_s,
        "compile_encode_s": first_encode_s - encode_s,
        "compile_decode_s": first_decode_s - decode_s,
        "setup_s": setup_s,
        "exact_roundtrip": exact,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image", default="kodim23", help="Kodak image name")
    parser.add_argument("--priors", default=",".join(PRIORS), help="comma-separated priors")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=192, help="N = M")
    parser.add_argument(
        "--output", default=str(REPO / "benchmarks" / "results" / "bench_codec.json")
    )
    args = parser.parse_args()
    image = read_image(KODAK / f"{args.image}.png")
    load_before = os.getloadavg()
    rows = []
    for prior in args.priors.split(","):
        row = bench_prior(prior, image, args.repeats, args.size)
        rows.append(row)
        print(
            f"{prior:>11}: encode {row['encode_s']:.3f} s, decode {row['decode_s']:.3f} s "
            f"(compile {row['compile_encode_s']:.1f} / {row['compile_decode_s']:.1f} s), "
            f"{row['bytes']} bytes, estimated {row['estimated_bits'] / 8:.0f} bytes, "
            f"overhead {row['overhead_percent']:+.2f} %, exact={row['exact_roundtrip']}",
            flush=True,
        )
    result = {
        "image": args.image,
        "image_shape": list(image.shape),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "cpu_count": os.cpu_count(),
        "machine": platform.platform(),
        "jax": jax.__version__,
        "rows": rows,
    }
    print(f"load average (1, 5, 15 min): before {load_before}, after {result['loadavg_after']}")
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2))
    print(f"wrote {output}")


if __name__ == "__main__":
    main()
