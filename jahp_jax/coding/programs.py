"""The jitted pieces of a model that the coder runs (params are arguments), compiled once per
model configuration and shared by every coder and codec of that configuration."""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax

from jahp_jax.models.compression_model import CompressionModel


def _codec(model: CompressionModel):
    return model.latent_codec


def _step(model: CompressionModel, group: int, kind: int, constants, *inputs):
    return _codec(model).step_distribution(group, kind, constants, *inputs)


def _group_features(model: CompressionModel, group: int, hyper, decoded):
    return _codec(model).group_features(group, hyper, decoded)


def _finalize(model: CompressionModel, group: int, features, values):
    return _codec(model).step_finalize(group, features, values)


@functools.cache
def compiled_functions(model: CompressionModel) -> dict[str, Callable]:
    """{'analysis', 'synthesis', 'hyper_analysis', 'hyper_synthesis', 'y_likelihood',
    'coding_constants', 'group_features', 'step', 'finalize', 'z_density_likelihood',
    'y_density_likelihood'}: each `f(params, *args)`; `group_features(params, group, ...)`,
    `step(params, group, kind, ...)` and `finalize(params, group, ...)` take the group (and
    kind) as static arguments."""

    def method(function):
        return jax.jit(lambda p, *a: model.apply({"params": p}, *a, method=function))

    def codec_method(name):
        return method(lambda m, *a: getattr(_codec(m), name)(*a))

    functions = {name: method(name) for name in ("analysis", "synthesis")}
    for name in ("hyper_analysis", "hyper_synthesis", "y_likelihood", "coding_constants"):
        functions[name] = codec_method(name)
    for name, function, static in (
        ("step", _step, (1, 2)),
        ("group_features", _group_features, (1,)),
        ("finalize", _finalize, (1,)),
    ):
        functions[name] = jax.jit(
            lambda p, *a, function=function: model.apply({"params": p}, *a, method=function),
            static_argnums=static,
        )
    for name in ("z", "y"):
        functions[f"{name}_density_likelihood"] = method(
            lambda m, x, name=name: _codec(m).factorized_densities()[name].likelihood(x)
        )
    return functions
