"""`jahp-codec`: compress images to .jahp files and back, with a trained model.

    jahp-codec compress   --checkpoint=WORKDIR in.png out.jahp
    jahp-codec decompress --checkpoint=WORKDIR in.jahp out.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jahp_jax.coding.codec import CodecError
from jahp_jax.io.checkpoints import CheckpointError, load_codec
from jahp_jax.io.images import ImageError, read_image, write_atomic, write_png
from jahp_jax.runtime import enable_compilation_cache


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


def _compress(args: argparse.Namespace) -> str:
    image = read_image(args.input)
    codec = load_codec(args.checkpoint)
    data, stats = codec.compress_with_stats(image)
    _write_atomic(Path(args.output), data)
    return (
        f"{args.output}: {len(data)} bytes, {stats.bits_per_pixel:.4f} bpp "
        f"(estimated {stats.estimated_bits / stats.num_pixels:.4f} bpp, "
        f"{image.shape[0]}x{image.shape[1]}, {codec.config.prior})"
    )


def _decompress(args: argparse.Namespace) -> str:
    data = _read_file(Path(args.input))
    codec = load_codec(args.checkpoint)
    image = codec.decompress(data)
    write_png(args.output, image)
    return f"{args.output}: {image.shape[0]}x{image.shape[1]} PNG"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="jahp-codec", description=__doc__.split("\n")[0]
    )
    commands = parser.add_subparsers(dest="command", required=True)
    for name, inputs, outputs in (
        ("compress", "image file (PNG, JPEG, ...)", ".jahp file to write"),
        ("decompress", ".jahp file", "PNG file to write"),
    ):
        command = commands.add_parser(name)
        command.add_argument(
            "--checkpoint", required=True, help="training workdir or checkpoint step folder"
        )
        command.add_argument("input", help=inputs)
        command.add_argument("output", help=outputs)
    args = parser.parse_args(argv)
    enable_compilation_cache()
    try:
        message = (_compress if args.command == "compress" else _decompress)(args)
    except (CodecError, ImageError, CheckpointError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(message)
    return 0


if __name__ == "__main__":
    sys.exit(main())
