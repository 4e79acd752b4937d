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

A variable-rate model (`ModelConfig.variable_rate`) compresses at a quality q in [0, 1] (`quality=`,
or `quality_of_lmbda`, or `compress_to_bpp` for a target size): the encoder codes y * g(q), the
header carries q's 16-bit code, the decoder reads it and feeds y_hat * g'(q) to g_s; both sides
compute the vectors with `jahp_jax.models.gain.gain_vectors`, bit for bit the same everywhere.
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
from jahp_jax.models.gain import (
    MAX_QUALITY_CODE,
    code_quality,
    gain_vectors,
    quality_code,
    quality_of_lmbda,
)

__all__ = ["Codec", "CodecError", "CompressStats", "pad_image", "portability_warning"]
TARGET_TOLERANCE = 0.01  # compress_to_bpp stops within this fraction under the target
MAX_TARGET_ATTEMPTS = 40


@dataclasses.dataclass
class CompressStats:
    """What `compress_with_stats` measured. Bits are totals over the image."""

    num_bytes: int  # file size, header included
    header_bytes: int
    bits_y: float  # sum of -log2 likelihood of y_hat under the coder's distributions
    bits_z: float
    num_pixels: int
    y_hat: np.ndarray  # (h, w, M) float32, as the decoder will reconstruct it (gained)
    quality: float | None = None  # a variable-rate model's (as coded), else None
    encodes: int = 1  # files coded to find this one (compress_to_bpp's search)

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
        self._gains: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # quality code -> vectors

    # --- rate -----------------------------------------------------------------------------------
    @property
    def variable_rate(self) -> bool:
        return self.config.variable_rate

    def _quality_code(self, quality: float | None) -> int:
        """The header's quality code of `quality` (CodecError for a quality this model has no
        use for, or one outside [0, 1])."""
        if not self.variable_rate:
            if quality is not None:
                raise CodecError(
                    f"a quality is for a variable-rate model; this {self.config.describe()} "
                    "model has one rate: compress without one"
                )
            return 0
        if quality is None:
            low, high = self.config.lmbda_range
            raise CodecError(
                f"this is a variable-rate model (lambda {low:g} ... {high:g}): give a quality "
                "in [0, 1], a lambda in its range or a target bpp"
            )
        try:
            return quality_code(float(quality))
        except ValueError as error:
            raise CodecError(str(error)) from None

    def quality_of_lmbda(self, lmbda: float) -> float:
        """The quality of a variable-rate model at `lmbda` (CodecError outside its range or for
        a fixed-rate model)."""
        if not self.variable_rate:
            raise CodecError(
                f"a lambda is chosen when compressing with a variable-rate model only; this "
                f"{self.config.describe()} model has one rate: compress without one"
            )
        try:
            return quality_of_lmbda(float(lmbda), self.config.lmbda_range)
        except ValueError as error:
            raise CodecError(str(error)) from None

    def gains(self, code: int) -> tuple[np.ndarray, np.ndarray]:
        """(gain, inverse gain), (M,) float32, of a quality code (`jahp_jax.models.gain`)."""
        if code not in self._gains:
            self._gains[code] = gain_vectors(self.params["gain_units"], code)
        return self._gains[code]

    # --- encoding -----------------------------------------------------------------------------
    def _latents(self, image: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) -> y = g_a(x) (h, w, M) float32 (checked, padded)."""
        _check_image(image)
        x = jnp.asarray(pad_image(image, self.config.pad_multiple))
        return np.asarray(self._analysis(self.params, x))[0]

    def compress_with_stats(
        self, image: np.ndarray, quality: float | None = None
    ) -> tuple[bytes, CompressStats]:
        """uint8 (H, W, 3) -> (file bytes, CompressStats); `quality` in [0, 1] for a
        variable-rate model (required), None for a fixed-rate one."""
        code = self._quality_code(quality)
        return self._encode(self._latents(image), image.shape, code)

    def _encode(self, y: np.ndarray, shape: tuple[int, ...], code: int
                ) -> tuple[bytes, CompressStats]:  # fmt: skip
        if self.variable_rate:
            y = y * self.gains(code)[0]
        coded = self.coder.encode(y)
        header = bitstream.Header(
            self.arithmetic,
            self.config.fingerprint(),
            self.fingerprint,
            shape[0],
            shape[1],
            len(coded.z_stream),
            len(coded.y_stream),
            self.coder.table_checksum,
            quality=code,
        )
        data = bitstream.pack(header, coded.z_stream, coded.y_stream)
        stats = CompressStats(
            len(data),
            bitstream.HEADER_BYTES,
            coded.bits_y,
            coded.bits_z,
            shape[0] * shape[1],
            coded.y_hat,
            code_quality(code) if self.variable_rate else None,
        )
        return data, stats

    def compress(self, image: np.ndarray, quality: float | None = None) -> bytes:
        """uint8 (H, W, 3) -> the .jahp file's bytes (`quality`: see `compress_with_stats`)."""
        return self.compress_with_stats(image, quality)[0]

    def compress_to_bpp(
        self, image: np.ndarray, target_bpp: float, tolerance: float = TARGET_TOLERANCE
    ) -> tuple[bytes, CompressStats]:
        """A variable-rate model's file of `image` at the highest quality whose file is at most
        `target_bpp` (header included), searched over the quality codes: the file lands in
        [target (1 - tolerance), target] where a quality gets there, else just under the
        target. CodecError (naming the nearest reachable rate) for a target below the rate of
        quality 0 or above that of quality 1 (by more than the tolerance)."""
        if not self.variable_rate:
            self._quality_code(0.0)  # the fixed-rate model's one-line error
        if not (target_bpp > 0 and np.isfinite(target_bpp)):
            raise CodecError(f"target {target_bpp} bpp must be a positive number")
        y = self._latents(image)
        attempts: dict[int, tuple[bytes, CompressStats]] = {}

        def attempt(code: int) -> float:
            if code not in attempts:
                attempts[code] = self._encode(y, image.shape, code)
            return attempts[code][1].bits_per_pixel

        def at_or_under(bpp: float) -> bool:
            return target_bpp * (1 - tolerance) <= bpp <= target_bpp

        low, high = 0, MAX_QUALITY_CODE
        if attempt(low) > target_bpp:
            raise CodecError(
                f"target {target_bpp:g} bpp is below the lowest rate this model reaches on this "
                f"image: {attempt(low):.4f} bpp at quality 0"
            )
        if attempt(high) <= target_bpp:
            if at_or_under(attempt(high)):
                return attempts[high][0], dataclasses.replace(attempts[high][1], encodes=2)
            raise CodecError(
                f"target {target_bpp:g} bpp is above the highest rate this model reaches on this "
                f"image: {attempt(high):.4f} bpp at quality 1"
            )
        # Bracket low (<= target) .. high (> target): interpolate log(bpp) over the code (the
        # rate is close to exponential in the quality), bisect when that stalls.
        bisect = False
        while high - low > 1 and not at_or_under(attempt(low)):
            if len(attempts) >= MAX_TARGET_ATTEMPTS:
                break
            if bisect:
                code = (low + high) // 2
            else:
                rate_low, rate_high = np.log(attempt(low)), np.log(attempt(high))
                share = (np.log(target_bpp) - rate_low) / (rate_high - rate_low)
                code = min(max(low + round(share * (high - low)), low + 1), high - 1)
            width = high - low
            if attempt(code) <= target_bpp:
                low = code
            else:
                high = code
            bisect = not bisect and (high - low) > width // 2  # shrank less than half
        data, stats = attempts[low]
        return data, dataclasses.replace(stats, encodes=len(attempts))

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
        if header.quality and not self.variable_rate:
            raise CodecError(
                f"file carries a quality code ({header.quality}) but this model "
                f"({self.config.describe()}) is fixed-rate: a corrupt header"
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
        image = self.reconstruct(y_hat, header.height, header.width, header.quality)
        return image, y_hat

    def decompress(self, data: bytes) -> np.ndarray:
        """File bytes -> uint8 image (H, W, 3)."""
        return self.decompress_with_latents(data)[0]

    def synthesis_input(self, y_hat: np.ndarray, quality_code: int = 0) -> np.ndarray:
        """What g_s reads: y_hat, times the inverse gain of `quality_code` for a variable-rate
        model (a float32 product in numpy: the same bits on every machine)."""
        if not self.variable_rate:
            return y_hat
        return y_hat * self.gains(quality_code)[1]

    def reconstruct(self, y_hat: np.ndarray, height: int, width: int, quality_code: int = 0
                    ) -> np.ndarray:  # fmt: skip
        """g_s(y_hat) cropped to (height, width), clipped to [0, 1], as rounded uint8 (a
        variable-rate model's y_hat as coded at `quality_code`)."""
        y_in = self.synthesis_input(y_hat, quality_code)
        x_hat = np.asarray(self._synthesis(self.params, jnp.asarray(y_in[None])))[0]
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
