"""evaluate.py: per-image metrics, averaging, error isolation and the results files."""

import csv
import json

import numpy as np
import pytest

from jahp_jax.evaluation import evaluate


def _images() -> list[tuple[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    smooth = np.linspace(0, 255, 192 * 200 * 3).reshape(192, 200, 3)
    return [
        ("smooth", smooth.astype(np.uint8)),
        ("noise", rng.integers(0, 256, (200, 192, 3), dtype=np.uint8)),
    ]


def _drop_bits(bits: int, num_bytes: int):
    """A fake codec: zeroes the low ``bits`` of every sample and 'compresses' to num_bytes."""

    def roundtrip(image):
        decoded = (image >> bits) << bits
        return evaluate.Roundtrip(b"\0" * num_bytes, decoded, 0.5, 0.25,
                                  {"estimated-bpp": 8.0 * num_bytes / image[..., 0].size})

    return roundtrip


def _fails_on_noise(image):
    if image[0, 0, 0] != 0:
        raise RuntimeError("decoder\nexploded")
    return evaluate.Roundtrip(b"\0" * 100, image // 2 * 2, 0.1, 0.1)


def test_metrics_rates_and_means():
    images = _images()
    points = [evaluate.OperatingPoint(1, _drop_bits(1, 1000)),
              evaluate.OperatingPoint(3, _drop_bits(3, 4000))]
    results, rows = evaluate.evaluate_codec("fake", "fake codec", points, images)
    assert results["name"] == "fake" and results["errors"] == []
    assert len(rows) == 4
    values = results["results"]
    assert values["quality"] == [1, 3] and values["num_images"] == [2, 2]
    pixels = 192 * 200
    np.testing.assert_allclose(values["bpp"], [8000 / pixels, 32000 / pixels])
    np.testing.assert_allclose(values["estimated-bpp"], values["bpp"])
    np.testing.assert_allclose(values["encoding_time"], [0.5, 0.5])
    # PSNR is the mean of per-image PSNRs, each from a NumPy MSE.
    for q, point_psnr in zip((1, 3), values["psnr-rgb"], strict=True):
        per_image = []
        for _, image in images:
            err = (image - ((image >> q) << q)).astype(np.float64) / 255
            per_image.append(10 * np.log10(1 / np.mean(err**2)))
        np.testing.assert_allclose(point_psnr, np.mean(per_image), rtol=1e-5)
    assert values["psnr-rgb"][0] > values["psnr-rgb"][1]
    assert values["ms-ssim-rgb"][0] > values["ms-ssim-rgb"][1]
    np.testing.assert_allclose(values["ms-ssim-rgb-db"],
                               [np.mean([-10 * np.log10(1 - r["ms-ssim-rgb"]) for r in rows
                                         if r["quality"] == q]) for q in (1, 3)], rtol=1e-4)


def test_one_failure_keeps_other_results(tmp_path):
    points = [evaluate.OperatingPoint("a", _fails_on_noise),
              evaluate.OperatingPoint("b", _drop_bits(2, 10))]
    results, rows = evaluate.evaluate_codec("flaky", "", points, _images())
    assert results["results"]["num_images"] == [1, 2]
    assert results["errors"] == [
        {"image": "noise", "quality": "a", "error": "RuntimeError: decoder exploded"}
    ]
    json_path, csv_path = evaluate.write_results(tmp_path, "flaky", results, rows)
    assert evaluate.load_results(json_path) == json.loads(json.dumps(results))
    table = list(csv.DictReader(csv_path.open()))
    assert [r["error"] for r in table] == ["", "", "RuntimeError: decoder exploded", ""]
    assert float(table[0]["bpp"]) == pytest.approx(800 / (192 * 200))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["flaky.images.csv", "flaky.json"]


def test_points_evaluated_apart_merge_into_the_curve_evaluated_at_once(tmp_path):
    """The ablation evaluates one run at a time (on any machine): its curve must be the one a
    single evaluation of all points gives, ordered by rate, rows and errors kept."""
    def flaky(image):
        return _fails_on_noise(image)._replace(extra={"estimated-bpp": 1.0})

    images = _images()
    points = [evaluate.OperatingPoint("a", flaky),
              evaluate.OperatingPoint("b", _drop_bits(1, 1000)),
              evaluate.OperatingPoint("c", _drop_bits(3, 4000))]  # fmt: skip
    at_once, all_rows = evaluate.evaluate_codec("fake", "fake; a, b, c", points, images)
    parts = []
    for point in points[::-1]:  # points in order of rate, evaluated in the reverse order
        part, rows = evaluate.evaluate_codec("fake", f"fake; {point.quality}", [point], images)
        json_path, csv_path = evaluate.write_results(tmp_path, str(point.quality), part, rows)
        assert evaluate.read_rows(csv_path) == list(csv.DictReader(csv_path.open()))
        parts.append(evaluate.load_results(json_path))
    merged = evaluate.merge_results(parts)
    assert merged["description"] == "fake; c; b; a"
    assert merged["results"]["quality"] == ["a", "b", "c"]  # by rate, as at once
    assert merged["errors"] == at_once["errors"] and len(all_rows) == 6
    for key, values in at_once["results"].items():
        if key not in ("quality", "encoding_time", "decoding_time"):  # times: measured again
            np.testing.assert_allclose(merged["results"][key], values, err_msg=key)
    parts[1]["results"]["extra"] = [1.0]
    with pytest.raises(ValueError, match="cannot merge results with fields"):
        evaluate.merge_results(parts)
    with pytest.raises(ValueError, match="no results to merge"):
        evaluate.merge_results([])


def test_wrong_decoded_shape_is_an_error_row():
    points = [evaluate.OperatingPoint(0, lambda im: evaluate.Roundtrip(b"x", im[1:], 0, 0))]
    results, rows = evaluate.evaluate_codec("bad", "", points, _images()[:1])
    assert "expected uint8" in rows[0]["error"]
    assert results["results"]["bpp"] == []


def test_bad_inputs_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="no images"):
        evaluate.evaluate_codec("x", "", [evaluate.OperatingPoint(0, _fails_on_noise)], [])
    with pytest.raises(ValueError, match="repeated quality labels"):
        evaluate.evaluate_codec("x", "", [evaluate.OperatingPoint(0, _fails_on_noise)] * 2, [])
    with pytest.raises(ValueError, match="no operating points"):
        evaluate.evaluate_codec("x", "", [], _images())
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read results file"):
        evaluate.load_results(broken)
    broken.write_text('{"results": {"bpp": [1, 2], "psnr-rgb": [30]}}')
    with pytest.raises(ValueError, match="different lengths"):
        evaluate.load_results(broken)
    with pytest.raises(ValueError, match="cannot read"):
        evaluate.load_results(tmp_path / "missing.json")
