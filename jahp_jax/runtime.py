"""Process start-up: XLA:CPU's convolution kernels, and the CLIs' persistent compilation cache.

`import jahp_jax` calls `select_cpu_conv_kernels()`, which, before XLA starts, asks XLA:CPU to run
convolutions through oneDNN instead of YNNPACK (two of XLA's `XLA_FLAGS`, `CPU_CONV_FLAGS`): on a
2-core AMD EPYC the joint N=M=192 train step ran 1.15-1.18x faster at 256x256 and 1.07-1.08x at
128x128 (docs/performance.md). Every process that imports jahp_jax before it first uses jax gets
the same kernels, so a float file written by the library decodes with the command line's
numerics. `JAHP_CPU_CONVS=xla`, or either flag set in `XLA_FLAGS`, keeps XLA's choice; other
backends (GPU, TPU) ignore these flags.

Each CLI calls `enable_compilation_cache()` first, so a second run of the same command loads its
compiled XLA programs from disk instead of compiling them again (seconds per model and image
shape). Where the cache goes:

- `JAHP_COMPILATION_CACHE` unset: `$XDG_CACHE_HOME/jahp_jax/xla` (`~/.cache/jahp_jax/xla`), or
  JAX's own `JAX_COMPILATION_CACHE_DIR` where that is set;
- `JAHP_COMPILATION_CACHE=off` (or 0, false, no, none, empty): no persistent cache;
- `JAHP_COMPILATION_CACHE=DIR`: `DIR`.

The folder only grows (one entry per distinct program, typically 0.1-5 MB); deleting it any time
is safe. The library itself never turns the cache on: only the CLIs (and the test run, through
launch.sh) do.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

CACHE_ENV = "JAHP_COMPILATION_CACHE"
_OFF = ("off", "0", "false", "no", "none")
CPU_CONVS_ENV = "JAHP_CPU_CONVS"  # "onednn" (the default, also when empty) or "xla"
CPU_CONV_FLAGS = (
    "--xla_cpu_experimental_onednn_fusion_type=individual_convolution",  # convs -> oneDNN
    "--xla_cpu_experimental_ynn_fusion_type=individual_dot",  # YNNPACK keeps only the dots
)


def select_cpu_conv_kernels() -> None:
    """Add `CPU_CONV_FLAGS` to `XLA_FLAGS` (read when jax starts its backend) unless
    `JAHP_CPU_CONVS=xla` or `XLA_FLAGS` already sets either fusion type. No effect on a process
    whose jax backend is already running; another `JAHP_CPU_CONVS` warns in one line and keeps
    XLA's choice."""
    choice = os.environ.get(CPU_CONVS_ENV, "").strip().lower() or "onednn"  # empty: unset
    if choice not in ("onednn", "xla"):
        print(f"warning: {CPU_CONVS_ENV}='{choice}' is not 'onednn' or 'xla'; using XLA's "
              "own conv kernels", file=sys.stderr)  # fmt: skip
        return
    if choice == "onednn":
        add_xla_flags(*CPU_CONV_FLAGS)


def convs_in_onednn() -> bool:
    """Whether `XLA_FLAGS` hands XLA:CPU's convolutions to oneDNN (as `select_cpu_conv_kernels`
    sets it): `jahp_jax.nn.layers` then keeps XLA's own conv for the few-channel layers, which
    oneDNN runs faster than their im2col matmuls."""
    return CPU_CONV_FLAGS[0] in os.environ.get("XLA_FLAGS", "")


def add_xla_flags(*flags: str) -> None:
    """Append `flags` ("--name=value") to `XLA_FLAGS` unless it already sets any of their names:
    a choice of the user's (or of the calling process) wins over ours."""
    current = os.environ.get("XLA_FLAGS", "")
    if any(flag.split("=")[0] in current for flag in flags):
        return
    os.environ["XLA_FLAGS"] = " ".join([current, *flags]).strip()


def compilation_cache_dir() -> Path | None:
    """The cache folder the environment asks for (see the module docstring), or None for off."""
    setting = os.environ.get(CACHE_ENV)
    if setting is not None:
        setting = setting.strip()
        return None if setting.lower() in _OFF or not setting else Path(setting).expanduser()
    if os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return Path(os.environ["JAX_COMPILATION_CACHE_DIR"]).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "jahp_jax" / "xla"


def enable_compilation_cache() -> Path | None:
    """Point JAX's persistent compilation cache at `compilation_cache_dir()`; returns the folder.

    Every compiled program is cached, however short its compile time (a decode compiles several
    sub-second programs). An unwritable folder prints one warning and leaves the cache off.
    """
    path = compilation_cache_dir()
    if path is None:
        return None
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        print(
            f"warning: compilation cache off: cannot create {path} ({error.strerror}); "
            f"set {CACHE_ENV}=off or to a writable folder",
            file=sys.stderr,
        )
        return None
    import jax

    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
