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
from nearcast.models.joint import fit_joint
from nearcast.models.refit import Refit, refit
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
        joint: the members trained together (:mod:`models.joint`), not one after another.
        refit: with ``train.refit``, how the served model was retrained on all the data; the
            evaluation, member scores and interval factor are then the selected model's.
        selected: the selected model (before the refit) when the served one was refitted.
    """

    forecaster: Forecaster
    evaluation: Evaluation
    members: list[Member]
    table: SeriesTable
    started: float
    interval_factor: float | None = None
    joint: bool = False
    refit: Refit | None = None
    selected: Forecaster | None = None

    @property
    def train_seconds(self) -> float:
        """Seconds spent in the selection training loops (wall clock), all members together."""
        seconds = [m.result.seconds for m in self.members]
        return max(seconds) if self.joint else sum(seconds)


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

    With ``ensemble``, the members train together (``ensemble.joint``, :mod:`models.joint`)
    or in turn, and are joined into ONE model (median or mean), whose quantile intervals are
    widened on validation windows to ``ensemble.interval_coverage``. ``init_weights`` (a warm
    start) apply to a single model. ``covariates`` (the data's declarations) and the config's
    calendar and embedding make a covariate model; its feature spec is fitted on ``df`` and
    stored in the model. Under :func:`models.distributed.data_parallel` each network trains on
    this worker's shard of ``df`` (members in turn); the holdout is scored on all of ``df``.
    With ``train.refit`` the selected networks are retrained on all of ``df``
    (:mod:`models.refit`) and the refitted model is served, with the selected one's scores.

    Raises:
        FitDivergedError: a loss went NaN/inf (nothing is returned).
        ValueError: ``init_weights`` do not fit the network; ``train.refit`` under
            data-parallel training.
    """
    started = time.time()
    if train.refit and distributed.current() is not None:
        raise ValueError("train.refit is not supported with data-parallel training "
                         "(--distributed): train without it, or set train.refit: false")
    features = feature_spec(df, config, covariates)
    full = SeriesTable.from_long(df, features)
    pairs = ensemble.member_configs(config, train) if ensemble else [(config, train)]
    joint = bool(ensemble and ensemble.joint and distributed.current() is None)
    if joint:
        assert ensemble is not None
        members = _fit_jointly(df, pairs, train, ensemble, features, on_epoch, started)
    else:
        members = []
        for i, (member_cfg, member_train) in enumerate(pairs):
            _fit_in_turn(df, i, member_cfg, member_train, init_weights if not ensemble else None,
                         bool(ensemble), features, on_epoch, started, members)
    if ensemble:
        members = [Member(m.config, m.train, m.result, holdout_evaluate(
            Forecaster(m.result.model, ModelMeta(config=m.config, grid=grid, features=features)),
            full, m.config.horizon).scores["model"]) for m in members]
    factor = None
    if ensemble is None:
        model, served = members[0].result.model, config
    else:
        model, served, factor = _assemble(df, ensemble, members, grid, features)
    meta = ModelMeta(config=served, grid=grid, train_series=len(full.ids), features=features)
    forecaster = Forecaster(model, meta)
    evaluation = holdout_evaluate(forecaster, full, served.horizon)
    forecaster.meta.metrics = evaluation.scores["model"]
    done, selected = None, None
    if train.refit:
        done = _refit(full, members, train, ensemble, features, init_weights, started)
        selected = forecaster
        forecaster = Forecaster(done.models[0] if ensemble is None else join_members(
            done.models, [m.config for m in members], ensemble.combine, factor, features),
            meta.model_copy())  # the selected model's metrics, set above
    return Fitted(forecaster, evaluation, members, full, started, factor, joint, done, selected)


def _fit_in_turn(df: pd.DataFrame, i: int, config: ModelConfig, train: TrainConfig,
                 init_weights: list[np.ndarray] | None, ensemble: bool,
                 features: FeatureSpec | None, on_epoch: OnEpoch | None, started: float,
                 before: list[Member]) -> None:
    """Train member ``i`` on its own and append it to ``before`` (the members so far)."""
    listener = None if on_epoch is None else (lambda log: on_epoch(i, log))
    result = _fit_one(df, config, train, init_weights, f"member_{i}" if ensemble else None,
                      listener, features)
    member = Member(config, train, result)
    before.append(member)
    if result.diverged:
        raise FitDivergedError("training diverged" + (f" (member {i})" if ensemble else ""),
                               before, started)


def _fit_jointly(df: pd.DataFrame, pairs: list[tuple[ModelConfig, TrainConfig]],
                 train: TrainConfig, ensemble: EnsembleConfig, features: FeatureSpec | None,
                 on_epoch: OnEpoch | None, started: float) -> list[Member]:
    """The members trained together on the widest member's windows (:func:`fit_joint`)."""
    configs = [c for c, _ in pairs]
    data, _ = split_for_training(df, ensemble_config(configs), features, train.val_windows)
    models = []
    for i, (member_cfg, member_train) in enumerate(pairs):
        keras.utils.set_random_seed(member_train.seed)  # the initial weights follow the seed
        models.append(build_model(member_cfg, name=f"member_{i}", features=features))
    results = fit_joint(models, configs, train, data, ensemble.budget(train), on_epoch)
    members = [Member(c, t, r) for (c, t), r in zip(pairs, results, strict=True)]
    bad = [i for i, r in enumerate(results) if r.diverged]
    if bad:
        raise FitDivergedError(f"training diverged (member {bad[0]})", members[: bad[0] + 1],
                               started)
    return members


def _refit(full: SeriesTable, members: list[Member], train: TrainConfig,
           ensemble: EnsembleConfig | None, features: FeatureSpec | None,
           init_weights: list[np.ndarray] | None, started: float) -> Refit:
    """Retrain the selected networks on all of ``full`` for their selected steps."""
    names: list[str | None] = ([f"member_{i}" for i in range(len(members))] if ensemble
                               else [None])
    try:
        return refit(full, [m.config for m in members], [m.train.seed for m in members],
                     train, [m.result.best_step for m in members], names, features,
                     None if ensemble else init_weights)
    except FloatingPointError as exc:
        raise FitDivergedError(f"refit diverged: {exc}", members, started) from None


def _assemble(df: pd.DataFrame, ensemble: EnsembleConfig, members: list[Member], grid: GridRule,
              features: FeatureSpec | None) -> tuple[keras.Model, ModelConfig, float | None]:
    """Join the members; widen quantile intervals to the wanted coverage on validation windows.

    The factor is fitted on the newest ``ensemble.interval_windows`` windows of each series
    before the holdout (never on the holdout).
    """
    configs, models = [m.config for m in members], [m.result.model for m in members]
    joined_cfg = ensemble_config(configs)
    joined = join_members(models, configs, ensemble.combine, features=features)
    if not joined_cfg.quantiles or ensemble.interval_coverage is None:
        return joined, joined_cfg, None
    data, _ = split_for_training(df, joined_cfg, features, ensemble.interval_windows)
    meta = ModelMeta(config=joined_cfg, grid=grid, features=features)
    raw = Forecaster(joined, meta).predict_inputs(data.val_inputs)
    factor = interval_factor(raw, data.val_target, joined_cfg, ensemble.interval_coverage)
    return (join_members(models, configs, ensemble.combine, factor, features), joined_cfg,
            factor)


__all__ = ["FitDivergedError", "Fitted", "Member", "OnEpoch", "feature_spec", "fit_forecaster",
           "split_for_training"]
