"""The trained model shipped in models/ (see models/README.md): a whole Kodak image coded exactly
and at the model's estimated rate, with a model's real latent statistics."""

from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED

from jahp_jax.coding import bitstream
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
