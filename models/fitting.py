"""Fit a forecaster (one network or an ensemble's members) on a regular frame, in memory.

Nothing here talks to MLflow: :class:`nearcast.models.estimator.Nearcast` fits through
:func:`fit_forecaster` in a notebook without any store, and :mod:`nearcast.models.run_log`
records what a fit produced (:class:`Fitted`) afterwards.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field

import keras
import numpy as np
import pandas as pd

from nearcast.models import distributed
from nearcast.models.architectures import build_model
from nearcast.models.config import EnsembleConfig, ModelConfig, TrainConfig
from nearcast.models.ensemble import ensemble_config, interval_factor, join_members
from nearcast.models.evaluation import Evaluation, holdout_evaluate
from nearcast.models.forecaster import Forecaster, ModelMeta
from nearcast.models.training import EpochLog, TrainData, TrainingDivergedError, TrainResult, fit
from nearcast.pipelines.covariates import Covariate
from nearcast.pipelines.features import FeatureSpec
from nearcast.pipelines.grid import GridRule
from nearcast.pipelines.schema import UNIQUE_ID
from nearcast.pipelines.windows import SeriesTable, gather_batch, last_windows

OnEpoch = Callable[[int, EpochLog], None]
"""Called with the member index (0 for a single model) and each epoch's log."""


@dataclass(frozen=True)
class Member:
    """One trained network: its configs, its training and its own holdout scores."""

    config: ModelConfig
    train: TrainConfig
    result: TrainResult
    scores: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Fitted:
    """What one fit produced.

    Attributes:
        forecaster: the model that serves (the joined ensemble for several members).
        evaluation: holdout scores of the model and the baselines (last ``horizon`` points of
            every series, never seen by training or early stopping).
        members: each trained network (one for a single model).
        table: the full regular series the fit saw (holdout included).
        started: wall-clock time (seconds since the epoch) when training began.
        interval_factor: how much an ensemble's intervals were widened (None: not at all).
    """

    forecaster: Forecaster
    evaluation: Evaluation
    members: list[Member]
    table: SeriesTable
    started: float
    interval_factor: float | None = None

    @property
    def train_seconds(self) -> float:
        """Seconds spent in the training loops, all members together."""
        return sum(m.result.seconds for m in self.members)


class FitDivergedError(TrainingDivergedError):
    """A network's loss went NaN or infinite; ``members`` holds what was trained (it last)."""

    def __init__(self, message: str, members: list[Member], started: float) -> None:
        super().__init__(message)
        self.members, self.started = members, started


def split_for_training(
    df: pd.DataFrame, config: ModelConfig, features: FeatureSpec | None = None,
    val_windows: int = 1,
) -> tuple[TrainData, SeriesTable]:
    """Hold out the last ``horizon`` points per series; early-stop on the newest windows before.

    ``val_windows`` newest windows per series, one horizon apart (:func:`pipelines.
    series_table.last_windows`), are the validation windows.

    Scoring uses the held-out points only, so early stopping never sees them.

    Returns:
        ``(train data, full table)``; the full table is what holdout scoring uses.
    """
    full = SeriesTable.from_long(df, features)
    train = SeriesTable.from_long(df.groupby(UNIQUE_ID, sort=False).head(-config.horizon),
                                  features)
    spec = config.window_spec()
    inputs, target = gather_batch(train, last_windows(train, spec, val_windows), spec)
    data = TrainData(train, {k: np.asarray(v) for k, v in inputs.items()}, np.asarray(target))
    return data, full


def feature_spec(df: pd.DataFrame, config: ModelConfig,
                 covariates: Mapping[str, Covariate] | None) -> FeatureSpec | None:
    """The fitted feature spec of a model, or None when it reads only the target."""
    spec = FeatureSpec.fit(df, covariates or {}, config.calendar, config.embedding > 0)
    return spec if spec.active else None


def _fit_one(df: pd.DataFrame, config: ModelConfig, train: TrainConfig,
             init_weights: list[np.ndarray] | None, name: str | None,
             on_epoch: Callable[[EpochLog], None] | None,
             features: FeatureSpec | None) -> TrainResult:
    """Seeded build (optionally warm-started) and fit.

    Under :func:`models.distributed.data_parallel` the network trains on this worker's shard of
    the series, built in the strategy's scope; the result holds a plain copy of it.
    """
    dp = distributed.current()
    data, _ = split_for_training(df if dp is None else dp.cluster.shard(df), config, features,
                                 train.val_windows)
    with nullcontext() if dp is None else dp.strategy.scope():
        keras.utils.set_random_seed(train.seed)  # the initial weights follow the seed too
        model = build_model(config, name=name, features=features)
        if init_weights is not None:
            model.set_weights(init_weights)  # ValueError names the shape mismatch
    result = fit(model, config, train, data, on_epoch)
    if dp is not None:  # serve a model without the strategy's variables
        keras.utils.set_random_seed(train.seed)
        result.model = build_model(config, name=name, features=features)
        result.model.set_weights(model.get_weights())
    return result


def fit_forecaster(
    df: pd.DataFrame, config: ModelConfig, train: TrainConfig, grid: GridRule,
    ensemble: EnsembleConfig | None = None, init_weights: list[np.ndarray] | None = None,
    on_epoch: OnEpoch | None = None, covariates: Mapping[str, Covariate] | None = None,
) -> Fitted:
    """Train on a regular long frame (already on ``grid``) and score on its holdout.

    With ``ensemble``, each member trains in turn and the members are joined into ONE model
    (median or mean), whose quantile intervals are widened on validation windows to
    ``ensemble.interval_coverage``. ``init_weights`` (a warm start) apply to a single model.
    ``covariates`` (the data's declarations) and the config's calendar and embedding make a
    covariate model; its feature spec is fitted on ``df`` and stored in the model. Under
    :func:`models.distributed.data_parallel` each network trains on this worker's shard of
    ``df``; the holdout is scored on all of ``df``.

    Raises:
        FitDivergedError: a loss went NaN/inf (nothing is returned).
        ValueError: ``init_weights`` do not fit the network.
    """
    started = time.time()
    features = feature_spec(df, config, covariates)
    full = SeriesTable.from_long(df, features)
    pairs = ensemble.member_configs(config, train) if ensemble else [(config, train)]
    members: list[Member] = []
    for i, (member_cfg, member_train) in enumerate(pairs):
        listener = None if on_epoch is None else (lambda log, i=i: on_epoch(i, log))
        result = _fit_one(df, member_cfg, member_train, init_weights if not ensemble else None,
                          f"member_{i}" if ensemble else None, listener, features)
        if result.diverged:
            members.append(Member(member_cfg, member_train, result))
            raise FitDivergedError("training diverged" + (f" (member {i})" if ensemble else ""),
                                   members, started)
        scores: dict[str, float] = {}
        if ensemble:
            alone = Forecaster(result.model, ModelMeta(config=member_cfg, grid=grid,
                                                       features=features))
            scores = holdout_evaluate(alone, full, member_cfg.horizon).scores["model"]
        members.append(Member(member_cfg, member_train, result, scores))
    factor = None
    if ensemble is None:
        model, served = members[0].result.model, config
    else:
        model, served, factor = _assemble(df, ensemble, members, grid, features)
    forecaster = Forecaster(model, ModelMeta(config=served, grid=grid,
                                             train_series=len(full.ids), features=features))
    evaluation = holdout_evaluate(forecaster, full, served.horizon)
    forecaster.meta.metrics = evaluation.scores["model"]
    return Fitted(forecaster, evaluation, members, full, started, factor)


def _assemble(df: pd.DataFrame, ensemble: EnsembleConfig, members: list[Member], grid: GridRule,
              features: FeatureSpec | None) -> tuple[keras.Model, ModelConfig, float | None]:
    """Join the members; widen quantile intervals to the wanted coverage on validation windows."""
    configs, models = [m.config for m in members], [m.result.model for m in members]
    joined_cfg = ensemble_config(configs)
    joined = join_members(models, configs, ensemble.combine, features=features)
    if not joined_cfg.quantiles or ensemble.interval_coverage is None:
        return joined, joined_cfg, None
    data, _ = split_for_training(df, joined_cfg, features, members[0].train.val_windows)
    meta = ModelMeta(config=joined_cfg, grid=grid, features=features)
    raw = Forecaster(joined, meta).predict_inputs(data.val_inputs)
    factor = interval_factor(raw, data.val_target, joined_cfg, ensemble.interval_coverage)
    return (join_members(models, configs, ensemble.combine, factor, features), joined_cfg,
            factor)


__all__ = ["FitDivergedError", "Fitted", "Member", "OnEpoch", "feature_spec", "fit_forecaster",
           "split_for_training"]
