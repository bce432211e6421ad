"""The training job: windows -> fit (one model or members) -> scores -> MLflow -> registry."""

from __future__ import annotations

from dataclasses import dataclass, field

import keras
import mlflow
import numpy as np
import pandas as pd

from nearcast.models import load_check, registry, tracking
from nearcast.models.architectures import build_model
from nearcast.models.artifact import log_forecaster
from nearcast.models.config import EnsembleConfig, ModelConfig, TrainConfig
from nearcast.models.ensemble import ensemble_config, interval_factor, join_members
from nearcast.models.evaluation import Evaluation, holdout_evaluate
from nearcast.models.forecaster import Forecaster, ModelMeta
from nearcast.models.settings import MlflowSettings
from nearcast.models.training import TrainData, TrainingDivergedError, TrainResult, fit
from nearcast.pipelines.grid import GridRule
from nearcast.pipelines.schema import UNIQUE_ID
from nearcast.pipelines.windows import SeriesTable, gather_windows, last_windows


@dataclass(frozen=True)
class JobResult:
    """What a training run produced (``training`` is the first member's for ensembles)."""

    run_id: str
    model_uri: str
    version: registry.VersionRef | None
    evaluation: Evaluation
    training: TrainResult
    forecaster: Forecaster
    members: list[TrainResult] = field(default_factory=list)


def split_for_training(df: pd.DataFrame, config: ModelConfig) -> tuple[TrainData, SeriesTable]:
    """Hold out the last ``horizon`` points per series; early-stop on the newest windows before.

    Scoring uses the held-out points only, so early stopping never sees them.

    Returns:
        ``(train data, full table)``; the full table is what holdout scoring uses.
    """
    full = SeriesTable.from_long(df)
    train = SeriesTable.from_long(df.groupby(UNIQUE_ID, sort=False).head(-config.horizon))
    spec = config.window_spec()
    inputs, target = gather_windows(train.values, last_windows(train, spec), spec)
    data = TrainData(train, {k: np.asarray(v) for k, v in inputs.items()}, np.asarray(target))
    return data, full


def _fit_one(df: pd.DataFrame, config: ModelConfig, train: TrainConfig,
             init_weights: list[np.ndarray] | None, name: str | None = None) -> TrainResult:
    """Seeded build (optionally warm-started) and fit; raises on divergence."""
    data, _ = split_for_training(df, config)
    keras.utils.set_random_seed(train.seed)  # the initial weights follow the seed too
    model = build_model(config, name=name)
    if init_weights is not None:
        model.set_weights(init_weights)  # ValueError names the shape mismatch
    result = fit(model, config, train, data, tracking.log_epoch)
    mlflow.set_tags({"nearcast.stop_reason": result.stop_reason,
                     "nearcast.best_epoch": str(result.best_epoch)})
    if result.diverged:
        run = mlflow.active_run()
        raise TrainingDivergedError(f"training diverged (run {run.info.run_id if run else '?'})")
    return result


def _train_members(df: pd.DataFrame, pairs: list[tuple[ModelConfig, TrainConfig]],
                   full: SeriesTable, grid: GridRule) -> list[TrainResult]:
    """Train each ensemble member in a child run that records its config, curves and scores."""
    results = []
    parent = mlflow.active_run()
    experiment = parent.info.experiment_id if parent else None
    for i, (config, train) in enumerate(pairs):
        with mlflow.start_run(run_name=f"member-{i}", nested=True, experiment_id=experiment):
            tracking.log_config(config, train, {"member": i})
            result = _fit_one(df, config, train, None, name=f"member_{i}")
            member = Forecaster(result.model, ModelMeta(config=config, grid=grid))
            scores = holdout_evaluate(member, full, config.horizon).scores["model"]
            mlflow.log_metrics({f"model_{k}": v for k, v in scores.items()})
        mlflow.log_metrics({f"member{i}_{k}": v for k, v in scores.items()})
        results.append(result)
    return results


def _assemble(df: pd.DataFrame, ensemble: EnsembleConfig,
              pairs: list[tuple[ModelConfig, TrainConfig]],
              results: list[TrainResult], grid: GridRule) -> tuple[keras.Model, ModelConfig]:
    """Join the members; widen quantile intervals to the wanted coverage on validation windows."""
    configs = [c for c, _ in pairs]
    joined_cfg = ensemble_config(configs)
    joined = join_members([r.model for r in results], configs, ensemble.combine)
    if not joined_cfg.quantiles or ensemble.interval_coverage is None:
        return joined, joined_cfg
    data, _ = split_for_training(df, joined_cfg)
    raw = Forecaster(joined, ModelMeta(config=joined_cfg, grid=grid)).predict_arrays(
        data.val_inputs["history"], data.val_inputs["mask"])
    factor = interval_factor(raw, data.val_target, joined_cfg, ensemble.interval_coverage)
    mlflow.log_metric("interval_factor", factor)
    return join_members([r.model for r in results], configs, ensemble.combine, factor), joined_cfg


def train_and_register(
    df: pd.DataFrame,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    settings: MlflowSettings,
    source: str,
    register: bool = True,
    grid: GridRule | None = None,
    init_weights: list[np.ndarray] | None = None,
    tags: dict[str, str] | None = None,
    ensemble: EnsembleConfig | None = None,
    run_name: str | None = None,
    data_report: pd.DataFrame | None = None,
) -> JobResult:
    """Train on a regular long frame, record the run and register the model.

    With ``ensemble``, each member trains in a child run and the members are joined into ONE
    model (median or mean) that is scored, logged and registered like a single one.
    ``init_weights`` (e.g. the champion's, for a warm start; single models only) replace the
    random initial weights; ``tags`` are added to the run's tags. ``grid`` is the rule ``df``
    is on (:attr:`pipelines.dataset.LoadedData.grid`; default: the model's frequency with the
    default aggregation and gap policy): the model keeps it, and its frequency is the model's.
    ``run_name`` defaults to ``train <architecture> <data>``; ``data_report`` (one row per
    series, :meth:`pipelines.prepare.Regularized.series_report`) is logged as the table
    ``data/series_report.json``. The run's and the version's descriptions carry the scores.

    Raises:
        ValueError: ``model_cfg`` names another frequency than ``grid`` (before any run).
        TrainingDivergedError: the loss went NaN/inf; the run is marked FAILED and nothing is
            registered.
        LoadCheckError: the registered version does not load back from the registry in a fresh
            process (:mod:`models.load_check`); it stays registered without an alias (tagged
            ``nearcast.load_check=failed``) and the run is marked FAILED.
    """
    grid = (grid or GridRule(freq=model_cfg.freq)).rule()
    model_cfg = model_cfg.on_grid(grid)
    client = settings.connect()
    experiment_id = settings.ensure_experiment(client)
    full = SeriesTable.from_long(df)
    run_tags = tracking.run_tags(source) | (tags or {})
    members = len(ensemble.member_configs(model_cfg, train_cfg)) if ensemble else 0
    run_name = run_name or (f"train {tracking.model_label(model_cfg, members)} "
                            f"{tracking.data_label(source)}")
    with mlflow.start_run(experiment_id=experiment_id, tags=run_tags, run_name=run_name) as run:
        if data_report is not None:
            tracking.log_series_report(data_report)
        tracking.log_config(model_cfg, train_cfg, {"source": source, "series": len(full.ids),
                                                   "points": len(full.values)}
                            | grid.model_dump())
        digest = tracking.log_dataset(df, source, name=source.rsplit("/", 1)[-1])
        try:
            if ensemble is None:
                results = [_fit_one(df, model_cfg, train_cfg, init_weights)]
                model, config = results[0].model, model_cfg
            else:
                mlflow.log_dict(ensemble.model_dump(), "config/ensemble.json")
                pairs = ensemble.member_configs(model_cfg, train_cfg)
                results = _train_members(df, pairs, full, grid)
                model, config = _assemble(df, ensemble, pairs, results, grid)
        except TrainingDivergedError:
            mlflow.end_run(status="FAILED")
            raise
        meta = ModelMeta(config=config, grid=grid, data_digest=digest,
                         data_source=source, nearcast_version=tracking.nearcast_version(),
                         train_series=len(full.ids))
        forecaster = Forecaster(model, meta)
        evaluation = holdout_evaluate(forecaster, full, config.horizon)
        forecaster.meta.metrics = evaluation.scores["model"]
        mlflow.log_metric("train_seconds", sum(r.seconds for r in results))
        histories = [full.series(i)[: -config.horizon] for i in range(len(full.ids))]
        tracking.log_evaluation(evaluation, results[0].epochs, histories)
        scores = tracking.score_table(evaluation.scores)
        note = _run_note(run_name, source, full, grid, scores)
        if data_report is not None:
            note += "\n\nPer-series data report: artifact `data/series_report.json`."
        mlflow.set_tag(tracking.NOTE, note)
        info = log_forecaster(forecaster)
        version = None
        if register:  # alias challenger only once the version loads back (a fresh process)
            trained_by = tracking.run_link(experiment_id, run.info.run_id)
            version = registry.register(
                client, settings.model_name, info.model_uri, run.info.run_id,
                {"data_digest": digest},
                verify=load_check.verifier(settings, client, forecaster),
                description=f"### Holdout scores (last {config.horizon} steps)\n\n{scores}\n\n"
                f"### Aliases\n\n- **challenger**: trained by run {trained_by} "
                f"({run_name})")
        return JobResult(run.info.run_id, info.model_uri, version, evaluation, results[0],
                         forecaster, results)


def _run_note(run_name: str, source: str, full: SeriesTable, grid: GridRule, scores: str) -> str:
    """The run's markdown description: the score table first, then what was trained on what."""
    rule = ", ".join(f"{k} `{v}`" for k, v in grid.model_dump().items())
    return (f"Holdout scores against the baselines (**{run_name}**):\n\n{scores}\n\n"
            f"Data: `{source}`, {len(full.ids)} series, {len(full.values)} points on the grid "
            f"({rule}).")


__all__ = ["JobResult", "split_for_training", "train_and_register"]
