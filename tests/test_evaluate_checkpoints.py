"""evaluate.py on our own checkpoints: real files, bad checkpoints, the CLI."""

import json

import jax
import pytest

from jahp_jax.cli import evaluate, report
from jahp_jax.data.pipeline import eval_images
from jahp_jax.io.checkpoints import ModelConfig, save_model
from jahp_jax.models.compression_model import CompressionModel, init_params


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    config = ModelConfig("mean_scale", 8, 8)
    paths = []
    for i, lmbda in enumerate((0.01, 0.05)):
        params = init_params(CompressionModel(config), jax.random.key(i))
        save_model(root / f"run{i}" / "checkpoints", 1, config, params, extra={"lmbda": lmbda})
        paths.append(str(root / f"run{i}"))
    return paths


def test_cli_writes_a_curve_from_real_files(checkpoints, kodak_dir, tmp_path, capsys):
    output = tmp_path / "ours.json"
    argv = [f"--checkpoint={c}" for c in checkpoints]
    argv += ["--dataset=kodak", f"--data_dir={kodak_dir}", "--limit=2", f"--output={output}"]
    assert evaluate.main(argv) == 0
    data = json.loads(output.read_text())
    results = data["results"]
    assert data["name"].startswith("jahp_jax mean_scale")
    assert results["num_images"] == [2, 2] and sorted(results["quality"]) == [
        "lmbda=0.01",
        "lmbda=0.05",
    ]
    assert results["bpp"] == sorted(results["bpp"])
    # bpp is the real file size: recompute it for the first image from our own codec.
    from jahp_jax.io.checkpoints import load_codec

    name, image = next(eval_images("kodak", data_dir=kodak_dir, limit=1))
    rows = (tmp_path / "ours.images.csv").read_text().splitlines()
    assert len(rows) == 1 + 4 and name in rows[1]
    first = [r for r in rows[1:] if r.startswith(name) and "lmbda=0.01" in r][0]
    data_bytes = load_codec(checkpoints[0]).compress(image)
    bpp_column = rows[0].split(",").index("bpp")
    assert float(first.split(",")[bpp_column]) == pytest.approx(
        8 * len(data_bytes) / (image.shape[0] * image.shape[1])
    )
    assert all(e > 0 for e in results["encoding_time"] + results["decoding_time"])
    assert "estimated-bpp" in results


def test_bad_checkpoints_and_claims(checkpoints, kodak_dir, tmp_path, capsys):
    output = str(tmp_path / "x.json")
    common = ["--dataset=kodak", f"--data_dir={kodak_dir}", "--limit=1", f"--output={output}"]
    assert evaluate.main([f"--checkpoint={tmp_path / 'nope'}", *common]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert evaluate.main([f"--checkpoint={checkpoints[0]}", "--prior=joint", *common]) == 1
    assert "not the claimed 'joint'" in capsys.readouterr().err
    missing = ["--dataset=kodak", f"--data_dir={tmp_path / 'none'}", f"--output={output}"]
    assert evaluate.main([f"--checkpoint={checkpoints[0]}", *missing]) == 1
    assert capsys.readouterr().err.startswith("error:")
    assert not (tmp_path / "x.json").exists()


def test_comparison_sheet_puts_our_model_beside_the_codecs(checkpoints, kodak_dir, tmp_path):
    results = tmp_path / "ours.json"
    argv = [f"--checkpoint={checkpoints[0]}", f"--data_dir={kodak_dir}", "--limit=1"]
    assert evaluate.main([*argv, f"--output={results}"]) == 0
    sheet = tmp_path / "sheet.png"
    assert report.main([
        str(results), f"--reference={results}", f"--sheet={sheet}",
        "--sheet_image=kodim01", f"--sheet_checkpoint={checkpoints[0]}",
        "--sheet_codecs=jpeg420,webp", f"--data_dir={kodak_dir}", "--sheet_crop=0,0,128,128",
    ]) == 0  # fmt: skip
    assert sheet.stat().st_size > 10_000


def test_a_curve_of_another_transform_names_it(tmp_path):
    """A curve's name says which transform made it (the ablation's named models, e.g.
    cheng2020-anchor, share their prior with the 2018 models)."""
    import numpy as np

    from jahp_jax.evaluation.evaluate import evaluate_checkpoints

    config = ModelConfig("mean_scale", 8, 8, transform="cheng2020-anchor")
    params = init_params(CompressionModel(config), jax.random.key(0))
    save_model(tmp_path / "run" / "checkpoints", 1, config, params, extra={"lmbda": 0.01})
    image = np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)
    results, _ = evaluate_checkpoints([str(tmp_path / "run")], [("noise", image)], log=print)
    assert results["name"] == "jahp_jax mean_scale (cheng2020-anchor transform, N=8, M=8)"
