"""baselines.py: every available classical codec round-trips real Kodak content sensibly."""

import json

import numpy as np
import pytest

from jahp_jax.cli import baselines as baselines_cli
from jahp_jax.data.pipeline import read_image
from jahp_jax.evaluation import baselines, evaluate


@pytest.fixture(scope="module")
def crop(shared_dir) -> np.ndarray:
    """A 256x384 uint8 crop of kodim23 (parrots)."""
    baselines.register_plugins()
    return read_image(shared_dir / "data" / "kodak" / "kodim23.png")[128:384, 192:576]


def _available(key: str) -> baselines.ClassicalCodec:
    codec = baselines.CODECS[key]
    try:
        codec.versions()
    except ImportError as error:
        pytest.skip(f"{key}: {error}")
    return codec


@pytest.mark.parametrize("key", sorted(baselines.CODECS))
def test_more_bits_give_higher_quality(key, crop):
    codec = _available(key)
    qualities = codec.qualities[1], codec.qualities[-2]
    first, second = (baselines.roundtrip(codec, q, crop) for q in qualities)
    low, high = sorted((first, second), key=lambda r: len(r.data))  # HEVC QP runs the other way
    low_m, high_m = (evaluate.image_metrics(crop, r.decoded, len(r.data)) for r in (low, high))
    assert 0.02 < low_m["bpp"] < high_m["bpp"] < 8
    assert 20 < low_m["psnr-rgb"] < high_m["psnr-rgb"] < 60
    assert low.encode_seconds > 0 and low.decode_seconds > 0
    assert codec.label in codec.name() and any(ch.isdigit() for ch in codec.name())


def test_jpeg2000_meets_target_rate(crop):
    codec = _available("jpeg2000")
    for target in (0.25, 1.0):
        result = baselines.roundtrip(codec, target, crop)
        bpp = 8 * len(result.data) / crop[..., 0].size
        assert bpp == pytest.approx(target, rel=0.05)


def test_hevc_settings_take_effect(crop, monkeypatch):
    codec = _available("hevc444")
    chosen = baselines.roundtrip(codec, 34, crop)
    assert len(chosen.data) != len(baselines.roundtrip(codec, 30, crop).data)
    psy = dict(baselines.HEVC_ENCODER_PARAMS, **{"x265:psy-rd": "2.0", "x265:psy-rdoq": "1.0"})
    monkeypatch.setattr(baselines, "HEVC_ENCODER_PARAMS", psy)
    assert baselines.roundtrip(codec, 34, crop).data != chosen.data


def test_cli_writes_results_and_skips_missing_codecs(tmp_path, kodak_dir, capsys, monkeypatch):
    def missing() -> str:
        raise ImportError("libfoo is not installed")

    absent = baselines.ClassicalCodec("absent", "Absent", (1,), lambda im, q: b"", missing, "")
    monkeypatch.setitem(baselines.CODECS, "absent", absent)
    code = baselines_cli.main([
        "--dataset=kodak", f"--data_dir={kodak_dir}",
        "--codecs=jpeg420,absent", f"--output_dir={tmp_path}", "--limit=1",
    ])
    assert code == 0
    assert "[absent] skipped: libfoo is not installed" in capsys.readouterr().out
    results = json.loads((tmp_path / "jpeg420.json").read_text())
    values = results["results"]
    assert results["name"].startswith("JPEG 4:2:0 (libjpeg-turbo")
    assert len(values["bpp"]) == len(baselines.CODECS["jpeg420"].qualities)
    assert values["num_images"] == [1] * len(values["bpp"]) and results["errors"] == []
    assert np.all(np.diff(values["bpp"]) > 0) and np.all(np.diff(values["psnr-rgb"]) > 0)
    rows = (tmp_path / "jpeg420.images.csv").read_text().splitlines()
    assert rows[1].startswith("kodim01,5,")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jpeg420.images.csv", "jpeg420.json"]


def test_cli_unknown_codec_is_one_line_error(tmp_path, capsys):
    assert baselines_cli.main(["--codecs=jpeg420,bpg", f"--output_dir={tmp_path}"]) == 1
    assert "unknown codec(s) ['bpg']" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())
