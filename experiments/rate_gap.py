"""How far each model's rate for y is from a per-channel histogram code of the same latents.

    ./launch.sh python -m experiments.rate_gap [--root=runs/ablation] [--limit=N] \\
        [--output=results/ablation/rate_gap.md] [--checkpoint=DIR ...]

For every training workdir under --root (or every --checkpoint), every Kodak image is compressed
with the checkpoint; the script then compares

* the bits the model's density spends on y (`CompressStats.bits_y`, what the coder uses), with
* the empirical entropy of the same quantized latents under one histogram per channel, pooled over
  all images (an in-sample, per-channel i.i.d. code: the best a *factorized* density could do).

For the `factorized` prior the histogram is a lower bound, so the ratio says how converged its
learned density is (1.0 = as good as the data's own histogram). The conditional priors can beat the
histogram (ratio < 1): that is what conditioning on z and on the decoded context buys.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from absl import flags

from jahp_jax.cli.command import Command

COMMAND = Command("python -m experiments.rate_gap", __doc__)
FLAGS = COMMAND.flags
flags.DEFINE_string("root", "runs/ablation", "Folder of training workdirs.", flag_values=FLAGS)
flags.DEFINE_multi_string("checkpoint", [], "A workdir or step folder (repeatable); replaces "
                          "--root.", flag_values=FLAGS)  # fmt: skip
flags.DEFINE_string("kodak_dir", None, "Kodak folder (default: kodak/ of the data root, else "
                    "the download).", flag_values=FLAGS)  # fmt: skip
flags.DEFINE_integer("limit", None, "Only the first N Kodak images.", flag_values=FLAGS)
flags.DEFINE_string("output", None, "Also write the table here (Markdown).", flag_values=FLAGS)


def histogram_bits(symbols: np.ndarray) -> float:
    """Total bits of `symbols` (..., C) under one empirical histogram per channel (last axis)."""
    flat = symbols.reshape(-1, symbols.shape[-1])
    total = 0.0
    for channel in flat.T:
        _, counts = np.unique(channel, return_counts=True)
        total -= float(np.sum(counts * np.log2(counts / channel.size)))
    return total


def rate_gap(checkpoint: str | Path, images: list[tuple[str, np.ndarray]]) -> dict[str, float]:
    """Model bits of y vs the per-channel histogram bits of its rounded latents, per pixel."""
    from jahp_jax.io.checkpoints import load_codec

    codec = load_codec(checkpoint)
    symbols, model_bits, pixels, file_bytes = [], 0.0, 0, 0
    for _, image in images:
        _, stats = codec.compress_with_stats(image)
        # round() is a bijection per channel for the factorized prior (y_hat = k + median); for
        # the conditional priors it maps y_hat = k + mean to the nearest integer.
        symbols.append(np.rint(stats.y_hat).reshape(-1, stats.y_hat.shape[-1]).astype(np.int64))
        model_bits += stats.bits_y
        pixels += stats.num_pixels
        file_bytes += stats.num_bytes
    histogram = histogram_bits(np.concatenate(symbols))
    return {
        "prior": codec.config.prior,
        "bpp": 8.0 * file_bytes / pixels,
        "model_bpp_y": model_bits / pixels,
        "histogram_bpp_y": histogram / pixels,
        "ratio": model_bits / histogram if histogram > 0 else float("nan"),
    }


def gap_table(rows: dict[str, dict[str, float]]) -> str:
    """Markdown table, one row per workdir."""
    lines = [
        "| run | prior | file bpp | model bpp of y | per-channel histogram bpp of y "
        "| model / histogram |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows.items():
        lines.append(
            f"| {name} | {r['prior']} | {r['bpp']:.3f} | {r['model_bpp_y']:.3f} | "
            f"{r['histogram_bpp_y']:.3f} | {r['ratio']:.2f} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """The rate-gap table; argv: the arguments (default: sys.argv[1:])."""
    return COMMAND.run(_rate_gap, argv)


def _rate_gap(_: list[str]) -> int:
    args = FLAGS

    from jahp_jax.data.pipeline import DatasetError, ImageError, eval_images, resolve_data_root
    from jahp_jax.io.checkpoints import CheckpointError
    from jahp_jax.io.images import write_text
    from jahp_jax.models.latent_codecs import PRIORS

    root = Path(args.root)
    if args.checkpoint:
        checkpoints = {path: Path(path) for path in args.checkpoint}
    else:
        workdirs = [p for p in root.glob("*") if (p / "checkpoints").is_dir()]
        order = {prior: i for i, prior in enumerate(PRIORS)}  # the registry's order, then by name
        workdirs.sort(key=lambda p: (order.get(p.name.split("_lmbda")[0], len(order)), p.name))
        checkpoints = {p.name: p for p in workdirs}
    if not checkpoints:
        print(f"error: no training workdirs (with checkpoints/) under --root={root}",
              file=sys.stderr)  # fmt: skip
        return 2
    try:
        kodak_dir = args.kodak_dir
        if kodak_dir is None and (data_root := resolve_data_root()) is not None:
            kodak_dir = str(data_root / "kodak")
        images = list(eval_images("kodak", data_dir=kodak_dir, limit=args.limit))
        rows = {}
        for name, checkpoint in checkpoints.items():
            rows[name] = rate_gap(checkpoint, images)
            print(f"{name}: {rows[name]}", flush=True)
    except (CheckpointError, DatasetError, ImageError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    table = gap_table(rows)
    print(table)
    if args.output:
        write_text(args.output, table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
