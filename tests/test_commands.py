"""The command lines: each console command's --help lists its own flags, jahp-train's flags are
TrainConfig's fields (and docs/training.md's table), absl parsing with one-line errors."""

import dataclasses
import importlib
import re
import subprocess
import sys
import tomllib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from jahp_jax.cli import codec as codec_cli
from jahp_jax.cli import train as train_cli
from jahp_jax.cli.command import HELP, Command
from jahp_jax.training import distributed
from jahp_jax.training.train import ConfigError, TrainConfig

SCRIPTS = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]


def flag_names(flag_values) -> set[str]:
    """The long names of a FlagValues' flags (iterating it also yields short names)."""
    return {flag_values[name].name for name in flag_values}


def test_help_of_every_console_command_lists_its_own_flags():
    """As installed (.venv/bin/jahp-train, ...) and as `python -m jahp_jax.cli.<name>`."""
    runs = {}
    for script, target in SCRIPTS.items():
        module = target.split(":")[0]
        installed = Path(sys.executable).parent / script
        assert installed.is_file(), f"{installed} is missing: run ./launch.sh setup"
        runs[script, "installed"] = [str(installed), "--help"]
        runs[script, module] = [sys.executable, "-m", module, "--help"]

    def run(command):
        return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(zip(runs, pool.map(run, runs.values()), strict=True))
    for (script, how), proc in results.items():
        assert proc.returncode == 0, (script, how, proc.stderr[-2000:])
        assert proc.stdout.startswith(f"{script}: "), (script, how, proc.stdout[:200])
        assert "--helpfull" not in proc.stdout and "--flagfile" in proc.stdout
        module = importlib.import_module(SCRIPTS[script].split(":")[0])
        names = flag_names(module.COMMAND.flags)
        assert len(names) > 1 or script == "jahp-export", script  # all but --help
        listed = set(re.findall(r"^\s+(?:-\w,)?--(?:\[no\])?(\w+):", proc.stdout, re.M))
        assert names <= listed, (script, how, sorted(names - listed))
    codec_help = results["jahp-codec", "installed"].stdout
    assert "jahp-codec compress   --checkpoint=CHECKPOINT IMAGE OUTPUT.jahp" in codec_help


def test_train_flags_are_the_fields_of_train_config():
    fields = {field.name: field for field in dataclasses.fields(TrainConfig)}
    flags = train_cli.FLAGS
    for name, field in fields.items():
        if name == "prior_options":  # --prior_option
            continue
        default = None if field.default is dataclasses.MISSING else field.default
        assert (flags[name].default, flags[name].help) == (default, field.metadata[HELP]), name
    assert flags["prior_option"].help.startswith(fields["prior_options"].metadata[HELP])
    assert not any("sigkill" in n or "testonly" in n for n in flags)  # the kill hook: env only
    cluster = dataclasses.fields(distributed.ClusterSettings)
    assert all(flags[field.name].help == field.metadata[HELP] for field in cluster)
    assert flags["distributed_timeout"].default == distributed.TIMEOUT_S

    train_cli.COMMAND.parse(["--lmbda=0.01", "--preset=high", "--prior=channelwise",
                             "--prior_option=num_slices=5", "--num_steps=7"])  # fmt: skip
    assert train_cli.config_from_flags() == TrainConfig(
        lmbda=0.01, prior="channelwise", num_filters=192, num_latents=320,
        prior_options=(("num_slices", 5),), num_steps=7,
    )  # fmt: skip
    for argv, message in (([], "--lmbda is required"),
                          (["--lmbda=1", "--preset=low", "--num_latents=8"], "sets --num_latents"),
                          (["--lmbda=1", "--preset=huge"], "unknown --preset 'huge'")):  # fmt: skip
        train_cli.COMMAND.parse(argv)
        with pytest.raises(ConfigError, match=message):
            train_cli.config_from_flags()


def test_the_flag_table_of_docs_training_md_is_jahp_trains():
    text = (REPO_ROOT / "docs" / "training.md").read_text()
    section = text[text.index("## Flags") :]
    table = dict(re.findall(r"^\| `--(\w+)` \| ([^|]+?) \|", section, re.M))
    flags = train_cli.FLAGS
    assert set(table) == flag_names(flags) - {"help"} | {"flagfile"}
    for name, documented in table.items():
        if name == "flagfile":
            continue
        default = flags[name].default
        if documented == "required":
            assert default is None and "required" in flags[name].help.lower(), name
        elif documented == "-":
            assert default in (None, []), name
        elif isinstance(default, bool):
            assert documented == str(default).lower(), name
        elif isinstance(default, int | float):
            assert float(documented) == default, name
        else:
            assert documented == default, name


@dataclasses.dataclass
class Toy:
    rate: float = dataclasses.field(metadata={HELP: "A rate; required."})
    steps: int = dataclasses.field(default=3, metadata={HELP: "Steps."})
    folder: str | None = dataclasses.field(default=None, metadata={HELP: "A folder."})
    fast: bool = dataclasses.field(default=False, metadata={HELP: "Go fast."})


def test_a_command_parses_with_absl_and_answers_bad_input_in_one_line(tmp_path, capsys):
    toy = Command("jahp-toy", "jahp-toy: a toy.\n\n    jahp-toy [flags] NAME", takes_args=True)
    assert toy.define_fields(Toy) == ["rate", "steps", "folder", "fast"]
    seen = []

    def body(args):
        seen.append((args, toy.values(["rate", "steps", "folder", "fast"])))
        return len(args)

    flagfile = tmp_path / "toy.flags"
    flagfile.write_text("# a comment\n--steps=9\n--fast\n")
    assert toy.run(body, ["--rate=0.5", "name", f"--flagfile={flagfile}", "--folder", "f"]) == 1
    assert seen[-1] == (["name"], {"rate": 0.5, "steps": 9, "folder": "f", "fast": True})
    assert toy.run(body, []) == 0  # every run starts from the defaults
    assert seen[-1] == ([], {"rate": None, "steps": 3, "folder": None, "fast": False})
    assert capsys.readouterr().err == ""
    missing = f"--flagfile={tmp_path / 'none'}"
    for argv, message in ((["--steps=many"], "flag --steps=many: invalid literal for int()"),
                          (["--sped"], "Unknown command line flag 'sped'"),
                          ([missing], "Unable to open flagfile: ")):  # fmt: skip
        assert toy.run(body, argv) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: {message}") and err.endswith("; see jahp-toy --help\n")
        assert err.count("\n") == 1
    assert toy.run(body, ["--steps=many", "-h"]) == 2  # the parse stops at the first bad flag
    capsys.readouterr()
    assert toy.run(body, ["-h"]) == 0 and toy.run(body, ["--help", "--steps=many"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("jahp-toy: a toy.\n\n    jahp-toy [flags] NAME\n\nflags:\n")
    assert "--rate: A rate; required." in out and "--[no]fast: Go fast." in out
    assert len(seen) == 2
    assert Command("jahp-none", "jahp-none: no arguments.").run(seen.append, ["stray"]) == 2
    assert "error: unexpected arguments ['stray']; " in capsys.readouterr().err and len(seen) == 2

    @dataclasses.dataclass
    class Unflaggable:
        pairs: tuple[int, ...] = dataclasses.field(default=(), metadata={HELP: "Pairs."})
        bare: int = 0

    with pytest.raises(TypeError, match="no flag type"):
        Command("a", "a").define_fields(Unflaggable, exclude=["bare"])
    with pytest.raises(ValueError, match="has no metadata"):
        Command("b", "b").define_fields(Unflaggable, exclude=["pairs"])
    with pytest.raises(ValueError, match="has no fields"):
        Command("c", "c").define_fields(Unflaggable, exclude=["pairs", "bare", "other"])


def test_codec_takes_a_subcommand_and_two_paths(tmp_path, capsys):
    for argv, message in ((["compress", "in.png"], "expected compress|decompress INPUT OUTPUT"),
                          (["squash", "a", "b"], "expected compress|decompress INPUT OUTPUT"),
                          (["compress", "a", "b"], "--checkpoint is required")):  # fmt: skip
        assert codec_cli.main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []
