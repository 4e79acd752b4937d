"""Tests for jahp_jax.data.pipeline: image IO, the tfds builders and the training / evaluation
streams."""

import itertools
import logging
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from conftest import SHARED
from PIL import Image

from jahp_jax.data import pipeline as data

pytestmark = pytest.mark.plain_clone  # every test here reads the data folders

DATA = SHARED / "data"  # ../shared/data, or the committed stand-in (2 Kodak images, 7 BSDS500)
KODAK = DATA / "kodak"
BSDS_TRAIN = DATA / "train" / "bsds500"
BSDS_VAL = DATA / "val" / "bsds500"
PORTRAIT_KODAK = {"kodim04", "kodim09", "kodim10", "kodim17", "kodim18", "kodim19"}
# (H, W) of synthetic coordinate images; all hold a 16x16 patch, two are portrait.
SYNTHETIC_SHAPES = [(24, 40), (40, 24), (16, 16), (30, 50), (50, 30), (20, 33)]
PATCH = 16


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory) -> str:
    """One tfds data dir per module, so the BSDS500 folder is prepared once."""
    return str(tmp_path_factory.mktemp("tensorflow_datasets"))


@pytest.fixture(scope="module")
def bsds(tmp_path_factory) -> dict[str, Path]:
    """{'train', 'val'}: the first 8 images of each BSDS500 folder (a plain clone's stand-in has
    fewer); preparing all of ../shared's (400 + 100 JPEGs) adds nothing to what is tested."""
    root = tmp_path_factory.mktemp("bsds500")
    folders = {}
    for split, source in (("train", BSDS_TRAIN), ("val", BSDS_VAL)):
        folders[split] = root / split
        folders[split].mkdir()
        for path in sorted(source.glob("*.jpg"))[:8]:
            shutil.copy(path, folders[split] / path.name)
    return folders


def coordinate_image(height: int, width: int, image_id: int) -> np.ndarray:
    """uint8 (H, W, 3) whose pixel (y, x) is (x, y, 10 * image_id): a patch names its source."""
    y, x = np.mgrid[:height, :width]
    return np.stack([x, y, np.full_like(x, 10 * image_id)], axis=-1).astype(np.uint8)


@pytest.fixture
def coordinate_dir(tmp_path) -> Path:
    """Folder of coordinate PNGs img0..img5 plus a non-image file the pipeline ignores."""
    folder = tmp_path / "coords"
    folder.mkdir()
    for image_id, (height, width) in enumerate(SYNTHETIC_SHAPES):
        image = coordinate_image(height, width, image_id)
        Image.fromarray(image).save(folder / f"img{image_id}.png")
    (folder / "MANIFEST.sha256").write_text("not an image\n")
    return folder


def window(patch: np.ndarray) -> tuple[int, int, int, bool]:
    """(image_id, top, left, mirrored) of a float coordinate patch; fails unless a true window."""
    pixels = np.rint(patch * 255.0).astype(int)
    np.testing.assert_allclose(patch * 255.0, pixels, atol=1e-3)
    x, y, ids = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    assert (ids == ids[0, 0]).all() and ids[0, 0] % 10 == 0
    mirrored = bool(x[0, 0] > x[0, -1])
    left = int(x.min())
    expected_x = left + np.arange(PATCH)[::-1] if mirrored else left + np.arange(PATCH)
    np.testing.assert_array_equal(x, np.broadcast_to(expected_x, x.shape))
    np.testing.assert_array_equal(y, np.broadcast_to(y[:, :1], y.shape))
    np.testing.assert_array_equal(y[:, 0], y[0, 0] + np.arange(PATCH))
    return int(ids[0, 0]) // 10, int(y[0, 0]), left, mirrored


def take(iterator, count: int) -> list[np.ndarray]:
    return list(itertools.islice(iterator, count))


# ---------------------------------------------------------------------------------------------
# read_image / write_png
# ---------------------------------------------------------------------------------------------


def test_read_image_reads_kodak_and_bsds500():
    kodim01 = data.read_image(KODAK / "kodim01.png")
    assert kodim01.shape == (512, 768, 3) and kodim01.dtype == np.uint8
    jpeg = data.read_image(sorted(BSDS_TRAIN.glob("*.jpg"))[0])
    assert jpeg.dtype == np.uint8 and sorted(jpeg.shape[:2]) == [321, 481]
    assert jpeg.std() > 10  # A photograph, not a blank.


def test_read_image_converts_grayscale_palette_and_opaque_alpha(tmp_path):
    rgb = coordinate_image(20, 30, 3)
    gray = rgb[..., 0]
    Image.fromarray(gray, mode="L").save(tmp_path / "gray.png")
    Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE).save(tmp_path / "pal.png")
    Image.fromarray(np.dstack([rgb, np.full_like(gray, 255)])).save(tmp_path / "opaque.png")
    np.testing.assert_array_equal(data.read_image(tmp_path / "gray.png"), np.dstack([gray] * 3))
    palette = data.read_image(tmp_path / "pal.png")
    assert palette.shape == (20, 30, 3) and palette.dtype == np.uint8
    np.testing.assert_array_equal(data.read_image(tmp_path / "opaque.png"), rgb)


def make_bad_file(folder: Path, kind: str) -> Path:
    """Writes one kind of unreadable image into folder."""
    if kind == "text":
        path = folder / "notes.png"
        path.write_text("this is not an image\n")
    elif kind == "truncated":
        path = folder / "truncated.png"
        path.write_bytes((KODAK / "kodim01.png").read_bytes()[:20000])
    elif kind == "transparent":
        path = folder / "transparent.png"
        rgba = np.dstack([coordinate_image(8, 8, 1), np.full((8, 8), 255, np.uint8)])
        rgba[3, 3, 3] = 0
        Image.fromarray(rgba).save(path)
    elif kind == "gray16":
        path = folder / "gray16.png"
        Image.fromarray(np.full((8, 8), 40000, np.uint16)).save(path)
    elif kind == "rgb48":
        path = folder / "rgb48.png"
        path.write_bytes(tf.io.encode_png(np.full((8, 8, 3), 40000, np.uint16)).numpy())
    else:
        path = folder / "missing.png"
    return path


@pytest.mark.parametrize(
    "kind, message",
    [
        ("text", "not an image file"),
        ("truncated", "cannot decode image"),
        ("transparent", "transparent pixels; flatten"),
        ("gray16", "16-bit"),
        ("rgb48", "16-bit"),
        ("missing", "no such file"),
    ],
)
def test_read_image_rejects_bad_files_in_one_line_with_the_path(tmp_path, kind, message):
    path = make_bad_file(tmp_path, kind)
    with pytest.raises(data.ImageError, match=message) as caught:
        data.read_image(path)
    assert str(path) in str(caught.value) and "\n" not in str(caught.value)


def test_write_png_round_trips_and_leaves_no_temp_file(tmp_path):
    image = coordinate_image(12, 17, 2)
    data.write_png(tmp_path / "out.png", image)
    np.testing.assert_array_equal(data.read_image(tmp_path / "out.png"), image)
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_written_files_follow_the_umask_like_any_new_file(tmp_path, umask):
    """0644 under umask 022, 0600 under 077: the temp file renamed into place is created as
    `open` creates files, not with mkstemp's 0600. In a subprocess: the umask is per process."""
    code = (
        "import sys; import numpy as np; from jahp_jax.io.images import write_png, write_text; "
        "write_png(sys.argv[1], np.zeros((2, 3, 3), np.uint8)); write_text(sys.argv[2], 'x')"
    )
    paths = (tmp_path / "image.png", tmp_path / "deep" / "notes.txt")
    subprocess.run([sys.executable, "-c", code, *map(str, paths)], umask=umask, check=True)
    for path in paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deep", "image.png"]  # no temp file


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((4, 4, 3), np.float32), "uint8"),
        (np.zeros((4, 4), np.uint8), "shape"),
        (np.zeros((4, 4, 4), np.uint8), "shape"),
        ([[0, 0, 0]], "uint8"),
    ],
)
def test_write_png_rejects_bad_arrays_and_writes_nothing(tmp_path, image, message):
    with pytest.raises(data.ImageError, match=message):
        data.write_png(tmp_path / "out.png", image)
    assert list(tmp_path.iterdir()) == []


def test_write_png_rejects_missing_folder(tmp_path):
    with pytest.raises(data.ImageError, match="does not exist"):
        data.write_png(tmp_path / "nope" / "out.png", coordinate_image(4, 4, 0))


# ---------------------------------------------------------------------------------------------
# Training stream
# ---------------------------------------------------------------------------------------------


def folder_batches(folder, tfds_dir, **kwargs):
    args = {"batch_size": 4, "patch_size": PATCH, "seed": 1, **kwargs}
    return data.train_batches(dataset=None, data_dir=str(folder), tfds_data_dir=tfds_dir, **args)


def test_train_batches_are_true_windows_flipped_and_each_row_a_permutation_per_epoch(
    coordinate_dir, tmp_path
):
    stream = folder_batches(coordinate_dir, str(tmp_path / "tfds"), batch_size=3)
    batches = np.stack(take(stream, 40))
    rows = [[window(patch) for patch in batches[:, row]] for row in range(3)]
    strata = [{w[0] for w in row} for row in rows]
    assert all(len(stratum) == 2 for stratum in strata)  # 6 images, 3 rows: 2 images per row.
    assert set().union(*strata) == set(range(len(SYNTHETIC_SHAPES)))  # Disjoint, cover all.
    for row, windows in zip(strata, rows, strict=True):
        orders = [tuple(w[0] for w in windows[e * 2 : e * 2 + 2]) for e in range(20)]
        assert all(sorted(order) == sorted(row) for order in orders)  # A permutation per epoch.
        assert len(set(orders)) > 1  # Reshuffled per epoch.
    windows = [w for row in rows for w in row]
    assert {w[3] for w in windows} == {False, True}  # Some patches mirrored, some not.
    offsets_of_largest = {(w[1], w[2]) for w in windows if w[0] == 3}
    assert len(offsets_of_largest) > 3  # Crops move.


def test_train_batches_on_bsds500_shape_range_determinism_and_resume(bsds, tfds_dir):
    def run(**kwargs):
        return data.train_batches(
            dataset=None, data_dir=str(bsds["train"]), batch_size=4, patch_size=64,
            tfds_data_dir=tfds_dir, **kwargs,
        )

    first = take(run(seed=7), 8)
    for batch in first:
        assert batch.shape == (4, 64, 64, 3) and batch.dtype == np.float32
        assert 0.0 <= batch.min() and batch.max() <= 1.0
    assert not np.array_equal(first[0], first[1])
    np.testing.assert_array_equal(np.concatenate(take(run(seed=7), 8)), np.concatenate(first))
    resumed = take(run(seed=7, start_step=5), 3)
    np.testing.assert_array_equal(np.concatenate(resumed), np.concatenate(first[5:8]))
    assert not np.array_equal(take(run(seed=8), 1)[0], first[0])


def test_images_decoded_once_give_the_batches_of_images_decoded_per_patch(
    bsds, tmp_path, monkeypatch
):
    """Decoded once when they fit the budget and the run reads a crop per image (2 per batch
    row here: 4 images, the plain clone's, batches of 2), else per crop: the same batches either
    way."""
    four = tmp_path / "four"
    four.mkdir()
    for path in sorted(bsds["train"].glob("*.jpg"))[:4]:
        shutil.copy(path, four / path.name)
    decoded_at_start = []
    decode_all = data._decoded_images
    monkeypatch.setattr(
        data, "_decoded_images", lambda encoded: decoded_at_start.append(len(encoded))
        or decode_all(encoded),
    )  # fmt: skip

    def run(budget, expected_batches=None):
        return take(data.train_batches(
            dataset=None, data_dir=str(four), batch_size=2, patch_size=64, seed=3,
            start_step=2, tfds_data_dir=str(tmp_path / "tfds"), decoded_budget_bytes=budget,
            expected_batches=expected_batches,
        ), 6)  # fmt: skip

    in_memory = run(2**30)
    assert decoded_at_start == [2, 2]
    for per_patch in (run(0), run(2**30, expected_batches=1)):
        np.testing.assert_array_equal(np.stack(in_memory), np.stack(per_patch))
    assert decoded_at_start == [2, 2]
    run(2**30, expected_batches=2)
    assert decoded_at_start == [2, 2] * 2


def test_train_batches_hosts_read_disjoint_shards(coordinate_dir, tmp_path):
    tfds_dir = str(tmp_path / "tfds")
    seen = []
    for process_index in range(2):
        batches = take(
            folder_batches(coordinate_dir, tfds_dir, process_index=process_index, process_count=2),
            6,
        )
        assert all(batch.shape == (2, PATCH, PATCH, 3) for batch in batches)
        seen.append({window(patch)[0] for patch in np.concatenate(batches)})
    assert seen[0].isdisjoint(seen[1])
    assert seen[0] | seen[1] == set(range(len(SYNTHETIC_SHAPES)))


def test_the_global_batch_does_not_depend_on_the_process_count(coordinate_dir, tmp_path):
    tfds_dir = str(tmp_path / "tfds")
    single = take(folder_batches(coordinate_dir, tfds_dir, start_step=3), 5)
    for process_count in (2, 4):
        shards = [
            take(folder_batches(coordinate_dir, tfds_dir, start_step=3, process_index=index,
                                process_count=process_count), 5)  # fmt: skip
            for index in range(process_count)
        ]
        for step, batch in enumerate(single):
            local = [shard[step] for shard in shards]
            np.testing.assert_array_equal(np.concatenate(local), batch)


def test_a_batch_larger_than_the_data_set_is_refused(coordinate_dir, tmp_path):
    with pytest.raises(data.DatasetError, match="fewer than the global batch of 8"):
        folder_batches(coordinate_dir, str(tmp_path / "tfds"), batch_size=8)


def test_processes_preparing_one_folder_at_once_all_succeed(coordinate_dir, tmp_path):
    """The tasks of a sweep (or the processes of one run) prepare the same folder together."""
    script = ("import sys; from jahp_jax.data import pipeline; "
              "pipeline.prepare_dataset(dataset=None, data_dir=sys.argv[1], "
              "tfds_data_dir=sys.argv[2]); print('prepared')")  # fmt: skip
    command = [sys.executable, "-c", script, str(coordinate_dir), str(tmp_path / "tfds")]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]  # fmt: skip
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0 and out.strip() == "prepared", err[-2000:]


def test_folder_with_corrupt_files_skips_them_with_a_count(coordinate_dir, tmp_path, caplog):
    for kind in ("text", "truncated"):
        make_bad_file(coordinate_dir, kind)
    tfds_dir = str(tmp_path / "tfds")
    with caplog.at_level(logging.WARNING, logger="jahp_jax.data.pipeline"):
        prepared = data.prepare_dataset(dataset=None, data_dir=str(coordinate_dir),
                                        tfds_data_dir=tfds_dir)
    assert len(prepared.skipped) == 2
    assert "2 unreadable file(s)" in caplog.text
    assert prepared.builder.info.splits[prepared.split].num_examples == len(SYNTHETIC_SHAPES)
    reopened = data.prepare_dataset(dataset=None, data_dir=str(coordinate_dir),
                                    tfds_data_dir=tfds_dir)
    assert reopened.skipped == prepared.skipped  # Kept with the prepared data.
    batch = next(folder_batches(coordinate_dir, tfds_dir))
    assert batch.shape == (4, PATCH, PATCH, 3)


def test_folder_preparation_notices_changes_and_never_writes_into_the_folder(
    coordinate_dir, tmp_path
):
    tfds_dir = str(tmp_path / "tfds")
    before = sorted(p.name for p in coordinate_dir.iterdir())
    source = {"dataset": None, "data_dir": str(coordinate_dir), "tfds_data_dir": tfds_dir}
    first = data.prepare_dataset(**source)
    assert sorted(p.name for p in coordinate_dir.iterdir()) == before
    Image.fromarray(coordinate_image(20, 20, 9)).save(coordinate_dir / "img9.png")
    second = data.prepare_dataset(**source)
    assert second.builder.builder_config.name != first.builder.builder_config.name
    assert second.builder.info.splits[second.split].num_examples == len(SYNTHETIC_SHAPES) + 1


def test_images_smaller_than_the_patch_are_skipped_with_a_count(coordinate_dir, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="jahp_jax.data.pipeline"):
        patches = np.concatenate(take(folder_batches(coordinate_dir, str(tmp_path / "t"),
                                                     patch_size=24), 6))
    assert "2 of 6 images" in caplog.text  # 16x16 and 20x33 are too small.
    assert patches.shape == (24, 24, 24, 3)
    assert set(np.unique(np.rint(patches[..., 2] * 255))) == {0.0, 10.0, 30.0, 40.0}


@pytest.mark.parametrize(
    "setup, message",
    [
        ("missing", "does not exist"),
        ("empty", "holds no image files"),
        ("only_text", "holds no image files"),
        ("only_corrupt", "holds no readable image"),
    ],
)
def test_bad_folders_fail_before_any_batch(tmp_path, setup, message):
    folder = tmp_path / "images"
    if setup != "missing":
        folder.mkdir()
    if setup == "only_text":
        (folder / "README.md").write_text("hello\n")
    if setup == "only_corrupt":
        make_bad_file(folder, "text")
    with pytest.raises(data.DatasetError, match=message):
        next(folder_batches(folder, str(tmp_path / "tfds")))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"batch_size": 3, "process_count": 2}, "not divisible"),
        ({"patch_size": 0}, "patch_size > 0"),
        ({"start_step": -1}, "start_step >= 0"),
        ({"process_index": 2, "process_count": 2}, "process_index"),
    ],
)
def test_train_batches_rejects_bad_arguments(coordinate_dir, tmp_path, kwargs, message):
    with pytest.raises(data.DatasetError, match=message):
        next(folder_batches(coordinate_dir, str(tmp_path / "tfds"), **kwargs))


def test_no_source_and_training_on_kodak_are_refused(tmp_path):
    with pytest.raises(data.DatasetError, match="no data source"):
        next(data.train_batches(dataset=None, data_dir=None, batch_size=1, patch_size=8, seed=0))
    with pytest.raises(data.DatasetError, match="evaluation only"):
        next(data.train_batches(dataset="kodak", data_dir=str(KODAK), batch_size=1,
                                patch_size=8, seed=0, tfds_data_dir=str(tmp_path)))
    with pytest.raises(data.DatasetError, match="unknown tfds data set"):
        data.prepare_dataset(dataset="no_such_dataset_xyz", data_dir=None,
                             tfds_data_dir=str(tmp_path))


# ---------------------------------------------------------------------------------------------
# Evaluation and validation
# ---------------------------------------------------------------------------------------------


def test_kodak_builder_from_manual_dir_yields_the_24_images(tmp_path, kodak_dir):
    images = list(data.eval_images("kodak", str(kodak_dir), tfds_data_dir=str(tmp_path)))
    assert [name for name, _ in images] == [f"kodim{i:02d}" for i in range(1, 25)]
    for name, image in images:
        expected = (768, 512, 3) if name in PORTRAIT_KODAK else (512, 768, 3)
        assert image.shape == expected and image.dtype == np.uint8, name
    np.testing.assert_array_equal(images[22][1], data.read_image(kodak_dir / "kodim23.png"))
    limited = list(data.eval_images("kodak", str(kodak_dir), 2, tfds_data_dir=str(tmp_path)))
    assert [name for name, _ in limited] == ["kodim01", "kodim02"]


def test_kodak_manual_dir_must_be_complete_and_unaltered(tmp_path, kodak_dir):
    copy = tmp_path / "kodak"
    shutil.copytree(kodak_dir, copy)
    (copy / "kodim24.png").unlink()
    with pytest.raises(data.DatasetError, match="lacks 1 of"):
        next(data.eval_images("kodak", str(copy), tfds_data_dir=str(tmp_path / "tfds")))
    altered = bytearray((kodak_dir / "kodim24.png").read_bytes())
    altered[-100] ^= 1
    (copy / "kodim24.png").write_bytes(bytes(altered))
    with pytest.raises(data.DatasetError, match="differs from the published one"):
        next(data.eval_images("kodak", str(copy), tfds_data_dir=str(tmp_path / "tfds")))


def test_validation_batches_are_deterministic_center_crops(bsds, tfds_dir):
    crops = data.validation_batches(dataset=None, data_dir=str(bsds["val"]), patch_size=64,
                                    max_images=3, tfds_data_dir=tfds_dir)
    assert crops.shape == (3, 64, 64, 3) and crops.dtype == np.float32
    first = data.read_image(sorted(bsds["val"].glob("*.jpg"))[0])
    top, left = (first.shape[0] - 64) // 2, (first.shape[1] - 64) // 2
    expected = first[top : top + 64, left : left + 64] / np.float32(255)
    np.testing.assert_array_equal(crops[0], expected)
    again = data.validation_batches(dataset=None, data_dir=str(bsds["val"]), patch_size=64,
                                    max_images=3, tfds_data_dir=tfds_dir)
    np.testing.assert_array_equal(again, crops)


class JahpTestImages(tfds.core.GeneratorBasedBuilder):
    """A stand-in for a named tfds data set such as clic: feature 'image' only, two splits."""

    VERSION = tfds.core.Version("1.0.0")
    _checksums_path = None  # No downloads (tfds cannot locate code in a test module).

    def _info(self) -> tfds.core.DatasetInfo:
        features = tfds.features.FeaturesDict({"image": tfds.features.Image(shape=(None, None, 3))})
        return tfds.core.DatasetInfo(builder=self, features=features)

    def _split_generators(self, dl_manager):
        del dl_manager
        return {
            "train": self._generate_examples(range(4)),
            "validation": self._generate_examples([7]),
        }

    def _generate_examples(self, image_ids):
        for image_id in image_ids:
            yield image_id, {"image": coordinate_image(20 + image_id, 30, image_id)}


def test_named_tfds_data_set_goes_through_the_same_streams(tmp_path):
    source = {"dataset": "jahp_test_images", "data_dir": None, "tfds_data_dir": str(tmp_path)}
    patches = np.concatenate(take(data.train_batches(**source, batch_size=2, patch_size=PATCH,
                                                     seed=0), 4))
    assert sorted(window(patch)[0] for patch in patches) == [0, 0, 1, 1, 2, 2, 3, 3]
    [(name, image)] = list(data.eval_images(**source))
    assert name == "000000"  # No 'name' feature: position in the split.
    np.testing.assert_array_equal(image, coordinate_image(27, 30, 7))
    with pytest.raises(data.DatasetError, match="no split 'test'"):
        list(data.eval_images(**source, split="test"))


def test_downloads_fail_fast_and_clearly_when_offline(tmp_path, monkeypatch):
    def unreachable(address, timeout):
        raise OSError(f"no route to {address[0]}")

    monkeypatch.setattr(data.socket, "create_connection", unreachable)
    with pytest.raises(data.DatasetError, match="cannot reach r0k.us.*as --data_dir"):
        next(data.eval_images("kodak", None, tfds_data_dir=str(tmp_path)))
    assert not data.is_prepared("tf_flowers", tfds_data_dir=str(tmp_path))
    with pytest.raises(data.DatasetError, match="cannot reach storage.googleapis.com.*--data_dir"):
        data.prepare_dataset(dataset="tf_flowers", data_dir=None, tfds_data_dir=str(tmp_path))


# ---------------------------------------------------------------------------------------------
# Where the data lives
# ---------------------------------------------------------------------------------------------


def test_data_root_is_the_flag_then_the_environment_then_the_shared_folder(tmp_path, monkeypatch):
    flag_root, env_root, default_root = (tmp_path / name for name in ("flag", "env", "shared"))
    for folder in (flag_root, env_root, default_root):
        folder.mkdir()
    monkeypatch.setattr(data, "DEFAULT_DATA_ROOT", default_root)
    monkeypatch.delenv(data.DATA_ROOT_ENV, raising=False)
    assert data.resolve_data_root() == default_root
    monkeypatch.setenv(data.DATA_ROOT_ENV, str(env_root))
    assert data.resolve_data_root() == env_root
    assert data.resolve_data_root(str(flag_root)) == flag_root
    assert data.resolve_data_root("download") is None  # the tfds downloads, even with local data
    monkeypatch.setenv(data.DATA_ROOT_ENV, "download")
    assert data.resolve_data_root() is None
    monkeypatch.delenv(data.DATA_ROOT_ENV)
    default_root.rmdir()
    assert data.resolve_data_root() is None  # a plain clone: nothing beside the repository


@pytest.mark.parametrize("how", ["flag", "env"])
def test_a_data_root_that_is_not_a_folder_is_one_error_line(tmp_path, monkeypatch, how):
    missing = str(tmp_path / "nope")
    monkeypatch.setenv(data.DATA_ROOT_ENV, missing if how == "env" else "")
    label = "--data_root" if how == "flag" else "[$]JAHP_DATA"
    with pytest.raises(data.DatasetError, match=f"^{label}=.*nope is not a folder"):
        data.resolve_data_root(missing if how == "flag" else None)


# ---------------------------------------------------------------------------------------------
# Decoding agrees with read_image; eager argument checks
# ---------------------------------------------------------------------------------------------


def test_jpeg_decoding_in_the_pipeline_gives_read_image_pixels():
    """tf's default fast IDCT differs from PIL by up to 17 levels on BSDS500; ours must not."""
    files = sorted(BSDS_VAL.glob("*.jpg"))[:6]
    decode_in_graph = tf.function(data._decode)
    for path in files:
        encoded = path.read_bytes()
        expected = data.read_image(path)
        np.testing.assert_array_equal(data._decode(encoded).numpy(), expected)
        np.testing.assert_array_equal(decode_in_graph(tf.constant(encoded)).numpy(), expected)


def test_train_batches_on_a_tfds_jpeg_source_are_read_image_crops(tmp_path):
    """A source that stores JPEG bytes (like most tfds image sets) is decoded like read_image."""
    path = sorted(BSDS_VAL.glob("*.jpg"))[0]
    full = data.read_image(path)
    size = min(full.shape[:2])
    batch = data._patch_stream(
        data._encoded_images([path.read_bytes()]), patch_size=size, seed=(0, 0), first_element=0
    ).take(1)
    patch = np.rint(next(iter(tfds.as_numpy(batch))) * 255.0).astype(np.uint8)
    height, width = full.shape[:2]
    candidates = [
        full[top : top + size, left : left + size]
        for top in range(height - size + 1)
        for left in range(width - size + 1)
    ]
    assert any(np.array_equal(patch, c) or np.array_equal(patch, c[:, ::-1]) for c in candidates)


def test_train_batches_checks_arguments_when_called(coordinate_dir, tmp_path):
    with pytest.raises(data.DatasetError, match="batch_size > 0"):
        folder_batches(coordinate_dir, str(tmp_path / "tfds"), batch_size=0)
    with pytest.raises(data.DatasetError, match="does not exist"):
        folder_batches(tmp_path / "missing", str(tmp_path / "tfds"))
