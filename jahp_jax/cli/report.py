"""`jahp-report`: BD-rate tables and RD plots from results files."""

import sys

from jahp_jax.evaluation.report import main as main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
