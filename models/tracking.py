"""What runs record in MLflow: params, curves, metrics, plots, dataset, tags.

A training run logs its config, curves and holdout scores; a backtest run (``nearcast
evaluate``) logs what it scored (model, data, folds) and the scores of every fold.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.pandas_dataset import from_pandas
from mlflow.entities import Metric

from nearcast.models.backtest import Backtest
from nearcast.models.config import METRICS, ModelConfig, TrainConfig
from nearcast.models.evaluation import Evaluation
from nearcast.models.plots import backtest_by_fold, error_by_step, forecasts_vs_actual, loss_curves
from nearcast.models.run_info import NOTE, git_commit, nearcast_version, run_link, run_tags
from nearcast.models.training import EpochLog


def log_config(model: ModelConfig, train: TrainConfig, extra: dict[str, Any]) -> None:
    """All config as params (prefixed ``model.``/``train.``) and the resolved config as JSON."""
    params = {f"model.{k}": v for k, v in model.model_dump().items()}
    params |= {f"train.{k}": v for k, v in train.model_dump().items()}
    params |= {f"data.{k}": v for k, v in extra.items()}
    mlflow.log_params({k: str(v) for k, v in params.items()})
    resolved = {"model": model.model_dump(), "train": train.model_dump(), "data": extra}
    mlflow.log_dict(resolved, "config/resolved.json")


def log_curves(epochs: list[EpochLog], started: float) -> None:
    """Per-epoch curves (train/val loss, gradient global norm, learning rate, epoch time).

    Each epoch is stamped with the time it ended (``started`` + its elapsed seconds), so a fit
    logged after it finished shows the curves as they happened.
    """
    for log in epochs:
        mlflow.log_metrics(
            {"train_loss": log.train_loss, "val_loss": log.val_loss, "grad_norm": log.grad_norm,
             "learning_rate": log.learning_rate, "epoch_seconds": log.seconds},
            step=log.epoch, timestamp=int((started + log.elapsed) * 1000),
        )


def log_dataset(df: pd.DataFrame, source: str, name: str, context: str = "training") -> str:
    """Log a frame as an input dataset of the run (``context``); returns its digest."""
    # A free-form label is no resolvable MLflow source; the code source carries it as a tag.
    origin = CodeDatasetSource(tags={"nearcast.data_source": source})
    dataset = from_pandas(df, source=origin, name=name)
    mlflow.log_input(dataset, context=context)
    return str(dataset.digest)


def log_evaluation(ev: Evaluation, epochs: list[EpochLog], histories: list[np.ndarray]) -> None:
    """Final metrics of model and baselines side by side, per-step errors and the plots."""
    mlflow.log_metrics(ev.flat_metrics() | ev.intervals)
    for step, (s, m) in enumerate(zip(ev.by_step["smape"], ev.by_step["mase"], strict=True), 1):
        mlflow.log_metrics({"model_smape_by_step": float(s), "model_mase_by_step": float(m)},
                           step=step)
    table = {"method": list(ev.scores)} | {k: [ev.scores[m][k] for m in ev.scores] for k in METRICS}
    mlflow.log_table(pd.DataFrame(table), "evaluation/scores.json")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        loss_curves(epochs, folder / "loss_curves.png")
        error_by_step(ev, folder / "error_by_horizon_step.png")
        forecasts_vs_actual(ev, histories, folder / "forecast_vs_actual.png")
        (folder / "scores.json").write_text(json.dumps(ev.scores, indent=2))
        mlflow.log_artifacts(str(folder), "plots")


def log_backtest(bt: Backtest, model: ModelConfig, model_uri: str, df: pd.DataFrame,
                 source: str) -> None:
    """A backtest in the active run: params, evaluation dataset, fold curves, scores, plot.

    Aggregate scores are logged as ``<method>_<metric>`` (the names of a training run's holdout
    scores, so runs compare side by side); fold ``k``'s as ``fold_<method>_<metric>`` at step k.
    """
    params = {"model.uri": model_uri, "backtest.folds": len(bt.folds),
              "backtest.step": bt.step, "backtest.horizon": bt.horizon}
    params |= {f"model.{k}": v for k, v in model.model_dump().items()}
    mlflow.log_params({k: str(v) for k, v in params.items()})
    log_dataset(df, source, name=source.rsplit("/", 1)[-1], context="evaluation")
    now = int(time.time() * 1000)
    curves = [Metric(f"fold_{m}_{key}", v, now, k) for k, ev in enumerate(bt.folds, 1)
              for m, s in ev.scores.items() for key, v in s.items()]
    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("log_backtest needs an active run")
    client = mlflow.MlflowClient()
    for lo in range(0, len(curves), _BATCH):  # a year of daily folds: a few writes, not 364
        client.log_batch(run.info.run_id, metrics=curves[lo : lo + _BATCH])
    mlflow.log_metrics(bt.flat_metrics())
    mlflow.log_table(bt.table(), "evaluation/backtest.json")
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.log_artifact(str(backtest_by_fold(bt, Path(tmp) / "backtest_by_fold.png")),
                            "plots")


_BATCH = 1000
"""Metrics per ``log_batch`` call (the tracking API's limit)."""


def log_series_report(table: pd.DataFrame) -> None:
    """The per-series data report (one row per series) as the table ``data/series_report.json``."""
    mlflow.log_table(table, "data/series_report.json")


def score_table(scores: dict[str, dict[str, float]]) -> str:
    """Markdown table of sMAPE / MASE / OWA per method (the model first, then the baselines)."""
    lines = ["| method | sMAPE | MASE | OWA |", "|---|---:|---:|---:|"]
    lines += [f"| {m} | {s['smape']:.2f} | {s['mase']:.3f} | {s['owa']:.3f} |"
              for m, s in scores.items()]
    return "\n".join(lines)


def model_label(config: ModelConfig, members: int = 0) -> str:
    """Short architecture label for run names: ``lstm-2x128``, ``gru-1x64-bi``, ``3 x lstm-…``."""
    label = f"{config.cell}-{config.layers}x{config.units}" + ("-bi" if config.bidirectional
                                                               else "")
    return f"{members} x {label}" if members else label


def data_label(source: str) -> str:
    """Short data label for run names: ``m4_hourly``, ``sales.csv``, a table name."""
    kind, _, rest = source.partition(":")
    if kind == "bundled":
        return rest.split(" ", 1)[0].removesuffix("_train")
    return (rest or source).strip().rsplit("/", 1)[-1].split(" ")[-1] or source


__all__ = ["NOTE", "data_label", "git_commit", "log_backtest", "log_config", "log_dataset",
           "log_curves", "log_evaluation", "log_series_report", "model_label", "nearcast_version",
           "run_link", "run_tags", "score_table"]
