"""Interval calibration in the API: the current factors of each served version, kept fresh.

:class:`Calibrations` holds one :class:`~models.monitoring.calibration.Calibration` per served
(model, version), computed by :func:`~models.monitoring.calibration.factors` from the forecast
log's forecasts matched with actuals (:meth:`ForecastLog.matched`). They are computed before the
server turns ready; a background task refreshes them every ``refresh_seconds`` in a worker
thread and as soon as the alias brings a new version, and ``POST /v1/actuals`` refreshes its
model right after storing new values. A refresh reads only the forecasts logged since the oldest one
its windows hold (:attr:`Calibration.window_start`) once every window is full.

Requests read the current factors without a lock (a refresh swaps the whole mapping). A
version without factors yet, or whose factors are all 1, is served raw, bit for bit; with
calibration switched off (``NEARCAST_CALIBRATION_ENABLED=false``) or no forecast log, every
version is. Each API worker computes its own factors from the shared log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Collection
from typing import TYPE_CHECKING, Any

import anyio

from nearcast.models.monitoring.calibration import (
    METHOD,
    Calibration,
    factors,
    interval_pairs,
)
from nearcast.models.monitoring.log_store import ForecastLog
from nearcast.models.settings import CalibrationSettings
from nearcast.service.store import LoadedModel, ModelStore

if TYPE_CHECKING:
    from nearcast.service.state import AppState

log = logging.getLogger("nearcast.calibration")

Key = tuple[str, int]


class Calibrations:
    """The factors of the served versions.

    Args:
        settings: window, minimum points, refresh period, on/off.
        forecast_log: where matched forecasts come from (None: nothing to learn from).
    """

    def __init__(self, settings: CalibrationSettings, forecast_log: ForecastLog | None) -> None:
        self.settings, self.forecast_log = settings, forecast_log
        self._current: dict[Key, Calibration] = {}
        self._lock = threading.Lock()  # one refresh at a time (the task and /v1/actuals)

    @property
    def enabled(self) -> bool:
        """Switched on, with a forecast log to read the errors from."""
        return self.settings.enabled and self.forecast_log is not None

    def get(self, served: LoadedModel) -> Calibration | None:
        """The factors to serve ``served`` with (None: serve raw)."""
        if not self.enabled:
            return None
        return self._current.get((served.name, int(served.ref.version)))

    def current(self) -> dict[Key, Calibration]:
        """Every version's factors (a snapshot)."""
        return dict(self._current)

    def refresh(self, store: ModelStore, names: Collection[str] | None = None) -> None:
        """Recompute the factors of the served versions (of ``names`` only, when given).

        A version whose matched forecasts cannot be read keeps its factors (logged); versions
        no longer served are forgotten.
        """
        if not self.enabled or self.forecast_log is None:
            return
        with self._lock:
            served = _served(store)
            fresh = {key: cal for key, cal in self._current.items() if key in served}
            for key, model in served.items():
                if names is not None and key[0] not in names:
                    continue
                try:
                    found = self._compute(model, fresh.get(key))
                except Exception:  # keep serving the last factors
                    log.exception("calibration refresh failed", extra={
                        "model": key[0], "version": key[1]})
                    continue
                if found is not None:
                    fresh[key] = found
            self._current = fresh

    def _compute(self, model: LoadedModel, previous: Calibration | None) -> Calibration | None:
        config = model.forecaster.config
        if not interval_pairs(config.quantiles) or self.forecast_log is None:
            return None  # a point model has no interval to calibrate
        since = previous.window_start if previous is not None else None
        matched = self.forecast_log.matched(model.name, version=int(model.ref.version),
                                            since=since)
        return factors(matched, config.horizon, config.quantiles, self.settings.window,
                       self.settings.min_points)

    async def refresh_now(self, store: ModelStore, names: Collection[str] | None = None) -> None:
        """:meth:`refresh` in a worker thread; never raises (errors are logged)."""
        try:
            await anyio.to_thread.run_sync(self.refresh, store, names)
        except Exception:
            log.exception("calibration refresh failed")

    def info(self, served: LoadedModel | None) -> dict[str, Any]:
        """What ``/v1/models`` shows of a model's calibration (``intervals`` empty: raw)."""
        found = self.get(served) if served is not None else None
        body = found.to_json() if found is not None else {"intervals": {}, "computed_at": None}
        return body | {"enabled": self.enabled, "method": METHOD}


WATCH_SECONDS = 0.5
"""How often the refresh task looks for a newly served version (it is calibrated at once)."""


def _served(store: ModelStore) -> dict[Key, LoadedModel]:
    """The served versions by (model, version)."""
    return {(name, int(m.ref.version)): m for name, m in list(store.models.items())}


async def _refresh_forever(state: AppState, calibrations: Calibrations, every: float) -> None:
    """Refresh every ``every`` seconds, and as soon as the set of served versions changes.

    The first refresh ran before the server turned ready (:func:`calibrating`), so a version
    served from start-up is calibrated from its first forecast; one that the alias brings
    later is calibrated within :data:`WATCH_SECONDS` of being swapped in.
    """
    loop = asyncio.get_running_loop()
    known = set(_served(state.store)) if state.store is not None else set()
    due = loop.time() + every
    while True:
        await asyncio.sleep(min(WATCH_SECONDS, every))
        store = state.store
        if store is None:
            continue
        keys = set(_served(store))
        if keys != known or loop.time() >= due:
            await calibrations.refresh_now(store)
            known, due = keys, loop.time() + every


@contextlib.asynccontextmanager
async def calibrating(state: AppState, settings: CalibrationSettings) -> AsyncIterator[None]:
    """Put :class:`Calibrations` on ``state`` and keep them fresh for the ``with`` block.

    Enter it once the forecast log is open (``state.forecast_log``).
    """
    calibrations = Calibrations(settings, state.forecast_log)
    state.calibration = calibrations
    state.metrics.watch_calibration(calibrations.current)
    if not calibrations.enabled:
        yield
        return
    if state.store is not None:  # before the server turns ready: no raw first forecasts
        await calibrations.refresh_now(state.store)
    task = asyncio.create_task(_refresh_forever(state, calibrations, settings.refresh_seconds))
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


__all__ = ["Calibrations", "calibrating"]
