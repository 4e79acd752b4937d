"""Model identity: `ModelConfig`, the one definition of which model a set of parameters belongs to.

Training writes it into every checkpoint, `checkpoints.load_model` rebuilds the model from it, the
.jahp header carries its `fingerprint()` (so a file names the model that can decode it), and every
"wrong model" error message prints it with `describe()`. A prior's own keyword arguments (e.g.
the channel-wise prior's `num_slices`) are `prior_options`; the prior declares and validates them
(`Prior.options`, `Prior.check_options`). The geometry every tool needs (how much an image is
padded, a latent's size) is derived here from the transform family's `downsampling`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np

from jahp_jax.models.gain import MAX_GAIN_LEVELS, check_lmbda_range
from jahp_jax.models.latent_codecs import PRIORS, Composition, PriorArgs
from jahp_jax.models.latent_codecs.base import check_positive_int
from jahp_jax.models.latent_codecs.integer_form import IntegerFormError, integer_networks
from jahp_jax.models.transforms import DEFAULT_TRANSFORM, TRANSFORMS, Transform

OptionValue = int | float | str | bool

# The side latent z is 1/4 of y in each dimension (the hyperprior's two stride-2 layers); every
# image is padded to `downsampling x HYPER_DOWNSAMPLING`, with or without a side latent, so that
# every prior's files share one geometry.
HYPER_DOWNSAMPLING = 4
# Fields added after format 3 enter the identity (`fingerprint`) only when they differ from
# these defaults, so that the models and files made before them keep their identity.
_LATER_FIELDS = {"transform": DEFAULT_TRANSFORM, "lmbda_range": None, "gain_levels": 0}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """The prior, its sizes (N, M, K), its own options, the arithmetic of its prior path, the
    transform family and, for a variable-rate model, its lambda range and gain levels.

    `prior_options` may be given as a mapping; it is stored as sorted (name, value) pairs so
    that the config stays hashable (a Flax module field). Invalid values raise ValueError with a
    one-line message. `lmbda_range` (low, high) makes the model variable-rate: `gain_levels`
    gain units condition it on the rate (`jahp_jax.models.gain`); None (and gain_levels 0) is a
    fixed-rate model.
    """

    prior: str = "joint"
    num_filters: int = 192
    num_latents: int = 192
    mixture_components: int = 1
    prior_options: tuple[tuple[str, OptionValue], ...] = ()
    integer_prior: bool = False
    transform: str = DEFAULT_TRANSFORM
    lmbda_range: tuple[float, float] | None = None
    gain_levels: int = 0

    def __post_init__(self):
        options = self.prior_options
        if isinstance(options, Mapping):
            options = options.items()
        object.__setattr__(self, "prior_options", tuple(sorted(tuple(kv) for kv in options)))
        if self.lmbda_range is not None:  # e.g. a JSON list
            object.__setattr__(self, "lmbda_range", tuple(float(v) for v in self.lmbda_range))
        self._check()

    def _check(self) -> None:
        if self.prior not in PRIORS:
            raise ValueError(f"unknown prior '{self.prior}'; choose one of: {', '.join(PRIORS)}")
        if self.transform not in TRANSFORMS:
            raise ValueError(
                f"unknown transform '{self.transform}'; choose one of: {', '.join(TRANSFORMS)}"
            )
        for name in ("num_filters", "num_latents", "mixture_components"):
            check_positive_int(name, getattr(self, name))
        prior = PRIORS[self.prior]
        if self.mixture_components > 1 and not prior.supports_mixture:
            with_means = ", ".join(name for name, p in PRIORS.items() if p.supports_mixture)
            raise ValueError(
                f"mixture_components={self.mixture_components} needs a prior that predicts "
                f"means ({with_means}), not '{self.prior}'"
            )
        unknown = sorted(set(self.options) - set(prior.options))
        if unknown:
            accepted = ", ".join(prior.options) or "none"
            raise ValueError(
                f"prior '{self.prior}' has no option {', '.join(unknown)} (its options: {accepted})"
            )
        prior.check_options(self.options)
        self._check_rate()
        if self.integer_prior:
            try:
                integer_networks(self.composition())
            except IntegerFormError as error:
                model = f"the '{self.prior}' prior"
                if self.transform != DEFAULT_TRANSFORM:
                    model += f" with the '{self.transform}' transform"
                raise IntegerFormError(f"{model} has no integer form: {error}") from None

    def _check_rate(self) -> None:
        if self.lmbda_range is None:
            if self.gain_levels != 0:
                raise ValueError(
                    f"gain_levels={self.gain_levels} is for a variable-rate model: give its "
                    "lmbda_range too"
                )
            return
        if len(self.lmbda_range) != 2:
            raise ValueError(f"lmbda_range must be (low, high), got {self.lmbda_range}")
        check_lmbda_range(self.lmbda_range)
        if not (isinstance(self.gain_levels, int) and 2 <= self.gain_levels <= MAX_GAIN_LEVELS):
            raise ValueError(
                f"gain_levels must be an integer in 2 ... {MAX_GAIN_LEVELS} for a variable-rate "
                f"model, got {self.gain_levels}"
            )

    @property
    def variable_rate(self) -> bool:
        """One model for every rate of `lmbda_range` (a quality chosen when compressing)."""
        return self.lmbda_range is not None

    @property
    def options(self) -> dict[str, OptionValue]:
        """The prior's own keyword arguments, by name."""
        return dict(self.prior_options)

    @property
    def transform_family(self) -> Transform:
        return TRANSFORMS[self.transform]

    @property
    def pytorch_init(self) -> bool:
        """Whether the model starts from PyTorch's default initial weights (its transform
        family's or its prior's reference's), see `compression_model.init_params`."""
        return self.transform_family.pytorch_init or PRIORS[self.prior].pytorch_init

    def composition(self) -> Composition:
        """The parts of this model's prior (`jahp_jax.models.latent_codecs`)."""
        args = PriorArgs(
            self.num_filters,
            self.num_latents,
            self.mixture_components,
            self.transform_family,
            self.options,
        )
        return PRIORS[self.prior].compose(args)

    # --- geometry -----------------------------------------------------------------------------
    @property
    def latent_downsampling(self) -> int:
        """y is 1/this of the image in each dimension."""
        return self.transform_family.downsampling

    @property
    def pad_multiple(self) -> int:
        """Images are replicate-padded to a multiple of this before the analysis transform."""
        return max(
            self.latent_downsampling * HYPER_DOWNSAMPLING,
            self.transform_family.alignment,
            self.latent_downsampling * PRIORS[self.prior].latent_alignment,
        )

    @property
    def patch_multiple(self) -> int:
        """A training crop's side must be a multiple of this (the side latent needs 4 more)."""
        side = self.composition().side is not None
        multiple = self.latent_downsampling * (HYPER_DOWNSAMPLING if side else 1)
        prior = self.latent_downsampling * PRIORS[self.prior].latent_alignment
        return max(multiple, self.transform_family.alignment if side else multiple, prior)

    def latent_shape(self, height: int, width: int) -> tuple[int, int]:
        """(h, w) of y for an image of height x width pixels (after padding)."""
        multiple, d = self.pad_multiple, self.latent_downsampling
        return -(-height // multiple) * multiple // d, -(-width // multiple) * multiple // d

    # --- identity -----------------------------------------------------------------------------
    def describe(self) -> str:
        """One line for messages, e.g. 'joint N=192 M=192' or 'channelwise N=192 M=320
        num_slices=5'."""
        parts = [self.prior, f"N={self.num_filters}", f"M={self.num_latents}"]
        if self.mixture_components > 1:
            parts.append(f"K={self.mixture_components}")
        parts += [f"{name}={value}" for name, value in self.prior_options]
        if self.transform != DEFAULT_TRANSFORM:
            parts.append(f"transform={self.transform}")
        if self.variable_rate:
            low, high = self.lmbda_range
            parts.append(f"variable rate lambda {low:g}-{high:g} ({self.gain_levels} gain levels)")
        if self.integer_prior:
            parts.append("integer prior")
        return " ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (`prior_options` as an object, `lmbda_range` as a list)."""
        lmbda_range = None if self.lmbda_range is None else list(self.lmbda_range)
        return {**dataclasses.asdict(self), "prior_options": self.options,
                "lmbda_range": lmbda_range}  # fmt: skip

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModelConfig:
        """Inverse of `to_dict`; unknown keys (e.g. a checkpoint's `extra`) are ignored, and
        fields that older checkpoints lack take their defaults."""
        names = {field.name for field in dataclasses.fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})

    def fingerprint(self) -> bytes:
        """8-byte SHA-256 of the canonical JSON of `to_dict()` (what the .jahp header carries),
        without the later fields that are at their defaults."""
        identity = {
            key: value
            for key, value in self.to_dict().items()
            if not (key in _LATER_FIELDS and value == _LATER_FIELDS[key])
        }
        canonical = json.dumps(identity, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).digest()[:8]


def params_fingerprint(params: Any) -> bytes:
    """8-byte SHA-256 fingerprint of every parameter (names, shapes and values: float32 LE, and
    int32 LE for the integer arrays of an integer-prior model); of any pytree of arrays (a
    training state too), its arrays replicated where they span processes."""
    digest = hashlib.sha256()
    for path, leaf in sorted(
        jax.tree_util.tree_flatten_with_path(params)[0],
        key=lambda item: jax.tree_util.keystr(item[0]),
    ):
        if isinstance(leaf, jax.Array) and not leaf.is_fully_addressable:
            leaf = leaf.addressable_data(0)  # replicated over the processes: any copy
        array = np.asarray(leaf)
        array = array.astype("<i4" if np.issubdtype(array.dtype, np.integer) else "<f4")
        digest.update(jax.tree_util.keystr(path).encode())
        digest.update(str(array.shape).encode())
        digest.update(array.tobytes())
    return digest.digest()[:8]
