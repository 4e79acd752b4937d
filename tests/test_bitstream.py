"""The .jahp header: packing, and a clear CodecError for every malformed file."""

import dataclasses
import struct
import zlib

import pytest

from jahp_jax.coding import bitstream
from jahp_jax.coding.range_coder import CodecError

HEADER = bitstream.Header("float", bytes(range(8, 16)), bytes(range(8)), 97, 131, 8, 12, 0xDEADBEEF)
Z, Y = b"z" * 8, b"y" * 12


def _with_crc(data: bytes) -> bytes:
    body = data[: bitstream.HEADER_BYTES - 4]
    crc = zlib.crc32(data[bitstream.HEADER_BYTES :], zlib.crc32(body))
    return body + struct.pack("<I", crc) + data[bitstream.HEADER_BYTES :]


def test_roundtrip():
    data = bitstream.pack(HEADER, Z, Y)
    assert len(data) == bitstream.HEADER_BYTES + 20 == 68
    assert data[:4] == b"JAHP"
    header, z, y = bitstream.unpack(data)
    assert header == HEADER
    assert (z, y) == (Z, Y)


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: b"", "empty"),
        (lambda d: d[:10], "truncated"),
        (lambda d: d[:-1], "truncated"),
        (lambda d: d + b"\0", "trailing"),
        (lambda d: b"PNG\x89" + d[4:], "not a jahp file"),
        (lambda d: b"\x89PNG", "not a jahp file"),
        (lambda d: d[:4] + b"\x07" + d[5:], "version 7"),
        (lambda d: _with_crc(d[:4] + b"\x02" + d[5:]), r"version 2 \(this decoder reads 3, 4;"),
        (lambda d: d[:4] + b"\x02" + d[5:40], r"version 2"),  # a short version-2 file
        (lambda d: d[:-3] + bytes([d[-3] ^ 1]) + d[-2:], "CRC32"),
        (lambda d: d[:14] + bytes([d[14] ^ 0x80]) + d[15:], "CRC32"),
        (lambda d: _with_crc(d[:5] + b"\x09" + d[6:]), "unknown prior arithmetic"),
        (lambda d: _with_crc(d[:24] + struct.pack("<I", 0) + d[28:]), "image size"),
    ],
)
def test_malformed_files_raise_codec_error(mutate, message):
    with pytest.raises(CodecError, match=message):
        bitstream.unpack(mutate(bitstream.pack(HEADER, Z, Y)))


@pytest.mark.parametrize("arithmetic", bitstream.ARITHMETIC)
def test_arithmetic_roundtrips(arithmetic):
    header = dataclasses.replace(HEADER, arithmetic=arithmetic)
    assert bitstream.unpack(bitstream.pack(header, Z, Y))[0].arithmetic == arithmetic


def test_not_bytes():
    with pytest.raises(CodecError, match="bytes"):
        bitstream.unpack("JAHP")


def test_every_single_bit_flip_is_detected():
    data = bitstream.pack(HEADER, Z, Y)
    for position in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[position] ^= 1 << bit
            with pytest.raises(CodecError):
                bitstream.unpack(bytes(flipped))


def test_pack_refuses_bad_sizes():
    bad = bitstream.Header("float", bytes(8), bytes(8), 0, 5, 0, 0, 0)
    with pytest.raises(CodecError, match="size"):
        bitstream.pack(bad, b"", b"")
