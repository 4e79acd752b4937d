"""The .jahp header: packing version 4, reading versions 1 to 4, and a clear CodecError for
every malformed file."""

import dataclasses
import struct
import zlib

import pytest

from jahp_jax.coding import bitstream
from jahp_jax.coding.range_coder import CodecError
from jahp_jax.models.config import ModelConfig

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
        (lambda d: d[:4] + b"\x00" + d[5:], r"version 0 \(this decoder reads versions 1 to 4\)"),
        (lambda d: d[:4] + b"\x05" + d[5:], "version 5 .* a newer jahp_jax wrote it"),
        (lambda d: d[:4] + b"\x02" + d[5:40], "the header alone is 44"),  # a short version 2
        (lambda d: d[:4] + b"\x02" + d[5:], "its header announces"),  # 4 read as 2
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


def test_pack_refuses_bad_sizes_and_old_versions():
    bad = bitstream.Header("float", bytes(8), bytes(8), 0, 5, 0, 0, 0)
    with pytest.raises(CodecError, match="size"):
        bitstream.pack(bad, b"", b"")
    with pytest.raises(CodecError, match="writes jahp format version 4 only"):
        bitstream.pack(dataclasses.replace(HEADER, version=2), Z, Y)


def test_quality_roundtrips_and_version_3_reads_as_quality_0():
    """Version 4 carries a variable-rate model's quality code in bytes 6..7; a version 3 file
    (the same layout, those bytes reserved) reads as quality 0 whatever they hold."""
    data = bitstream.pack(dataclasses.replace(HEADER, quality=40000), Z, Y)
    assert bitstream.unpack(data)[0].quality == 40000
    version_3 = _with_crc(data[:4] + b"\x03" + data[5:])
    header = bitstream.unpack(version_3)[0]
    assert (header.version, header.quality) == (3, 0)
    assert header == dataclasses.replace(HEADER, version=3)


def _legacy(version: int, prior_id: int, n: int, m: int, k: int, z=Z, y=Y) -> bytes:
    """A version 1 or 2 file as those versions wrote it (44-byte header)."""
    body = struct.pack(
        "<4sBBHHBx8sIIIII", b"JAHP", version, prior_id, n, m, k, bytes(range(8)), 97, 131,
        len(z), len(y), 0xDEADBEEF,
    )  # fmt: skip
    return body + struct.pack("<I", zlib.crc32(y, zlib.crc32(z, zlib.crc32(body)))) + z + y


@pytest.mark.parametrize("version", [1, 2])
def test_versions_1_and_2_map_to_todays_model_identity(version):
    header, z, y = bitstream.unpack(_legacy(version, 4, 64, 64, 1))
    config = ModelConfig("joint", 64, 64, 1)
    assert header == bitstream.Header(
        "float", config.fingerprint(), bytes(range(8)), 97, 131, 8, 12, 0xDEADBEEF, version, config
    )
    assert (z, y) == (Z, Y)
    for prior_id, prior in enumerate(bitstream.LEGACY_PRIORS):
        header = bitstream.unpack(_legacy(version, prior_id, 12, 10, 1))[0]
        assert header.config == ModelConfig(prior, 12, 10, 1)


@pytest.mark.parametrize(
    ("fields", "message"),
    [((7, 8, 8, 1), "unknown prior id 7"), ((1, 8, 8, 3), r"invalid model \(hyperprior: mixture")],
)
def test_a_legacy_header_naming_no_model_is_refused(fields, message):
    with pytest.raises(CodecError, match=message):
        bitstream.unpack(_legacy(1, *fields))


def test_every_single_bit_flip_of_a_legacy_file_is_detected():
    data = _legacy(1, 4, 64, 64, 1)
    for position in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[position] ^= 1 << bit
            with pytest.raises(CodecError):
                bitstream.unpack(bytes(flipped))
