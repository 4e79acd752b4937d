"""`jahp-codec`: compress images to .jahp files and back."""

import sys

from jahp_jax.coding.codec import main as main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
