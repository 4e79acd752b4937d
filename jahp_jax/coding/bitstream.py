"""The .jahp file format: a fixed 48-byte header, then the z stream, then the y stream.

| offset | size | field                                                                   |
|--------|------|-------------------------------------------------------------------------|
| 0      | 4    | magic `b"JAHP"`                                                         |
| 4      | 1    | format version (4; 3 had bytes 6..7 reserved; 2 named the model by ids) |
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

All integers are little endian. Every byte of the file is covered by the CRC32 (the CRC field
itself aside), so a flipped byte, a truncation or appended bytes are detected before decoding.
"""

from __future__ import annotations

import dataclasses
import struct
import zlib

from jahp_jax.coding.range_coder import CodecError

MAGIC = b"JAHP"
FORMAT_VERSION = 4
READABLE_VERSIONS = (3, 4)  # a version 3 file is version 4 with quality code 0
ARITHMETIC = ("float", "integer")  # byte 5: index of the prior path's arithmetic
MAX_IMAGE_SIDE = 1 << 16
_BODY = struct.Struct("<4sBBH8s8sIIIII")
_CRC = struct.Struct("<I")
HEADER_BYTES = _BODY.size + _CRC.size  # 48


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
    quality: int = 0  # a variable-rate model's quality code (`jahp_jax.models.gain`), else 0


def pack(header: Header, z_stream: bytes, y_stream: bytes) -> bytes:
    """Header + streams -> the file's bytes."""
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


def unpack(data: bytes) -> tuple[Header, bytes, bytes]:
    """The file's bytes -> (header, z_stream, y_stream); CodecError on anything malformed."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CodecError(f"expected the compressed file as bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) == 0:
        raise CodecError("the compressed file is empty")
    if len(data) < 5 or data[:4] != MAGIC:
        if data[: min(len(data), 4)] != MAGIC[: min(len(data), 4)]:
            raise CodecError("not a jahp file (wrong magic bytes)")
        raise CodecError(f"truncated jahp file: {len(data)} bytes, the header alone is 48")
    if data[4] not in READABLE_VERSIONS:
        raise CodecError(
            f"unsupported jahp format version {data[4]} (this decoder reads "
            f"{', '.join(map(str, READABLE_VERSIONS))}; compress the image again with this version)"
        )
    if len(data) < HEADER_BYTES:
        raise CodecError(f"truncated jahp file: {len(data)} bytes, the header alone is 48")
    fields = _BODY.unpack_from(data)
    (_, version, arithmetic, quality, model, fingerprint, height, width, z_bytes, y_bytes,
     tables_crc) = fields  # fmt: skip
    expected = HEADER_BYTES + z_bytes + y_bytes
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "has trailing bytes or a corrupt header"
        raise CodecError(f"jahp file {what}: {len(data)} bytes, its header announces {expected}")
    (crc,) = _CRC.unpack_from(data, _BODY.size)
    if zlib.crc32(data[HEADER_BYTES:], zlib.crc32(data[: _BODY.size])) != crc:
        raise CodecError("jahp file is corrupted (CRC32 mismatch)")
    if arithmetic >= len(ARITHMETIC):
        raise CodecError(f"jahp file names an unknown prior arithmetic {arithmetic}")
    if z_bytes % 4 or y_bytes % 4:
        raise CodecError("jahp file has stream lengths that are not whole 32-bit words")
    if not (0 < height <= MAX_IMAGE_SIDE and 0 < width <= MAX_IMAGE_SIDE):
        raise CodecError(f"jahp file has an invalid image size {height}x{width}")
    if version == 3:
        quality = 0  # reserved then
    header = Header(
        ARITHMETIC[arithmetic], model, fingerprint, height, width, z_bytes, y_bytes, tables_crc,
        quality,
    )  # fmt: skip
    z_stream = data[HEADER_BYTES : HEADER_BYTES + z_bytes]
    return header, z_stream, data[HEADER_BYTES + z_bytes :]
