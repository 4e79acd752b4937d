"""Classical image codecs through pip-installable libraries, evaluated like our models.

Codecs (key: library): jpeg420 / jpeg444 (libjpeg-turbo via Pillow), webp (libwebp via Pillow),
jpeg2000 (OpenJPEG via Pillow: 9/7 wavelet + colour transform, rate control by target rate),
hevc444 (x265 via pillow-heif/libheif: BPG-like constant QP, no psy-rd/AQ, 4:4:4),
avif (libaom via Pillow's AVIF plugin, 4:4:4), jxl (libjxl via pillow-jxl-plugin).

`run` (the command `jahp-baselines`, `jahp_jax.cli.baselines`) writes ``<key>.json`` (CompressAI
results format) and ``<key>.images.csv`` per codec.
"""

import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
from PIL import Image, features

from jahp_jax.evaluation import evaluate

# Target rates for JPEG 2000 rate control, bits per pixel.
JPEG2000_TARGET_BPP = (0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.65, 0.8, 1.0, 1.25, 1.6, 2.0)
# Constant-QP settings for x265, as BPG's encoder does (psycho-visual tuning off).
HEVC_ENCODER_PARAMS = {
    "preset": "slow",
    "tune": "psnr",
    "x265:psy-rd": "0",
    "x265:psy-rdoq": "0",
    "x265:aq-mode": "0",
}


@dataclass(frozen=True)
class ClassicalCodec:
    """A codec sweep: ``encode(pil_rgb_image, quality) -> bytes`` over ``qualities``.

    ``versions()`` names the libraries in use and raises ImportError when one is missing.
    """

    key: str
    label: str
    qualities: tuple[float | int, ...]
    encode: Callable[[Image.Image, float | int], bytes]
    versions: Callable[[], str]
    settings: str

    def name(self) -> str:
        """Display name with library versions, e.g. 'JPEG 4:2:0 (libjpeg-turbo 3.2.0, ...)'."""
        return f"{self.label} ({self.versions()})"


def _pillow_version(feature: str, library: str) -> str:
    if not features.check(feature):
        raise ImportError(f"Pillow {Image.__version__} was built without {library}")
    return f"{library} {features.version(feature)}, Pillow {Image.__version__}"


def _save(image: Image.Image, format_name: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=format_name, **options)
    return buffer.getvalue()


def _encode_jpeg(image: Image.Image, quality: int, subsampling: str) -> bytes:
    return _save(image, "JPEG", quality=quality, subsampling=subsampling, optimize=True)


def _encode_webp(image: Image.Image, quality: int) -> bytes:
    return _save(image, "WEBP", quality=quality, method=6)


def _encode_jpeg2000(image: Image.Image, target_bpp: float) -> bytes:
    return _save(
        image,
        "JPEG2000",
        no_jp2=True,
        irreversible=True,
        mct=1,
        quality_mode="rates",
        quality_layers=[24.0 / target_bpp],  # compression ratio against 24-bit RGB
    )


def _heif_versions() -> str:
    import pillow_heif

    encoder = pillow_heif.libheif_info()["encoders"].get("x265")
    if not encoder:
        raise ImportError(f"pillow-heif {pillow_heif.__version__} has no x265 encoder")
    x265 = encoder.split("(")[-1].rstrip(")")
    libheif = pillow_heif.libheif_version()
    return f"x265 {x265}, libheif {libheif}, pillow-heif {pillow_heif.__version__}"


def _encode_hevc(image: Image.Image, qp: int) -> bytes:
    import pillow_heif

    buffer = io.BytesIO()
    pillow_heif.from_pillow(image).save(
        buffer,
        format="HEIF",
        chroma=444,
        enc_params={**HEVC_ENCODER_PARAMS, "x265:qp": str(qp)},
        save_nclx_profile=True,
    )
    return buffer.getvalue()


def _avif_versions() -> str:
    from PIL import AvifImagePlugin

    if not AvifImagePlugin.SUPPORTED or not AvifImagePlugin._avif.encoder_codec_available("aom"):
        raise ImportError(f"Pillow {Image.__version__} has no AVIF encoder with libaom")
    aom = AvifImagePlugin.get_codec_version("aom")
    return f"libaom {aom}, libavif {features.version('avif')}, Pillow {Image.__version__}"


def _encode_avif(image: Image.Image, quality: int) -> bytes:
    return _save(image, "AVIF", quality=quality, subsampling="4:4:4", speed=6, codec="aom")


def _jxl_versions() -> str:
    from importlib.metadata import version

    import pillow_jxl  # noqa: F401  (registers the JXL plugin with Pillow)

    return f"libjxl via pillow-jxl-plugin {version('pillow-jxl-plugin')}"


def _encode_jxl(image: Image.Image, quality: int) -> bytes:
    return _save(image, "JXL", quality=quality, effort=7)


CODECS: dict[str, ClassicalCodec] = {
    codec.key: codec
    for codec in (
        ClassicalCodec(
            "jpeg420",
            "JPEG 4:2:0",
            (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95),
            partial(_encode_jpeg, subsampling="4:2:0"),
            partial(_pillow_version, "libjpeg_turbo", "libjpeg-turbo"),
            "quality 5-95, optimized Huffman tables",
        ),
        ClassicalCodec(
            "jpeg444",
            "JPEG 4:4:4",
            (5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95),
            partial(_encode_jpeg, subsampling="4:4:4"),
            partial(_pillow_version, "libjpeg_turbo", "libjpeg-turbo"),
            "quality 5-95, optimized Huffman tables",
        ),
        ClassicalCodec(
            "webp",
            "WebP",
            (0, 5, 10, 20, 30, 40, 50, 60, 70, 80, 90, 95),
            _encode_webp,
            partial(_pillow_version, "webp", "libwebp"),
            "quality 0-95, method 6 (slowest, best)",
        ),
        ClassicalCodec(
            "jpeg2000",
            "JPEG 2000",
            JPEG2000_TARGET_BPP,
            _encode_jpeg2000,
            partial(_pillow_version, "jpg_2000", "OpenJPEG"),
            "irreversible 9/7 wavelet, colour transform, one layer at the target bpp, .j2k stream",
        ),
        ClassicalCodec(
            "hevc444",
            "HEVC intra 4:4:4",
            (25, 28, 31, 34, 37, 40, 43, 46),
            _encode_hevc,
            _heif_versions,
            "HEIF, constant QP 25-46, preset slow, tune psnr, psy-rd/psy-rdoq/AQ off, YCbCr BT.601",
        ),
        ClassicalCodec(
            "avif",
            "AVIF (AV1 intra) 4:4:4",
            (10, 20, 30, 40, 50, 60, 70, 80),
            _encode_avif,
            _avif_versions,
            "quality 10-80, speed 6",
        ),
        ClassicalCodec(
            "jxl",
            "JPEG XL",
            (5, 15, 25, 35, 45, 55, 65, 75, 85, 92),
            _encode_jxl,
            _jxl_versions,
            "quality 5-92, effort 7",
        ),
    )
}


def _decode(data: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(data)) as decoded:
        return np.asarray(decoded.convert("RGB"))


def roundtrip(codec: ClassicalCodec, quality: float | int, image: np.ndarray) -> evaluate.Roundtrip:
    """Encodes and decodes one uint8 HxWx3 image at one quality, timing both directions."""
    pil_image = Image.fromarray(image, mode="RGB")
    start = time.perf_counter()
    data = codec.encode(pil_image, quality)
    encoded = time.perf_counter()
    decoded = _decode(data)
    decoded_at = time.perf_counter()
    return evaluate.Roundtrip(data, decoded, encoded - start, decoded_at - encoded)


def operating_points(
    codec: ClassicalCodec, qualities: Sequence[float | int] | None = None
) -> list[evaluate.OperatingPoint]:
    """The codec's sweep (or the given qualities) as evaluate.OperatingPoint values."""
    return [
        evaluate.OperatingPoint(q, partial(roundtrip, codec, q))
        for q in (codec.qualities if qualities is None else qualities)
    ]


def register_plugins() -> None:
    """Lets Pillow open HEIF and JXL streams when those libraries are installed."""
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
    except ImportError:
        pass
    try:
        import pillow_jxl  # noqa: F401
    except ImportError:
        pass


def run(
    codec_keys: Sequence[str],
    output_dir: str,
    dataset: str = "kodak",
    data_dir: str | None = None,
    limit: int | None = None,
    qualities: dict[str, Sequence[float | int]] | None = None,
) -> list[str]:
    """Evaluates the named codecs and writes their results; returns the keys actually run.

    `qualities` optionally replaces the sweep of some codecs (key -> quality values).
    """
    from jahp_jax.data.pipeline import eval_images  # TensorFlow: imported when needed

    unknown = [k for k in codec_keys if k not in CODECS]
    if unknown:
        raise ValueError(f"unknown codec(s) {unknown}; choose from {sorted(CODECS)}")
    register_plugins()
    images = list(eval_images(dataset, data_dir=data_dir, limit=limit))
    done = []
    for key in codec_keys:
        codec = CODECS[key]
        try:
            name = codec.name()
        except ImportError as error:
            print(f"[{key}] skipped: {error}", flush=True)
            continue
        print(f"[{key}] {name}: {len(codec.qualities)} points x {len(images)} images", flush=True)
        description = f"{name}; {codec.settings}; {dataset}"
        results, rows = evaluate.evaluate_codec(
            name,
            description,
            operating_points(codec, (qualities or {}).get(key)),
            images,
        )
        json_path, csv_path = evaluate.write_results(output_dir, key, results, rows)
        print(f"[{key}] wrote {json_path} and {csv_path}", flush=True)
        done.append(key)
    return done
