"""`jahp-eval`: evaluate checkpoints on a data set from real files."""

import sys

from jahp_jax.evaluation.evaluate import main as main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
