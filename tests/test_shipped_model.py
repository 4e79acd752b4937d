"""The trained model shipped in models/ (see models/README.md): a whole Kodak image coded exactly
and at the model's estimated rate, with a model's real latent statistics."""

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
KODIM23 = SHARED / "data" / "kodak" / "kodim23.png"


@pytest.fixture(scope="module")
def coded():
    codec = load_codec(MODEL)
    image = read_image(KODIM23)
    data, stats = codec.compress_with_stats(image)
    return codec, image, data, stats


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
