"""nearcast on the EPF protocol: train once on the training part, forecast each validation day.

The job file (``configs/epf-<market>.yaml``) gives the model and which covariates it reads;
its ``data:`` covariates, in declaration order, are the market's two day-ahead drivers
(``x1``, ``x2`` of :func:`benchmarks.epf_protocol.load_market`). Every validation day D is one
window of the trained model: prices up to D-1 23:00 in the history, the drivers (and the
calendar) of day D over the horizon, gathered from one table of the whole frame and forecast
in one batched call. Nothing of day D's prices enters (the window ends at D 00:00).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

HOURS = 24


@dataclass(frozen=True)
class NearcastResult:
    """Forecasts ``(days, 24)`` and where the time went."""

    forecast: np.ndarray
    train_seconds: float
    forecast_seconds: float
    epochs: int
    best_epoch: int


def long_frame(frame: pd.DataFrame, market: str, names: list[str]) -> pd.DataFrame:
    """The protocol frame (``ds``, ``y``, ``x1``, ``x2``) as a long frame with the job's names."""
    out = pd.DataFrame({"unique_id": market, "ds": pd.to_datetime(frame["ds"], utc=True),
                        "y": frame["y"].to_numpy(np.float64)})
    for name, column in zip(names, ("x1", "x2"), strict=False):
        out[name] = frame[column].to_numpy(np.float64)
    return out


def run(config_path: Path, market: str, train: pd.DataFrame, val: pd.DataFrame,
        quick: bool) -> NearcastResult:
    """Train the job's model on ``train`` (once), forecast every day of ``val``."""
    from nearcast.models.estimator import Nearcast
    from nearcast.models.jobconfig import JobConfig
    from nearcast.pipelines.windows import SeriesTable, cut_index, gather_batch

    job = JobConfig.from_yaml(config_path)
    if quick:
        job = job.model_copy(update={"train": job.train.model_copy(
            update={"epochs": 3, "steps_per_epoch": 30})})
    job = job.model_copy(update={"train": job.train.model_copy(update={"verbose": False})})
    names = list(job.data.covariates)
    model = Nearcast.from_job(job)
    t0 = time.perf_counter()
    model.fit(long_frame(train, market, names), source=f"epf:{market}")
    train_seconds = time.perf_counter() - t0
    fitted = model.fitted
    assert fitted is not None
    forecaster = model.forecaster
    whole = long_frame(pd.concat([train, val], ignore_index=True), market, names)
    t1 = time.perf_counter()
    table = SeriesTable.from_long(whole, forecaster.meta.features)
    spec = forecaster.config.window_spec()
    ends = np.arange(len(train), len(whole), HOURS, dtype=np.int64)
    inputs, _ = gather_batch(table, cut_index(table, ends, spec), spec)
    point = forecaster.predict_inputs(inputs)[:, :HOURS, forecaster.config.point_index]
    result = fitted.members[0].result
    return NearcastResult(point.astype(np.float64), train_seconds, time.perf_counter() - t1,
                          len(result.epochs), result.best_epoch)


__all__ = ["NearcastResult", "long_frame", "run"]
