"""Image files <-> numpy uint8 (H, W, 3) RGB, and atomic file writes (PIL only, no TensorFlow).

`read_image` / `write_png` are the format boundary of every tool (codec, evaluate, report,
the data pipelines); `write_atomic` is how every output file is written (temp file + rename).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pnm"}
)
_SIXTEEN_BIT_MODES = frozenset({"I", "F", "I;16", "I;16B", "I;16L", "I;16N"})
_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})


class ImageError(ValueError):
    """A file is not an image this project can read or write (message names the file)."""


def _is_sixteen_bit(img: Image.Image) -> bool:
    """True for images with more than 8 bits per sample (PIL reads 48-bit PNG as 'RGB')."""
    if img.mode in _SIXTEEN_BIT_MODES:
        return True
    for tile in img.tile:
        rawmode = tile.args if isinstance(tile.args, str) else (tile.args or ("",))[0]
        if isinstance(rawmode, str) and (";16" in rawmode or ";32" in rawmode):
            return True
    return False


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Reads an image file as uint8 (H, W, 3) RGB.

    Grayscale, palette and CMYK images are converted to RGB; an alpha channel is dropped
    only when fully opaque. Images with 16 or more bits per sample are refused (convert them
    to 8-bit first: no rounding rule is imposed silently). Only the first frame of an
    animation is read, and EXIF orientation is ignored (pixels as stored).

    Raises:
      ImageError: the file is missing, not an image, truncated, transparent or 16-bit.
    """
    path = Path(path)
    try:
        with Image.open(path) as img:
            if _is_sixteen_bit(img):
                raise ImageError(
                    f"{path}: 16-bit (or deeper) image, mode {img.mode}; convert it to "
                    "8 bits per channel first"
                )
            img.load()
            has_alpha = img.mode in _ALPHA_MODES or "transparency" in img.info
            if has_alpha:
                rgba = np.asarray(img.convert("RGBA"))
                if (rgba[..., 3] != 255).any():
                    raise ImageError(
                        f"{path}: image has transparent pixels; flatten it onto a background "
                        "(e.g. remove the alpha channel) first"
                    )
                pixels = rgba[..., :3]
            else:
                pixels = np.asarray(img.convert("RGB"))
    except ImageError:
        raise
    except FileNotFoundError:
        raise ImageError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{path}: is a directory, not an image file") from None
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image file (format not recognised)") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageError(f"{path}: cannot decode image ({err})") from None
    return np.ascontiguousarray(pixels, dtype=np.uint8)


def _create_beside(path: Path) -> tuple[int, Path]:
    """A new, empty temp file beside `path`, created with mode 0666 less the umask (as `open`
    creates files; `tempfile.mkstemp` would make it 0600): (descriptor, its path)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp_name = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            return os.open(tmp_name, flags, 0o666), tmp_name
        except FileExistsError:
            continue
    raise FileExistsError(f"{path}: could not create a temporary file beside it")


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> None:
    """Calls `write(file)` on a temp file beside `path`, then renames it over `path`.

    Readers never see a half-written file, and a failure leaves no temp file behind. The file's
    mode follows the umask like any new file's (0644 under umask 022). The folder must exist.
    """
    path = Path(path)
    fd, tmp_name = _create_beside(path)
    try:
        with os.fdopen(fd, "wb") as tmp:
            write(tmp)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def write_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Writes uint8 (H, W, 3) RGB as PNG, atomically (temp file in the same folder + rename).

    Raises:
      ImageError: the array is not uint8 (H, W, 3), or the folder does not exist.
    """
    path = Path(path)
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8:
        kind = getattr(image, "dtype", type(image).__name__)
        raise ImageError(f"{path}: expected a uint8 numpy array, got {kind}")
    if image.ndim != 3 or image.shape[2] != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageError(f"{path}: expected shape (H, W, 3) with H, W > 0, got {image.shape}")
    if not path.parent.is_dir():
        raise ImageError(f"{path}: folder {path.parent} does not exist; create it first")
    write_atomic(path, lambda f: Image.fromarray(image, mode="RGB").save(f, format="PNG"))


def write_text(path: str | os.PathLike, text: str) -> None:
    """Writes UTF-8 text atomically (temp file + rename), creating the folder."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, lambda f: f.write(text.encode()))
