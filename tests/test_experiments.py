"""The quickstart and ablation scripts end to end, at toy size (the real runs are minutes/hours)."""

import json

from experiments import ablation, quickstart

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


def test_quickstart_refuses_a_missing_folder(tmp_path, capsys):
    assert quickstart.main([f"--train_dir={tmp_path / 'nope'}"]) == 2
    assert "--train_dir" in capsys.readouterr().err


def test_ablation_end_to_end(tmp_path):
    out = tmp_path / "out"
    argv = [*TOY, "--priors=factorized,hyperprior", "--lmbdas=0.01,0.1",
            f"--root={tmp_path / 'runs'}", f"--output_dir={out}"]  # fmt: skip
    assert ablation.main(argv) == 0
    for prior in ("factorized", "hyperprior"):
        results = json.loads((out / f"{prior}.json").read_text())["results"]
        assert len(results["bpp"]) == 2
    table = (out / "bd_rate.md").read_text()
    assert "vs hyperprior" in table
    assert (out / "rd.png").is_file()
    run = json.loads((out / "run.json").read_text())
    assert run["command"].startswith("./launch.sh ablation --num_steps=2 ")
    assert len(run["commit"]) == 40 and run["wall_seconds"] > 0
    assert sorted(run["training_seconds"]) == [
        "factorized_lmbda0.01", "factorized_lmbda0.1", "hyperprior_lmbda0.01", "hyperprior_lmbda0.1"
    ]
