"""Input pipelines (tensorflow-datasets + tf.data) and where data lives.

Image IO lives in `jahp_jax.io.images` (no TensorFlow); its names are re-exported here.

Where data lives (`resolve_data_root`): `--data_root`, else `$JAHP_DATA`, else `../shared/data`
beside the repository when it exists, laid out as `train/` (training images, any depth), `val/`
(validation images) and `kodak/` (the 24 Kodak PNGs). Without one, the tools use tfds downloads.

Data sources, all prepared by tfds into `tfds_data_dir` (default: tfds's own default,
`$TFDS_DATA_DIR` or `~/tensorflow_datasets`), never into the source folder:
  * a local folder of images (`dataset=None, data_dir=FOLDER`): the `image_folder` builder.
    Its prepared copy is keyed by a hash of the folder's file list, sizes and mtimes, so a
    changed folder is prepared afresh; unreadable files are skipped with a warning and a count.
  * `dataset="kodak"`: the 24 Kodak PNGs, downloaded from r0k.us (checked against
    `data/kodak/checksums.tsv`) or taken from `data_dir` (offline, checked the same way).
  * any other tfds name (`clic`, `div2k`, ...), read through its feature `image`.

Training batches are a pure function of (seed, step, batch size), whatever the number of
processes: row r at step s is image `index_shuffle(s mod n)` of the r-th block of the data under
a stateless seed from (seed, r, s div n), cropped and flipped with stateless seeds from
(seed, r, s), so resuming at a step decodes nothing it skips, and each process reads only the
blocks of its own rows.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import logging
import os
import re
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import filelock
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image
from tensorflow_datasets.core.download.download_manager import NonMatchingChecksumError

from jahp_jax.io.images import IMAGE_SUFFIXES, ImageError
from jahp_jax.io.images import read_image as read_image  # re-exported: callers reading data sets
from jahp_jax.io.images import write_atomic as write_atomic
from jahp_jax.io.images import write_png as write_png

log = logging.getLogger(__name__)

KODAK_CHECKSUMS = Path(__file__).parent / "kodak" / "checksums.tsv"
KODAK_HOST = "r0k.us"
KODAK_URL = f"http://{KODAK_HOST}/graphics/kodak/kodak/{{name}}.png"
KODAK_NAMES = tuple(f"kodim{i:02d}" for i in range(1, 25))
FOLDER_SPLIT = "images"
DATA_ROOT_ENV = "JAHP_DATA"
DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data"
DOWNLOAD = "download"  # as a data root: use the tfds downloads even where local data exists
# Hosts the tfds downloads of these data sets need, checked before tfds retries for minutes.
DOWNLOAD_HOSTS = {"kodak": (KODAK_HOST, 80), "tf_flowers": ("storage.googleapis.com", 443)}
# A process decodes its training images once when their pixels fit in this and the run reads at
# least one crop per image (`train_batches`).
DECODED_BUDGET_BYTES = 2**30


class DatasetError(ValueError):
    """A data source is missing, empty or misconfigured (message says what to do)."""


def resolve_data_root(data_root: str | None = None) -> Path | None:
    """The local data folder: `data_root` (--data_root), else $JAHP_DATA, else `../shared/data`
    beside the repository when it exists; None for 'download' or when none is found.

    Raises:
      DatasetError: a folder given by flag or environment does not exist.
    """
    given = ((data_root, "--data_root"), (os.environ.get(DATA_ROOT_ENV), f"${DATA_ROOT_ENV}"))
    for value, label in given:
        if not value:
            continue
        if value == DOWNLOAD:
            return None
        root = Path(value).expanduser()
        if not root.is_dir():
            raise DatasetError(
                f"{label}={value} is not a folder; give a folder holding train/, val/ and "
                f"kodak/, or '{DOWNLOAD}' for the tfds downloads"
            )
        return root
    return DEFAULT_DATA_ROOT if DEFAULT_DATA_ROOT.is_dir() else None


# --------------------------------------------------------------------------------------------
# tfds builders
# --------------------------------------------------------------------------------------------


class _QuietPreparation:
    """tfds prints its preparation notices to stdout; for these builders `_prepare` logs one."""

    def _log_download_bytes(self) -> None:
        log.debug("tfds preparation of %s started", self.data_dir)

    def _log_download_done(self) -> None:
        log.debug("tfds preparation of %s done", self.data_dir)


@dataclasses.dataclass(eq=False)
class ImageFolderConfig(tfds.core.BuilderConfig):
    """One local folder; `name` carries a fingerprint of its contents (see `_folder_config`)."""

    folder: str = ""


class ImageFolder(_QuietPreparation, tfds.core.GeneratorBasedBuilder):
    """Every readable image below one local folder, in a single split 'images'.

    Images are stored exactly as `read_image` returns them (PNG-encoded RGB), with their path
    relative to the folder, suffix removed, as 'name'. Unreadable files are skipped; their
    paths and reasons are kept in `info.metadata['skipped']`.
    """

    VERSION = tfds.core.Version("1.0.0")

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
                    "name": tfds.features.Text(),
                }
            ),
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # The folder is read in place.
        self.info.metadata["skipped"] = []
        return {FOLDER_SPLIT: self._generate_examples(Path(self.builder_config.folder))}

    def _generate_examples(self, folder: Path):
        readable = 0
        for path in _image_files(folder):
            name = path.relative_to(folder).with_suffix("").as_posix()
            try:
                image = read_image(path)
            except ImageError as err:
                log.warning("skipping unreadable file: %s", err)
                self.info.metadata["skipped"].append(str(err))
                continue
            readable += 1
            key = path.relative_to(folder).as_posix()  # Unique even for a.png next to a.jpg.
            yield key, {"image": _encode_png(image), "name": name}
        if not readable:
            first = self.info.metadata["skipped"][0]
            raise DatasetError(f"data folder {folder} holds no readable image ({first})")


def _encode_png(image: np.ndarray) -> bytes:
    """PNG bytes of uint8 (H, W, 3), fast zlib level (tfds's own encoder is ~5x slower)."""
    buffer = io.BytesIO()
    Image.fromarray(image, mode="RGB").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


class Kodak(_QuietPreparation, tfds.core.GeneratorBasedBuilder):
    """The 24 Kodak PhotoCD images (768x512 or 512x768 RGB PNG), split 'test', for evaluation.

    Offline use: pass `download_config.manual_dir` holding kodim01.png ... kodim24.png; the files
    are checked against the same sizes and sha256 as downloads.
    """

    VERSION = tfds.core.Version("1.0.0")
    _checksums_path = KODAK_CHECKSUMS  # Overrides tfds's "next to the module" default.

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(None, None, 3), encoding_format="png"),
                    "name": tfds.features.Text(),
                }
            ),
            homepage="http://r0k.us/graphics/kodak/",
        )

    def _split_generators(self, dl_manager):
        paths = dl_manager.download({name: KODAK_URL.format(name=name) for name in KODAK_NAMES})
        return {"test": self._generate_examples(paths)}

    def _generate_examples(self, paths):
        for name, path in paths.items():
            yield name, {"image": path, "name": name}


# --------------------------------------------------------------------------------------------
# Preparing a source
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PreparedDataset:
    """A prepared tfds data set.

    `split` is the only split of a folder ('images') or Kodak ('test'), '' for other tfds data
    sets (the caller picks); `skipped` holds one line per unreadable file of a folder.
    """

    builder: tfds.core.DatasetBuilder
    split: str
    skipped: tuple[str, ...]


def _image_files(folder: Path) -> list[Path]:
    """Files below `folder` (recursively, hidden ones excluded) with an image suffix, sorted."""
    files = [
        path
        for path in folder.rglob("*")
        if path.suffix.lower() in IMAGE_SUFFIXES
        and not any(part.startswith(".") for part in path.relative_to(folder).parts)
        and path.is_file()
    ]
    return sorted(files)


def _folder_config(folder: Path) -> ImageFolderConfig:
    """Config named '<folder name>_<hash of absolute path, file names, sizes, mtimes>'."""
    if not folder.exists():
        raise DatasetError(f"data folder {folder} does not exist; check --data_dir")
    if not folder.is_dir():
        raise DatasetError(f"data folder {folder} is not a folder; check --data_dir")
    files = _image_files(folder)
    if not files:
        raise DatasetError(
            f"data folder {folder} holds no image files ({', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    digest = hashlib.sha256(str(folder.resolve()).encode())
    for path in files:
        stat = path.stat()
        digest.update(
            f"\0{path.relative_to(folder).as_posix()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode()
        )
    slug = re.sub(r"[^A-Za-z0-9]+", "_", folder.resolve().name).strip("_")[:40] or "folder"
    return ImageFolderConfig(
        name=f"{slug}_{digest.hexdigest()[:16]}",
        description=f"images below {folder.resolve()}",
        folder=str(folder.resolve()),
    )


def check_reachable(dataset: str, hint: str) -> None:
    """Fails fast (one line ending in `hint`) when the download host of `dataset` is unreachable,
    where tfds would retry for minutes; data sets without a known host pass."""
    if dataset not in DOWNLOAD_HOSTS:
        return
    host, port = DOWNLOAD_HOSTS[dataset]
    try:
        socket.create_connection((host, port), timeout=10).close()
    except OSError as err:
        raise DatasetError(f"cannot reach {host} to download {dataset} ({err}); {hint}") from None


def is_prepared(dataset: str, tfds_data_dir: str | None = None) -> bool:
    """True when the tfds data set `dataset` (e.g. 'kodak') is already prepared: no download."""
    try:
        builder = (Kodak if dataset == "kodak" else functools.partial(tfds.builder, dataset))(
            data_dir=tfds_data_dir
        )
    except tfds.core.registered.DatasetNotFoundError:
        raise DatasetError(f"unknown tfds data set {dataset!r}") from None
    return _has_info(builder)


def _has_info(builder: tfds.core.DatasetBuilder) -> bool:
    """Prepared: its info file exists (tfds's own is_prepared warns about a half-made folder)."""
    return (Path(builder.data_dir) / "dataset_info.json").is_file()


class _DropCustomConfigWarning(logging.Filter):
    """tfds warns about every builder config it does not list; a folder's config is always new."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Using custom data configuration")


def _folder_builder(folder: Path, tfds_data_dir: str | None) -> ImageFolder:
    drop = _DropCustomConfigWarning()
    logging.getLogger("absl").addFilter(drop)
    try:
        return ImageFolder(config=_folder_config(folder), data_dir=tfds_data_dir)
    finally:
        logging.getLogger("absl").removeFilter(drop)


def _prepare(
    make_builder: Callable[[], tfds.core.DatasetBuilder], manual_dir: str | None, what: str
) -> tfds.core.DatasetBuilder:
    """The builder `make_builder` makes, prepared (once), with tfds failures as DatasetError.

    Processes that prepare the same data at once (the tasks of a sweep, the processes of a
    multi-process run) take turns on a lock file beside the prepared folder: the first prepares,
    the others find it prepared (their builder is made after the lock, so it reads that folder).
    """
    lock_path = Path(make_builder().data_dir).parent / ".prepare.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(lock_path):
        builder = make_builder()
        if _has_info(builder):
            return builder
        log.info("preparing %s once into %s (later runs reuse it)", what, builder.data_dir)
        config = tfds.download.DownloadConfig(manual_dir=manual_dir, try_download_gcs=False)
        try:
            builder.download_and_prepare(download_config=config)
        except NonMatchingChecksumError as err:
            first = str(err).splitlines()[0]
            raise DatasetError(f"{what}: a file differs from the published one ({first})") from None
        except (OSError, AssertionError, tf.errors.OpError, tfds.download.DownloadError) as err:
            first = (str(err).splitlines() or [type(err).__name__])[0]
            raise DatasetError(f"{what}: preparation failed: {first}") from None
    return builder


def prepare_dataset(
    *, dataset: str | None, data_dir: str | None, tfds_data_dir: str | None = None
) -> PreparedDataset:
    """Prepares (once) and returns a data source; see the module docstring for the sources.

    Args:
      dataset: a tfds name ('kodak', 'clic', ...), or None / 'image_folder' for a folder.
      data_dir: the folder of images (dataset None), or the tfds manual dir of `dataset`.
      tfds_data_dir: where tfds keeps prepared data; None means tfds's default.

    Raises:
      DatasetError: nothing to read, or preparation failed (one-line message).
    """
    if dataset in (None, "image_folder"):
        if data_dir is None:
            raise DatasetError("no data source: give a folder of images (--data_dir) or --dataset")
        folder = Path(data_dir).expanduser()
        builder = _prepare(
            functools.partial(_folder_builder, folder, tfds_data_dir), None, f"folder {folder}"
        )
        skipped = tuple(builder.info.metadata.get("skipped", ()))
        if skipped:
            log.warning(
                "%d unreadable file(s) in %s are skipped, e.g. %s", len(skipped), folder, skipped[0]
            )
        return PreparedDataset(builder, FOLDER_SPLIT, skipped)
    if dataset == "kodak":
        if data_dir is not None:
            folder = Path(data_dir).expanduser()
            missing = [n for n in KODAK_NAMES if not (folder / f"{n}.png").is_file()]
            if missing:
                raise DatasetError(
                    f"Kodak folder {folder} lacks {len(missing)} of kodim01.png..kodim24.png "
                    f"(first: {missing[0]}.png); point --data_dir at the 24 Kodak PNGs"
                )
        if data_dir is None and not _has_info(Kodak(data_dir=tfds_data_dir)):
            check_reachable("kodak", "pass a folder holding kodim01.png..kodim24.png as --data_dir")
        builder = _prepare(functools.partial(Kodak, data_dir=tfds_data_dir), data_dir, "Kodak")
        return PreparedDataset(builder, "test", ())
    try:
        builder = tfds.builder(dataset, data_dir=tfds_data_dir)
    except tfds.core.registered.DatasetNotFoundError:
        raise DatasetError(
            f"unknown tfds data set {dataset!r}; give a tfds name or a folder (--data_dir)"
        ) from None
    if "image" not in builder.info.features:
        raise DatasetError(f"tfds data set {dataset!r} has no feature 'image'")
    if data_dir is None and not _has_info(builder):
        check_reachable(dataset, "train on a local folder of images instead (--data_dir)")
    builder = _prepare(
        functools.partial(tfds.builder, dataset, data_dir=tfds_data_dir), data_dir,
        f"tfds data set {dataset!r}",
    )  # fmt: skip
    return PreparedDataset(builder, "", ())


def _check_split(prepared: PreparedDataset, split: str, label: str) -> None:
    """Raises DatasetError unless the prepared data set has `split`."""
    if split not in prepared.builder.info.splits:
        available = ", ".join(sorted(prepared.builder.info.splits))
        raise DatasetError(f"{label} has no split {split!r}; available: {available}")


def _read_encoded(prepared: PreparedDataset, split) -> tuple[list[str], list[bytes]]:
    """Names and encoded image bytes of a (sub)split, sorted by name; nothing is decoded."""
    has_names = "name" in prepared.builder.info.features
    records = prepared.builder.as_dataset(
        split=split, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()}
    )
    names, encoded = [], []
    for index, record in enumerate(tfds.as_numpy(records)):
        names.append(record["name"].decode() if has_names else f"{index:06d}")
        encoded.append(record["image"])
    order = sorted(range(len(names)), key=names.__getitem__)
    return [names[i] for i in order], [encoded[i] for i in order]


def _image_size(encoded: bytes) -> tuple[int, int]:
    """(height, width) from an encoded image's header."""
    with Image.open(io.BytesIO(encoded)) as img:
        return img.height, img.width


def _decode(encoded: bytes | tf.Tensor) -> tf.Tensor:
    """uint8 (H, W, 3) from PNG/JPEG/GIF/BMP bytes (grayscale expanded to RGB).

    JPEGs use the accurate integer IDCT, which gives exactly `read_image`'s (PIL's) pixels;
    tf's default fast IDCT differs from them by up to 17 levels on BSDS500.
    """
    encoded = tf.convert_to_tensor(encoded, tf.string)
    return tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_image(encoded, channels=3, dtype=tf.uint8, expand_animations=False),
    )


# --------------------------------------------------------------------------------------------
# Training and evaluation streams
# --------------------------------------------------------------------------------------------


def train_batches(
    *,
    dataset: str | None,
    data_dir: str | None,
    batch_size: int,
    patch_size: int,
    seed: int,
    start_step: int = 0,
    process_index: int = 0,
    process_count: int = 1,
    split: str = "train",
    tfds_data_dir: str | None = None,
    decoded_budget_bytes: int = DECODED_BUDGET_BYTES,
    expected_batches: int | None = None,
) -> Iterator[np.ndarray]:
    """Endless float32 [0, 1] batches (batch_size // process_count, patch, patch, 3).

    Arguments are checked and the source is prepared and read when this is called, so bad input
    raises here, not at the first `next()`; the returned iterator only decodes and crops.

    Row r of the global batch draws from its own stratum, the r-th of batch_size contiguous
    blocks of the split: at step s it is a random crop and flip of image index_shuffle(s mod n)
    of that block, an independent permutation per epoch, all seeded by (seed, r). So the global
    batch at step s is a pure function of (seed, s, batch_size) and the data, the same for any
    number of processes: process p yields rows [p * b, (p + 1) * b), b = batch_size //
    process_count, and reads only their images (disjoint shards); `start_step=s` yields exactly
    what an uninterrupted run yields from step s on. Images smaller than the patch in either side
    are skipped with a warning and a count. `split` applies to named tfds data sets; a folder is
    one split. The encoded images of the shard are held in memory; when their decoded pixels take
    at most `decoded_budget_bytes` (BSDS500's 400 training images: 185 MB) and the caller reads
    at least one crop per image (`expected_batches`, the batches it will take; None: unknown,
    taken as many) they are decoded once, here, and every patch is cut from memory, else each
    patch decodes its image again (a short run, e.g. a test, skips decoding hundreds of images
    it would never read). Both give the same batches.

    Raises:
      DatasetError: bad arguments, no source, Kodak (evaluation only), or no image large enough.
    """
    if batch_size <= 0 or patch_size <= 0 or start_step < 0:
        raise DatasetError(
            f"need batch_size > 0, patch_size > 0, start_step >= 0; got {batch_size}, "
            f"{patch_size}, {start_step}"
        )
    if not 0 <= process_index < process_count:
        raise DatasetError(
            f"need 0 <= process_index < process_count, got {process_index}, {process_count}"
        )
    if batch_size % process_count:
        raise DatasetError(
            f"batch_size {batch_size} is not divisible by process_count {process_count}"
        )
    if dataset == "kodak":
        raise DatasetError("Kodak is for evaluation only; train on another data set or folder")
    prepared = prepare_dataset(dataset=dataset, data_dir=data_dir, tfds_data_dir=tfds_data_dir)
    whole = prepared.split or split
    label = dataset or str(data_dir)
    _check_split(prepared, whole, label)
    local_batch = batch_size // process_count
    rows = range(process_index * local_batch, (process_index + 1) * local_batch)
    shards, read, skipped = [], 0, 0
    for row in rows:
        names, encoded = _read_encoded(prepared, _stratum(prepared, whole, row, batch_size, label))
        sizes = [_image_size(data) for data in encoded]
        large = [(data, size) for data, size in zip(encoded, sizes, strict=True)
                 if min(size) >= patch_size]  # fmt: skip
        read, skipped = read + len(names), skipped + len(names) - len(large)
        if not large:
            raise DatasetError(
                f"no image of {label} for batch row {row} (images {names[0]} ... {names[-1]}) "
                f"is at least {patch_size}x{patch_size}; use a smaller --patch_size"
            )
        shards.append(large)
    if skipped:
        log.warning(
            "%d of %d images of %s (batch rows %d-%d) are smaller than %dx%d and are skipped",
            skipped, read, label, rows[0], rows[-1], patch_size, patch_size,
        )  # fmt: skip
    decoded_bytes = sum(3 * h * w for shard in shards for _, (h, w) in shard)
    reads_every_image = expected_batches is None or expected_batches >= max(map(len, shards))
    decode_once = decoded_bytes <= decoded_budget_bytes and reads_every_image
    images = _decoded_images if decode_once else _encoded_images
    streams = [
        _patch_stream(
            images([data for data, _ in shard]),
            patch_size=patch_size,
            seed=(seed, row),
            first_element=start_step,
        )
        for row, shard in zip(rows, shards, strict=True)
    ]
    batches = tf.data.Dataset.zip(tuple(streams)).map(
        lambda *patches: tf.stack(patches), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    return iter(tfds.as_numpy(batches.prefetch(tf.data.AUTOTUNE)))


def _stratum(prepared: PreparedDataset, split: str, row: int, batch_size: int, label: str) -> str:
    """The tfds sub-split that batch row `row` of `batch_size` draws from: the row-th of
    batch_size contiguous, disjoint, near-equal blocks of `split` (in the builder's order)."""
    count = prepared.builder.info.splits[split].num_examples
    if count < batch_size:
        raise DatasetError(
            f"{label} has {count} images, fewer than the global batch of {batch_size}: every "
            "batch row draws from its own images; use a smaller --batch_size or more images"
        )
    return f"{split}[{row * count // batch_size}:{(row + 1) * count // batch_size}]"


# The n images of a batch row, and a graph function from an index in [0, n) to the uint8 image.
ImageTable = tuple[int, Callable[[tf.Tensor], tf.Tensor]]


def _encoded_images(encoded: list[bytes]) -> ImageTable:
    """Images decoded again at every read."""
    table = tf.constant(encoded)
    return len(encoded), lambda index: _decode(tf.gather(table, index))


def _decoded_images(encoded: list[bytes]) -> ImageTable:
    """Images decoded once (in parallel, by `_decode`) into one flat uint8 buffer."""
    decoded = tf.data.Dataset.from_tensor_slices(encoded).map(
        _decode, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    images = list(tfds.as_numpy(decoded))
    pixels = tf.constant(np.concatenate([image.reshape(-1) for image in images]))
    starts = tf.constant(np.cumsum([0] + [image.size for image in images[:-1]]), tf.int64)
    shapes = tf.constant([image.shape for image in images], tf.int64)

    def read(index: tf.Tensor) -> tf.Tensor:
        shape = tf.gather(shapes, index)
        return tf.reshape(tf.slice(pixels, [starts[index]], [tf.reduce_prod(shape)]), shape)

    return len(images), read


def _patch_stream(
    images: ImageTable, *, patch_size: int, seed: tuple[int, int], first_element: int
) -> tf.data.Dataset:
    """Element i >= first_element: a float32 (patch, patch, 3) crop of a shuffled image.

    From `seed` two independent stateless seeds are split: one, folded with the epoch i div n,
    picks image index_shuffle(i mod n); the other, folded with i, seeds the crop and the flip.
    Nothing before first_element is computed.
    """
    count, read = images
    order_seed, element_seed = tf.unstack(tf.random.split(tf.constant(seed, tf.int64), num=2))

    def element(index: tf.Tensor) -> tf.Tensor:
        epoch_seed = tf.random.fold_in(order_seed, index // count)
        image_index = tf.random.experimental.index_shuffle(index % count, epoch_seed, count - 1)
        image = read(image_index)
        crop_seed, flip_seed = tf.unstack(
            tf.random.split(tf.random.fold_in(element_seed, index), num=2)
        )
        patch = tf.image.stateless_random_crop(image, [patch_size, patch_size, 3], crop_seed)
        patch = tf.image.stateless_random_flip_left_right(patch, flip_seed)
        return tf.cast(patch, tf.float32) / 255.0

    indices = tf.data.Dataset.counter(start=first_element, dtype=tf.int64)
    return indices.map(element, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def eval_images(
    dataset: str | None = "kodak",
    data_dir: str | None = None,
    limit: int | None = None,
    *,
    split: str | None = None,
    tfds_data_dir: str | None = None,
) -> Iterator[tuple[str, np.ndarray]]:
    """(name, uint8 (H, W, 3)) for full-size images, sorted by name (e.g. 'kodim01').

    `dataset=None` reads the folder `data_dir`; for Kodak, `data_dir` is the offline copy.
    `split` defaults to 'test' for Kodak and 'validation' for other tfds data sets. Images
    are decoded one at a time; their encoded bytes are held in memory.

    Raises:
      DatasetError: no source, an unknown split, or a negative limit.
    """
    if limit is not None and limit < 0:
        raise DatasetError(f"limit must be >= 0, got {limit}")
    prepared = prepare_dataset(dataset=dataset, data_dir=data_dir, tfds_data_dir=tfds_data_dir)
    chosen = prepared.split or split or "validation"
    if prepared.split and split not in (None, prepared.split):
        raise DatasetError(f"{dataset or data_dir} has only the split {prepared.split!r}")
    _check_split(prepared, chosen, dataset or str(data_dir))
    names, encoded = _read_encoded(prepared, chosen)
    for name, data in list(zip(names, encoded, strict=True))[:limit]:
        yield name, _decode(data).numpy()


def validation_batches(
    *,
    dataset: str | None,
    data_dir: str | None,
    patch_size: int,
    max_images: int,
    split: str | None = None,
    tfds_data_dir: str | None = None,
) -> np.ndarray:
    """float32 [0, 1] (N, patch, patch, 3): center crops of the first images, sorted by name.

    N <= max_images: images smaller than the patch in either side are skipped (with a warning).

    Raises:
      DatasetError: max_images or patch_size < 1, or no image large enough.
    """
    if max_images < 1 or patch_size < 1:
        raise DatasetError(
            f"need max_images >= 1 and patch_size >= 1, got {max_images}, {patch_size}"
        )
    crops, too_small = [], 0
    for _, image in eval_images(dataset, data_dir, split=split, tfds_data_dir=tfds_data_dir):
        height, width, _ = image.shape
        if min(height, width) < patch_size:
            too_small += 1
            continue
        top, left = (height - patch_size) // 2, (width - patch_size) // 2
        crops.append(image[top : top + patch_size, left : left + patch_size])
        if len(crops) == max_images:
            break
    if too_small:
        log.warning("%d validation images smaller than %d px are skipped", too_small, patch_size)
    if not crops:
        raise DatasetError(f"no validation image is at least {patch_size}x{patch_size}")
    return np.stack(crops).astype(np.float32) / 255.0
