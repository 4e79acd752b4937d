"""The quickstart and ablation scripts end to end, at toy size (the real runs are minutes/hours)."""

import json

from experiments import ablation, quickstart
from experiments.common import train_config
from jahp_jax.checkpoints import read_config, resolve_checkpoint

TOY = ["--num_steps=2", "--num_filters=8", "--num_latents=8", "--batch_size=2",
       "--patch_size=64", "--limit=1"]  # fmt: skip


def test_quickstart_end_to_end(tmp_path, capsys):
    out = tmp_path / "out"
    argv = [*TOY, f"--workdir={tmp_path / 'work'}", f"--output_dir={out}"]
    assert quickstart.main(argv) == 0
    for name in ("joint.json", "jpeg420.json", "webp.json", "table.md", "rd.png", "run.json"):
        assert (out / name).is_file(), name
    ours = json.loads((out / "joint.json").read_text())["results"]
    assert ours["num_images"] == [1] and ours["bpp"][0] > 0
    table = (out / "table.md").read_text()
    assert "jahp_jax joint (N=8, M=8)" in table and "(same bpp)" in table
    assert "| codec | bpp |" in capsys.readouterr().out
    # fine-tuning the model just trained
    tuned = [*TOY, f"--workdir={tmp_path / 'tuned'}", f"--output_dir={tmp_path / 'tuned_out'}",
             f"--init_from={tmp_path / 'work'}"]  # fmt: skip
    assert quickstart.main(tuned) == 0
    assert "== 1/3 fine-tuning a joint model" in capsys.readouterr().out
    config = read_config(resolve_checkpoint(tmp_path / "tuned"))[1]["train_config"]
    assert config["init_from"] == str(tmp_path / "work")


def test_quickstart_refuses_a_missing_folder(tmp_path, capsys):
    assert quickstart.main([f"--train_dir={tmp_path / 'nope'}"]) == 2
    assert "--train_dir" in capsys.readouterr().err


def test_ablation_end_to_end(tmp_path):
    out = tmp_path / "out"
    lmbdas = ["0.001", "0.01", "0.1", "1.0"]
    argv = [*TOY, "--priors=factorized,hyperprior", f"--lmbdas={','.join(lmbdas)}",
            "--high_rate_min_lmbda=0.1", "--high_rate_num_latents=12",
            f"--root={tmp_path / 'runs'}", f"--output_dir={out}"]  # fmt: skip
    assert ablation.main(argv) == 0
    for lmbda, latents in (("0.01", 8), ("0.1", 12), ("1.0", 12)):
        config, _ = read_config(resolve_checkpoint(tmp_path / "runs" / f"hyperprior_lmbda{lmbda}"))
        assert config.num_latents == latents
    for prior in ("factorized", "hyperprior"):
        results = json.loads((out / f"{prior}.json").read_text())["results"]
        assert len(results["bpp"]) == 4
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


def test_ablation_refuses_bad_flags_before_training(tmp_path, capsys):
    root = tmp_path / "runs"
    assert ablation.main([f"--root={root}", "--lmbdas=0.01,0.1,0.2"]) == 2
    assert "at least 4" in capsys.readouterr().err
    assert ablation.main([f"--root={root}", "--priors=joint,jiont"]) == 2
    assert "unknown --priors ['jiont']" in capsys.readouterr().err
    assert not root.exists()


def test_experiment_config_trains_on_a_tfds_dataset_or_a_folder():
    folder = ablation.parse_args(["--train_dir=/images"])
    config = train_config(folder, "joint", 0.01)
    assert (config.data_dir, config.dataset, config.num_latents) == ("/images", None, 64)
    clic = ablation.parse_args(["--dataset=clic", "--num_steps=1000000"])
    config = train_config(clic, "joint", 0.1, num_latents=320)
    assert (config.data_dir, config.dataset, config.val_data_dir) == (None, "clic", None)
    assert config.validates and config.num_latents == 320
    assert config.checkpoint_every == 10_000
