"""One training run end to end: windows -> fit -> holdout scores -> MLflow run -> registry."""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd

from models import registry, tracking
from models.architectures import build_model
from models.artifact import log_forecaster
from models.config import ModelConfig, TrainConfig
from models.evaluation import Evaluation, holdout_evaluate
from models.forecaster import Forecaster, ModelMeta
from models.settings import MlflowSettings
from models.training import TrainData, TrainingDivergedError, TrainResult, fit
from pipelines.schema import UNIQUE_ID
from pipelines.windows import SeriesTable, gather_windows, last_windows


@dataclass(frozen=True)
class JobResult:
    """What a training run produced."""

    run_id: str
    model_uri: str
    version: registry.VersionRef | None
    evaluation: Evaluation
    training: TrainResult
    forecaster: Forecaster


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


def train_and_register(
    df: pd.DataFrame,
    model_cfg: ModelConfig,
    train_cfg: TrainConfig,
    settings: MlflowSettings,
    source: str,
    register: bool = True,
    gap_policy: str = "linear",
) -> JobResult:
    """Train on a regular long frame, record the run and register the model.

    Raises:
        TrainingDivergedError: the loss went NaN/inf; the run is marked FAILED and nothing is
            registered.
    """
    client = settings.connect()
    experiment_id = settings.ensure_experiment(client)
    data, full = split_for_training(df, model_cfg)
    with mlflow.start_run(experiment_id=experiment_id, tags=tracking.run_tags(source)) as run:
        tracking.log_config(model_cfg, train_cfg, {"source": source, "series": len(full.ids),
                                                   "points": len(full.values)})
        digest = tracking.log_dataset(df, source, name=source.rsplit("/", 1)[-1])
        result = fit(build_model(model_cfg), model_cfg, train_cfg, data, tracking.log_epoch)
        mlflow.set_tags({"nearcast.stop_reason": result.stop_reason,
                         "nearcast.best_epoch": str(result.best_epoch)})
        if result.diverged:
            mlflow.end_run(status="FAILED")
            raise TrainingDivergedError(f"training diverged (run {run.info.run_id})")
        meta = ModelMeta(config=model_cfg, gap_policy=gap_policy, data_digest=digest,
                         data_source=source, nearcast_version=tracking.nearcast_version(),
                         train_series=len(full.ids))
        forecaster = Forecaster(result.model, meta)
        evaluation = holdout_evaluate(forecaster, full, model_cfg.horizon)
        forecaster.meta.metrics = evaluation.scores["model"]
        mlflow.log_metric("train_seconds", result.seconds)
        histories = [full.series(i)[: -model_cfg.horizon] for i in range(len(full.ids))]
        tracking.log_evaluation(evaluation, result.epochs, histories)
        info = log_forecaster(forecaster)
        version = None
        if register:
            version = registry.register(client, settings.model_name, info.model_uri,
                                        run.info.run_id, {"data_digest": digest})
        return JobResult(run.info.run_id, info.model_uri, version, evaluation, result, forecaster)


__all__ = ["JobResult", "split_for_training", "train_and_register"]
