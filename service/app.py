"""The FastAPI application factory: lifespan loads models, a task follows the alias."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from starlette.middleware import Middleware

from nearcast.models.settings import (
    CalibrationSettings,
    ForecastLogSettings,
    MlflowSettings,
    get_calibration_settings,
    get_forecast_log_settings,
    get_mlflow_settings,
)
from nearcast.service import errors
from nearcast.service.actuals import actuals_model
from nearcast.service.auth import DocsAuthMiddleware
from nearcast.service.batching import MicroBatcher
from nearcast.service.calibrations import calibrating
from nearcast.service.edge import JsonBodyOnly, TrustedHosts, check_bind
from nearcast.service.heap import settle_heap
from nearcast.service.log_lifecycle import forecast_logging
from nearcast.service.logs import install_request_context
from nearcast.service.metrics import Metrics
from nearcast.service.middleware import BodyLimitMiddleware, MetricsMiddleware
from nearcast.service.monitor_routes import router as monitor_router
from nearcast.service.monitor_summaries import SummaryCache
from nearcast.service.routes import router
from nearcast.service.schemas import request_model
from nearcast.service.settings import ApiSettings, get_api_settings
from nearcast.service.state import AppState
from nearcast.service.store import ModelStore
from nearcast.service.timestamps import TIME_RANGE

log = logging.getLogger("nearcast.app")


def _doc_paths() -> list[str]:
    return ["/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"]


async def _follow_alias(store: ModelStore, every: float) -> None:
    """Poll the registry forever; each refresh (load + warm-up) runs in a worker thread."""
    while True:
        await asyncio.sleep(every)
        try:
            await anyio.to_thread.run_sync(store.refresh_all)
            if store.take_loaded():
                settle_heap()
        except Exception:  # never let the follower die
            log.exception("alias refresh failed")


def _batchers(state: AppState, names: list[str]) -> dict[str, MicroBatcher]:
    s = state.settings
    return {name: MicroBatcher(name, s.batch_max_series, s.batch_max_wait_ms / 1000.0,
                               s.queue_max_series, state.metrics) for name in names}


def _lifespan(state: AppState, mlflow_settings: MlflowSettings,
              log_settings: ForecastLogSettings,
              calibration_settings: CalibrationSettings) -> Callable[[FastAPI], Any]:
    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        api = state.settings
        mode = check_bind(api)  # also here: uvicorn may run create_app without `nearcast serve`
        log.log(logging.WARNING if not api.auth_enabled else logging.INFO, mode,
                extra={"auth": "keys" if api.auth_enabled else "off", "host": api.host,
                       "allowed_hosts": api.trusted_hosts()})
        client = mlflow_settings.connect()
        store = ModelStore(client, api.served_models(), api.alias, api.xla,
                           tuple(api.xla_batch_sizes), api.batch_max_series,
                           retry_after=max(1, math.ceil(api.poll_seconds)))
        await anyio.to_thread.run_sync(store.refresh_all)  # load + warm before ready
        store.take_loaded()
        settle_heap()  # also freezes the start-up objects when no model loaded yet
        state.batchers = _batchers(state, store.names)
        for batcher in state.batchers.values():
            batcher.start()
        state.metrics.watch(store, lambda: state.batchers)
        # The log opens before the server turns ready; it is drained after the last request.
        async with forecast_logging(state, log_settings, mlflow_settings.home):
            state.store = store
            task = asyncio.create_task(_follow_alias(store, api.poll_seconds))
            try:
                async with calibrating(state, calibration_settings):  # reads the open log
                    yield
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                for batcher in state.batchers.values():
                    await batcher.close()

    return lifespan


def create_app(
    api: ApiSettings | None = None, mlflow_settings: MlflowSettings | None = None,
    log_settings: ForecastLogSettings | None = None,
    calibration_settings: CalibrationSettings | None = None,
) -> FastAPI:
    """Build the API; models load in the lifespan, before readiness turns true."""
    api = api or get_api_settings()
    state = AppState(settings=api, metrics=Metrics())
    state.metrics.watch_monitor(SummaryCache(lambda: state.forecast_log,
                                             api.served_models()).get)
    app = FastAPI(
        title="nearcast", version="0.1.0",
        description="Forecasts from the registered model that holds the alias "
        f"'{api.alias}'; the server follows the alias without a restart. Auth: "
        "'Authorization: Bearer <key>' when keys are configured (off by default).",
        lifespan=_lifespan(state, mlflow_settings or get_mlflow_settings(),
                           log_settings or get_forecast_log_settings(),
                           calibration_settings or get_calibration_settings()),
        middleware=[Middleware(MetricsMiddleware, metrics=state.metrics),  # type: ignore[arg-type]
                    Middleware(TrustedHosts, allowed_hosts=api.trusted_hosts()),  # type: ignore[arg-type]
                    Middleware(DocsAuthMiddleware, settings=api,  # type: ignore[arg-type]
                               paths=_doc_paths()),
                    Middleware(BodyLimitMiddleware, max_bytes=api.max_body_bytes),  # type: ignore[arg-type]
                    Middleware(JsonBodyOnly)],  # type: ignore[arg-type]
    )
    app.state.nearcast = state
    install_request_context(app, api.access_log)  # outermost: 500s carry the id too
    app.include_router(router)
    app.include_router(monitor_router)
    errors.install(app)
    app.openapi = _openapi(app, api)  # type: ignore[method-assign]
    return app


def _openapi(app: FastAPI, api: ApiSettings) -> Callable[[], dict[str, Any]]:
    """OpenAPI with the forecast body (parsed by the route itself) and the configured limits."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version,
                                 description=app.description, routes=app.routes)
            comps = schema.setdefault("components", {}).setdefault("schemas", {})
            model = request_model(api.max_series, api.max_points)  # the configured caps
            body = model.model_json_schema(ref_template="#/components/schemas/{model}")
            comps.update(body.pop("$defs", {}))
            comps["ForecastRequest"] = body
            body["description"] = (
                f"{body.get('description', '')} Limits of this server: at most "
                f"{api.max_body_bytes} bytes of JSON (413 beyond), {api.max_series} series of at "
                f"most {api.max_points} values; timestamps spanning at most "
                f"{api.max_span_windows} times the model's input window; every time, given or "
                f"forecast, {TIME_RANGE}. At most {api.max_concurrent_requests} forecast "
                "requests are received or prepared at once (503 with Retry-After beyond).")
            actuals = actuals_model(api.max_series, api.max_points).model_json_schema(
                ref_template="#/components/schemas/{model}")
            comps.update(actuals.pop("$defs", {}))
            comps["ActualsRequest"] = actuals
            _document_auth(schema, api)
            app.openapi_schema = schema
        return app.openapi_schema

    return build


def _document_auth(schema: dict[str, Any], api: ApiSettings) -> None:
    """Declare the bearer requirement on /v1 routes, only when this server has keys."""
    if not api.auth_enabled:
        return
    schema["components"]["securitySchemes"] = {"bearer": {
        "type": "http", "scheme": "bearer",
        "description": "API key (NEARCAST_API_KEYS / NEARCAST_ADMIN_KEYS). Reload needs an "
        "admin key."}}
    for path, operations in schema["paths"].items():
        if path.startswith("/v1/"):
            for operation in operations.values():
                operation["security"] = [{"bearer": []}]


__all__ = ["create_app"]
