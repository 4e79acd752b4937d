import os
import subprocess
import sys
from pathlib import Path

import jax
import pytest

from jahp_jax import runtime


@pytest.fixture
def clean_env(monkeypatch):
    for name in (runtime.CACHE_ENV, "JAX_COMPILATION_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_cache_dir_defaults_to_the_user_cache(clean_env, tmp_path):
    assert runtime.compilation_cache_dir() == Path.home() / ".cache" / "jahp_jax" / "xla"
    clean_env.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert runtime.compilation_cache_dir() == tmp_path / "jahp_jax" / "xla"


def test_cache_dir_follows_the_environment(clean_env, tmp_path):
    clean_env.setenv("JAX_COMPILATION_CACHE_DIR", str(tmp_path / "jax"))
    assert runtime.compilation_cache_dir() == tmp_path / "jax"
    clean_env.setenv(runtime.CACHE_ENV, str(tmp_path / "ours"))  # ours wins over JAX's
    assert runtime.compilation_cache_dir() == tmp_path / "ours"
    for off in ("off", "OFF", "0", ""):
        clean_env.setenv(runtime.CACHE_ENV, off)
        assert runtime.compilation_cache_dir() is None
        assert runtime.enable_compilation_cache() is None


def test_unwritable_cache_dir_warns_and_stays_off(clean_env, tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    clean_env.setenv(runtime.CACHE_ENV, str(blocker / "cache"))
    before = jax.config.jax_compilation_cache_dir
    assert runtime.enable_compilation_cache() is None
    assert jax.config.jax_compilation_cache_dir == before
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("warning: compilation cache off")


def test_a_compiled_program_is_written_to_the_cache(tmp_path):
    cache = tmp_path / "xla"
    script = (
        "from jahp_jax.runtime import enable_compilation_cache\n"
        "print(enable_compilation_cache())\n"
        "import jax, jax.numpy as jnp\n"
        "print(float(jax.jit(lambda x: jnp.sin(x) * 2)(1.0)))\n"
    )
    env = {**os.environ, runtime.CACHE_ENV: str(cache), "JAX_PLATFORMS": "cpu"}
    for _ in range(2):
        result = subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        )
        assert result.stdout.split()[0] == str(cache)
        assert any(cache.iterdir()), "nothing was cached"


def test_convs_go_to_onednn_unless_the_user_chose(monkeypatch, capsys):
    """`select_cpu_conv_kernels` (run by `import jahp_jax`) only edits XLA_FLAGS."""
    monkeypatch.delenv(runtime.CPU_CONVS_ENV, raising=False)
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_max_isa=AVX")
    runtime.select_cpu_conv_kernels()
    assert os.environ["XLA_FLAGS"].split() == ["--xla_cpu_max_isa=AVX", *runtime.CPU_CONV_FLAGS]
    runtime.select_cpu_conv_kernels()  # once only
    assert os.environ["XLA_FLAGS"].split() == ["--xla_cpu_max_isa=AVX", *runtime.CPU_CONV_FLAGS]
    own = "--xla_cpu_experimental_ynn_fusion_type=default"
    for setting, flags in (("xla", ""), ("onednn", own), ("bogus", "")):
        monkeypatch.setenv(runtime.CPU_CONVS_ENV, setting)
        monkeypatch.setenv("XLA_FLAGS", flags)
        runtime.select_cpu_conv_kernels()
        assert os.environ["XLA_FLAGS"] == flags, setting
    monkeypatch.setenv(runtime.CPU_CONVS_ENV, " ")  # set but empty: the default
    monkeypatch.setenv("XLA_FLAGS", "")
    assert not runtime.convs_in_onednn()
    runtime.select_cpu_conv_kernels()
    assert os.environ["XLA_FLAGS"].split() == list(runtime.CPU_CONV_FLAGS)
    assert runtime.convs_in_onednn()
    warning = capsys.readouterr().err.strip().splitlines()
    assert warning == [f"warning: {runtime.CPU_CONVS_ENV}='bogus' is not 'onednn' or 'xla'; using "
                       "XLA's own conv kernels"]  # fmt: skip
