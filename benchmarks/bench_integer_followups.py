"""The rate cost of the integer form of the follow-up models (cheng2020, ELIC, TCM).

    .venv/bin/python -m benchmarks.bench_integer_followups [--golden=../shared/golden/followups]

Each reference case of --golden (random weights rounded to a coarse grid, g_a's last conv x20;
its README) is converted as `jahp-convert --arch=...` does (tests/test_followup_models.py), then
to its integer form as `jahp-convert --to=integer` does, and the case's input image (a 128 x 192
crop of kodim23; TCM 256 x 256) is compressed with both forms to real files: the integer file's
bytes against the float file's, whether the two files' streams are the same (byte for byte), and
the integer decode against its own encoder's y_hat (bit for bit). A model without an integer form
is listed with the one-line refusal. Writes benchmarks/results/bench_integer_followups.json.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
from absl import flags

from benchmarks.machine import load_average, write_result
from jahp_jax.cli.command import Command
from jahp_jax.coding import bitstream
from jahp_jax.io import convert
from jahp_jax.io.checkpoints import load_codec
from jahp_jax.io.state_dicts import ConversionError

REPO = Path(__file__).resolve().parents[1]
CASES = {  # architecture -> (source format, case name), as tests/test_followup_models.py
    "cheng2020-anchor": ("compressai", "cheng2020-anchor_N32"),
    "cheng2020-attn": ("compressai", "cheng2020-attn_N32"),
    "cheng2020-anchor-checkerboard": ("compressai", "cheng2020-anchor-checkerboard_N32"),
    "elic2022-official": ("compressai", "elic2022-official_N32_M64"),
    "elic2022-chandelier": ("compressai", "elic2022-chandelier_N32_M64"),
    "tcm": ("tcm", "tcm_N32_M320"),
}


def golden_image(case: Path) -> np.ndarray:
    """The case's input (NCHW in [0, 1], a PNG crop) as a (H, W, 3) uint8 image."""
    x = np.transpose(np.load(case)["input/x"], (0, 2, 3, 1))[0]
    return np.round(x * 255.0).astype(np.uint8)


def measure(arch: str, golden: Path, workdir: Path) -> dict:
    source, name = CASES[arch]
    start = time.perf_counter()
    convert.convert_file(golden / f"{name}.npz", arch, workdir / arch, source_format=source)
    float_codec = load_codec(workdir / arch)
    image = golden_image(golden / f"{name}.npz")
    float_data = float_codec.compress(image)
    row = {"arch": arch, "case": name, "model": float_codec.config.describe(),
           "float_bytes": len(float_data)}  # fmt: skip
    try:
        convert.convert_to_integer(workdir / arch, workdir / f"{arch}_integer")
    except ConversionError as error:
        row["integer_form"] = str(error)
        print(f"{arch}: float {row['float_bytes']} bytes; {error}", flush=True)
        return row
    integer_codec = load_codec(workdir / f"{arch}_integer")
    data, stats = integer_codec.compress_with_stats(image)
    _, y_hat = integer_codec.decompress_with_latents(data)
    row.update(integer_form="yes", integer_bytes=len(data),
               rate_cost=len(data) / row["float_bytes"] - 1,
               same_streams=bitstream.unpack(data)[1:] == bitstream.unpack(float_data)[1:],
               decodes_exactly=bool(np.array_equal(y_hat, stats.y_hat)),
               seconds=time.perf_counter() - start)  # fmt: skip
    print(f"{arch}: float {row['float_bytes']} bytes, integer {row['integer_bytes']} bytes "
          f"({100 * row['rate_cost']:+.2f}%); the same streams: {row['same_streams']}; "
          f"decodes exactly: {row['decodes_exactly']} "
          f"({row['seconds']:.0f} s)", flush=True)  # fmt: skip
    return row


COMMAND = Command("python -m benchmarks.bench_integer_followups", __doc__)
FLAGS = COMMAND.flags
flags.DEFINE_string("golden", str(REPO.parent / "shared" / "golden" / "followups"),
                    "The follow-up models' reference cases.", flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("output", str(REPO / "benchmarks" / "results" /
                                  "bench_integer_followups.json"),
                    "Where the JSON goes.", flag_values=FLAGS)  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    return COMMAND.run(_bench_integer_followups, argv)


def _bench_integer_followups(_: list[str]) -> None:
    golden = Path(FLAGS.golden)
    manifest = json.loads((golden / "MANIFEST.json").read_text())
    load_before = load_average()
    with tempfile.TemporaryDirectory() as folder:
        rows = [measure(arch, golden, Path(folder)) for arch in CASES if CASES[arch][1] in manifest]
    write_result(FLAGS.output, {"golden": str(golden), "load_before": load_before,
                                "load_after": load_average(), "cases": rows})  # fmt: skip


if __name__ == "__main__":
    raise SystemExit(main())
