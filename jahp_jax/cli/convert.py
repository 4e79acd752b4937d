"""`jahp-convert`: other libraries' weights to checkpoints; float models to integer ones."""

import sys

from jahp_jax.io.convert import main as main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
