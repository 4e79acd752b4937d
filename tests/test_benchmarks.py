"""benchmarks/: bad arguments are refused in one line before any timing starts; the profile
finds every conv and dot of a train step, and its JSON records the command and commit."""

import json
import os
import subprocess
import sys

import jax
import pytest
from conftest import REPO_ROOT


def _run(module: str, *flags: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"benchmarks.{module}", *flags],
        capture_output=True, text=True, timeout=300, cwd=REPO_ROOT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )  # fmt: skip


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["bench_codec", "--priors=joint,bogus"], "unknown prior(s) ['bogus']"),
        (["bench_codec", "--kodak_dir=/nonexistent"], "/nonexistent/kodim23.png: no such file"),
        (["bench_train", "--settings=joint128,bogus"], "unknown setting(s)"),
        (["profile_step", "--patch=40"], "--patch a multiple of 16"),
        (["profile_step", "--what=synthesis", "--model=bogus"], "--model=bogus is not a preset"),
        (["profile_step", "--model=tcm", "--size=64", "--latents=0"], "--latents >= 1"),
        (["bench_transforms", "--models=tcm,bogus"], "unknown model(s) ['bogus']"),
        (["bench_transforms", "--patch=192"], "--patch must be a multiple of 128"),
        (["bench_transforms", "--models=,"], "no model to time"),
        (["bench_followups", "--models="], "no model to time"),
        (["conv_chain", "--framework=jax", "--models=bogus"], "unknown model(s) ['bogus']"),
        (["conv_chain", "--framework=jax", "--patch=40"], "--patch a multiple of 16"),
    ],
)
def test_bad_arguments_get_one_line(arguments, message):
    proc = _run(*arguments)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode != 0
    assert lines and lines[-1].startswith("error: ") and message in lines[-1], proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_profile_counts_the_flops_of_the_layer_shapes(tmp_path):
    """The FLOPs of the traced ops (counted from the HLO) are those of the model's layers
    (`benchmarks.flops`, counted from the layer shapes): no conv or dot is missed or doubled."""
    from benchmarks.flops import train_step_flops

    output = tmp_path / "profile.json"
    proc = _run("profile_step", "--size=8", "--batch=2", "--patch=64", "--steps=1",
                f"--output={output}")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    profile = json.loads(output.read_text())
    assert profile["gflop"] == pytest.approx(train_step_flops(8, 2, 64) / 1e9, rel=0.02)
    assert {"conv", "conv dW", "dot", "elementwise"} <= set(profile["kinds"])
    assert profile["ops"][0]["thread_ms"] >= profile["ops"][-1]["thread_ms"] > 0
    # How it was made (benchmarks.machine.provenance): the command line as typed, and the commit.
    assert profile["command"] == (f"python -m benchmarks.profile_step --size=8 --batch=2 "
                                  f"--patch=64 --steps=1 --output={output}")  # fmt: skip
    assert profile["commit"] and profile["date"]


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="our conv paths are CPU-only")
def test_bench_conv_times_our_convs_against_the_stock_ones():
    """Both columns of bench_conv compile their own programs: a strided conv's transpose is ours
    (phase-decomposed), not XLA's; a shared trace made the 'ours' column time the stock
    programs."""
    from benchmarks.bench_conv import compiled_layer_ops

    compiled, _ = compiled_layer_ops(1, 16, 5, 2, 24, 16)  # ours: the phase-decomposed S^T
    stock, ours = (compiled[(name, "S^T")][0].as_text() for name in ("stock", "auto"))
    assert stock != ours


def _this_process() -> dict:
    return {"pid": os.getpid()}


def test_each_model_can_be_timed_in_a_process_of_its_own_with_its_peak_memory():
    from benchmarks.machine import in_fresh_process

    row = in_fresh_process(_this_process)
    assert row["pid"] != os.getpid()
    assert 0.01 < row["peak_rss_gib"] < 64  # ru_maxrss in KiB, recorded in GiB


def test_the_reference_scripts_skip_tcm_without_its_file_and_refuse_an_empty_selection(capsys):
    from benchmarks.machine import selected_models

    known = ("cheng2020-anchor", "tcm")
    no_file = {"tcm": "no --tcm file"}  # reference_transforms.tcm_skipped(None)
    assert selected_models("tcm,cheng2020-anchor", known, no_file) == ["cheng2020-anchor"]
    assert "note: no --tcm file; the tcm model is skipped" in capsys.readouterr().out
    assert selected_models(["tcm"], known) == ["tcm"]  # ours: no file needed
    with pytest.raises(SystemExit) as stop:
        selected_models("tcm", known, no_file)
    assert stop.value.code == 2
    assert capsys.readouterr().err.startswith("error: no model to time;")


@pytest.mark.parametrize("name", ["cheng2020-anchor", "elic2022"])
def test_the_conv_chains_have_the_kernels_of_the_models_transforms(name):
    """conv_chain times the convs of g_a + g_s: its chain has exactly the kernels of the model's
    transforms, in order ((k, in, out); a transposed conv's (k, k, out, in) swapped)."""
    from flax import linen as nn

    from benchmarks.bench_transforms import MODELS
    from benchmarks.conv_chain import CHAINS, _kernel_shapes
    from jahp_jax.nn.layers import Conv, ConvTranspose

    family, n, m, options = MODELS[name]
    calls = []

    def record(next_fun, args, kwargs, context):
        out = next_fun(*args, **kwargs)
        if context.method_name == "__call__" and isinstance(context.module, Conv | ConvTranspose):
            k, _, i, o = context.module.variables["params"]["kernel"].shape
            calls.append((k, o, i) if isinstance(context.module, ConvTranspose) else (k, i, o))
        return out

    x = jax.ShapeDtypeStruct((1, 256, 256, 3), jax.numpy.float32)
    with nn.intercept_methods(record):
        y = jax.eval_shape(lambda: family.analysis(n, m, **options).init_with_output(
            jax.random.key(0), x)[0])
        jax.eval_shape(family.synthesis(n, m, **options).init, jax.random.key(0), y)
    assert _kernel_shapes(CHAINS[name]()) == calls
