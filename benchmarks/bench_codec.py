"""Encode/decode speed and rate overhead of the .jahp codec, one Kodak image, every prior.

    .venv/bin/python -m benchmarks.bench_codec [--image=kodim23] [--kodak_dir=DIR]
        [--priors=joint,mean_scale]

Models are N=M=192 with random-init weights, g_a's last conv kernel scaled x20 so that y is not
all zeros (timing only: the rates are those of an untrained model). Per prior: the first
compress + decompress (compile included), then the best of --repeats steady-state runs,
interleaved across the priors so that their ratios (decode / mean-scale decode, issue 12's
joint target) see the same machine speed. Checks
that the round trip is exact (decoded y_hat == encoder's y_hat). Also times g_s alone on the
decoded y_hat, traced with our convs and with XLA's stock ones (`layers.conv_implementation`),
interleaved, and prints the dense-matmul limit measured in the same run, g_s's FLOPs (from the
layer shapes), its achieved fraction of the limit, and the decode time's ratio to CompressAI's:
measured on this machine by `benchmarks/reference_compressai.py --codecs=mean_scale,joint` when
--reference names this CPU, else REFERENCE_DECODE_S (given constants of a reference run on
another machine, said so). Writes benchmarks/results/bench_codec.json.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import jax
import numpy as np
from absl import flags

from benchmarks.flops import synthesis_flops
from benchmarks.machine import (
    REFERENCE_FILE,
    cpu_model,
    matmul_gflops,
    reference_figures,
    write_result,
)
from benchmarks.programs import compiled_synthesis
from jahp_jax.cli.command import Command
from jahp_jax.coding.codec import Codec, pad_image
from jahp_jax.io.images import ImageError, read_image
from jahp_jax.models.compression_model import create_model, init_params
from jahp_jax.models.latent_codecs import PRIORS
from jahp_jax.nn import layers

REPO = Path(__file__).resolve().parents[1]
KODAK = REPO.parent / "shared" / "data" / "kodak"
# Given constants of a reference run, not measured here: CompressAI 1.2.8 on PyTorch 2.13 decoding
# one Kodak image on the 2-core AMD EPYC (AVX2) machine of issue 12 (its mean-scale model is
# N=128/M=192, ours N=M=192).
REFERENCE_DECODE_S = {
    "mean_scale": (0.91, "CompressAI 1.2.8 reference run, issue 12"),
    "joint": (13.26, "CompressAI 1.2.8 reference run, issue 12"),
}


def _timed(function, *args):
    start = time.perf_counter()
    result = function(*args)
    return result, time.perf_counter() - start


def synthesis_seconds(model, params, y_hat: np.ndarray, repeats: int) -> dict[str, float]:
    """Median seconds of g_s on y_hat, traced with our convs ('auto') and the stock ones."""
    functions = {}
    for implementation in ("auto", "stock"):
        with layers.conv_implementation(implementation):
            functions[implementation] = compiled_synthesis(model, params, y_hat[None])
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            jax.block_until_ready(function(params, y_hat[None]))
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(values)) for name, values in times.items()}


def prepare_prior(prior: str, image: np.ndarray, size: int) -> dict:
    """A random-init codec of `prior` (see the module docstring), its file of `image`, and the
    first compress + decompress (compile included)."""
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
    padded_h, padded_w = pad_image(image, model.config.pad_multiple).shape[1:3]
    row = {
        "prior": prior,
        "num_filters": size,
        "num_latents": size,
        "bytes": len(data),
        "bpp": stats.bits_per_pixel,
        "estimated_bits": stats.estimated_bits,
        "estimated_bits_y": stats.bits_y,
        "estimated_bits_z": stats.bits_z,
        "overhead_percent": 100.0 * stats.overhead,
        "synthesis_gflop": synthesis_flops(size, padded_h, padded_w) / 1e9,
        "first_encode_s": first_encode_s,
        "first_decode_s": first_decode_s,
        "setup_s": setup_s,
        "exact_roundtrip": exact,
    }
    return {"row": row, "codec": codec, "data": data, "y_hat": stats.y_hat}


def time_priors(prepared: dict[str, dict], image: np.ndarray, repeats: int) -> None:
    """Best-of-`repeats` encode and decode of every prior, the repetitions interleaved across
    priors (so that their ratios see the same machine speed), then g_s alone per prior; fills
    each prior's row."""
    times = {prior: {"encode_s": [], "decode_s": []} for prior in prepared}
    for _ in range(repeats):
        for prior, entry in prepared.items():
            times[prior]["encode_s"].append(_timed(entry["codec"].compress, image)[1])
            times[prior]["decode_s"].append(_timed(entry["codec"].decompress, entry["data"])[1])
    for prior, entry in prepared.items():
        row = entry["row"]
        row.update({name: min(values) for name, values in times[prior].items()})
        row["compile_encode_s"] = row["first_encode_s"] - row["encode_s"]
        row["compile_decode_s"] = row["first_decode_s"] - row["decode_s"]
        codec = entry["codec"]
        synthesis = synthesis_seconds(codec.model, codec.params, entry["y_hat"], repeats)
        row["synthesis_s"], row["stock_synthesis_s"] = synthesis["auto"], synthesis["stock"]


COMMAND = Command("python -m benchmarks.bench_codec", __doc__)
FLAGS = COMMAND.flags
flags.DEFINE_string("image", "kodim23", "Kodak image name.", flag_values=FLAGS)
flags.DEFINE_string("priors", ",".join(PRIORS), "Comma-separated priors.", flag_values=FLAGS)
flags.DEFINE_integer("repeats", 3, "Steady-state runs (best reported).", flag_values=FLAGS)
flags.DEFINE_integer("size", 192, "N = M.", flag_values=FLAGS)
flags.DEFINE_string("output", str(REPO / "benchmarks" / "results" / "bench_codec.json"),
                    "Where the JSON goes.", flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("reference", str(REFERENCE_FILE), "CompressAI timings from "
                    "benchmarks/reference_compressai.py.", flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("kodak_dir", str(KODAK), "Folder of the Kodak PNGs.", flag_values=FLAGS)


def main(argv: list[str] | None = None) -> int:
    return COMMAND.run(_bench_codec, argv)


def _bench_codec(_: list[str]) -> None:
    args = FLAGS
    unknown = sorted(set(args.priors.split(",")) - set(PRIORS))
    if unknown:
        sys.exit(f"error: unknown prior(s) {unknown}; choose from {list(PRIORS)}")
    try:
        image = read_image(Path(args.kodak_dir) / f"{args.image}.png")
    except ImageError as error:
        sys.exit(f"error: {error}; pass --kodak_dir=DIR (a folder of kodimNN.png) or --image=NAME")
    load_before = os.getloadavg()
    limit = matmul_gflops()
    print(f"CPU {cpu_model()}, {os.cpu_count()} cores; dense matmul 2048^3 (the limit): "
          f"{limit:.1f} GFLOP/s")  # fmt: skip
    reference = reference_figures(args.reference, "codecs", "prior", "decode_s", REFERENCE_DECODE_S)
    prepared = {prior: prepare_prior(prior, image, args.size) for prior in args.priors.split(",")}
    time_priors(prepared, image, args.repeats)
    rows = []
    for prior, entry in prepared.items():
        row = entry["row"]
        row["synthesis_fraction_of_limit"] = row["synthesis_gflop"] / row["synthesis_s"] / limit
        if prior in reference and args.size == 192:  # the reference's size
            row["reference_decode_s"], row["reference_source"] = reference[prior]
            row["decode_vs_reference"] = row["decode_s"] / row["reference_decode_s"]
        rows.append(row)
        print(
            f"{prior:>11}: encode {row['encode_s']:.3f} s, decode {row['decode_s']:.3f} s "
            f"(compile {row['compile_encode_s']:.1f} / {row['compile_decode_s']:.1f} s), "
            f"{row['bytes']} bytes, estimated {row['estimated_bits'] / 8:.0f} bytes, "
            f"overhead {row['overhead_percent']:+.2f} %, exact={row['exact_roundtrip']}",
            flush=True,
        )
        reference_note = (
            f"; decode / CompressAI's {row['reference_decode_s']:.2f} s "
            f"({row['reference_source']}) = {row['decode_vs_reference']:.2f}"
            if "reference_decode_s" in row
            else ""
        )
        print(
            f"{'':>11}  g_s {row['synthesis_s']:.3f} s for {row['synthesis_gflop']:.1f} GFLOP = "
            f"{row['synthesis_fraction_of_limit']:.0%} of the limit (stock convs "
            f"{row['stock_synthesis_s']:.3f} s){reference_note}",
            flush=True,
        )
    if "mean_scale" in prepared:  # issue 12: joint decode <= 1.3x mean-scale decode
        mean_scale_s = prepared["mean_scale"]["row"]["decode_s"]
        for row in rows:
            row["decode_vs_mean_scale"] = row["decode_s"] / mean_scale_s
            print(f"{row['prior']:>11}: decode / mean-scale decode = "
                  f"{row['decode_vs_mean_scale']:.2f}")  # fmt: skip
    result = {
        "image": args.image,
        "image_shape": list(image.shape),
        "loadavg_before": load_before,
        "loadavg_after": os.getloadavg(),
        "matmul_gflops": limit,
        "rows": rows,
    }
    print(f"load average (1, 5, 15 min): before {load_before}, after {result['loadavg_after']}")
    write_result(args.output, result)


if __name__ == "__main__":
    sys.exit(main())
