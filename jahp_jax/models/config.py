"""Model identity: `ModelConfig`, the one definition of which model a set of parameters belongs to.

Training writes it into every checkpoint, `checkpoints.load_model` rebuilds the model from it, the
.jahp header carries its `fingerprint()` (so a file names the model that can decode it), and every
"wrong model" error message prints it with `describe()`. A prior's own keyword arguments (e.g.
the channel-wise prior's `num_slices`) are `prior_options`; the prior's latent codec declares and
validates them (`LatentCodec.options`, `LatentCodec.check_options`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from jahp_jax.models.latent_codecs import PRIORS
from jahp_jax.models.latent_codecs.base import check_positive_int

if TYPE_CHECKING:
    from jahp_jax.models.compression_model import CompressionModel

OptionValue = int | float | str | bool


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The prior, its sizes (N, M, K), its own options and the arithmetic of its prior path.

    `prior_options` may be given as a mapping; it is stored as sorted (name, value) pairs so
    that the config stays hashable (a Flax module field). Invalid values raise ValueError with a
    one-line message.
    """

    prior: str = "joint"
    num_filters: int = 192
    num_latents: int = 192
    mixture_components: int = 1
    prior_options: tuple[tuple[str, OptionValue], ...] = ()
    integer_prior: bool = False

    def __post_init__(self):
        options = self.prior_options
        if isinstance(options, Mapping):
            options = options.items()
        object.__setattr__(self, "prior_options", tuple(sorted(tuple(kv) for kv in options)))
        self._check()

    def _check(self) -> None:
        if self.prior not in PRIORS:
            raise ValueError(f"unknown prior '{self.prior}'; choose one of: {', '.join(PRIORS)}")
        for name in ("num_filters", "num_latents", "mixture_components"):
            check_positive_int(name, getattr(self, name))
        codec = PRIORS[self.prior]
        if self.mixture_components > 1 and not codec.supports_mixture:
            with_means = ", ".join(name for name, c in PRIORS.items() if c.supports_mixture)
            raise ValueError(
                f"mixture_components={self.mixture_components} needs a prior that predicts "
                f"means ({with_means}), not '{self.prior}'"
            )
        unknown = sorted(set(self.options) - set(codec.options))
        if unknown:
            accepted = ", ".join(codec.options) or "none"
            raise ValueError(
                f"prior '{self.prior}' has no option {', '.join(unknown)} (its options: {accepted})"
            )
        codec.check_options(self.options)
        if self.integer_prior:
            from jahp_jax.coding.integer import check_supported_config  # it imports this module

            check_supported_config(self.prior, self.mixture_components)

    @property
    def options(self) -> dict[str, OptionValue]:
        """The prior's own keyword arguments, by name."""
        return dict(self.prior_options)

    def build(self, straight_through: bool = False) -> CompressionModel:
        """The Flax model this config describes (unbound; `models.init_params` initialises it)."""
        from jahp_jax.models.compression_model import CompressionModel  # models imports this module

        return CompressionModel(self, straight_through)

    def describe(self) -> str:
        """One line for messages, e.g. 'joint N=192 M=192' or 'channelwise N=192 M=320
        num_slices=5'."""
        parts = [self.prior, f"N={self.num_filters}", f"M={self.num_latents}"]
        if self.mixture_components > 1:
            parts.append(f"K={self.mixture_components}")
        parts += [f"{name}={value}" for name, value in self.prior_options]
        if self.integer_prior:
            parts.append("integer prior")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (`prior_options` as an object)."""
        return {**dataclasses.asdict(self), "prior_options": self.options}

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModelConfig:
        """Inverse of `to_dict`; unknown keys (e.g. a checkpoint's `extra`) are ignored, and
        fields that older checkpoints lack take their defaults."""
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})

    def fingerprint(self) -> bytes:
        """8-byte SHA-256 of the canonical JSON of `to_dict()` (what the .jahp header carries)."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).digest()[:8]
