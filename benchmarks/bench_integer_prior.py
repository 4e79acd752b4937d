"""The rate cost of the post-training integer conversion (`convert --to=integer`).

    .venv/bin/python -m benchmarks.bench_integer_prior \
        [--checkpoint=models/joint_n64_lmbda0.013] [--images=../shared/data/kodak] [--count=24]

Converts the float model in memory (`integer_prior.convert_params`, what `convert --to=integer`
writes), compresses and decompresses each image with both models to real files, and reports the
file sizes (bpp), PSNR and steady-state encode/decode seconds, per image and summed; the rate
penalty is (integer bytes / float bytes - 1) over all images. Writes
benchmarks/results/bench_integer_prior.json.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
from absl import flags

from benchmarks.machine import write_result
from jahp_jax.cli.command import Command
from jahp_jax.coding import integer as integer_prior
from jahp_jax.coding.codec import Codec
from jahp_jax.io.checkpoints import load_model
from jahp_jax.io.images import read_image
from jahp_jax.models.compression_model import CompressionModel

REPO = Path(__file__).resolve().parents[1]


def psnr(image: np.ndarray, decoded: np.ndarray) -> float:
    error = np.mean((image.astype(np.float64) - decoded.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / error))


def measure(codec: Codec, image: np.ndarray) -> dict[str, float]:
    codec.decompress(codec.compress(image))  # compile
    start = time.perf_counter()
    data = codec.compress(image)
    encode = time.perf_counter() - start
    start = time.perf_counter()
    decoded = codec.decompress(data)
    decode = time.perf_counter() - start
    pixels = image.shape[0] * image.shape[1]
    return {"bytes": len(data), "bpp": 8 * len(data) / pixels, "psnr": psnr(image, decoded),
            "encode_s": encode, "decode_s": decode}  # fmt: skip


COMMAND = Command("python -m benchmarks.bench_integer_prior", __doc__)
FLAGS = COMMAND.flags
flags.DEFINE_string("checkpoint", str(REPO / "models" / "joint_n64_lmbda0.013"), "A float model.",
                    flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("images", str(REPO.parent / "shared" / "data" / "kodak"), "A folder of PNGs.",
                    flag_values=FLAGS)  # fmt: skip
flags.DEFINE_integer("count", 24, "The first COUNT images, by name.", flag_values=FLAGS)
flags.DEFINE_string("output", str(REPO / "benchmarks" / "results" / "bench_integer_prior.json"),
                    "Where the JSON goes.", flag_values=FLAGS)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    return COMMAND.run(_bench_integer_prior, argv)


def _bench_integer_prior(_: list[str]) -> None:
    args = FLAGS
    model, params, config = load_model(args.checkpoint)
    integer_config = dataclasses.replace(config, integer_prior=True)
    integer_model = CompressionModel(integer_config)
    codecs = {
        "float": Codec(model, params),
        "integer": Codec(integer_model, integer_prior.convert_params(model, params)),
    }
    paths = sorted(p for p in Path(args.images).iterdir() if p.suffix == ".png")[: args.count]
    rows = []
    for path in paths:
        image = read_image(path)
        row = {"image": path.stem}
        for name, codec in codecs.items():
            row[name] = measure(codec, image)
        rows.append(row)
        print(path.stem, ", ".join(
            f"{name} {row[name]['bpp']:.4f} bpp {row[name]['psnr']:.2f} dB" for name in codecs
        ))  # fmt: skip
    totals = {
        name: {
            "bytes": sum(r[name]["bytes"] for r in rows),
            "mean_bpp": float(np.mean([r[name]["bpp"] for r in rows])),
            "mean_psnr": float(np.mean([r[name]["psnr"] for r in rows])),
            "mean_encode_s": float(np.mean([r[name]["encode_s"] for r in rows])),
            "mean_decode_s": float(np.mean([r[name]["decode_s"] for r in rows])),
        }
        for name in codecs
    }
    penalty = totals["integer"]["bytes"] / totals["float"]["bytes"] - 1
    print(f"{len(rows)} images: rate penalty {100 * penalty:+.3f}% (bytes), PSNR "
          f"{totals['integer']['mean_psnr'] - totals['float']['mean_psnr']:+.4f} dB, decode "
          f"{totals['float']['mean_decode_s']:.3f} s float, "
          f"{totals['integer']['mean_decode_s']:.3f} s integer")  # fmt: skip
    write_result(args.output, {
        "checkpoint": args.checkpoint, "model": config.describe(), "images": len(rows),
        "rate_penalty": penalty, "totals": totals, "per_image": rows,
    })  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
