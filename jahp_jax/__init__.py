"""jahp_jax: joint autoregressive and hierarchical priors for learned image compression in JAX."""

from jahp_jax.runtime import select_cpu_conv_kernels

__version__ = "0.1.0"

select_cpu_conv_kernels()  # before jax starts (see jahp_jax.runtime)
