"""Compress images to .jahp files and back, with a trained model.

    python -m jahp_jax.cli.codec compress   --checkpoint=WORKDIR in.png out.jahp
    python -m jahp_jax.cli.codec decompress --checkpoint=WORKDIR in.jahp out.png

Library: `codec = load_codec(WORKDIR)`; `data = codec.compress(image_uint8)`;
`image = codec.decompress(data)`; `codec.compress_with_stats(image)` also returns the estimated
rate (from the very distributions the coder used) and the coded latents.

Images of any size: replicate-padded to a multiple of 64, cropped back after decoding. The
decoded image is g_s(y_hat) clipped to [0, 1], times 255, rounded to uint8, where y_hat is
bit-identical to the encoder's (see `jahp_jax.coding.range_coder`). Files are checked (magic,
version,
CRC32 of every byte, model identity and parameter fingerprints, entropy-table checksum) before
anything is decoded; every problem raises `CodecError` (a ValueError) with a one-line message.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from jahp_jax.coding import bitstream
from jahp_jax.coding.range_coder import (
    CodecError,
    compiled_functions,
    decode_guard,
    make_latent_coder,
)
from jahp_jax.io.checkpoints import CheckpointError, load_model, params_fingerprint
from jahp_jax.io.images import ImageError, read_image, write_atomic, write_png
from jahp_jax.models.compression_model import CompressionModel
from jahp_jax.models.latent_codecs import PRIORS
from jahp_jax.runtime import enable_compilation_cache

PAD_MULTIPLE = 64

__all__ = ["Codec", "CodecError", "CompressStats", "load_codec", "main"]


@dataclasses.dataclass
class CompressStats:
    """What `compress_with_stats` measured. Bits are totals over the image."""

    num_bytes: int  # file size, header included
    header_bytes: int
    bits_y: float  # sum of -log2 likelihood of y_hat under the coder's distributions
    bits_z: float
    num_pixels: int
    y_hat: np.ndarray  # (h, w, M) float32, as the decoder will reconstruct it

    @property
    def estimated_bits(self) -> float:
        return self.bits_y + self.bits_z

    @property
    def bits_per_pixel(self) -> float:
        return 8 * self.num_bytes / self.num_pixels

    @property
    def overhead(self) -> float:
        """(file bits - estimated bits) / estimated bits, header included."""
        return 8 * self.num_bytes / self.estimated_bits - 1.0


def _check_image(image: np.ndarray) -> None:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        kind = getattr(image, "dtype", type(image).__name__)
        raise CodecError(f"expected a uint8 numpy image (H, W, 3), got {kind}")
    if image.ndim != 3 or image.shape[2] != 3 or min(image.shape[:2]) < 1:
        raise CodecError(f"expected an RGB image of shape (H, W, 3), got {image.shape}")
    if max(image.shape[:2]) > bitstream.MAX_IMAGE_SIDE:
        raise CodecError(
            f"image {image.shape[0]}x{image.shape[1]} exceeds {bitstream.MAX_IMAGE_SIDE} per side"
        )


def pad_image(image: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 (1, H', W', 3) in [0, 1], H' and W' the next multiples of 64
    (edge pixels replicated)."""
    height, width = image.shape[:2]
    pad = ((0, -height % PAD_MULTIPLE), (0, -width % PAD_MULTIPLE), (0, 0))
    return np.pad(image.astype(np.float32) / 255.0, pad, mode="edge")[None]


class Codec:
    """A model with fixed parameters, ready to compress and decompress single RGB images."""

    def __init__(self, model: CompressionModel, params: dict):
        self.model = model
        self.params = params
        self.config = model.config
        self.arithmetic = "integer" if model.config.integer_prior else "float"
        self.fingerprint = params_fingerprint(params)
        self.coder = make_latent_coder(model, params)
        self._analysis = compiled_functions(model)["analysis"]
        self._synthesis = compiled_functions(model)["synthesis"]

    # --- encoding -----------------------------------------------------------------------------
    def compress_with_stats(self, image: np.ndarray) -> tuple[bytes, CompressStats]:
        """uint8 (H, W, 3) -> (file bytes, CompressStats)."""
        _check_image(image)
        y = np.asarray(self._analysis(self.params, jnp.asarray(pad_image(image))))[0]
        coded = self.coder.encode(y)
        header = bitstream.Header(
            self.arithmetic,
            self.config.fingerprint(),
            self.fingerprint,
            image.shape[0],
            image.shape[1],
            len(coded.z_stream),
            len(coded.y_stream),
            self.coder.table_checksum,
        )
        data = bitstream.pack(header, coded.z_stream, coded.y_stream)
        stats = CompressStats(
            len(data),
            bitstream.HEADER_BYTES,
            coded.bits_y,
            coded.bits_z,
            image.shape[0] * image.shape[1],
            coded.y_hat,
        )
        return data, stats

    def compress(self, image: np.ndarray) -> bytes:
        """uint8 (H, W, 3) -> the .jahp file's bytes."""
        return self.compress_with_stats(image)[0]

    def estimate_bits(self, image: np.ndarray) -> float:
        """Estimated bits (y + z) of `image`: -log2 likelihood under the coder's distributions."""
        return self.compress_with_stats(image)[1].estimated_bits

    # --- decoding -----------------------------------------------------------------------------
    def _check_header(self, header: bitstream.Header) -> None:
        if header.arithmetic != self.arithmetic:
            raise CodecError(
                f"file was made by a model with the {header.arithmetic} prior path; this model "
                f"({self.config.describe()}) has the {self.arithmetic} one: decode it with the "
                "model that wrote it"
            )
        if header.model != self.config.fingerprint():
            raise CodecError(
                f"file was made with a different model (model id {header.model.hex()}; this is "
                f"{self.config.describe()}, id {self.config.fingerprint().hex()})"
            )
        if header.fingerprint != self.fingerprint:
            raise CodecError(
                f"file was made with different model parameters (fingerprint "
                f"{header.fingerprint.hex()}, this checkpoint is {self.fingerprint.hex()})"
            )
        if header.tables_crc != self.coder.table_checksum:
            raise CodecError(
                "the entropy tables of this decoder differ from the encoder's (same parameters, "
                "different numerics: decode with the JAX/numpy build that encoded)"
            )
        # An encoder writes at least one word per stream it codes, and no z stream without z.
        hyperprior = PRIORS[self.config.prior].hyperprior
        if (header.z_bytes > 0) != hyperprior or header.y_bytes == 0:
            raise CodecError(
                f"file has a {header.z_bytes}-byte z stream and a {header.y_bytes}-byte y "
                f"stream; a {self.config.prior} model writes "
                f"{'a non-empty' if hyperprior else 'no'} z stream and a non-empty y stream "
                "(corrupt header)"
            )

    def decompress_with_latents(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        """File bytes -> (uint8 image (H, W, 3), y_hat (h, w, M) float32)."""
        header, z_stream, y_stream = bitstream.unpack(data)
        self._check_header(header)
        latent_shape = (
            -(-header.height // PAD_MULTIPLE) * PAD_MULTIPLE // 16,
            -(-header.width // PAD_MULTIPLE) * PAD_MULTIPLE // 16,
        )
        y_hat = decode_guard(self.coder.decode, z_stream, y_stream, latent_shape)
        return self.reconstruct(y_hat, header.height, header.width), y_hat

    def decompress(self, data: bytes) -> np.ndarray:
        """File bytes -> uint8 image (H, W, 3)."""
        return self.decompress_with_latents(data)[0]

    def reconstruct(self, y_hat: np.ndarray, height: int, width: int) -> np.ndarray:
        """g_s(y_hat) cropped to (height, width), clipped to [0, 1], as rounded uint8."""
        x_hat = np.asarray(self._synthesis(self.params, jnp.asarray(y_hat[None])))[0]
        x_hat = np.nan_to_num(x_hat[:height, :width], nan=0.0, posinf=1.0, neginf=0.0)
        return np.round(np.clip(x_hat, 0.0, 1.0) * 255.0).astype(np.uint8)


def load_codec(checkpoint: str | os.PathLike) -> Codec:
    """A Codec from a training workdir (latest step), a checkpoint root or one step folder."""
    model, params, _ = load_model(checkpoint)
    return Codec(model, params)


# ---------------------------------------------------------------------------------------------
# Command line.
# ---------------------------------------------------------------------------------------------
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
        prog="python -m jahp_jax.cli.codec", description=__doc__.split("\n")[0]
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
