"""jahp-codec: compress an image to a .jahp file, or decompress one to PNG, with a trained model.

    jahp-codec compress   --checkpoint=CHECKPOINT IMAGE OUTPUT.jahp
    jahp-codec compress   --checkpoint=VARIABLE_RATE_MODEL --quality=0.7 IMAGE OUTPUT.jahp
    jahp-codec decompress --checkpoint=CHECKPOINT INPUT.jahp OUTPUT.png

A variable-rate model (jahp-train --variable_rate) compresses at the rate one of --quality (0:
its lowest rate, 1: its highest), --lmbda (a lambda of its range) or --target_bpp (the highest
quality whose file is at most that many bits per pixel) chooses; the file records its quality, so
decompressing needs none.

The first argument is the subcommand; the two paths that follow are positional (flags may come
anywhere). IMAGE is any image Pillow reads (PNG, JPEG, ...) as RGB. CHECKPOINT is a training
workdir (its latest step), a checkpoint folder or an exported model; decompressing needs the
model that compressed. Outputs are written whole or not at all. `python -m jahp_jax.cli.codec`
is the same command.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from absl import flags

from jahp_jax.cli.command import Command, UsageError
from jahp_jax.coding.codec import CodecError, portability_warning
from jahp_jax.io.checkpoints import CheckpointError, load_codec
from jahp_jax.io.images import ImageError, read_image, write_atomic, write_png
from jahp_jax.runtime import enable_compilation_cache

COMMAND = Command("jahp-codec", __doc__, takes_args=True)
FLAGS = COMMAND.flags
flags.DEFINE_string("checkpoint", None, "A training workdir, checkpoint folder or exported "
                    "model. Required.", flag_values=FLAGS)  # fmt: skip
flags.DEFINE_float("quality", None, "Variable-rate model: the quality in [0, 1] (0: lowest rate, "
                   "1: highest).", flag_values=FLAGS)  # fmt: skip
flags.DEFINE_float("lmbda", None, "Variable-rate model: compress at this lambda of its range.",
                   flag_values=FLAGS)  # fmt: skip
flags.DEFINE_float("target_bpp", None, "Variable-rate model: the highest quality whose file is "
                   "at most this many bits per pixel (searched per image).",
                   flag_values=FLAGS)  # fmt: skip
SUBCOMMANDS = ("compress", "decompress")
RATE_FLAGS = ("quality", "lmbda", "target_bpp")


def _write_atomic(path: Path, data: bytes) -> None:
    if not path.parent.is_dir():
        raise CodecError(f"{path}: folder {path.parent} does not exist; create it first")
    write_atomic(path, lambda f: f.write(data))


def _read_file(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise CodecError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CodecError(f"{path}: is a directory, not a .jahp file") from None
    except OSError as error:
        raise CodecError(f"{path}: cannot read ({error.strerror})") from None


def compress(checkpoint: str, input_path: str, output_path: str, rate: dict | None = None
             ) -> str:  # fmt: skip
    """Compress the image `input_path` to the file `output_path`; returns the line to print.
    `rate`: at most one of {'quality', 'lmbda', 'target_bpp'} (a variable-rate model's)."""
    rate = {name: value for name, value in (rate or {}).items() if value is not None}
    image = read_image(input_path)
    codec = load_codec(checkpoint)
    if rate and not codec.variable_rate:
        raise CodecError(
            f"--{next(iter(rate))} is for a variable-rate model; {checkpoint} holds a fixed-rate "
            f"{codec.config.describe()} model: compress without it"
        )
    if codec.variable_rate and not rate:
        low, high = codec.config.lmbda_range
        raise CodecError(
            f"{checkpoint} holds a variable-rate model: give --quality=Q (0 ... 1), --lmbda=X "
            f"({low:g} ... {high:g}) or --target_bpp=B"
        )
    if "target_bpp" in rate:
        data, stats = codec.compress_to_bpp(image, rate["target_bpp"])
    else:
        quality = rate.get("quality")
        if "lmbda" in rate:
            quality = codec.quality_of_lmbda(rate["lmbda"])
        data, stats = codec.compress_with_stats(image, quality)
    warning = portability_warning(codec.config, checkpoint)  # after any error: one line then
    if warning:
        print(warning, file=sys.stderr)
    _write_atomic(Path(output_path), data)
    at = "" if stats.quality is None else f", quality {stats.quality:.4f}"
    return (
        f"{output_path}: {len(data)} bytes, {stats.bits_per_pixel:.4f} bpp "
        f"(estimated {stats.estimated_bits / stats.num_pixels:.4f} bpp, "
        f"{image.shape[0]}x{image.shape[1]}, {codec.config.prior}{at})"
    )


def decompress(checkpoint: str, input_path: str, output_path: str) -> str:
    """Decompress the .jahp file `input_path` to the PNG `output_path`; returns the line to
    print."""
    data = _read_file(Path(input_path))
    codec = load_codec(checkpoint)
    image = codec.decompress(data)
    write_png(output_path, image)
    return f"{output_path}: {image.shape[0]}x{image.shape[1]} PNG"


def _codec(args: list[str]) -> int:
    if len(args) != 3 or args[0] not in SUBCOMMANDS:
        raise UsageError(
            f"expected compress|decompress INPUT OUTPUT (and --checkpoint=...), got {args}"
        )
    if FLAGS.checkpoint is None:
        raise UsageError("--checkpoint is required (a training workdir or checkpoint folder)")
    rate = {name: FLAGS[name].value for name in RATE_FLAGS if FLAGS[name].value is not None}
    if len(rate) > 1:
        raise UsageError(f"give one of --quality, --lmbda, --target_bpp, not {len(rate)}")
    subcommand, input_path, output_path = args
    if rate and subcommand == "decompress":
        raise UsageError(f"--{next(iter(rate))} is for compress: a file records its quality")
    enable_compilation_cache()
    try:
        if subcommand == "compress":
            message = compress(FLAGS.checkpoint, input_path, output_path, rate)
        else:
            message = decompress(FLAGS.checkpoint, input_path, output_path)
    except (CodecError, ImageError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(message)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """The `jahp-codec` command; argv: its arguments (default: sys.argv[1:])."""
    return COMMAND.run(_codec, argv)


if __name__ == "__main__":
    sys.exit(main())
