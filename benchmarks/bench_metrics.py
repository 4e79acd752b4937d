"""Cost of the per-point quality metrics (PSNR + MS-SSIM) of one Kodak image, ours vs a conv filter.

    .venv/bin/python -m benchmarks.bench_metrics [--image=kodim23] [--repeats=5]

The classical-codec sweeps compute `jahp_jax.evaluation.evaluate.image_metrics` once per image and
point;
MS-SSIM dominates it. Times the jitted metric (compiled once per image shape, untimed) with
`jahp_jax.models.metrics`' shifted-slice Gaussian filter and, interleaved in the same run, with the
one-channel `lax.conv_general_dilated` filter it replaced. Writes
benchmarks/results/bench_metrics.json.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path
from unittest import mock

import jax
import numpy as np
from absl import flags

from benchmarks.machine import cpu_model, write_result
from jahp_jax.cli.command import Command
from jahp_jax.evaluation.evaluate import image_metrics
from jahp_jax.io.images import read_image
from jahp_jax.models import metrics

REPO = Path(__file__).resolve().parents[1]
KODAK = REPO.parent / "shared" / "data" / "kodak"
RESULTS = REPO / "benchmarks" / "results" / "bench_metrics.json"


def conv_filter_valid(images: jax.Array, window: jax.Array) -> jax.Array:
    """The previous filter: channels folded into the batch, two one-channel VALID convs."""
    n, h, w, c = images.shape
    size = window.shape[0]
    planes = jax.numpy.transpose(images, (0, 3, 1, 2)).reshape(n * c, h, w, 1)
    for kernel in (window.reshape(size, 1, 1, 1), window.reshape(1, size, 1, 1)):
        planes = jax.lax.conv_general_dilated(
            planes, kernel, (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
    planes = planes.reshape(n, c, h - size + 1, w - size + 1)
    return jax.numpy.transpose(planes, (0, 2, 3, 1))


COMMAND = Command("python -m benchmarks.bench_metrics", __doc__)
FLAGS = COMMAND.flags
flags.DEFINE_string("image", "kodim23", "Kodak image name.", flag_values=FLAGS)
flags.DEFINE_integer("repeats", 5, "Timed runs (median reported).", flag_values=FLAGS)
flags.DEFINE_string("output", str(RESULTS), "Where the JSON goes.", flag_values=FLAGS)


def main(argv: list[str] | None = None) -> int:
    return COMMAND.run(_bench_metrics, argv)


def _bench_metrics(_: list[str]) -> None:
    args = FLAGS
    image = read_image(KODAK / f"{args.image}.png")
    noise = np.random.default_rng(0).integers(-8, 9, image.shape)
    decoded = np.clip(image.astype(np.int64) + noise, 0, 255).astype(np.uint8)
    load_before = os.getloadavg()

    def ours() -> dict:
        return image_metrics(image, decoded, 10_000)

    x = jax.numpy.asarray(image[None], np.float32) / 255.0
    y = jax.numpy.asarray(decoded[None], np.float32) / 255.0
    with mock.patch.object(metrics, "_filter_valid", conv_filter_valid):
        conv_ms_ssim = jax.jit(metrics.ms_ssim).lower(x, y).compile()

    def conv() -> float:
        return float(conv_ms_ssim(x, y)[0])

    values = {"ours": ours()["ms-ssim-rgb"], "conv": conv()}
    times: dict[str, list[float]] = {"ours": [], "conv": []}
    for _ in range(args.repeats):
        for name, function in (("ours", ours), ("conv", conv)):
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(seconds) for name, seconds in times.items()}
    load_after = os.getloadavg()
    print(f"{args.image} {image.shape[1]}x{image.shape[0]}: PSNR + MS-SSIM per point "
          f"{medians['ours'] * 1e3:.0f} ms (conv filter, MS-SSIM alone: "
          f"{medians['conv'] * 1e3:.0f} ms; {medians['conv'] / medians['ours']:.1f}x); "
          f"MS-SSIM {values['ours']:.6f} vs {values['conv']:.6f}")  # fmt: skip
    print(f"CPU {cpu_model()}, {os.cpu_count()} cores; load average {load_before[0]:.2f} -> "
          f"{load_after[0]:.2f}")  # fmt: skip
    result = {
        "image": args.image, "seconds_per_point": medians["ours"],
        "conv_filter_ms_ssim_seconds": medians["conv"], "ms_ssim": values,
        "times": times, "loadavg_before": load_before, "loadavg_after": load_after,
    }  # fmt: skip
    write_result(args.output, result)


if __name__ == "__main__":
    raise SystemExit(main())
