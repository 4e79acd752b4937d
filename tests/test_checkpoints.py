import dataclasses
import logging
import os
import subprocess
import sys
from types import SimpleNamespace

import jax
import numpy as np
import pytest
from conftest import REPO_ROOT, damage_largest_file

from jahp_jax.io import checkpoints
from jahp_jax.io.checkpoints import (
    CheckpointError,
    ModelConfig,
    load_model,
    params_fingerprint,
    resolve_checkpoint,
    save_model,
)
from jahp_jax.models.compression_model import CompressionModel, init_params


def test_save_and_load_roundtrip(tmp_path):
    config = ModelConfig("mean_scale", 8, 12)
    params = init_params(CompressionModel(config), jax.random.key(0))
    save_model(tmp_path / "checkpoints", 3, config, params, extra={"lmbda": 0.01})
    save_model(tmp_path / "checkpoints", 7, config, params)
    # a workdir, the root and the step folder all resolve; the latest step wins
    assert resolve_checkpoint(tmp_path).name == "7"
    assert resolve_checkpoint(tmp_path / "checkpoints").name == "7"
    assert resolve_checkpoint(tmp_path / "checkpoints" / "3").name == "3"
    model, loaded, loaded_config = load_model(tmp_path)
    assert loaded_config == config and model.config == config
    for a, b in zip(
        jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(loaded), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    assert params_fingerprint(params) == params_fingerprint(loaded)


def test_fingerprint_sees_every_value():
    params = init_params(CompressionModel(ModelConfig("factorized", 4, 4)), jax.random.key(0))
    changed = jax.tree_util.tree_map(lambda v: v, params)
    changed["g_s"]["layers_6"]["bias"] = changed["g_s"]["layers_6"]["bias"].at[0].add(1e-6)
    assert params_fingerprint(params) != params_fingerprint(changed)


def test_bad_checkpoint_paths(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="holds no checkpoint"):
        load_model(tmp_path)


def test_checkpoint_of_another_shape_is_refused(tmp_path):
    config = ModelConfig("joint", 8, 12)
    save_model(tmp_path, 1, config, init_params(CompressionModel(config), jax.random.key(0)))
    config_path = tmp_path / "1" / "config" / "metadata"
    text = config_path.read_text().replace('"num_latents": 12', '"num_latents": 16')
    config_path.write_text(text)
    with pytest.raises(CheckpointError, match="do not match"):
        load_model(tmp_path)


def test_a_failed_restore_returns_nothing_and_the_next_one_is_complete(tmp_path):
    """Orbax reads an item's arrays concurrently (asyncio.gather, one task per array) in an event
    loop of its own; when one read fails it raises at once and closes that loop with the other
    reads still pending, which Python later reports as `coroutine
    '_read_array_index_and_device_put' was never awaited` (ignored in pyproject's pytest
    filterwarnings, for this reason). The failed restore returns nothing, and a restore after it
    (a fresh loop) reads every array completely: bit for bit what was saved."""
    config = ModelConfig("joint", 8, 8)
    params = init_params(CompressionModel(config), jax.random.key(0))
    for name in ("good", "bad"):
        step_dir = save_model(tmp_path / name, 1, config, params)
    data_files = [p for p in (step_dir / "params").rglob("*") if p.parent.name == "d"]
    largest = max(data_files, key=lambda p: p.stat().st_size)
    largest.write_bytes(b"\xff" * 8 + largest.read_bytes()[8:])  # not a zstd frame any more
    with pytest.raises(Exception, match="reading array index"):  # orbax raises a bare Exception
        load_model(tmp_path / "bad")
    _, loaded, _ = load_model(tmp_path / "good")
    assert params_fingerprint(loaded) == params_fingerprint(params)
    assert jax.tree_util.tree_all(
        jax.tree_util.tree_map(lambda a, b: np.array_equal(np.asarray(a), b), loaded, params)
    )


def test_export_keeps_the_model_and_its_metadata(tmp_path, capsys):
    """jahp-export writes the integer form by default (the float model converted), the float form
    with arithmetic='float'; the step and the metadata stay."""
    from jahp_jax.cli.export import main
    from jahp_jax.coding.integer import INTEGER_KEY
    from jahp_jax.io.checkpoints import export_model, read_config

    config = ModelConfig("joint", 8, 8)
    params = init_params(CompressionModel(config), jax.random.key(1))
    save_model(tmp_path / "run" / "checkpoints", 42, config, params, extra={"lmbda": 0.013})
    step_dir = export_model(tmp_path / "run", tmp_path / "shipped")
    assert step_dir == tmp_path / "shipped" / "42"
    _, loaded, loaded_config = load_model(tmp_path / "shipped")
    assert loaded_config == dataclasses.replace(config, integer_prior=True)
    assert INTEGER_KEY in loaded
    extra = read_config(step_dir)[1]
    assert extra["lmbda"] == 0.013
    assert extra["integer_prior_source"]["params_fingerprint"] == params_fingerprint(params).hex()
    with pytest.raises(CheckpointError, match="already exists"):
        export_model(tmp_path / "run", tmp_path / "shipped")

    for source in ("run", "shipped"):  # the float form: of a float model, of an integer one
        assert main([str(tmp_path / source), str(tmp_path / f"{source}_float"),
                     "--arithmetic=float"]) == 0  # fmt: skip
        _, loaded, loaded_config = load_model(tmp_path / f"{source}_float")
        assert loaded_config == config and params_fingerprint(loaded) == params_fingerprint(params)
    out = capsys.readouterr().out
    assert out.count("(joint N=8 M=8, fingerprint ") == 2 and "integer prior" not in out

    assert main([str(tmp_path / "nope"), str(tmp_path / "out")]) == 1
    assert capsys.readouterr().err.startswith("error: checkpoint path")
    assert not (tmp_path / "out").exists()


def test_export_of_a_prior_without_integer_form_names_the_float_flag(tmp_path, capsys):
    from jahp_jax.cli.export import main

    config = ModelConfig("mean_scale", 8, 8, 3)
    params = init_params(CompressionModel(config), jax.random.key(1))
    save_model(tmp_path / "run", 0, config, params)
    assert main([str(tmp_path / "run"), str(tmp_path / "out")]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    assert "K=3" in error and "--arithmetic=float" in error
    assert not (tmp_path / "out").exists()
    assert main([str(tmp_path / "run"), str(tmp_path / "out"), "--arithmetic=float"]) == 0


@pytest.mark.parametrize("how", ["truncate", "garble", "empty metadata"])
def test_a_corrupt_parameter_file_is_one_clear_error(tmp_path, how, capsys):
    """Orbax's files have no checksums (a garbled array file reads back as other numbers): the
    fingerprint saved with the parameters catches what orbax does not."""
    config = ModelConfig("joint", 8, 8)
    params = init_params(CompressionModel(config), jax.random.key(0))
    step_dir = save_model(tmp_path / "run" / "checkpoints", 3, config, params)
    if how == "empty metadata":
        (step_dir / "params" / "_METADATA").write_bytes(b"")
    else:
        damage_largest_file(step_dir / "params", how)  # the array data
    with pytest.raises(CheckpointError, match=f"parameters in '{step_dir}'|params in") as error:
        load_model(tmp_path / "run")
    assert "\n" not in str(error.value) and len(str(error.value)) < 500, str(error.value)
    from jahp_jax.cli.export import main  # the export command: one line, no output

    assert main([str(tmp_path / "run"), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_a_corrupt_checkpoint_is_one_line_to_the_end_of_the_process(tmp_path):
    """Orbax's other reads, abandoned when one fails, print tracebacks as they are collected
    (at any moment up to the exit): a real process that fails three times prints three lines."""
    config = ModelConfig("joint", 8, 8)
    params = init_params(CompressionModel(config), jax.random.key(0))
    step_dir = save_model(tmp_path / "run" / "checkpoints", 3, config, params)
    damage_largest_file(step_dir / "params", "truncate")
    code = ("import sys\nfrom jahp_jax.cli.export import main\nfor i in range(3):\n"
            "    assert main([sys.argv[1], sys.argv[2] + str(i)]) == 1")  # fmt: skip
    command = [sys.executable, "-c", code, str(tmp_path / "run"), str(tmp_path / "out")]
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    exports = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    lines = exports.stderr.splitlines()  # without the fix: 21 to 4,383 lines in 8 runs of 8
    assert exports.returncode == 0 and len(lines) == 3, exports.stderr[-3000:]
    assert all(line.startswith("error: the parameters in ") for line in lines), lines
    assert not list(tmp_path.glob("out*"))


def _raised(error: Exception, filename: str = __file__) -> Exception:
    """`error` raised and caught, by code that reads as from `filename`."""
    try:
        exec(compile("raise error", filename, "exec"), {"error": error})
    except Exception as caught:
        return caught


def test_only_orbax_abandoned_reads_are_dropped(monkeypatch):
    """The hook and the asyncio filter a restore installs drop errors raised in orbax's code and
    pass an error of any other code on to the hook and the handlers that were there before."""
    reported = []
    monkeypatch.setattr(sys, "unraisablehook", reported.append)
    checkpoints._drop_abandoned_reads()
    other = _raised(OSError("another library's error"))
    orbax = _raised(ValueError("OUT_OF_RANGE"), f"{checkpoints._ORBAX_DIR}/serialization.py")
    for error in (other, orbax):
        sys.unraisablehook(SimpleNamespace(exc_value=error))
    assert [args.exc_value for args in reported] == [other]

    def asyncio_record(error: Exception) -> logging.LogRecord:
        message = "Task exception was never retrieved\nfuture: <Task>"
        exc_info = (type(error), error, error.__traceback__)
        return logging.LogRecord("asyncio", logging.ERROR, "", 0, message, None, exc_info)

    assert logging.getLogger("asyncio").filter(asyncio_record(other))
    assert not logging.getLogger("asyncio").filter(asyncio_record(orbax))
