"""Served forecasts to the forecast log, off the request path.

A request hands :meth:`LogWriter.offer` one :class:`LogItem`: references to what it already
holds (series ids, each series' last history time, the output array), built on the event loop
in microseconds. One background thread turns the queued items into
:class:`~models.monitoring.log_store.LoggedForecast` rows (timestamps, JSON) and writes them in
batches every ``flush_seconds``, or sooner once ``batch_series`` are waiting.

The queue is bounded in series: an item that would push it past ``max_series`` is dropped and
counted (an empty queue takes any one item), so a slow or failing store never blocks nor slows
a request. A write that fails is counted and logged, never raised into a request. ``close``
stops taking items and drains what is queued.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from nearcast.models.monitoring.log_store import ForecastLog, LoggedForecast
from nearcast.models.settings import ForecastLogSettings
from nearcast.service.logs import REQUEST_ID
from nearcast.service.metrics import Metrics
from nearcast.service.preparation import fixed_step, future_timestamps
from nearcast.service.store import LoadedModel

log = logging.getLogger("nearcast.forecast_log")

_YIELD_SERIES = 16  # the writer pauses this often so a request never waits out the GIL


@dataclass(frozen=True, slots=True)
class LogItem:
    """One served request's forecasts, as cheap to build as possible.

    Attributes:
        forecast_id: made by the server, unique per served request.
        request_id: the request's id.
        served_model: the model version that answered.
        series_ids: the request's series ids, shape ``(B,)``.
        origins: each series' last history time (UTC), shape ``(B,)``.
        values: the model's raw outputs over the served horizon ``(B, H, K)``.
        served: the outputs as served after calibration ``(B, H, K)``; None when served raw.
        source: ``"api"``.
    """

    forecast_id: str
    request_id: str | None
    served_model: LoadedModel
    series_ids: Sequence[str]
    origins: Sequence[datetime]
    values: np.ndarray
    served: np.ndarray | None = None
    source: str = "api"

    @property
    def n(self) -> int:
        """Series in the item."""
        return len(self.series_ids)


def log_item(served_model: LoadedModel, series_ids: Sequence[str], origins: Sequence[datetime],
             values: np.ndarray, horizon: int, served: np.ndarray | None = None) -> LogItem:
    """The item of one answered request (a new forecast id, the current request id)."""
    return LogItem(os.urandom(8).hex(), REQUEST_ID.get(), served_model, series_ids, origins,
                   values[:, :horizon, :], None if served is None else served[:, :horizon, :])


def logged_rows(item: LogItem, logged_at: float) -> list[LoggedForecast]:
    """The log rows of ``item``: one per series (runs in the writer thread)."""
    forecaster = item.served_model.forecaster
    config = forecaster.config
    horizon = item.values.shape[1]
    step = fixed_step(config.freq)
    origins = np.asarray([int(o.timestamp()) for o in item.origins], dtype=np.int64)
    if step is not None:
        stamps = origins[:, None] + int(step.total_seconds()) * np.arange(1, horizon + 1)
    else:
        stamps = np.asarray([[int(t.timestamp()) for t in future_timestamps(forecaster, o, horizon)]
                             for o in item.origins], dtype=np.int64).reshape(-1, horizon)
    quantiles = [(name[1:], k) for k, name in enumerate(config.output_names)
                 if name.startswith("q")]
    raw = item.values.astype(np.float64)
    served = None if item.served is None else item.served.astype(np.float64)
    point = raw[:, :, config.point_index]
    name, version = item.served_model.name, int(item.served_model.ref.version)
    return [LoggedForecast(
        forecast_id=item.forecast_id, request_id=item.request_id, model=name, version=version,
        series_id=str(series_id), source=item.source, origin=int(origins[i]),
        timestamps=stamps[i].tolist(), point=point[i].tolist(),
        quantiles={key: raw[i, :, k].tolist() for key, k in quantiles},
        served=None if served is None else {key: served[i, :, k].tolist()
                                            for key, k in quantiles},
        logged_at=logged_at) for i, series_id in enumerate(item.series_ids)]


class LogWriter:
    """A bounded queue of served forecasts and the thread that writes them to the log.

    Args:
        store: the forecast log.
        max_series: series the queue may hold.
        batch_series: series per write (the thread also wakes once this many wait).
        flush_seconds: the thread's pause between flushes.
        metrics: counters to keep (written, dropped, failed), if any.
    """

    def __init__(self, store: ForecastLog, *, max_series: int, batch_series: int,
                 flush_seconds: float, metrics: Metrics | None = None) -> None:
        self.store, self.metrics = store, metrics
        self.max_series, self.batch_series = max_series, batch_series
        self.flush_seconds = flush_seconds
        self.written = self.dropped = self.failed = 0
        self._items: deque[LogItem] = deque()
        self._queued = 0
        self._closing = False
        self._wake = threading.Condition(threading.Lock())
        self._thread = threading.Thread(target=self._run, name="nearcast-forecast-log",
                                        daemon=True)

    @classmethod
    def from_settings(cls, store: ForecastLog, settings: ForecastLogSettings,
                      metrics: Metrics | None = None) -> LogWriter:
        """A writer sized by the forecast log settings."""
        return cls(store, max_series=settings.queue_max_series,
                   batch_series=settings.batch_series, flush_seconds=settings.flush_seconds,
                   metrics=metrics)

    @property
    def queued(self) -> int:
        """Series waiting in the queue."""
        return self._queued

    def start(self) -> None:
        """Start the writer thread."""
        self._thread.start()

    def offer(self, item: LogItem) -> bool:
        """Queue ``item`` unless the queue is full or closed (then count it dropped); no wait."""
        with self._wake:
            full = self._queued > 0 and self._queued + item.n > self.max_series
            if not (full or self._closing):
                self._items.append(item)
                self._queued += item.n
                if self._queued >= self.batch_series:
                    self._wake.notify()
                return True
            self.dropped += item.n
        if self.metrics is not None:
            self.metrics.log_dropped.inc(item.n)
        return False

    def close(self, timeout: float = 30.0) -> bool:
        """Stop taking items, write what is queued; True when drained within ``timeout``."""
        with self._wake:
            self._closing = True
            self._wake.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive() and not self._items

    def _run(self) -> None:
        while True:
            with self._wake:
                if not self._closing and self._queued < self.batch_series:
                    self._wake.wait(self.flush_seconds)
                closing = self._closing
            while self._flush_one():
                pass
            if closing:
                return

    def _take(self) -> list[LogItem]:
        """The oldest items, up to ``batch_series`` series (at least one item)."""
        taken: list[LogItem] = []
        with self._wake:
            series = 0
            while self._items and (not taken or series + self._items[0].n <= self.batch_series):
                item = self._items.popleft()
                taken.append(item)
                series += item.n
            self._queued -= series
        return taken

    def _flush_one(self) -> bool:
        """Write one batch; False when the queue was empty."""
        items = self._take()
        if not items:
            return False
        try:
            now, rows = time.time(), []
            for item in items:
                rows += logged_rows(item, now)
                if len(rows) % _YIELD_SERIES < item.n:
                    time.sleep(0)  # hand the GIL back to the event loop now and then
        except Exception:  # counted and logged; a request never sees it
            self._failed(sum(item.n for item in items))
            return True
        for start in range(0, len(rows), self.batch_series):
            chunk = rows[start:start + self.batch_series]
            try:
                self.store.write_forecasts(chunk)
            except Exception:
                self._failed(len(chunk))
                continue
            self.written += len(chunk)
            if self.metrics is not None:
                self.metrics.log_written.inc(len(chunk))
        return True

    def _failed(self, series: int) -> None:
        """Count and log ``series`` forecasts that could not be logged (in an except block)."""
        self.failed += series
        if self.metrics is not None:
            self.metrics.log_failed.inc(series)
        log.exception("forecast log write failed; %d series forecasts not logged", series,
                      extra={"log_url": self.store.display_url})


__all__ = ["LogItem", "LogWriter", "log_item", "logged_rows"]
