"""End to end: compress -> bytes -> decompress for every prior, exactness, rate, bad input, CLI."""

import stat
import subprocess
import sys
import zlib
from pathlib import Path

import jax
import numpy as np
import optax
import pytest
from conftest import REPO_ROOT, SHARED

from jahp_jax.cli import codec as codec_cli
from jahp_jax.coding import bitstream
from jahp_jax.coding.codec import Codec, CodecError, portability_warning
from jahp_jax.data.pipeline import read_image, write_png
from jahp_jax.io.checkpoints import ModelConfig, load_codec, save_model
from jahp_jax.models.compression_model import create_model, init_params
from jahp_jax.models.losses import rate_distortion_loss

CONFIGS = [
    ("factorized", 1),
    ("hyperprior", 1),
    ("mean_scale", 1),
    ("context", 1),
    ("joint", 1),
    ("joint", 2),
    ("checkerboard", 1),
    ("channelwise", 1),
]
N = M = 12
TRAIN_STEPS = 40


def _train_image() -> np.ndarray:
    return read_image(SHARED / "data" / "train" / "bsds500" / "100007.jpg")


@pytest.fixture(scope="module")
def test_image() -> np.ndarray:
    """An odd-sized crop of a validation image (97 x 131)."""
    return read_image(SHARED / "data" / "val" / "bsds500" / "101085.jpg")[:97, :131]


def _train(model, params, image: np.ndarray, steps: int) -> dict:
    """A few dozen Adam steps of rate + distortion (+ aux) on 64x64 crops of `image`."""
    crops = np.stack([image[i : i + 64, j : j + 64] for i, j in ((0, 0), (64, 96), (128, 32))])
    x = crops.astype(np.float32) / 255.0
    optimizer = optax.adam(3e-3)

    def loss_fn(p, key):
        outputs = model.apply({"params": p}, x, train=True, rngs={"noise": key})
        loss, _ = rate_distortion_loss(x, outputs, 0.01)
        return loss + model.apply({"params": p}, method="aux_loss")

    @jax.jit
    def step(p, state, key):
        grads = jax.grad(loss_fn)(p, key)
        updates, state = optimizer.update(grads, state, p)
        return optax.apply_updates(p, updates), state

    state = optimizer.init(params)
    for i in range(steps):
        params, state = step(params, state, jax.random.key(i))
    return params


class _Codecs(dict):
    """{(prior, K, 'random'|'trained'): Codec} of tiny models (N = M = 12), built on first use."""

    def __missing__(self, key):
        prior, k, weights = key
        model = create_model(prior, N, M, k)
        params = init_params(model, jax.random.key(0))
        if weights == "trained":
            params = _train(model, params, _train_image(), TRAIN_STEPS)
        self[key] = Codec(model, params)
        return self[key]


@pytest.fixture(scope="module")
def codecs() -> _Codecs:
    return _Codecs()


@pytest.mark.parametrize("weights", ["random", "trained"])
@pytest.mark.parametrize("prior,k", CONFIGS)
def test_roundtrip_is_exact(codecs, test_image, prior, k, weights):
    c = codecs[prior, k, weights]
    data, stats = c.compress_with_stats(test_image)
    decoded, y_hat = c.decompress_with_latents(data)
    assert np.array_equal(y_hat, stats.y_hat)
    assert decoded.dtype == np.uint8 and decoded.shape == test_image.shape
    assert np.array_equal(decoded, c.reconstruct(stats.y_hat, 97, 131))
    assert c.decompress(data).tobytes() == decoded.tobytes()
    assert c.compress(test_image) == data  # deterministic


@pytest.mark.parametrize("prior,k", CONFIGS)
def test_file_size_matches_estimated_rate(codecs, prior, k):
    """File bits = estimate + header within 0.5 % + 64 bits per stream (range coder flush)."""
    image = read_image(SHARED / "data" / "val" / "bsds500" / "101087.jpg")[:256, :320]
    c = codecs[prior, k, "trained"]
    data, stats = c.compress_with_stats(image)
    streams = 1 if prior in ("factorized", "context") else 2
    payload_bits = 8 * (len(data) - bitstream.HEADER_BYTES)
    assert abs(payload_bits - stats.estimated_bits) <= 0.005 * stats.estimated_bits + 64 * streams
    assert stats.estimated_bits > 1000  # the bound above is not vacuous


def test_different_model_is_refused(codecs, test_image):
    data = codecs["joint", 1, "random"].compress(test_image)
    with pytest.raises(CodecError, match="different model parameters"):
        codecs["joint", 1, "trained"].decompress(data)
    with pytest.raises(CodecError, match="different model"):
        codecs["mean_scale", 1, "random"].decompress(data)
    other_model = rf"different model \(model id \w{{16}}; this is joint N={N}"
    with pytest.raises(CodecError, match=other_model):
        codecs["joint", 1, "random"].decompress(
            codecs["checkerboard", 1, "random"].compress(test_image)
        )


def test_a_stream_that_goes_on_past_its_symbols_is_refused(codecs, test_image):
    """A decode that does not end where its stream does (the stream was coded with other tables,
    e.g. by other float numerics, or is corrupt with a valid CRC) is an error, not an image."""
    c = codecs["mean_scale", 1, "random"]
    header, z_stream, y_stream = bitstream.unpack(c.compress(test_image))
    assert min(len(z_stream), len(y_stream)) >= 8  # doubled: 2 words or more past the end
    for name, streams in (("z", (z_stream * 2, y_stream)), ("y", (z_stream, y_stream * 2))):
        with pytest.raises(CodecError, match=f"the {name} stream does not end where its symbols"):
            c.decompress(bitstream.pack(header, *streams))


@pytest.mark.parametrize(
    ("config", "says"),
    [
        (ModelConfig("joint", N, M), "convert it once: jahp-convert --to=integer runs/a runs/a_"),
        (ModelConfig("factorized", N, M), "; the 'factorized' prior has no integer form: its y"),
        (ModelConfig("joint", N, M, 2), "; the 'joint' prior has no integer form: it needs one"),
        (ModelConfig("joint", N, M, integer_prior=True), None),
    ],
)
def test_compressing_with_a_float_model_warns_in_one_line(config, says):
    warning = portability_warning(config, "runs/a")
    if says is None:
        assert warning is None
    else:
        assert warning.startswith("warning: this model's prior path is float: its files decode "
                                  "only on machines with the same float arithmetic")  # fmt: skip
        assert says in warning and "\n" not in warning


def test_bad_images_are_refused(codecs):
    c = codecs["joint", 1, "random"]
    for bad in (np.zeros((8, 8), np.uint8), np.zeros((8, 8, 3), np.float32), "x.png"):
        with pytest.raises(CodecError, match="expected"):
            c.compress(bad)


@pytest.mark.parametrize("prior", ["joint", "checkerboard"])
def test_fuzz_mutated_files(codecs, prior):
    """1,000+ mutations: each raises CodecError; with the CRC recomputed, CodecError or an image."""
    c = codecs[prior, 1, "trained"]
    image = read_image(SHARED / "data" / "val" / "bsds500" / "102061.jpg")[:64, :80]
    data = c.compress(image)
    rng = np.random.default_rng(0)
    header = bitstream.HEADER_BYTES
    mutants = [b"", data[:1], data[: header - 1], data[:header], data[:-4], data + data[-5:]]
    while len(mutants) < 1000:
        kind = rng.integers(4)
        mutant = bytearray(data)
        if kind == 0:  # flip 1..4 random bits
            for _ in range(rng.integers(1, 5)):
                mutant[rng.integers(len(mutant))] ^= 1 << rng.integers(8)
        elif kind == 1:  # truncate
            mutant = mutant[: rng.integers(len(mutant))]
        elif kind == 2:  # overwrite a run with random bytes
            start = rng.integers(len(mutant))
            run = rng.integers(1, 9)
            mutant[start : start + run] = rng.integers(0, 256, run, dtype=np.uint8).tobytes()
        else:  # insert random bytes
            start = rng.integers(len(mutant) + 1)
            mutant[start:start] = rng.integers(0, 256, rng.integers(1, 9), dtype=np.uint8).tobytes()
        if bytes(mutant) != data:
            mutants.append(bytes(mutant))
    for mutant in mutants:
        with pytest.raises(CodecError):
            c.decompress(mutant)
    # Payload garbage that the CRC cannot see (CRC recomputed): never another exception type.
    for _ in range(30):
        mutant = bytearray(data)
        for _ in range(rng.integers(1, 6)):
            mutant[rng.integers(bitstream.HEADER_BYTES, len(mutant))] = rng.integers(256)
        body = bytes(mutant[: header - 4])
        crc = zlib.crc32(bytes(mutant[header:]), zlib.crc32(body))
        mutant[header - 4 : header] = crc.to_bytes(4, "little")
        try:
            decoded = c.decompress(bytes(mutant))
        except CodecError:
            continue
        assert decoded.shape == image.shape and decoded.dtype == np.uint8


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory, codecs) -> Path:
    c = codecs["joint", 1, "trained"]
    workdir = tmp_path_factory.mktemp("workdir")
    save_model(workdir / "checkpoints", 40, ModelConfig("joint", N, M, 1), c.params)
    return workdir


def test_load_codec_matches_in_memory(checkpoint_dir, codecs, test_image):
    loaded = load_codec(checkpoint_dir)
    assert loaded.fingerprint == codecs["joint", 1, "trained"].fingerprint
    assert loaded.compress(test_image) == codecs["joint", 1, "trained"].compress(test_image)


def _cli(*args: str, umask: int = 0o022) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "jahp_jax.cli.codec", *args],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        umask=umask,
    )


def test_cli_roundtrip_and_errors(checkpoint_dir, codecs, test_image, tmp_path):
    png, jahp, back = tmp_path / "in.png", tmp_path / "out.jahp", tmp_path / "back.png"
    write_png(png, test_image)
    ckpt = f"--checkpoint={checkpoint_dir}"
    result = _cli("compress", ckpt, str(png), str(jahp))
    assert result.returncode == 0, result.stderr
    assert "bpp" in result.stdout
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [portability_warning(ModelConfig("joint", N, M), checkpoint_dir)]
    assert f"jahp-convert --to=integer {checkpoint_dir} {checkpoint_dir}_integer" in warnings[0]
    assert jahp.read_bytes() == codecs["joint", 1, "trained"].compress(test_image)
    result = _cli("decompress", ckpt, str(jahp), str(back), umask=0o077)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(jahp.stat().st_mode) == 0o644  # the umask's, as for any new file
    assert stat.S_IMODE(back.stat().st_mode) == 0o600
    assert np.array_equal(
        read_image(back), codecs["joint", 1, "trained"].decompress(jahp.read_bytes())
    )

    corrupt = tmp_path / "corrupt.jahp"
    corrupt.write_bytes(jahp.read_bytes()[:-7])
    result = _cli("decompress", ckpt, str(corrupt), str(tmp_path / "never.png"))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: ")
    assert "truncated" in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "back.png",
        "corrupt.jahp",
        "in.png",
        "out.jahp",
    ]


@pytest.mark.parametrize(
    "make_args,message",
    [
        (lambda d, t: ["compress", d, str(t / "missing.png"), str(t / "o.jahp")], "no such file"),
        (lambda d, t: ["compress", d, str(t / "text.png"), str(t / "o.jahp")], "not an image"),
        (lambda d, t: ["decompress", d, str(t / "text.png"), str(t / "o.png")], "not a jahp"),
        (lambda d, t: ["decompress", d, str(t / "empty"), str(t / "o.png")], "empty"),
        (
            lambda d, t: ["decompress", f"--checkpoint={t}", str(t / "empty"), str(t / "o.png")],
            "holds no checkpoint",
        ),
    ],
)
def test_cli_bad_input(checkpoint_dir, tmp_path, capsys, make_args, message):
    (tmp_path / "text.png").write_text("hello, not an image")
    (tmp_path / "empty").write_bytes(b"")
    before = sorted(tmp_path.iterdir())
    assert codec_cli.main(make_args(f"--checkpoint={checkpoint_dir}", tmp_path)) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1
    assert sorted(tmp_path.iterdir()) == before  # no output file, not even a partial one
