"""Every registered prior: the coder's per-step distribution parameters equal the differentiable
pass's on the same y_hat, the round trip is exact, odd image sizes code; plus the schedules."""

import functools

import jax
import numpy as np
import pytest
from conftest import SHARED, quick_model

from jahp_jax.coding.codec import Codec, pad_image
from jahp_jax.coding.programs import compiled_functions
from jahp_jax.coding.runner import CodedLatents
from jahp_jax.data.pipeline import read_image
from jahp_jax.models.compression_model import create_model, init_params
from jahp_jax.models.latent_codecs import PRIORS
from jahp_jax.models.latent_codecs.channelwise import slice_bounds
from jahp_jax.models.latent_codecs.parts import anchor_map, checkerboard_mask, wavefront_schedule
from jahp_jax.nn.layers import causal_mask

MIXTURES = [prior for prior, codec in PRIORS.items() if codec.supports_mixture]
CONFIGS = [(prior, 1) for prior in PRIORS] + [(prior, 2) for prior in MIXTURES]
N = M = 8
TOLERANCE = 1e-5  # max abs difference of any distribution parameter


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    """An odd-sized crop (97 x 131) of a validation image: latents 8 x 12 after padding."""
    return read_image(SHARED / "data" / "val" / "bsds500" / "101085.jpg")[:97, :131]


@functools.cache  # one per configuration, shared by the tests below (a Codec holds no state)
def _codec(prior: str, k: int) -> Codec:
    model = quick_model(prior, N, M, k)
    return Codec(model, init_params(model, jax.random.key(0)))


def _encode(codec: Codec, image: np.ndarray) -> CodedLatents:
    y = compiled_functions(codec.model)["analysis"](
        codec.params, pad_image(image, codec.config.pad_multiple)
    )
    return codec.coder.encode(np.asarray(y)[0])


def forward_distribution(codec: Codec, coded: CodedLatents) -> dict[str, np.ndarray]:
    """The differentiable pass's distribution of every latent given the coder's y_hat and z_hat."""

    def distribution(m, y_hat, z_hat):
        latent_codec = m.latent_codec
        hyper = None if z_hat is None else latent_codec.hyper_synthesis(z_hat)
        return latent_codec.distribution(hyper, y_hat)

    z_hat = None if coded.z_hat is None else coded.z_hat[None]
    dist = codec.model.apply(
        {"params": codec.params}, coded.y_hat[None], z_hat, method=distribution
    )
    return {name: np.asarray(value)[0] for name, value in dist.items()}


def max_differences(codec: Codec, image: np.ndarray) -> dict[str, float]:
    """Max abs difference per parameter, coder vs forward pass, on the coder's y_hat."""
    coded = _encode(codec, image)
    forward = forward_distribution(codec, coded)
    assert set(forward) == set(coded.y_distribution)
    return {k: float(np.abs(v - coded.y_distribution[k]).max()) for k, v in forward.items()}


@pytest.mark.parametrize("prior,k", CONFIGS)
def test_coder_parameters_equal_the_forward_pass_and_roundtrip_is_exact(prior, k, image):
    codec = _codec(prior, k)
    differences = max_differences(codec, image)
    assert max(differences.values()) <= TOLERANCE, differences
    data, stats = codec.compress_with_stats(image)
    assert float(np.abs(stats.y_hat).max()) > 0  # the context models had something to read
    decoded, y_hat = codec.decompress_with_latents(data)
    assert np.array_equal(y_hat, stats.y_hat)  # bit for bit
    assert decoded.shape == image.shape


@pytest.mark.parametrize("prior", list(PRIORS))
@pytest.mark.parametrize("height,width", [(1, 1), (3, 70)])
def test_odd_image_sizes_roundtrip(prior, height, width, image):
    codec = _codec(prior, 1)
    crop = image[:height, :width]
    data, stats = codec.compress_with_stats(crop)
    decoded, y_hat = codec.decompress_with_latents(data)
    assert np.array_equal(y_hat, stats.y_hat)
    assert decoded.shape == crop.shape


def _steps(prior: str, height: int, width: int, m: int = M) -> np.ndarray:
    """(h, w, M) the step at which each latent is coded; every latent exactly once."""
    codec = create_model(prior, N, m).make_latent_codec()
    step_of = np.full((height, width, m), -1)
    for t, step in enumerate(codec.schedule(height, width)):
        rows, cols = step.rows[: step.count], step.cols[: step.count]
        channels = slice(*step.channels) if step.channels else slice(0, m)
        assert np.all(step_of[rows, cols, channels] == -1)
        step_of[rows, cols, channels] = t
    assert np.all(step_of >= 0)
    return step_of


@pytest.mark.parametrize("prior,mask", [("joint", causal_mask(5)), ("checkerboard", None)])
@pytest.mark.parametrize("height,width", [(32, 48), (1, 1), (5, 2), (7, 13)])
def test_context_schedules_are_causal_and_complete(prior, mask, height, width):
    """Every tap a context model reads is coded at an earlier step."""
    mask = checkerboard_mask(5) if mask is None else mask
    step_of = _steps(prior, height, width)[..., 0]
    anchors = anchor_map(height, width)
    for r in range(height):
        for c in range(width):
            if prior == "checkerboard" and anchors[r, c]:
                continue  # anchors read no context
            for dr, dc in zip(*np.nonzero(mask), strict=True):
                rr, cc = r + dr - 2, c + dc - 2
                if 0 <= rr < height and 0 <= cc < width:
                    assert step_of[rr, cc] < step_of[r, c]


def test_step_counts():
    assert len(wavefront_schedule(32, 48)[2]) == 141  # a Kodak latent: 3 (h - 1) + w
    assert _steps("checkerboard", 32, 48).max() == 1  # two passes whatever the size
    assert _steps("mean_scale", 32, 48).max() == 0


def test_channel_slices():
    assert slice_bounds(320) == [(32 * i, 32 * (i + 1)) for i in range(10)]  # ms2020's
    widths = [6, 7, 6, 7, 6, 6, 7, 6, 7, 6]
    assert [stop - start for start, stop in slice_bounds(64)] == widths
    assert slice_bounds(8) == [(i, i + 1) for i in range(8)]
    step_of = _steps("channelwise", 4, 6, 64)  # one step per slice, every position
    assert np.array_equal(step_of, np.broadcast_to(np.repeat(np.arange(10), widths), (4, 6, 64)))


if __name__ == "__main__":  # the figures in docs: cd tests; python test_latent_codecs.py
    from conftest import REPO_ROOT

    from jahp_jax.io.checkpoints import load_codec

    crop = read_image(SHARED / "data" / "val" / "bsds500" / "101085.jpg")[:97, :131]
    cases = [(f"{p} K={k} (N=M={N}, random init, 97x131)", _codec(p, k), crop) for p, k in CONFIGS]
    shipped = REPO_ROOT / "models" / "joint_n64_lmbda0.013"
    kodim23 = read_image(SHARED / "data" / "kodak" / "kodim23.png")
    cases.append(("shipped joint model, kodim23", load_codec(shipped), kodim23))
    for label, codec, picture in cases:
        figures = ", ".join(f"{k} {v:.1e}" for k, v in max_differences(codec, picture).items())
        print(f"| {label} | {figures} |")
