"""``nearcast forecast`` output into the forecast log, chunk by chunk.

Each chunk the batch job writes (``unique_id``, ``ds``, the provenance columns of
:mod:`models.batch` with ``origin``, ``forecast`` and one ``q<q>`` column per quantile) becomes
one :class:`~models.monitoring.log_store.LoggedForecast` per series: source ``"batch"``, one
forecast id per series, the job's id as request id. The monitor then scores batch forecasts
as it scores served ones. A write that fails is counted and the job goes on: the forecasts
were written to the job's own output already.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from nearcast.models.monitoring.log_store import ForecastLog, LoggedForecast
from nearcast.pipelines.schema import DS, UNIQUE_ID

if TYPE_CHECKING:
    from nearcast.models.settings import ForecastLogSettings


def _quantile_columns(frame: pd.DataFrame) -> list[str]:
    out = []
    for name in frame.columns:
        if isinstance(name, str) and name.startswith("q"):
            try:
                float(name[1:])
            except ValueError:
                continue
            out.append(name)
    return out


def _seconds(stamps: pd.Series) -> np.ndarray:
    return np.asarray(pd.DatetimeIndex(pd.to_datetime(stamps, utc=True)).as_unit("s").asi8)


def batch_rows(frame: pd.DataFrame, job_id: str, first: int, logged_at: float
               ) -> list[LoggedForecast]:
    """One log row per series of a batch forecast chunk (ids ``<job_id>-<first + i>``)."""
    if frame.empty:
        return []
    ordered = frame.sort_values([UNIQUE_ID, DS], kind="stable")
    ids = ordered[UNIQUE_ID].astype(str).to_numpy()
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    ends = np.r_[starts[1:], len(ids)]
    stamps, origins = _seconds(ordered[DS]), _seconds(ordered["origin"])
    point = ordered["forecast"].to_numpy(np.float64)
    quantiles = {name[1:]: ordered[name].to_numpy(np.float64)
                 for name in _quantile_columns(ordered)}
    names = ordered["model_name"].astype(str).to_numpy()
    versions = ordered["model_version"].to_numpy(np.int64)
    return [LoggedForecast(
        forecast_id=f"{job_id}-{first + i}", request_id=job_id, model=str(names[a]),
        version=int(versions[a]), series_id=str(ids[a]), source="batch", origin=int(origins[a]),
        timestamps=stamps[a:b].tolist(), point=point[a:b].tolist(),
        quantiles={key: values[a:b].tolist() for key, values in quantiles.items()},
        served=None, logged_at=logged_at) for i, (a, b) in enumerate(zip(starts, ends,
                                                                          strict=True))]


@dataclass
class BatchLog:
    """The hook ``nearcast forecast`` calls with each chunk it wrote.

    Attributes:
        store: the forecast log.
        job_id: the batch job's id (the rows' request id), printed by the CLI.
        logged: series logged so far.
        failed: series whose write failed.
        error: the first write error, one line.
    """

    store: ForecastLog
    job_id: str = field(default_factory=lambda: os.urandom(8).hex())
    logged: int = 0
    failed: int = 0
    error: str | None = None

    def __call__(self, frame: pd.DataFrame) -> None:
        """Log one written chunk (a failed write is counted, not raised)."""
        rows = batch_rows(frame, self.job_id, self.logged + self.failed, time.time())
        try:
            self.store.write_forecasts(rows)
        except Exception as exc:  # the job's own output is written; the log is secondary
            self.failed += len(rows)
            if self.error is None:
                self.error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            return
        self.logged += len(rows)

    def line(self) -> str:
        """What was logged, for the job's output."""
        done = (f"forecast log: job {self.job_id}, {self.logged} series logged to "
                f"{self.store.display_url}")
        if self.failed:
            return f"{done}; {self.failed} series not logged ({self.error})"
        return done


def open_batch_log(settings: ForecastLogSettings | None = None) -> tuple[BatchLog | None, str]:
    """The forecast log hook of a batch job, or None and the line saying why there is none."""
    from nearcast.models.settings import get_forecast_log_settings

    settings = settings or get_forecast_log_settings()
    if not settings.enabled:
        return None, "forecast log: off (NEARCAST_FORECAST_LOG_ENABLED), the batch was not logged"
    url = settings.resolved_url()
    try:
        return BatchLog(ForecastLog(url)), ""
    except Exception as exc:  # the job still runs; its own output is what it is for
        reason = str(exc).splitlines()[0] if str(exc) else ""
        return None, (f"forecast log: {ForecastLog.display(url)} could not be opened "
                      f"({type(exc).__name__}: {reason}), the batch was not logged")


__all__ = ["BatchLog", "batch_rows", "open_batch_log"]
