"""report.py: Bjontegaard deltas on curves with known answers, plots, tables, sheets, CLI."""

import json

import numpy as np
import pytest
from PIL import Image

from jahp_jax.cli import report as report_cli
from jahp_jax.evaluation import report

RATE = np.array([0.12, 0.25, 0.5, 0.9, 1.6])
PSNR = np.array([27.0, 29.5, 32.2, 35.1, 38.4])


@pytest.mark.parametrize("method", report.BD_METHODS)
@pytest.mark.parametrize("factor", [0.7, 1.0, 1.35])
def test_scaled_rate_gives_bd_rate_factor_minus_one(method, factor):
    assert report.bd_rate(RATE, PSNR, RATE * factor, PSNR, method) == pytest.approx(factor - 1,
                                                                                     abs=1e-12)


@pytest.mark.parametrize("method", report.BD_METHODS)
def test_psnr_shift_gives_bd_psnr_shift(method):
    assert report.bd_quality(RATE, PSNR, RATE, PSNR + 0.8, method) == pytest.approx(0.8, abs=1e-12)


@pytest.mark.parametrize("method", report.BD_METHODS)
def test_linear_curves_with_partial_overlap(method):
    # Reference: ln R = (P - 30) / 4; test: ln R = (P - 30) / 5 + 0.1, on PSNR ranges
    # [26, 38] and [30, 42]. Both interpolations reproduce lines exactly, so the mean gap over
    # the overlap [30, 38] is the gap at its midpoint P = 34: (0.8 + 0.1) - 1.0 = -0.1.
    p_ref, p_test = np.linspace(26, 38, 6), np.linspace(30, 42, 7)
    r_ref, r_test = np.exp((p_ref - 30) / 4), np.exp((p_test - 30) / 5 + 0.1)
    assert report.bd_rate(r_ref, p_ref, r_test, p_test, method) == pytest.approx(np.expm1(-0.1))
    # BD-PSNR: P_ref = 30 + 4 L, P_test = 30 + 5 (L - 0.1); overlap in L is [0.1, 2.0],
    # midpoint 1.05: 30 + 4.75 - 34.2 = 0.55.
    assert report.bd_quality(r_ref, p_ref, r_test, p_test, method) == pytest.approx(0.55)


def test_methods_differ_on_curved_data_and_unsorted_input_is_fine():
    test_rate, test_psnr = RATE * [0.9, 1.0, 0.8, 0.95, 0.85], PSNR
    pchip = report.bd_rate(RATE, PSNR, test_rate, test_psnr)
    cubic = report.bd_rate(RATE, PSNR, test_rate, test_psnr, method="cubic")
    assert -0.2 < pchip < 0 and -0.2 < cubic < 0 and pchip != cubic
    order = [3, 0, 4, 1, 2]
    assert report.bd_rate(RATE[order], PSNR[order], test_rate, test_psnr) == pytest.approx(pchip)


def test_bd_errors():
    with pytest.raises(ValueError, match="do not overlap"):
        report.bd_rate(RATE, PSNR, RATE, PSNR + 20)
    with pytest.raises(ValueError, match=">= 4"):
        report.bd_rate(RATE[:3], PSNR[:3], RATE, PSNR)
    with pytest.raises(ValueError, match="repeated"):
        report.bd_rate(RATE, [27, 29, 29, 35, 38], RATE, PSNR)
    with pytest.raises(ValueError, match="unknown BD interpolation"):
        report.bd_rate(RATE, PSNR, RATE, PSNR, method="akima")


def _write(path, name, bpp, psnr, with_db=True):
    ms_ssim = 1 - 10 ** (-(np.asarray(psnr) - 15) / 10)
    results = {"bpp": list(bpp), "psnr-rgb": list(psnr), "ms-ssim-rgb": list(ms_ssim)}
    if with_db:
        results["ms-ssim-rgb-db"] = list(np.asarray(psnr) - 15)
    path.write_text(json.dumps({"name": name, "description": "", "results": results}))
    return path


def test_cli_writes_table_and_plot(tmp_path, capsys):
    ref = _write(tmp_path / "jpeg420.json", "JPEG", RATE, PSNR)
    half = _write(tmp_path / "half.json", "Half rate", RATE / 2, PSNR)
    anchor = _write(tmp_path / "anchor.json", "JPEG", RATE * 1.1, PSNR, with_db=False)
    table, plot = tmp_path / "out" / "bd.md", tmp_path / "rd.png"
    code = report_cli.main([str(ref), f"--results={half}", f"--anchors={anchor}",
                        "--reference=jpeg420", "--reference", "hevc444", f"--table={table}",
                        "--plot", str(plot)])
    assert code == 0
    text = table.read_text()
    assert "| Half rate | -50.0% | -50.0% | " in text
    assert "| JPEG (published) | +10.0% | +10.0% |" in text
    assert "hevc444" in capsys.readouterr().err
    with Image.open(plot) as image:
        assert image.format == "PNG" and image.width > 1000
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_cli_bad_file_is_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text("[]")
    assert report_cli.main([str(bad)]) == 1
    assert capsys.readouterr().err.startswith("error: ")


def test_comparison_sheet(tmp_path):
    rng = np.random.default_rng(0)
    original = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    panels = [("A 0.30 bpp", original // 2), ("B 0.31 bpp", original)]
    path = tmp_path / "sheet.png"
    report.comparison_sheet(original, panels, path, crop=(10, 20, 64, 96))
    with Image.open(path) as image:
        assert image.format == "PNG" and image.width > image.height
    with pytest.raises(ValueError, match="outside"):
        report.comparison_sheet(original, panels, path, crop=(250, 0, 64, 64))
    with pytest.raises(ValueError, match="panel 'C'"):
        report.comparison_sheet(original, [("C", original[:10])], path)
