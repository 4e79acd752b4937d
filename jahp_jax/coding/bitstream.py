"""The .jahp file format: a fixed header, then the z stream, then the y stream.

This code writes format version 4 and reads every version ever written (1 to 4): a new version
adds a reader and never removes one (docs/file_format.md). Version 4's 48-byte header (version
3's is the same with bytes 6..7 reserved, read as quality 0):

| offset | size | field                                                                   |
|--------|------|-------------------------------------------------------------------------|
| 0      | 4    | magic `b"JAHP"`                                                         |
| 4      | 1    | format version (4; version 3: the same, bytes 6..7 reserved, 0)         |
| 5      | 1    | arithmetic of the prior path: 0 float, 1 integer (`ARITHMETIC`)         |
| 6      | 2    | quality code Q of a variable-rate model (quality Q / 65535), else 0     |
| 8      | 8    | model identity: `ModelConfig.fingerprint()` (prior, sizes, options)     |
| 16     | 8    | model parameters: `checkpoints.params_fingerprint`                      |
| 24     | 4    | image height (pixels)                                                   |
| 28     | 4    | image width (pixels)                                                    |
| 32     | 4    | z stream length in bytes (multiple of 4; 0 without a hyperprior)        |
| 36     | 4    | y stream length in bytes (multiple of 4)                                |
| 40     | 4    | CRC32 of the entropy tables (detects a decoder with different numerics) |
| 44     | 4    | CRC32 of bytes 0..43 and of the streams                                 |
| 48     | ...  | z stream, y stream (constriction range coder words, little endian)      |

Versions 1 and 2 (44 bytes) named the model by its prior and sizes instead of bytes 5..15: byte 5
the prior's index in `LEGACY_PRIORS`, bytes 6..7 N, 8..9 M, byte 10 K, byte 11 reserved, then the
parameter fingerprint at 12 and the fields of bytes 24..47 above at 20..43; their prior path was
always float. `unpack` maps such a header to today's model identity (`ModelConfig(prior, N, M,
K).fingerprint()`); how each version coded its symbols is `jahp_jax.coding.versions`.

All integers are little endian. Every byte of the file is covered by the CRC32 (the CRC field
itself aside), so a flipped byte, a truncation or appended bytes are detected before decoding.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib

from jahp_jax.coding.range_coder import CodecError
from jahp_jax.models.config import ModelConfig

MAGIC = b"JAHP"
FORMAT_VERSION = 4  # the version this code writes
READABLE_VERSIONS = (1, 2, 3, 4)  # every version ever written: append, never remove
ARITHMETIC = ("float", "integer")  # byte 5: index of the prior path's arithmetic
# Byte 5 of versions 1 and 2: the prior, by its index in the registry of those days (frozen).
LEGACY_PRIORS = (
    "factorized", "hyperprior", "mean_scale", "context", "joint", "checkerboard", "channelwise",
)  # fmt: skip
MAX_IMAGE_SIDE = 1 << 16
_BODY = struct.Struct("<4sBBH8s8sIIIII")  # versions 3 and 4
_LEGACY_BODY = struct.Struct("<4sBBHHBx8sIIIII")  # versions 1 and 2
_CRC = struct.Struct("<I")
HEADER_BYTES = _BODY.size + _CRC.size  # 48, what `pack` writes


@dataclasses.dataclass(frozen=True)
class Header:
    """The header fields (see the module docstring)."""

    arithmetic: str  # one of ARITHMETIC
    model: bytes  # 8 bytes: ModelConfig.fingerprint()
    fingerprint: bytes  # 8 bytes: params_fingerprint(params)
    height: int
    width: int
    z_bytes: int
    y_bytes: int
    tables_crc: int
    version: int = FORMAT_VERSION
    config: ModelConfig | None = None  # the model a version 1 or 2 header names (3, 4: None)
    quality: int = 0  # a variable-rate model's quality code (`jahp_jax.models.gain`), else 0


def header_bytes(version: int) -> int:
    """The header size of a readable format version."""
    return (_BODY if version >= 3 else _LEGACY_BODY).size + _CRC.size


def pack(header: Header, z_stream: bytes, y_stream: bytes) -> bytes:
    """Header + streams -> the file's bytes (format version 4)."""
    if header.version != FORMAT_VERSION:
        raise CodecError(f"this code writes jahp format version {FORMAT_VERSION} only")
    if header.arithmetic not in ARITHMETIC:
        raise CodecError(f"unknown prior arithmetic '{header.arithmetic}'")
    if not (0 < header.height <= MAX_IMAGE_SIDE and 0 < header.width <= MAX_IMAGE_SIDE):
        raise CodecError(
            f"image size {header.height}x{header.width} is outside 1..{MAX_IMAGE_SIDE} per side"
        )
    body = _BODY.pack(
        MAGIC,
        FORMAT_VERSION,
        ARITHMETIC.index(header.arithmetic),
        header.quality,
        header.model,
        header.fingerprint,
        header.height,
        header.width,
        len(z_stream),
        len(y_stream),
        header.tables_crc,
    )
    crc = zlib.crc32(y_stream, zlib.crc32(z_stream, zlib.crc32(body)))
    return body + _CRC.pack(crc) + z_stream + y_stream


def legacy_config(
    prior_id: int, num_filters: int, num_latents: int, components: int
) -> ModelConfig:
    """The model a version 1 or 2 header names (its prior's default options, float prior path)."""
    if prior_id >= len(LEGACY_PRIORS):
        raise CodecError(f"jahp file names an unknown prior id {prior_id}")
    prior = LEGACY_PRIORS[prior_id]
    try:
        return ModelConfig(prior, num_filters, num_latents, components)
    except ValueError as error:
        raise CodecError(f"jahp file names an invalid model ({prior}: {error})") from None


def unpack(data: bytes) -> tuple[Header, bytes, bytes]:
    """The file's bytes (any readable version) -> (header, z_stream, y_stream); CodecError on
    anything malformed."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CodecError(f"expected the compressed file as bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) == 0:
        raise CodecError("the compressed file is empty")
    if len(data) < 5 or data[:4] != MAGIC:
        if data[: min(len(data), 4)] != MAGIC[: min(len(data), 4)]:
            raise CodecError("not a jahp file (wrong magic bytes)")
        raise CodecError(f"truncated jahp file: {len(data)} bytes, the header alone is 48")
    version = data[4]
    if version not in READABLE_VERSIONS:
        newer = ""
        if version > FORMAT_VERSION:
            newer = "; a newer jahp_jax wrote it: decode it with that one"
        raise CodecError(
            f"unsupported jahp format version {version} (this decoder reads versions "
            f"{READABLE_VERSIONS[0]} to {READABLE_VERSIONS[-1]}{newer})"
        )
    size = header_bytes(version)
    if len(data) < size:
        raise CodecError(f"truncated jahp file: {len(data)} bytes, the header alone is {size}")
    body = _BODY if version >= 3 else _LEGACY_BODY
    fields = body.unpack_from(data)
    height, width, z_bytes, y_bytes, tables_crc = fields[-5:]
    expected = size + z_bytes + y_bytes
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes or a corrupt header"
        raise CodecError(f"jahp file {what}: {len(data)} bytes, its header announces {expected}")
    (crc,) = _CRC.unpack_from(data, body.size)
    if zlib.crc32(data[size:], zlib.crc32(data[: body.size])) != crc:
        raise CodecError("jahp file is corrupted (CRC32 mismatch)")
    if z_bytes % 4 or y_bytes % 4:
        raise CodecError("jahp file has stream lengths that are not whole 32-bit words")
    if not (0 < height <= MAX_IMAGE_SIDE and 0 < width <= MAX_IMAGE_SIDE):
        raise CodecError(f"jahp file has an invalid image size {height}x{width}")
    config, quality = None, 0  # version 3's bytes 6..7 were reserved
    if version >= 3:
        arithmetic, model, fingerprint = fields[2], fields[4], fields[5]
        quality = fields[3] if version >= 4 else 0
        if arithmetic >= len(ARITHMETIC):
            raise CodecError(f"jahp file names an unknown prior arithmetic {arithmetic}")
        arithmetic = ARITHMETIC[arithmetic]
    else:
        config = legacy_config(*fields[2:6])
        arithmetic, model, fingerprint = "float", config.fingerprint(), fields[6]
    header = Header(
        arithmetic, model, fingerprint, height, width, z_bytes, y_bytes, tables_crc,
        version, config, quality,
    )  # fmt: skip
    return header, data[size : size + z_bytes], data[size + z_bytes :]
