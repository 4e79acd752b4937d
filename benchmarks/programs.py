"""The programs the benchmarks time: the jitted train step on a random batch, and g_s alone."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import numpy as np
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from jahp_jax.models.compression_model import CompressionModel
from jahp_jax.models.presets import MODELS
from jahp_jax.training import train


class TrainStepSetup(NamedTuple):
    """What `train.jit_train_step` needs, on a random (batch, patch, patch, 3) batch in [0, 1)."""

    config: train.TrainConfig
    model: Any
    mesh: jax.sharding.Mesh
    hparams: train.Hyperparams
    x: jax.Array


def train_step_setup(
    prior: str, n: int, m: int, batch: int, patch: int, preset: str | None = None
) -> TrainStepSetup:
    """The model `prior` (or the --model `preset`, its transform and options) at N=n, M=m
    (lambda 0.0067) with a random batch sharded as training's."""
    fields = MODELS[preset].fields() if preset else {"prior": prior}
    fields.update(num_filters=n, num_latents=m)
    config = train.TrainConfig(lmbda=0.0067, batch_size=batch, patch_size=patch, **fields)
    mesh = train.make_mesh()
    images = np.random.default_rng(0).random((batch, patch, patch, 3), np.float32)
    x = jax.device_put(images, NamedSharding(mesh, P(train.DATA_AXIS)))
    model = CompressionModel(config.model_config)
    return TrainStepSetup(config, model, mesh, train.hyperparams(config), x)


def compiled_synthesis(model: Any, params: Any, y_hat: np.ndarray) -> Any:
    """g_s of `model` compiled for y_hat (1, H / 16, W / 16, M); the convs as traced here."""
    synthesis = jax.jit(lambda p, y: model.apply({"params": p}, y, method="synthesis"))
    return synthesis.lower(params, y_hat).compile()
