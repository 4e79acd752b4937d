"""experiments/rate_gap.py: the histogram code length and the model-vs-histogram comparison."""

import jax
import numpy as np
import pytest

from experiments import rate_gap
from jahp_jax.io.checkpoints import ModelConfig, checkpoint_root, save_model
from jahp_jax.models.compression_model import create_model, init_params


def test_histogram_bits_of_known_symbols():
    symbols = np.array([[0, 5], [0, 5], [1, 5], [1, 5]])  # channel 0: 1 bit each; channel 1: 0
    assert rate_gap.histogram_bits(symbols) == pytest.approx(4.0)
    skewed = np.array([[0], [0], [0], [1]])
    expected = -(3 * np.log2(0.75) + np.log2(0.25))
    assert rate_gap.histogram_bits(skewed) == pytest.approx(expected)


def _workdir(tmp_path, prior: str):
    workdir = tmp_path / f"{prior}_lmbda0.01"
    model = create_model(prior, 8, 8)
    params = init_params(model, jax.random.PRNGKey(3))
    # Larger latents, so that the densities see several symbols per channel.
    layer = params["g_a"]["layers_6"]
    params["g_a"]["layers_6"] = {**layer, "kernel": layer["kernel"] * 30.0}
    save_model(checkpoint_root(workdir), 1, ModelConfig(prior, 8, 8, 1), params)
    return workdir


def test_factorized_model_never_beats_its_own_histogram(tmp_path):
    # Gibbs' inequality: a static per-channel density cannot code the pooled latents in fewer bits
    # than their empirical per-channel histogram.
    rng = np.random.default_rng(0)
    images = [(f"im{i}", rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)) for i in range(2)]
    row = rate_gap.rate_gap(_workdir(tmp_path, "factorized"), images)
    assert row["prior"] == "factorized"
    assert row["histogram_bpp_y"] > 0
    assert row["ratio"] >= 1.0
    assert row["bpp"] > row["model_bpp_y"]  # the file adds the header on top


def test_main_writes_a_table_and_refuses_an_empty_root(tmp_path, kodak_dir, capsys):
    root = tmp_path / "runs"
    _workdir(root, "hyperprior")
    output = tmp_path / "gap.md"
    kodak = kodak_dir
    argv = [f"--root={root}", f"--kodak_dir={kodak}", "--limit=1", f"--output={output}"]
    assert rate_gap.main(argv) == 0
    assert "| hyperprior_lmbda0.01 | hyperprior |" in output.read_text()
    step = root / "hyperprior_lmbda0.01" / "checkpoints" / "1"
    assert rate_gap.main([f"--checkpoint={step}", f"--kodak_dir={kodak}", "--limit=1",
                          f"--output={output}"]) == 0  # fmt: skip
    assert f"| {step} | hyperprior |" in output.read_text()
    assert rate_gap.main([f"--root={tmp_path / 'empty'}"]) == 2
    assert "no training workdirs" in capsys.readouterr().err
