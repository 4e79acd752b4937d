"""The trained model shipped in models/ (see models/README.md), in its float and integer forms:
a whole Kodak image coded exactly and at the model's estimated rate, with a model's real latent
statistics, and decoded images of odd sizes faithful to their input (a PSNR floor, the right
way up, the channels in order). Only committed files: the same with and without ../shared."""

import hashlib
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED

from jahp_jax.coding import bitstream
from jahp_jax.coding.range_coder import new_decoder
from jahp_jax.data.pipeline import read_image
from jahp_jax.io.checkpoints import ModelConfig, load_codec, read_config, resolve_checkpoint

REPO_ROOT = Path(__file__).resolve().parents[1]
MODEL = REPO_ROOT / "models" / "joint_n64_lmbda0.013"
INTEGER_MODEL = REPO_ROOT / "models" / "joint_n64_lmbda0.013_integer"
KODIM23 = SHARED / "data" / "kodak" / "kodim23.png"  # committed in tests/data/shared too
PSNR_FLOOR_DB = 30.0  # measured 31.8 dB on the whole kodim23, 32.8-35.1 dB on the crops
ORIENTATION_MARGIN_DB = 10.0  # measured >= 13 dB


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images (NumPy, float64)."""
    return float(10 * np.log10(255.0**2 / np.mean((a.astype(np.float64) - b) ** 2)))


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return read_image(KODIM23)


@pytest.fixture(scope="module")
def coded(image):
    codec = load_codec(MODEL)
    data, stats = codec.compress_with_stats(image)
    return codec, image, data, stats


@pytest.fixture(scope="module")
def integer_codec():
    return load_codec(INTEGER_MODEL)


def test_shipped_model_is_the_documented_one(coded):
    codec = coded[0]
    assert codec.config == ModelConfig("joint", 64, 64, 1)
    extra = read_config(resolve_checkpoint(MODEL))[1]
    assert extra["lmbda"] == 0.013 and extra["distortion"] == "mse"


def test_kodak_image_roundtrip_is_exact_at_the_estimated_rate(coded):
    codec, image, data, stats = coded
    decoded, y_hat = codec.decompress_with_latents(data)
    assert np.array_equal(y_hat, stats.y_hat)
    assert decoded.shape == image.shape
    payload_bits = 8 * (len(data) - bitstream.HEADER_BYTES)
    assert abs(payload_bits - stats.estimated_bits) <= 0.005 * stats.estimated_bits + 2 * 64
    assert psnr(decoded, image) > PSNR_FLOOR_DB


def crops(image: np.ndarray) -> dict[str, np.ndarray]:
    """Odd sizes of kodim23: 97 x 131 (no side a multiple of 64), one row, one column (through
    the feathers: upside down or with R and B swapped it is another column)."""
    return {"97x131": image[200:297, 300:431], "1x131": image[250:251, 300:431],
            "131x1": image[312:443, 208:209]}  # fmt: skip


@pytest.mark.parametrize("form", ["float", "integer"])
def test_decoded_images_of_odd_sizes_are_the_input_the_right_way_up(coded, integer_codec, form):
    """Through bytes: the decode has the input's shape, PSNR above the floor, and is far closer
    to the input than to the input turned upside down, mirrored or with R and B swapped."""
    codec = coded[0] if form == "float" else integer_codec
    for name, crop in crops(coded[1]).items():
        decoded = codec.decompress(codec.compress(crop))
        assert decoded.shape == crop.shape and decoded.dtype == np.uint8, name
        quality = psnr(decoded, crop)
        assert quality > PSNR_FLOOR_DB, (name, quality)
        print(f"[figure] {form} {name}: {quality:.2f} dB")
        others = {"R and B swapped": crop[..., ::-1]}
        if crop.shape[0] > 1:
            others["upside down"] = crop[::-1]
        if crop.shape[1] > 1:
            others["mirrored"] = crop[:, ::-1]
        for what, other in others.items():
            assert quality > psnr(decoded, other) + ORIENTATION_MARGIN_DB, (name, what, quality)


INTEGER_MODEL = REPO_ROOT / "models" / "joint_n64_lmbda0.013_integer"
V3_FILE = REPO_ROOT / "tests" / "data" / "files" / "v3_integer_joint_n64_kodim23.jahp"
V3_Y_HAT_SHA256 = "9885f5bd3efc4409dbae0f1f0c8938306c01bd286bdc31f5be4c71dc5d248d72"


def test_a_format_3_integer_file_decodes_and_is_reproduced_byte_for_byte():
    """The file written at ef57bfb (before the parts refactor) with the shipped integer model:
    today's decoder gives its recorded y_hat, and today's encoder, given the decoded latents,
    writes the same streams. Both are integer arithmetic, so this holds on any CPU (compressing
    the image itself goes through the float g_a, whose rounding may differ on another CPU)."""
    codec = load_codec(INTEGER_MODEL)
    data = V3_FILE.read_bytes()
    header, z_stream, y_stream = bitstream.unpack(data)
    z_hat = codec.coder.backend.code_z(new_decoder(z_stream), (8, 12, 64), None)[0]
    _, y_hat = codec.decompress_with_latents(data)
    assert hashlib.sha256(y_hat.tobytes()).hexdigest() == V3_Y_HAT_SHA256
    coded = codec.coder.encode(y_hat, z_hat)
    assert (coded.z_stream, coded.y_stream) == (z_stream, y_stream)
    assert header.model == codec.config.fingerprint() and header.fingerprint == codec.fingerprint
