"""The integer prior path against the float one: rate cost and decode time, N=64 and N=M=192.

    .venv/bin/python -m benchmarks.bench_integer_prior \
        [--checkpoint=models/joint_n64_lmbda0.013] [--images=../shared/data/kodak] [--count=24] \
        [--random_size=192] [--random_count=1] [--repeats=3]

Converts each float model in memory (`integer_prior.convert_params`, what `convert --to=integer`
and `jahp-export` write) and compresses and decompresses each image with both forms to real files:
  * the trained --checkpoint (the shipped N=M=64 joint model) on the first --count images: file
    sizes (bpp), PSNR, and the rate penalty (integer bytes / float bytes - 1 over all images);
  * a random-init joint model of N=M=--random_size (g_a's last kernel x20 so that y is not all
    zeros, as in bench_codec; its rates mean nothing) on the first --random_count images.
Per image, after one compress + decompress of each form (compile), the two forms' encodes,
decodes and latent decodes (the entropy decoder alone, `LatentCoder.decode`: the prior path, not
g_s) alternate --repeats times and the best of each is kept, so both see the same machine speed;
the decode ratio is integer / float over the images' summed best decodes (the 1.3x target of
issue 29). Writes benchmarks/results/bench_integer_prior.json.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import numpy as np
from absl import flags

from benchmarks.machine import write_result
from jahp_jax.cli.command import Command
from jahp_jax.coding import bitstream
from jahp_jax.coding import integer as integer_prior
from jahp_jax.coding.codec import Codec
from jahp_jax.io.checkpoints import load_model
from jahp_jax.io.images import read_image
from jahp_jax.models.compression_model import CompressionModel, create_model, init_params

REPO = Path(__file__).resolve().parents[1]


def psnr(image: np.ndarray, decoded: np.ndarray) -> float:
    error = np.mean((image.astype(np.float64) - decoded.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / error))


def both_forms(model, params) -> dict[str, Codec]:
    """{'float': the model, 'integer': its converted form}."""
    integer_model = CompressionModel(dataclasses.replace(model.config, integer_prior=True))
    return {
        "float": Codec(model, params),
        "integer": Codec(integer_model, integer_prior.convert_params(model, params)),
    }


def _seconds(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def measure(codecs: dict[str, Codec], image: np.ndarray, repeats: int) -> dict[str, dict]:
    """Per form: bytes, bpp, PSNR and the best of `repeats` encodes and decodes, alternated."""
    rows = {}
    for name, codec in codecs.items():
        data = codec.compress(image)
        decoded = codec.decompress(data)  # compile
        pixels = image.shape[0] * image.shape[1]
        rows[name] = {"bytes": len(data), "bpp": 8 * len(data) / pixels,
                      "psnr": psnr(image, decoded), "encode_s": [], "decode_s": [],
                      "latent_decode_s": []}  # fmt: skip
    for _ in range(repeats):
        for name, codec in codecs.items():
            data, encode = _seconds(codec.compress, image)
            _, decode = _seconds(codec.decompress, data)
            header, z_stream, y_stream = bitstream.unpack(data)
            shape = codec.config.latent_shape(header.height, header.width)
            _, latent_decode = _seconds(codec.coder.decode, z_stream, y_stream, shape)
            for key, seconds in (("encode_s", encode), ("decode_s", decode),
                                 ("latent_decode_s", latent_decode)):  # fmt: skip
                rows[name][key].append(seconds)
    for row in rows.values():
        for key in ("encode_s", "decode_s", "latent_decode_s"):
            row[key] = min(row[key])
    return rows


def run_model(label: str, codecs: dict[str, Codec], paths: list[Path], repeats: int) -> dict:
    rows = []
    for path in paths:
        image = read_image(path)
        row = {"image": path.stem, **measure(codecs, image, repeats)}
        rows.append(row)
        print(f"{label} {path.stem}: " + ", ".join(
            f"{name} {row[name]['bpp']:.4f} bpp {row[name]['psnr']:.2f} dB decode "
            f"{row[name]['decode_s']:.3f} s" for name in codecs
        ), flush=True)  # fmt: skip
    totals = {
        name: {
            "bytes": sum(r[name]["bytes"] for r in rows),
            "mean_bpp": float(np.mean([r[name]["bpp"] for r in rows])),
            "mean_psnr": float(np.mean([r[name]["psnr"] for r in rows])),
            "mean_encode_s": float(np.mean([r[name]["encode_s"] for r in rows])),
            "mean_decode_s": float(np.mean([r[name]["decode_s"] for r in rows])),
            "mean_latent_decode_s": float(np.mean([r[name]["latent_decode_s"] for r in rows])),
        }
        for name in codecs
    }
    ratio = totals["integer"]["mean_decode_s"] / totals["float"]["mean_decode_s"]
    latents = [totals[name]["mean_latent_decode_s"] for name in ("float", "integer")]
    penalty = totals["integer"]["bytes"] / totals["float"]["bytes"] - 1
    print(
        f"{label}, {len(rows)} images: decode {totals['float']['mean_decode_s']:.3f} s float, "
        f"{totals['integer']['mean_decode_s']:.3f} s integer ({ratio:.2f}x; the latents alone "
        f"{latents[0]:.3f} s and {latents[1]:.3f} s, {latents[1] / latents[0]:.2f}x); rate penalty "
        f"{100 * penalty:+.3f}% (bytes), PSNR "
        f"{totals['integer']['mean_psnr'] - totals['float']['mean_psnr']:+.4f} dB",
        flush=True,
    )
    return {"model": label, "images": len(rows), "decode_ratio": ratio,
            "latent_decode_ratio": latents[1] / latents[0], "rate_penalty": penalty,
            "totals": totals, "per_image": rows}  # fmt: skip


def random_model(size: int):
    """A random-init joint model of N=M=size whose y is not all zeros (as in bench_codec)."""
    model = create_model("joint", size, size)
    params = jax.tree_util.tree_map(np.asarray, init_params(model, jax.random.key(0)))
    last = params["g_a"]["layers_6"]
    params["g_a"]["layers_6"] = {**last, "kernel": last["kernel"] * 20}
    return model, params


COMMAND = Command("python -m benchmarks.bench_integer_prior", __doc__)
FLAGS = COMMAND.flags
flags.DEFINE_string("checkpoint", str(REPO / "models" / "joint_n64_lmbda0.013"), "A float model.",
                    flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("images", str(REPO.parent / "shared" / "data" / "kodak"), "A folder of PNGs.",
                    flag_values=FLAGS)  # fmt: skip
flags.DEFINE_integer("count", 24, "The first COUNT images, by name.", flag_values=FLAGS)
flags.DEFINE_integer("random_size", 192, "N = M of the random-init model (0: none).",
                     flag_values=FLAGS)  # fmt: skip
flags.DEFINE_integer("random_count", 1, "Images coded with the random-init model.",
                     flag_values=FLAGS)  # fmt: skip
flags.DEFINE_integer("repeats", 3, "Alternated encodes and decodes per image and form.",
                     flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("output", str(REPO / "benchmarks" / "results" / "bench_integer_prior.json"),
                    "Where the JSON goes.", flag_values=FLAGS)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    return COMMAND.run(_bench_integer_prior, argv)


def _bench_integer_prior(_: list[str]) -> None:
    args = FLAGS
    paths = sorted(p for p in Path(args.images).iterdir() if p.suffix == ".png")
    model, params, config = load_model(args.checkpoint)
    results = [run_model(config.describe(), both_forms(model, params), paths[: args.count],
                         args.repeats)]  # fmt: skip
    if args.random_size:
        model, params = random_model(args.random_size)
        label = f"{model.config.describe()} (random weights)"
        results.append(run_model(label, both_forms(model, params), paths[: args.random_count],
                                 args.repeats))  # fmt: skip
    write_result(args.output, {"checkpoint": args.checkpoint, "repeats": args.repeats,
                               "models": results})  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
