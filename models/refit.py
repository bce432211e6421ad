"""Refit: retrain the selected networks on all the data for the number of steps selected.

Model selection (early stopping on validation windows, the holdout scores) never lets the
networks see the newest ``horizon`` points of each series, the most relevant ones for the next
forecast. With ``train.refit`` each network is built again from its seed (and warm start),
trained on every point for the steps at which it did best on validation
(:attr:`models.training.TrainResult.best_step`), without early stopping, and that is the model
served. Its holdout cannot be scored (it has seen it): the run keeps the selected model's.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import numpy as np

from nearcast.models.architectures import build_model
from nearcast.models.config import ModelConfig, TrainConfig
from nearcast.models.joint import train_steps
from nearcast.pipelines.features import FeatureSpec
from nearcast.pipelines.windows import SeriesTable


@dataclass(frozen=True)
class Refit:
    """What a refit did: the refitted networks, each one's steps, the seconds it took."""

    models: list[keras.Model]
    steps: list[int]
    seconds: float


def refit(table: SeriesTable, configs: list[ModelConfig], seeds: list[int], train: TrainConfig,
          steps: list[int], names: list[str | None], features: FeatureSpec | None,
          init_weights: list[np.ndarray] | None = None) -> Refit:
    """Build each network from its seed and train it for its ``steps`` on all of ``table``.

    Args:
        table: every point of every series (holdout included).
        configs: each network's config.
        seeds: each network's seed (its initial weights follow it).
        train: the training settings (its ``seed`` draws the batches).
        steps: training steps per network (its selected step).
        names: each network's name in the joined graph (None for a single model).
        features: the fitted feature spec of a covariate model.
        init_weights: a warm start (single model).

    Raises:
        FloatingPointError: the loss became NaN or infinite.
    """
    models = []
    for config, seed, name in zip(configs, seeds, names, strict=True):
        keras.utils.set_random_seed(seed)
        model = build_model(config, name=name, features=features)
        if init_weights is not None:
            model.set_weights(init_weights)
        models.append(model)
    seconds = train_steps(models, configs, train, table, steps)
    return Refit(models, list(steps), seconds)


__all__ = ["Refit", "refit"]
