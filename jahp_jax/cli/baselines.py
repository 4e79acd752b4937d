"""`jahp-baselines`: classical codecs on a data set."""

import sys

from jahp_jax.evaluation.baselines import main as main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
