"""Typed application state (one object on ``app.state.nearcast``) and its dependency."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request

from nearcast.models.monitoring.log_store import ForecastLog
from nearcast.service.batching import MicroBatcher
from nearcast.service.calibrations import Calibrations
from nearcast.service.errors import ApiError
from nearcast.service.forecast_log import LogWriter
from nearcast.service.metrics import Metrics
from nearcast.service.settings import ApiSettings
from nearcast.service.store import ModelStore


@dataclass
class AppState:
    """Everything the routes use; ``store`` and ``batchers`` appear in the lifespan."""

    settings: ApiSettings
    metrics: Metrics
    store: ModelStore | None = None
    batchers: dict[str, MicroBatcher] = field(default_factory=dict)
    log_writer: LogWriter | None = None
    forecast_log: ForecastLog | None = None
    calibration: Calibrations | None = None
    forecast_log_problem: str = "the forecast log is disabled (NEARCAST_FORECAST_LOG_ENABLED)"

    def require_store(self) -> ModelStore:
        """The model store, or 503 while the app is starting."""
        if self.store is None:
            raise ApiError(503, "server", "starting up: no model store yet",
                           headers={"Retry-After": str(self.settings.retry_after_seconds)})
        return self.store

    def require_forecast_log(self) -> ForecastLog:
        """The forecast log, or 503 naming why there is none (disabled, or not reachable)."""
        if self.forecast_log is None:
            raise ApiError(503, "server", self.forecast_log_problem)
        return self.forecast_log


async def get_state(request: Request) -> AppState:
    """The app's state (async: no thread hop per request)."""
    state: AppState = request.app.state.nearcast
    return state


State = Annotated[AppState, Depends(get_state)]

__all__ = ["AppState", "State", "get_state"]
