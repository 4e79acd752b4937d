"""`jahp-export`: a checkpoint's model without its optimiser state."""

import sys

from jahp_jax.io.checkpoints import main as main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
