"""`jahp-train`: train a model (or resume one)."""

import sys

from jahp_jax.training.train import cli as main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
