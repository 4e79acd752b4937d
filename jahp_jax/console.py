"""What the command-line tools print: our lines, progress bars, and third-party logging kept quiet.

`setup(verbosity, log_file)` routes every Python log record (absl's, orbax's and tfds's go through
the `absl` logger) to two places:
  * the console (stderr): our own INFO lines, and third-party records only at or above
    `verbosity` (WARNING by default, so orbax's and tfds's INFO chatter stays off);
  * `log_file` (optional, appended): everything at INFO and above, with timestamps.

Long loops show one tqdm bar (`progress`) on a terminal. Where stderr is not a terminal (CI, Slurm
logs, pipes) bars are off and the per-step or per-image detail lines (logged with
`extra=DETAIL`) are printed instead; on a terminal those go to the log file only.

Importing this module sets `TF_CPP_MIN_LOG_LEVEL=1` and `TF_ENABLE_ONEDNN_OPTS=0` unless already
set (TensorFlow's C++ INFO lines and oneDNN notice), so import it before anything that loads
TensorFlow.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

import tqdm

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
# TensorFlow prints a oneDNN notice whatever the level above; only the input pipeline uses TF and
# its batches are bit-identical either way (checked on BSDS500), so the notice is turned off.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

LOG_FILE = "jahp.log"  # the full log, in a run's workdir
# Records logged with extra=DETAIL: the console shows them only where no progress bar is drawn.
DETAIL = {"jahp_detail": True}
VERBOSITY_LEVELS = {"error": logging.ERROR, "warning": logging.WARNING, "info": logging.INFO,
                    "debug": logging.DEBUG}  # fmt: skip
_OUR_DIRS = (Path(__file__).resolve().parent, Path(__file__).resolve().parents[1] / "experiments")
_OUR_LOGGERS = ("jahp_jax", "experiments", "__main__")

T = TypeVar("T")


def bars_enabled() -> bool:
    """True when stderr is a terminal: progress bars are drawn and detail lines stay off it."""
    return sys.stderr.isatty()


@functools.lru_cache(maxsize=512)
def _is_our_file(pathname: str) -> bool:
    try:
        path = Path(pathname).resolve()
    except OSError:
        return False
    return any(path.is_relative_to(folder) for folder in _OUR_DIRS)


def is_ours(record: logging.LogRecord) -> bool:
    """A record from this project (its loggers, or absl.logging calls made in its files)."""
    return record.name.startswith(_OUR_LOGGERS) or _is_our_file(record.pathname)


class _ConsoleFilter(logging.Filter):
    def __init__(self, third_party_level: int):
        super().__init__()
        self.third_party_level = third_party_level

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "jahp_detail", False) and bars_enabled():
            return False
        if is_ours(record):
            return record.levelno >= min(logging.INFO, self.third_party_level)
        return record.levelno >= self.third_party_level


class _ConsoleFormatter(logging.Formatter):
    """Our INFO lines bare, our warnings as 'warning: ...', third-party lines with their logger."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + self.formatException(record.exc_info)
        if is_ours(record):
            if record.levelno >= logging.WARNING:
                return f"{record.levelname.lower()}: {message}"
            return message
        return f"[{record.name}] {record.levelname} {message}"


class _TqdmHandler(logging.Handler):
    """Writes through tqdm so that an active bar is redrawn below the line, not broken by it."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # logging must never raise into the caller
            self.handleError(record)


def verbosity_level(verbosity: str | int) -> int:
    """A logging level from a name (error, warning, info, debug) or an absl verbosity integer.

    Raises:
      ValueError: an unknown name (one line, listing the names).
    """
    if isinstance(verbosity, int) or str(verbosity).lstrip("-").isdigit():
        from absl.logging import converter

        return converter.absl_to_standard(int(verbosity))
    try:
        return VERBOSITY_LEVELS[str(verbosity).lower()]
    except KeyError:
        raise ValueError(
            f"unknown --verbosity '{verbosity}'; choose one of {', '.join(VERBOSITY_LEVELS)}"
        ) from None


def _is_basic_config_default(handler: logging.Handler) -> bool:
    """The handler `logging.basicConfig()` installs: absl.logging calls it when a library logs
    before any handler exists (e.g. orbax at import), which would print 'INFO:absl:...' lines."""
    formatter = handler.formatter
    return (
        type(handler) is logging.StreamHandler
        and formatter is not None
        and formatter._fmt == logging.BASIC_FORMAT
    )


def setup(verbosity: str | int = "warning", log_file: str | os.PathLike | None = None) -> None:
    """Routes logging to the console (quiet third parties) and, optionally, to `log_file`.

    Safe to call again (e.g. once the workdir is known): the handlers of an earlier call and
    absl's own handler are replaced.
    """
    from absl import logging as absl_logging  # first: it must create the 'absl' logger itself

    level = verbosity_level(verbosity)
    root = logging.getLogger()
    for handler in list(root.handlers):
        if (
            getattr(handler, "jahp_console", False)
            or handler is absl_logging.get_absl_handler()
            or _is_basic_config_default(handler)
        ):
            root.removeHandler(handler)
            if isinstance(handler, logging.FileHandler):
                handler.close()
    root.setLevel(min(level, logging.INFO))
    logging.getLogger("absl").setLevel(min(level, logging.INFO))
    console = _TqdmHandler()
    console.addFilter(_ConsoleFilter(level))
    console.setFormatter(_ConsoleFormatter())
    console.jahp_console = True
    root.addHandler(console)
    if log_file is not None:
        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_file, encoding="utf-8")
        file_handler.setLevel(min(level, logging.INFO))
        file_handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s [%(name)s] %(message)s")
        )
        file_handler.jahp_console = True
        root.addHandler(file_handler)
    if level > logging.INFO and "tensorflow_datasets" in sys.modules:
        sys.modules["tensorflow_datasets"].disable_progress_bar()


def progress(
    iterable: Iterable[T] | None = None, *, total: int | None = None, desc: str = "",
    unit: str = "it", initial: int = 0,
) -> tqdm.tqdm:  # fmt: skip
    """A tqdm bar on stderr with rate and ETA; a no-op where stderr is not a terminal."""
    return tqdm.tqdm(
        iterable, total=total, desc=desc, unit=unit, initial=initial, disable=not bars_enabled(),
        dynamic_ncols=True, leave=True,
    )  # fmt: skip
