"""The quickstart and ablation scripts end to end, at toy size (the real runs are minutes/hours)."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest
from conftest import REPO_ROOT, SHARED

from experiments import ablation, quickstart, variable_rate
from experiments.common import DOWNLOAD_TRAIN_DATASET, resolve_data, train_config
from jahp_jax.data import pipeline as data
from jahp_jax.io.checkpoints import CheckpointError, read_config, resolve_checkpoint, save_model
from jahp_jax.models.compression_model import CompressionModel, init_params
from jahp_jax.models.config import ModelConfig

DATA_ROOT = SHARED / "data"  # ../shared/data, or the committed stand-in
TOY = ["--num_steps=2", "--num_filters=8", "--num_latents=8", "--batch_size=2",
       "--patch_size=64", "--limit=1", f"--data_root={DATA_ROOT}"]  # fmt: skip


def git(folder, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True,
                          check=True).stdout  # fmt: skip


@pytest.mark.plain_clone
@pytest.mark.slow
def test_quickstart_end_to_end_writes_only_below_the_ignored_runs_folder(
    tmp_path, capsys, monkeypatch
):
    """Default paths, in a repository with this one's .gitignore: `git status` stays clean."""
    repo = tmp_path / "clone"
    repo.mkdir()
    shutil.copy(REPO_ROOT / ".gitignore", repo / ".gitignore")
    git(repo, "init", "-q")
    git(repo, "add", ".gitignore")
    git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "ignore")
    monkeypatch.chdir(repo)
    assert quickstart.main(TOY) == 0
    assert git(repo, "status", "--porcelain", "--untracked-files=all") == ""
    out = repo / "runs" / "quickstart"
    for name in ("joint.json", "jpeg420.json", "webp.json", "table.md", "rd.png", "run.json"):
        assert (out / name).is_file(), name
    ours = json.loads((out / "joint.json").read_text())
    assert ours["results"]["num_images"] == [1] and ours["results"]["bpp"][0] > 0
    assert "integer_prior=True" in ours["description"]  # Kodak coded with the integer form
    exported, trained = (read_config(resolve_checkpoint(out / p))[0] for p in ("model", "train"))
    assert exported == dataclasses.replace(trained, integer_prior=True)
    table = (out / "table.md").read_text()
    assert "jahp_jax joint (N=8, M=8, integer prior)" in table and "(same bpp)" in table
    printed = capsys.readouterr().out
    assert f"data root: {DATA_ROOT}" in printed and "| codec | bpp |" in printed
    assert (out / "train" / "jahp.log").is_file()
    # fine-tuning the model just trained
    tuned = [*TOY, f"--workdir={tmp_path / 'tuned'}", f"--output_dir={tmp_path / 'tuned_out'}",
             f"--init_from={out / 'train'}"]  # fmt: skip
    assert quickstart.main(tuned) == 0
    assert "== 1/3 fine-tuning a joint model" in capsys.readouterr().out
    config = read_config(resolve_checkpoint(tmp_path / "tuned"))[1]["train_config"]
    assert config["init_from"] == str(out / "train")


@pytest.mark.plain_clone
def test_the_quickstart_export_replaces_an_earlier_export_and_nothing_else(tmp_path):
    config = ModelConfig("joint", 8, 8)
    params = init_params(CompressionModel(config), jax.random.key(0))
    save_model(tmp_path / "run", 3, config, params)
    for _ in range(2):  # the second replaces the first
        step = quickstart.export_integer_model(tmp_path / "run", tmp_path / "model")
        assert step == tmp_path / "model" / "3" and read_config(step)[0].integer_prior
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    with pytest.raises(CheckpointError, match="holds no model"):
        quickstart.export_integer_model(tmp_path / "run", tmp_path / "notes")
    assert (tmp_path / "notes" / "keep.txt").read_text() == "mine"


@pytest.mark.plain_clone
def test_quickstart_refuses_a_missing_folder(tmp_path, capsys):
    assert quickstart.main([f"--train_dir={tmp_path / 'nope'}"]) == 2
    assert "--train_dir" in capsys.readouterr().err
    assert quickstart.main([f"--data_root={tmp_path / 'nope'}"]) == 2
    assert capsys.readouterr().err.startswith("error: --data_root=")


@pytest.mark.plain_clone
def test_quickstart_without_local_data_names_the_downloads_it_would_use(tmp_path):
    """The shared folder hidden (JAHP_DATA=download): no traceback, the tfds downloads named."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), data.DATA_ROOT_ENV: "download"}
    command = [sys.executable, "-m", "experiments.quickstart", "--check_data"]
    run = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, env=env,
                         timeout=300)  # fmt: skip
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr[-2000:]
    lines = run.stdout.strip().splitlines()
    assert lines[0].startswith("no local data folder (--data_root, $JAHP_DATA or ../shared/data)")
    assert lines[1] == f"train:      tfds '{DOWNLOAD_TRAIN_DATASET}' (download: tf_flowers, 218 MB)"
    assert lines[3].startswith("evaluation: tfds 'kodak' (download: the 24 Kodak PNGs")


@pytest.mark.plain_clone
def test_quickstart_offline_without_local_data_stops_with_one_line(
    tmp_path, capsys, monkeypatch
):
    def unreachable(address, timeout):
        raise OSError(f"no route to {address[0]}")

    monkeypatch.setattr(data.socket, "create_connection", unreachable)
    monkeypatch.setenv("TFDS_DATA_DIR", str(tmp_path / "tfds"))  # nothing prepared yet
    argv = ["--data_root=download", f"--workdir={tmp_path / 'w'}"]
    assert quickstart.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: cannot reach ")
    assert err[0].endswith("pass --data_root=FOLDER holding train/, val/ and kodak/ (see README, "
                           "'Data')")  # fmt: skip
    assert not (tmp_path / "w").exists()


def ablation_flags(*argv: str):
    """The ablation's flags parsed from `argv` (one set at a time: the next call replaces it)."""
    ablation.COMMAND.parse(argv)
    return ablation.FLAGS


def test_ablation_trains_high_rates_with_more_latents():
    assert ablation.num_latents(ablation_flags(), 1.0) is None
    args = ablation_flags("--high_rate_min_lmbda=0.1", "--high_rate_num_latents=12")
    assert [ablation.num_latents(args, lmbda) for lmbda in (0.01, 0.1, 1.0)] == [None, 12, 12]
    config = train_config(args, resolve_data(args), "joint", 0.1, ablation.num_latents(args, 0.1))
    assert config.num_latents == 12


@pytest.mark.slow
def test_ablation_end_to_end(tmp_path, capsys):
    """One model shape per prior (the high-rate latents are tested above without training)."""
    out = tmp_path / "out"
    lmbdas = ["0.001", "0.01", "0.1", "1.0"]
    sweep = [*TOY, "--priors=factorized,hyperprior", f"--lmbdas={','.join(lmbdas)}",
             f"--output_dir={out}"]  # fmt: skip
    assert ablation.main([*sweep, f"--root={tmp_path / 'runs'}"]) == 0
    config, _ = read_config(resolve_checkpoint(tmp_path / "runs" / "hyperprior_lmbda1.0"))
    assert config.num_latents == 8
    runs = [f"{prior}_lmbda{float(v)}" for prior in ("factorized", "hyperprior") for v in lmbdas]
    points = out / ablation.POINTS_DIR
    assert sorted(p.name for p in points.glob("*.json")) == sorted(f"{r}.json" for r in runs)
    for prior in ("factorized", "hyperprior"):
        curve = json.loads((out / f"{prior}.json").read_text())
        assert len(curve["results"]["bpp"]) == 4
        assert sorted(curve["runs"]) == [r for r in runs if r.startswith(prior)]
    run = curve["runs"]["hyperprior_lmbda1.0"]
    assert (run["recipe"]["lmbda"], run["recipe"]["num_steps"], len(run["commit"])) == (1.0, 2, 40)
    assert "data_dir" not in run["recipe"] and run["machine"]["cores"] > 0
    table = (out / "bd_rate.md").read_text()
    assert "BD-rate PSNR vs hyperprior" in table
    # hyperprior against itself: a real number, 0 by definition (n/a would mean too few points)
    hyperprior_row = next(line for line in table.splitlines() if "jahp_jax hyperprior" in line)
    assert hyperprior_row.split("|")[2].strip() == "+0.0%"
    assert (out / "rd.png").is_file() and (out / "rd_priors.png").is_file()
    assert "| jahp_jax factorized (N=8, M=8) | lmbda=1.0 |" in (out / "points.md").read_text()
    # --report_only rewrites tables and plots from the JSONs alone, without training
    for name in ("bd_rate.md", "points.md", "rd_priors.png"):
        (out / name).unlink()
    assert ablation.main([f"--output_dir={out}", "--priors=factorized,hyperprior",
                          "--report_only", "--root=/nonexistent"]) == 0  # fmt: skip
    assert (out / "bd_rate.md").read_text() == table and (out / "rd_priors.png").is_file()
    assert ablation.main([f"--output_dir={tmp_path}", "--report_only"]) == 1
    run = json.loads((out / "run.json").read_text())
    assert run["command"].startswith("./launch.sh ablation --num_steps=2 ")
    assert len(run["commit"]) == 40 and run["wall_seconds"] > 0
    assert sorted(run["training_seconds"]) == sorted(
        f"{prior}_lmbda{float(v)}" for prior in ("factorized", "hyperprior") for v in lmbdas
    )
    # The variable-rate experiment against these fixed-rate models (--fixed_results: no retraining)
    vr_out = tmp_path / "vr"
    argv = [*TOY, "--prior=hyperprior", f"--lmbdas={','.join(lmbdas)}", "--qualities=0,0.3,0.6,1",
            "--targets=", f"--fixed_results={out / 'hyperprior.json'}", "--reference=",
            f"--root={tmp_path / 'vr_runs'}", f"--output_dir={vr_out}"]  # fmt: skip
    assert variable_rate.main(argv) == 0
    assert sorted(p.name for p in (tmp_path / "vr_runs").iterdir() if p.is_dir()) == [
        "hyperprior_variable"
    ]
    assert len(json.loads((vr_out / "hyperprior_variable.json").read_text())["results"]["bpp"]) == 4
    summary = (vr_out / "summary.md").read_text()
    assert f"| hyperprior_lmbda{float(lmbdas[0])} | 2 |" in summary  # the ablation's cost
    assert "| hyperprior_variable | 8 |" in summary and (vr_out / "rd.png").is_file()
    # Committed points go on elsewhere: a machine without the workdirs trains only the missing run
    before = json.loads((out / "hyperprior.json").read_text())["results"]
    for missing in points.glob("hyperprior_lmbda0.01.*"):
        missing.unlink()
    elsewhere = [*sweep, f"--root={tmp_path / 'elsewhere'}"]
    assert ablation.main(elsewhere) == 0
    trained = [p.name for p in (tmp_path / "elsewhere").iterdir() if p.is_dir()]
    assert trained == ["hyperprior_lmbda0.01"]
    after = json.loads((out / "hyperprior.json").read_text())["results"]
    assert after["quality"] == before["quality"]
    for key in ("bpp", "psnr-rgb"):  # the same model again: training is deterministic
        np.testing.assert_allclose(after[key], before[key], rtol=1e-6, err_msg=key)
    capsys.readouterr()
    assert ablation.main([*elsewhere, "--num_steps=3"]) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith(f"error: {points / 'factorized_lmbda0.001.json'} was trained to "
                            "another recipe (num_steps 2 -> 3); delete it")  # fmt: skip


def test_ablation_refuses_bad_flags_before_training(tmp_path, capsys):
    root = tmp_path / "runs"
    assert ablation.main([f"--root={root}", "--lmbdas=0.01,0.1,0.2"]) == 2
    assert "at least 4" in capsys.readouterr().err
    assert ablation.main([f"--root={root}", "--priors=joint,jiont"]) == 2
    assert "unknown --priors ['jiont']" in capsys.readouterr().err
    assert not root.exists()


@pytest.mark.plain_clone
def test_experiment_data_comes_from_the_flags_then_the_data_root_then_downloads(tmp_path):
    images = str(DATA_ROOT / "train")
    folder = ablation_flags(f"--train_dir={images}", "--data_root=download")
    config = train_config(folder, resolve_data(folder), "joint", 0.01)
    assert (config.data_dir, config.dataset, config.num_latents) == (images, None, 64)
    assert not config.validates  # no validation folder without a data root
    root = ablation_flags(f"--data_root={DATA_ROOT}")
    sources = resolve_data(root)
    assert (sources.train_dir, sources.val_dir) == (images, str(DATA_ROOT / "val"))
    complete = all((DATA_ROOT / "kodak" / f"{name}.png").is_file() for name in data.KODAK_NAMES)
    # the 24 Kodak PNGs go through the checksummed builder; any other folder is read as it is
    assert sources.eval_dataset == ("kodak" if complete else None)
    assert train_config(root, sources, "joint", 0.01).validates
    clic = ablation_flags("--dataset=clic", "--num_steps=1000000")
    config = train_config(clic, resolve_data(clic), "joint", 0.1, num_latents=320)
    assert (config.data_dir, config.dataset, config.val_data_dir) == (None, "clic", None)
    assert config.validates and config.num_latents == 320
    assert config.checkpoint_every == 10_000
    offline = ablation_flags("--data_root=download", "--kodak_dir=download")
    sources = resolve_data(offline)
    assert (sources.dataset, sources.eval_dataset, sources.eval_dir) == (
        DOWNLOAD_TRAIN_DATASET, "kodak", None)  # fmt: skip
    assert not train_config(offline, sources, "joint", 0.01).validates  # tf_flowers: one split


def test_the_ablation_trains_named_models_at_its_scale():
    args = ablation_flags("--num_filters=16", "--num_latents=32")
    assert ablation.model_at_scale("joint", args) is None  # a prior keeps --prior's path
    fields = ablation.model_at_scale("elic2022-chandelier", args)
    assert (fields["transform"], fields["prior"], fields["num_latents"]) == (
        "elic2022-chandelier", "elic2022", 32
    )
    assert fields["prior_options"] == (("variant", "chandelier"),)
    assert ablation.model_at_scale("tcm", args)["num_latents"] == ablation.CPU_SCALE_LATENTS["tcm"]
