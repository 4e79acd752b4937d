"""Codec-agnostic rate-distortion evaluation and the CompressAI results-JSON format.

A codec is evaluated as a list of operating points, each a ``quality`` label plus a
``roundtrip(image_uint8) -> Roundtrip`` callable. For every image and point this module measures
the real rate (bits of the returned bytes per pixel), PSNR and MS-SSIM on RGB, and the encode and
decode times; it then averages per point over images (PSNR averaged per image, as in published
Kodak numbers) into the CompressAI layout::

    {"name": ..., "description": ...,
     "results": {"quality": [...], "bpp": [...], "psnr-rgb": [...], "ms-ssim-rgb": [...],
                 "ms-ssim-rgb-db": [...], "encoding_time": [...], "decoding_time": [...],
                 "num_images": [...], <extra per-point fields, e.g. "estimated-bpp">},
     "errors": [{"image", "quality", "error"}, ...]}

and keeps per-image rows for a second (CSV) file. A failure of one image at one point is recorded
in ``errors`` and in its row, and never discards the other results.
"""

import csv
import io
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Sequence, Sized
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

from jahp_jax import console
from jahp_jax.io.images import write_text
from jahp_jax.models import metrics
from jahp_jax.models.transforms import DEFAULT_TRANSFORM

_log = logging.getLogger(__name__)
METRIC_KEYS = ("bpp", "psnr-rgb", "ms-ssim-rgb", "ms-ssim-rgb-db", "encoding_time", "decoding_time")


class Roundtrip(NamedTuple):
    """One image through a codec: the compressed bytes, the decoded uint8 HxWx3 image, seconds.

    ``extra`` holds optional per-image numbers averaged like the metrics (e.g. "estimated-bpp").
    """

    data: bytes
    decoded: np.ndarray
    encode_seconds: float
    decode_seconds: float
    extra: dict[str, float] = {}


class OperatingPoint(NamedTuple):
    """One point of a codec's rate sweep: a label (quality, QP, lambda...) and its roundtrip."""

    quality: float | int | str
    roundtrip: Callable[[np.ndarray], Roundtrip]


@jax.jit
def _quality_metrics(image: jax.Array, decoded: jax.Array) -> dict[str, jax.Array]:
    x = image[None].astype(np.float32) / 255.0
    x_hat = decoded[None].astype(np.float32) / 255.0
    ms_ssim = metrics.ms_ssim(x, x_hat)[0]
    return {
        "psnr-rgb": metrics.psnr(x, x_hat)[0],
        "ms-ssim-rgb": ms_ssim,
        "ms-ssim-rgb-db": metrics.ms_ssim_db(ms_ssim),
    }


def image_metrics(image: np.ndarray, decoded: np.ndarray, num_bytes: int) -> dict[str, float]:
    """bpp, PSNR (dB) and MS-SSIM (linear and dB) of one uint8 HxWx3 reconstruction."""
    if decoded.shape != image.shape or decoded.dtype != np.uint8:
        raise ValueError(
            f"decoded image is {decoded.dtype} {decoded.shape}, expected uint8 {image.shape}"
        )
    height, width = image.shape[:2]
    values = {k: float(v) for k, v in _quality_metrics(image, decoded).items()}
    return {"bpp": 8.0 * num_bytes / (height * width), **values}


def _one_line(error: BaseException) -> str:
    message = " ".join(str(error).split()) or "no message"
    return f"{type(error).__name__}: {message}"


def evaluate_codec(
    name: str,
    description: str,
    points: Sequence[OperatingPoint],
    images: Iterable[tuple[str, np.ndarray]],
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Runs every image through every operating point, with a progress bar over the roundtrips
    (a line per image in the log instead, see `jahp_jax.console`).

    Returns the CompressAI-format results dict (per-point means over the images that succeeded)
    and the per-image rows (one dict per image and point, with an "error" field).
    """
    if not points:
        raise ValueError(f"codec {name!r} has no operating points")
    labels = [point.quality for point in points]
    if len(set(labels)) != len(labels):
        raise ValueError(f"codec {name!r} has repeated quality labels {labels}")
    rows: list[dict[str, Any]] = []
    num_images = 0
    total = len(images) * len(points) if isinstance(images, Sized) else None
    bar = console.progress(total=total, desc=name, unit="roundtrip")
    for image_name, image in images:
        num_images += 1
        start = time.perf_counter()
        failures = 0
        for point in points:
            row: dict[str, Any] = {"image": image_name, "quality": point.quality, "error": ""}
            try:
                result = point.roundtrip(image)
                row.update(image_metrics(image, np.asarray(result.decoded), len(result.data)))
                row["encoding_time"] = float(result.encode_seconds)
                row["decoding_time"] = float(result.decode_seconds)
                row.update({k: float(v) for k, v in result.extra.items()})
            except Exception as error:  # one failure must not discard the other results
                row["error"] = _one_line(error)
                failures += 1
            rows.append(row)
            bar.update()
        done = [r for r in rows[-len(points) :] if not r["error"]]
        rates = ""
        if done:
            rates = f"{min(r['bpp'] for r in done):.3f}-{max(r['bpp'] for r in done):.3f} bpp"
        status = f", {failures} failed" if failures else ""
        _log.info(
            "[%s] %s (#%d): %d points %s%s, %.1f s", name, image_name, num_images, len(points),
            rates, status, time.perf_counter() - start, extra=console.DETAIL,
        )  # fmt: skip
    bar.close()
    if num_images == 0:
        raise ValueError(f"no images to evaluate codec {name!r} on")
    return summarize(name, description, points, rows), rows


def summarize(
    name: str,
    description: str,
    points: Sequence[OperatingPoint],
    rows: Sequence[dict[str, Any]],
) -> dict[str, Any]:
    """Averages per-image rows per operating point into the CompressAI results layout."""
    row_keys = {k for r in rows for k in r}
    extra_keys = sorted(row_keys - set(METRIC_KEYS) - {"image", "quality", "error"})
    keys = (*METRIC_KEYS, *extra_keys)
    results: dict[str, list] = {"quality": [], **{k: [] for k in keys}, "num_images": []}
    for point in points:
        good = [r for r in rows if r["quality"] == point.quality and not r["error"]]
        if not good:
            continue
        results["quality"].append(point.quality)
        results["num_images"].append(len(good))
        for key in keys:
            values = [r[key] for r in good if key in r]
            results[key].append(float(np.mean(values)) if len(values) == len(good) else None)
    errors = [{k: r[k] for k in ("image", "quality", "error")} for r in rows if r["error"]]
    return {"name": name, "description": description, "results": results, "errors": errors}


def write_results(
    output_dir: str | os.PathLike, stem: str, results: dict[str, Any], rows: Sequence[dict]
) -> tuple[Path, Path]:
    """Writes ``<stem>.json`` (results) and ``<stem>.images.csv`` (per-image rows) atomically."""
    output_dir = Path(output_dir)
    json_path = output_dir / f"{stem}.json"
    csv_path = output_dir / f"{stem}.images.csv"
    columns = ["image", "quality", *METRIC_KEYS]
    columns += sorted({k for r in rows for k in r} - set(columns) - {"error"}) + ["error"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    write_text(csv_path, buffer.getvalue())
    write_text(json_path, json.dumps(results, indent=2) + "\n")  # last: a JSON means both exist
    return json_path, csv_path


def load_results(path: str | os.PathLike) -> dict[str, Any]:
    """Reads a CompressAI-format results JSON; raises ValueError with the path if malformed."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"cannot read results file {path}: {_one_line(error)}") from None
    results = data.get("results") if isinstance(data, dict) else None
    if not isinstance(results, dict) or not isinstance(results.get("bpp"), list):
        raise ValueError(f"{path} is not a results JSON (needs 'results' with a 'bpp' list)")
    lengths = {k: len(v) for k, v in results.items() if isinstance(v, list)}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"{path}: result lists have different lengths {lengths}")
    data.setdefault("name", path.stem)
    return data


def merge_results(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """One curve from results JSONs of the same codec evaluated apart (e.g. one per checkpoint,
    on different days): their points, ordered by rate, their errors, and the parts' descriptions
    after the first's prefix (the text before its first "; ")."""
    if not parts:
        raise ValueError("no results to merge")
    keys = list(parts[0]["results"])
    for part in parts[1:]:
        if list(part["results"]) != keys:
            raise ValueError(f"cannot merge results with fields {list(part['results'])} into "
                             f"results with fields {keys}")  # fmt: skip
    columns = {k: [v for part in parts for v in part["results"][k]] for k in keys}
    order = np.argsort(columns["bpp"], kind="stable")
    prefix = parts[0]["description"].partition("; ")[0]
    details = [part["description"].partition("; ")[2] for part in parts]
    return {
        "name": parts[0]["name"],
        "description": "; ".join([prefix, *filter(None, details)]),
        "results": {k: [v[i] for i in order] for k, v in columns.items()},
        "errors": [error for part in parts for error in part.get("errors", [])],
    }


def read_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    """The per-image rows of a ``<stem>.images.csv`` written by `write_results` (as text)."""
    with open(path, newline="") as file:
        return list(csv.DictReader(file))


# --------------------------------------------------------------------------------------------
# Our checkpoints, through real files.
# --------------------------------------------------------------------------------------------
def checkpoint_points(
    checkpoint: str | os.PathLike,
    claimed_prior: str | None = None,
    qualities: Sequence[float] | None = None,
    label_prefix: str = "",
):
    """(codec, [OperatingPoint]) for one checkpoint: compress to bytes, decompress, time both.
    A fixed-rate model is one point (`qualities` None), a variable-rate model one point per
    quality (ValueError where that does not hold).

    Each new padded image shape is compiled by one untimed warm-up round trip first, so times are
    steady-state. The point's extra fields are the model's estimated bpp and the file overhead.
    """
    from jahp_jax.io.checkpoints import load_codec

    codec = load_codec(checkpoint)
    prior = codec.config.prior
    if claimed_prior is not None and claimed_prior != prior:
        raise ValueError(
            f"checkpoint '{checkpoint}' holds a '{prior}' model, not the claimed '{claimed_prior}'"
        )
    if codec.variable_rate != (qualities is not None):
        raise ValueError(
            f"checkpoint '{checkpoint}' holds a variable-rate model: give the qualities to "
            "evaluate (e.g. --qualities=0,0.25,0.5,0.75,1)" if codec.variable_rate else
            f"qualities are for variable-rate models; checkpoint '{checkpoint}' holds a "
            f"fixed-rate {codec.config.describe()} model"
        )  # fmt: skip
    if qualities is None:
        return codec, [OperatingPoint(label_prefix + _checkpoint_label(checkpoint),
                                      _roundtrip(codec, None))]  # fmt: skip
    for quality in qualities:
        if not 0.0 <= quality <= 1.0:
            raise ValueError(f"quality {quality} is outside [0, 1] (0: lowest rate, 1: highest)")
    return codec, [
        OperatingPoint(f"{label_prefix}quality={quality:g}", _roundtrip(codec, quality))
        for quality in qualities
    ]


def _roundtrip(codec, quality: float | None) -> Callable[[np.ndarray], Roundtrip]:
    from jahp_jax.coding.codec import pad_image

    warmed_up: set[tuple[int, ...]] = set()

    def roundtrip(image: np.ndarray) -> Roundtrip:
        shape = pad_image(image, codec.config.pad_multiple).shape
        if shape not in warmed_up:
            codec.decompress(codec.compress(image, quality))
            warmed_up.add(shape)
        start = time.perf_counter()
        data, stats = codec.compress_with_stats(image, quality)
        encoded = time.perf_counter()
        decoded = codec.decompress(data)
        decoded_at = time.perf_counter()
        return Roundtrip(
            data,
            decoded,
            encoded - start,
            decoded_at - encoded,
            {
                "estimated-bpp": stats.estimated_bits / stats.num_pixels,
                "file-overhead": stats.overhead,
            },
        )

    return roundtrip


def _checkpoint_label(checkpoint: str | os.PathLike) -> str:
    from jahp_jax.io.checkpoints import read_config, resolve_checkpoint

    step_dir = resolve_checkpoint(checkpoint)
    _, extra = read_config(step_dir)
    lmbda = extra.get("lmbda")
    return f"lmbda={lmbda}" if lmbda is not None else str(Path(checkpoint))


def evaluate_checkpoints(
    checkpoints: Sequence[str],
    images: Sequence[tuple[str, np.ndarray]],
    name: str | None = None,
    claimed_prior: str | None = None,
    log: Callable[[str], None] = print,
    qualities: Sequence[float] | None = None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One RD curve from checkpoints of one model family (same prior and sizes): a point per
    fixed-rate checkpoint, or per quality of each variable-rate checkpoint (`qualities`)."""
    points, configs = [], []
    for checkpoint in checkpoints:
        prefix = f"{checkpoint} " if qualities is not None and len(checkpoints) > 1 else ""
        codec, new_points = checkpoint_points(checkpoint, claimed_prior, qualities, prefix)
        points += new_points
        configs += [codec.config] * len(new_points)
    if len(set(configs)) > 1:
        log(f"note: the checkpoints hold different models: {sorted(set(map(str, configs)))}")
    first = configs[0]
    transform = "" if first.transform == DEFAULT_TRANSFORM else f"{first.transform} transform, "
    name = name or (
        f"jahp_jax {first.prior} ({transform}N={first.num_filters}, M={first.num_latents}"
        + (f", K={first.mixture_components}" if first.mixture_components > 1 else "")
        + (", variable rate)" if first.variable_rate else ")")
    )
    description = "real files from jahp_jax.coding.codec; " + ", ".join(
        f"{p.quality}: {c}" for p, c in zip(points, configs, strict=True)
    )
    results, rows = evaluate_codec(name, description, points, images)
    order = np.argsort(results["results"]["bpp"])  # a curve, by rate
    results["results"] = {
        k: [v[i] for i in order] if isinstance(v, list) else v
        for k, v in results["results"].items()
    }
    return results, rows
