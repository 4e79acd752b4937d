"""The console commands (`jahp-train`, `jahp-codec`, ...), one module each, on absl flags; what
they share (their own flag registry, --help, one-line errors) is in `command.py`."""
