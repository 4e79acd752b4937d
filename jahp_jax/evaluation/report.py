"""Rate-distortion reports: Bjontegaard deltas, RD plots, BD-rate tables, visual comparison sheets.

BD-rate and BD-PSNR follow Bjontegaard (VCEG-M33): both curves are interpolated in the
(log-rate, quality) plane and the mean gap is integrated over the overlapping range. The default
interpolation is piecewise cubic Hermite (PCHIP), as in the JCT-VC/JVET common-test-condition
sheets; ``method="cubic"`` is the original least-squares cubic polynomial fit.

The command is `jahp-report` (`jahp_jax.cli.report`).
"""

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from scipy.interpolate import PchipInterpolator  # noqa: E402

from jahp_jax.evaluation.evaluate import load_results  # noqa: E402
from jahp_jax.io.images import write_atomic  # noqa: E402

BD_METHODS = ("pchip", "cubic")
DEFAULT_REFERENCES = ("jpeg420", "hevc444")
SHEET_CODECS = ("jpeg420", "webp", "jpeg2000", "hevc444", "avif", "jxl")  # beside ours, if given
# Ten strong colours, then ten light ones: neighbouring curves never share a hue.
CURVE_COLORS = list(plt.cm.tab10.colors) + list(plt.cm.tab20.colors[1::2])


def _check_curve(rate: Sequence[float], quality: Sequence[float], what: str) -> tuple:
    rate = np.asarray(rate, dtype=np.float64)
    quality = np.asarray(quality, dtype=np.float64)
    if rate.ndim != 1 or rate.shape != quality.shape or rate.size < 4:
        raise ValueError(
            f"{what}: need rate and quality lists of equal length >= 4, got "
            f"{rate.shape} and {quality.shape}"
        )
    if not (np.all(np.isfinite(rate)) and np.all(np.isfinite(quality)) and np.all(rate > 0)):
        raise ValueError(f"{what}: rates must be positive and all values finite")
    return np.log(rate), quality


def _mean_over(x: np.ndarray, y: np.ndarray, low: float, high: float, method: str) -> float:
    """Mean of the curve y(x) interpolated over [low, high]; x need not be sorted."""
    order = np.argsort(x)
    x, y = x[order], y[order]
    if np.any(np.diff(x) <= 0):
        raise ValueError(
            "curve has repeated values on the interpolation axis; "
            "BD metrics need a strictly monotonic RD curve"
        )
    if method == "pchip":
        integral = PchipInterpolator(x, y).integrate(low, high)
    elif method == "cubic":
        antiderivative = np.polyint(np.polyfit(x, y, 3))
        integral = np.polyval(antiderivative, high) - np.polyval(antiderivative, low)
    else:
        raise ValueError(f"unknown BD interpolation method {method!r}; choose from {BD_METHODS}")
    return float(integral) / (high - low)


def _overlap(a: np.ndarray, b: np.ndarray, axis: str) -> tuple[float, float]:
    low, high = max(a.min(), b.min()), min(a.max(), b.max())
    if high <= low:
        raise ValueError(f"the two RD curves do not overlap in {axis}")
    return low, high


def bd_rate(
    rate_ref: Sequence[float],
    quality_ref: Sequence[float],
    rate_test: Sequence[float],
    quality_test: Sequence[float],
    method: str = "pchip",
) -> float:
    """Mean rate change of test vs reference at equal quality, a fraction (-0.2: 20% fewer bits)."""
    log_ref, q_ref = _check_curve(rate_ref, quality_ref, "reference curve")
    log_test, q_test = _check_curve(rate_test, quality_test, "test curve")
    low, high = _overlap(q_ref, q_test, "quality")
    gap = _mean_over(q_test, log_test, low, high, method) - _mean_over(
        q_ref, log_ref, low, high, method
    )
    return float(np.expm1(gap))


def bd_quality(
    rate_ref: Sequence[float],
    quality_ref: Sequence[float],
    rate_test: Sequence[float],
    quality_test: Sequence[float],
    method: str = "pchip",
) -> float:
    """Mean quality gain of test vs reference at equal rate (BD-PSNR when quality is PSNR in dB)."""
    log_ref, q_ref = _check_curve(rate_ref, quality_ref, "reference curve")
    log_test, q_test = _check_curve(rate_test, quality_test, "test curve")
    low, high = _overlap(log_ref, log_test, "rate")
    return _mean_over(log_test, q_test, low, high, method) - _mean_over(
        log_ref, q_ref, low, high, method
    )


def curve(results: dict[str, Any], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(bpp, quality) of a results dict, sorted by bpp; metric 'psnr-rgb' or 'ms-ssim-rgb-db'.

    'ms-ssim-rgb-db' is derived from 'ms-ssim-rgb' when a file lacks it (e.g. published anchors).
    """
    values = results["results"]
    bpp = np.asarray(values["bpp"], dtype=np.float64)
    if metric in values:
        quality = np.asarray(values[metric], dtype=np.float64)
    elif metric == "ms-ssim-rgb-db" and "ms-ssim-rgb" in values:
        quality = -10.0 * np.log10(1.0 - np.asarray(values["ms-ssim-rgb"], dtype=np.float64))
    else:
        raise ValueError(f"results {results['name']!r} have no {metric!r} values")
    order = np.argsort(bpp)
    return bpp[order], quality[order]


class Curve:
    """One results file with its display label and lookup keys (file stem, name, path)."""

    def __init__(self, path: str | os.PathLike, published: bool = False):
        self.path = Path(path)
        self.data = load_results(path)
        self.published = published
        self.label = str(self.data["name"]) + (" (published)" if published else "")
        self.keys = {self.path.stem, str(self.data["name"]), self.label, str(self.path)}


def load_curves(
    paths: Sequence[str | os.PathLike], published: Sequence[str | os.PathLike] = ()
) -> list[Curve]:
    """Loads measured and published results files; repeated labels get their file stem appended."""
    curves = [Curve(p) for p in paths] + [Curve(p, published=True) for p in published]
    labels = [c.label for c in curves]
    for c in curves:
        if labels.count(c.label) > 1:
            c.label = f"{c.label} [{c.path.stem}]"
    return curves


def find_curve(curves: Sequence[Curve], key: str) -> Curve | None:
    """The first curve that `key` names (file stem, name, label or path), or None."""
    return next((c for c in curves if key in c.keys), None)


def _format_bd(reference: Curve, test: Curve, metric: str, method: str) -> str:
    try:
        value = bd_rate(*curve(reference.data, metric), *curve(test.data, metric), method=method)
    except ValueError:
        return "n/a"
    return f"{100.0 * value:+.1f}%"


def _format_bd_psnr(reference: Curve, test: Curve, method: str) -> str:
    try:
        value = bd_quality(
            *curve(reference.data, "psnr-rgb"), *curve(test.data, "psnr-rgb"), method=method
        )
    except ValueError:
        return "n/a"
    return f"{value:+.2f} dB"


def bd_table(curves: Sequence[Curve], references: Sequence[Curve], method: str = "pchip") -> str:
    """Markdown table: BD-rate (PSNR and MS-SSIM dB) and BD-PSNR of every curve vs each reference.

    Negative BD-rate = fewer bits than the reference for the same quality; "n/a" = no overlap.
    """
    header = ["Curve"]
    for ref in references:
        short = ref.path.stem
        header += [
            f"BD-rate PSNR vs {short}",
            f"BD-rate MS-SSIM vs {short}",
            f"BD-PSNR vs {short}",
        ]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for test in curves:
        cells = [test.label]
        for ref in references:
            cells += [
                _format_bd(ref, test, "psnr-rgb", method),
                _format_bd(ref, test, "ms-ssim-rgb-db", method),
                _format_bd_psnr(ref, test, method),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        f"\nBjontegaard deltas ({method} interpolation on log-rate, overlapping range only); "
        "negative BD-rate means fewer bits than the reference at equal quality; "
        "the MS-SSIM columns use MS-SSIM in dB. References: "
        + "; ".join(f"{ref.path.stem} = {ref.label}" for ref in references)
        + ".\n"
    )
    return "\n".join(lines) + "\n" + note


def _save_figure(figure: plt.Figure, path: str | os.PathLike) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    try:
        write_atomic(path, lambda f: figure.savefig(f, format="png", dpi=120))
    finally:
        plt.close(figure)


def plot_rd(curves: Sequence[Curve], path: str | os.PathLike, max_bpp: float = 2.0) -> None:
    """PNG with two panels, PSNR-RGB and MS-SSIM-RGB (dB) vs bpp; published curves dashed."""
    figure, axes = plt.subplots(1, 2, figsize=(15, 6))
    for ax, metric, ylabel in (
        (axes[0], "psnr-rgb", "PSNR RGB (dB)"),
        (axes[1], "ms-ssim-rgb-db", "MS-SSIM RGB (dB)"),
    ):
        ax.set_prop_cycle(color=CURVE_COLORS)
        for c in curves:
            try:
                bpp, quality = curve(c.data, metric)
            except ValueError:
                continue
            ax.plot(
                bpp,
                quality,
                marker=".",
                label=c.label,
                linestyle="--" if c.published else "-",
            )
        ax.set_xlabel("bits per pixel")
        ax.set_ylabel(ylabel)
        ax.set_xlim(0, max_bpp)
        visible = [line.get_ydata()[line.get_xdata() <= max_bpp] for line in ax.get_lines()]
        visible = np.concatenate([v for v in visible if v.size] or [np.zeros(1)])
        ax.set_ylim(visible.min() - 0.5, visible.max() + 0.5)
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    _save_figure(figure, path)


def comparison_sheet(
    original: np.ndarray,
    panels: Sequence[tuple[str, np.ndarray]],
    path: str | os.PathLike,
    crop: tuple[int, int, int, int] | None = None,
) -> None:
    """PNG with the same crop of the original and of each decoded image side by side.

    ``original`` and each panel image are uint8 HxWx3 of the same size; ``panels`` holds
    (label, decoded) pairs (e.g. "JPEG 0.31 bpp"); ``crop`` is (top, left, height, width),
    default the central 256x256 region.
    """
    height, width = original.shape[:2]
    for label, image in panels:
        if image.shape != original.shape:
            raise ValueError(f"panel {label!r} is {image.shape}, original is {original.shape}")
    if crop is None:
        side = min(256, height, width)
        crop = ((height - side) // 2, (width - side) // 2, side, side)
    top, left, crop_h, crop_w = crop
    inside = 0 <= top and 0 <= left and top + crop_h <= height and left + crop_w <= width
    if not inside or crop_h <= 0 or crop_w <= 0:
        raise ValueError(f"crop {crop} lies outside the {height}x{width} image")
    items = [("original", original), *panels]
    columns = min(4, len(items))
    rows = -(-len(items) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(3.2 * columns, 3.4 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (label, image) in zip(axes.flat, items, strict=False):
        ax.imshow(image[top : top + crop_h, left : left + crop_w], interpolation="nearest")
        ax.set_title(label, fontsize=8)
    figure.tight_layout()
    _save_figure(figure, path)


def classical_panels(
    image: np.ndarray, codec_keys: Sequence[str], target_bpp: float
) -> list[tuple[str, np.ndarray]]:
    """For each classical codec, the decoded image whose bpp is closest to ``target_bpp``."""
    from jahp_jax.evaluation import baselines

    baselines.register_plugins()
    panels = []
    for key in codec_keys:
        codec = baselines.CODECS[key]
        try:
            codec.versions()
        except ImportError as error:
            print(f"[{key}] skipped: {error}", file=sys.stderr)
            continue
        height, width = image.shape[:2]
        best = None
        for quality in codec.qualities:
            result = baselines.roundtrip(codec, quality, image)
            bpp = 8.0 * len(result.data) / (height * width)
            if best is None or abs(bpp - target_bpp) < abs(best[0] - target_bpp):
                best = (bpp, result.decoded)
        panels.append((f"{codec.label} {best[0]:.2f} bpp", best[1]))
    return panels


def write_sheet(
    path: str | os.PathLike,
    image_name: str = "kodim23",
    data_dir: str | None = None,
    codec_keys: Sequence[str] = SHEET_CODECS,
    target_bpp: float = 0.3,
    crop: tuple[int, int, int, int] | None = None,
    checkpoint: str | os.PathLike | None = None,
) -> None:
    """The comparison sheet of Kodak image `image_name` (from `data_dir`, else the download):
    the decoded image of our model first if `checkpoint` is given (the codecs are then matched
    to its bpp instead of `target_bpp`), then each classical codec's closest to that bpp."""
    from jahp_jax.data.pipeline import eval_images

    images = dict(eval_images("kodak", data_dir=data_dir))
    if image_name not in images:
        raise ValueError(f"image {image_name!r} not found; have {sorted(images)[:3]}...")
    image = images[image_name]
    panels = []
    if checkpoint is not None:
        from jahp_jax.io.checkpoints import load_codec

        codec = load_codec(checkpoint)
        data = codec.compress(image)
        target_bpp = 8.0 * len(data) / (image.shape[0] * image.shape[1])
        panels.append(
            (f"jahp_jax {codec.config.prior} {target_bpp:.2f} bpp", codec.decompress(data))
        )
    panels += classical_panels(image, codec_keys, target_bpp)
    comparison_sheet(image, panels, path, crop)
