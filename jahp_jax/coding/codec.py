"""Compress images to .jahp files and back, with a trained model (the command: `jahp-codec`).

Library: `codec = jahp_jax.io.checkpoints.load_codec(WORKDIR)`; `data =
codec.compress(image_uint8)`; `image = codec.decompress(data)`; `codec.compress_with_stats(image)`
also returns the estimated rate (from the very distributions the coder used) and the coded latents.

Images of any size: replicate-padded to a multiple of the model's `pad_multiple` (64 for every
registered transform), cropped back after decoding. The decoded image is g_s(y_hat) clipped to [0,
1], times 255, rounded to uint8, where y_hat is bit-identical to the encoder's (see
`jahp_jax.coding.runner`). Files are checked (magic, version, CRC32 of every byte, model identity
and parameter fingerprints, entropy-table checksum) before anything is decoded; every problem raises
`CodecError` (a ValueError) with a one-line message.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import jax.numpy as jnp
import numpy as np

from jahp_jax.coding import bitstream, versions
from jahp_jax.coding.programs import compiled_functions
from jahp_jax.coding.range_coder import CodecError, CodingRules, decode_guard
from jahp_jax.coding.runner import LatentCoder, make_latent_coder
from jahp_jax.models.compression_model import CompressionModel
from jahp_jax.models.config import ModelConfig, params_fingerprint

__all__ = ["Codec", "CodecError", "CompressStats", "pad_image", "portability_warning"]


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


def pad_image(image: np.ndarray, multiple: int) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 (1, H', W', 3) in [0, 1], H' and W' the next multiples of
    `multiple` (a model's `config.pad_multiple`), edge pixels replicated at the bottom and
    right."""
    height, width = image.shape[:2]
    pad = ((0, -height % multiple), (0, -width % multiple), (0, 0))
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
        self._coders: dict[CodingRules, LatentCoder] = {}  # of earlier versions' rules
        self._analysis = compiled_functions(model)["analysis"]
        self._synthesis = compiled_functions(model)["synthesis"]

    # --- encoding -----------------------------------------------------------------------------
    def compress_with_stats(self, image: np.ndarray) -> tuple[bytes, CompressStats]:
        """uint8 (H, W, 3) -> (file bytes, CompressStats)."""
        _check_image(image)
        x = jnp.asarray(pad_image(image, self.config.pad_multiple))
        y = np.asarray(self._analysis(self.params, x))[0]
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

    # --- decoding -----------------------------------------------------------------------------
    def _check_header(self, header: bitstream.Header) -> None:
        if header.arithmetic != self.arithmetic:
            raise CodecError(
                f"file was made by a model with the {header.arithmetic} prior path; this model "
                f"({self.config.describe()}) has the {self.arithmetic} one: decode it with the "
                "model that wrote it"
            )
        if header.model != self.config.fingerprint():
            named = header.config.describe() if header.config else "model"
            raise CodecError(
                f"file was made with a different model ({named} id {header.model.hex()}; this "
                f"is {self.config.describe()}, id {self.config.fingerprint().hex()})"
            )
        if header.fingerprint != self.fingerprint:
            raise CodecError(
                f"file was made with different model parameters (fingerprint "
                f"{header.fingerprint.hex()}, this checkpoint is {self.fingerprint.hex()})"
            )
        # An encoder writes at least one word per stream it codes, and no z stream without z.
        hyperprior = self.coder.codec.hyperprior
        if (header.z_bytes > 0) != hyperprior or header.y_bytes == 0:
            raise CodecError(
                f"file has a {header.z_bytes}-byte z stream and a {header.y_bytes}-byte y "
                f"stream; a {self.config.prior} model writes "
                f"{'a non-empty' if hyperprior else 'no'} z stream and a non-empty y stream "
                "(corrupt header)"
            )

    def coder_for(self, header: bitstream.Header):
        """The latent coder that makes the file's entropy tables: this model's, or for a float
        file of an earlier format version the one of the first coding era of that version whose
        tables match the header's CRC (`versions.RULES`). CodecError when none does."""
        coders = [self.coder]
        if self.arithmetic == "float":
            coders = []
            for rules in versions.RULES[header.version]:
                if rules != self.coder.rules and rules not in self._coders:
                    self._coders[rules] = LatentCoder(self.model, self.params, rules=rules)
                coders.append(self.coder if rules == self.coder.rules else self._coders[rules])
        for coder in coders:
            if coder.table_checksum == header.tables_crc:
                return coder
        raise CodecError(
            "the entropy tables of this decoder differ from the encoder's (same parameters, "
            "different numerics: a float-prior file decodes only where the float arithmetic "
            "matches the encoder's)"
        )

    def decompress_with_latents(self, data: bytes) -> tuple[np.ndarray, np.ndarray]:
        """File bytes (any readable format version) -> (uint8 image (H, W, 3), y_hat (h, w, M)
        float32)."""
        header, z_stream, y_stream = bitstream.unpack(data)
        self._check_header(header)
        latent_shape = self.config.latent_shape(header.height, header.width)
        coder = self.coder_for(header)
        y_hat = decode_guard(coder.decode, z_stream, y_stream, latent_shape)
        return self.reconstruct(y_hat, header.height, header.width), y_hat

    def decompress(self, data: bytes) -> np.ndarray:
        """File bytes -> uint8 image (H, W, 3)."""
        return self.decompress_with_latents(data)[0]

    def reconstruct(self, y_hat: np.ndarray, height: int, width: int) -> np.ndarray:
        """g_s(y_hat) cropped to (height, width), clipped to [0, 1], as rounded uint8."""
        x_hat = np.asarray(self._synthesis(self.params, jnp.asarray(y_hat[None])))[0]
        x_hat = np.nan_to_num(x_hat[:height, :width], nan=0.0, posinf=1.0, neginf=0.0)
        return np.round(np.clip(x_hat, 0.0, 1.0) * 255.0).astype(np.uint8)


def portability_warning(config: ModelConfig, checkpoint: str | os.PathLike) -> str | None:
    """The line `jahp-codec compress` prints for a model with a float prior path (None for an
    integer one): its files decode only where the float arithmetic matches, and how to get
    files that decode anywhere, or that this prior has no integer form."""
    if config.integer_prior:
        return None
    where = (
        "warning: this model's prior path is float: its files decode only on machines with the "
        "same float arithmetic (CPU instruction set, XLA and BLAS builds)"
    )
    try:
        dataclasses.replace(config, integer_prior=True)
    except ValueError as error:  # "the '<prior>' prior has no integer form: <why>"
        return f"{where}; {error}"
    source = Path(checkpoint)
    return (
        f"{where}; for files that decode anywhere, convert it once: "
        f"jahp-convert --to=integer {source} {source.parent / (source.name + '_integer')}"
    )
