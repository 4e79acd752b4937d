"""A registered prior: how to compose its parts from the model's sizes, and its options."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from jahp_jax.models.latent_codecs.base import Composition
from jahp_jax.models.transforms import Transform


@dataclasses.dataclass(frozen=True)
class PriorArgs:
    """What a prior is composed from: N, M, K, the transform family (whose hyper transforms a
    hyperprior uses) and the prior's own options (already checked)."""

    num_filters: int
    num_latents: int
    mixture_components: int
    transform: Transform
    options: Mapping[str, Any]


def no_option_checks(options: Mapping[str, Any]) -> None:
    """A prior without options accepts every (empty) set."""


@dataclasses.dataclass(frozen=True)
class Prior:
    """A prior: `compose(PriorArgs) -> Composition`, a one-line `description` with its paper,
    its own options (keyword arguments, `--prior_option=NAME=VALUE`) and their check (ValueError
    with one line), whether it may use a K-component mixture (it predicts means), what y's
    sides must be multiples of (`latent_alignment`: TCM's windows of 8; images are padded so),
    and whether its networks start as its PyTorch reference's do (`pytorch_init`)."""

    compose: Callable[[PriorArgs], Composition]
    description: str
    options: tuple[str, ...] = ()
    check_options: Callable[[Mapping[str, Any]], None] = no_option_checks
    supports_mixture: bool = True
    latent_alignment: int = 1  # y's sides must be multiples of this (e.g. attention windows)
    pytorch_init: bool = False
