"""jahp_jax: joint autoregressive and hierarchical priors for learned image compression in JAX."""

__version__ = "0.1.0"
