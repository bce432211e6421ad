"""Thin HTTP routes: parse, delegate, answer."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import anyio
from fastapi import APIRouter, Depends, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse

from nearcast.service.auth import check_key, require_admin, require_key
from nearcast.service.calibrations import Calibrations
from nearcast.service.errors import ApiError
from nearcast.service.forecasting import run_forecast
from nearcast.service.heap import settle_heap
from nearcast.service.model_schemas import ModelInfo, ReloadResult
from nearcast.service.schemas import ErrorBody, ForecastResponse
from nearcast.service.state import AppState, State
from nearcast.service.store import ModelStore

router = APIRouter()

_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text} for code, text in [
        (401, "Missing or unknown API key."), (404, "Unknown model."),
        (413, "Body too large."), (415, "The body is not 'application/json'."),
        (422, "Invalid request: the error names field and problem."),
        (503, "Queue full, or the model has no loaded version; see Retry-After."),
    ]
}
_FORECAST_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/ForecastRequest"}}}}}


@router.get("/healthz", tags=["ops"])
async def healthz() -> dict[str, str]:
    """Alive (the process answers)."""
    return {"status": "ok"}


@router.get("/readyz", tags=["ops"], responses={503: {
    "model": ErrorBody, "description": "Not ready: a configured model has no loaded version "
    "(the body also carries ready, models, registry_reachable and details); see Retry-After."}})
async def readyz(state: State) -> Any:
    """Ready when every configured model has a loaded, warmed-up version.

    503 while any configured model has none (starting, no version holds the alias, or its
    version failed to load), with the per-model ``details``. An unreachable registry does not
    make the server unready: it keeps serving the loaded versions, says so in
    ``registry_reachable`` and ``details``, and follows the alias again once the registry
    answers.
    """
    store = state.store
    if store is None:
        raise ApiError(503, "server", "starting: no model loaded yet",
                       headers={"Retry-After": str(state.settings.retry_after_seconds)})
    body: dict[str, Any] = {"ready": store.ready, "models": sorted(store.models),
                            "registry_reachable": store.registry_reachable,
                            "details": _details(store)}
    if store.ready:
        return body
    details = body["details"]
    problems = [{"field": name, "problem": details[name]["last_error"] or "not loaded yet"}
                for name in store.missing]
    error = ApiError(503, "server", f"not ready: no loaded version of {store.missing}",
                     detail=problems)
    return JSONResponse(jsonable_encoder(error.body() | body), status_code=503,
                        headers={"Retry-After": str(store.retry_after)})  # the next poll


def _details(store: ModelStore) -> dict[str, dict[str, Any]]:
    """Per configured name: served version, registry reachability, last poll and contact."""
    out: dict[str, dict[str, Any]] = {}
    for name in store.names:
        status, served = store.status.get(name), store.models.get(name)
        out[name] = {"version": served.ref.version if served else None,
                     "registry_reachable": status.registry_reachable if status else None,
                     "last_check": _ts(status.last_check) if status else None,
                     "last_contact": _ts(status.last_contact) if status else None,
                     "last_error": status.last_error if status else None}
    return out


@router.get("/metrics", tags=["ops"], response_class=Response,
            responses={200: {"content": {"text/plain": {}}}})
async def metrics(state: State) -> Response:
    """Prometheus metrics: requests, latency, batch sizes, queue depth, served versions."""
    body, content_type = state.metrics.render()
    return Response(body, media_type=content_type)


def _ts(seconds: float | None) -> datetime | None:
    return datetime.fromtimestamp(seconds, UTC) if seconds else None


def model_infos(store: ModelStore, calibrations: Calibrations | None = None) -> list[ModelInfo]:
    """What each configured name serves, its interval calibration and its alias follower."""
    out = []
    for name in store.names:
        status = store.status.get(name)
        info: dict[str, Any] = {"name": name, "alias": store.alias}
        if status is not None:
            info |= {"last_check": _ts(status.last_check), "last_error": status.last_error,
                     "failed_version": status.failed_version,
                     "registry_reachable": status.registry_reachable}
        if (served := store.models.get(name)) is not None:
            fc = served.forecaster
            info |= {"version": served.ref.version, "run_id": served.ref.run_id,
                     "loaded_at": _ts(served.loaded_at), "metrics": fc.meta.metrics,
                     **fc.describe()}
        if calibrations is not None:
            info["calibration"] = calibrations.info(served)
        out.append(ModelInfo.model_validate(info))
    return out


@router.get("/v1/models", tags=["models"], dependencies=[Depends(require_key)],
            responses={401: _ERRORS[401]})
async def list_models(state: State) -> list[ModelInfo]:
    """What is served: version, run, frequency, window, horizon, quantiles, metrics, errors."""
    return model_infos(state.require_store(), state.calibration)


@router.post("/v1/forecast", tags=["forecast"], response_model=ForecastResponse,
             openapi_extra=_FORECAST_BODY, responses=_ERRORS)
async def forecast(request: Request) -> Response:
    """Forecast a batch of series with the served model (one batched model call)."""
    # The hot path takes no FastAPI dependencies (resolving them costs about as much as the
    # model call); it runs the same checks as plain calls and parses the body itself.
    state: AppState = request.app.state.nearcast
    check_key(request, state.settings)
    return Response(await run_forecast(state, await request.body()),
                    media_type="application/json")


@router.post("/v1/models/{name}/reload", tags=["models"], dependencies=[Depends(require_admin)],
             responses={**{k: _ERRORS[k] for k in (401, 404)}, 403: {"model": ErrorBody}})
async def reload_model(name: str, state: State) -> ReloadResult:
    """Admin: check the alias now and swap in a new version (retrying one that failed)."""
    store = state.require_store()
    if name not in store.names:
        raise ApiError(404, "name", f"model {name!r} is not configured; configured: "
                                    f"{store.names}")
    swapped = await anyio.to_thread.run_sync(lambda: store.refresh(name, force=True))
    if store.take_loaded():
        settle_heap()
    current = store.models.get(name)
    return ReloadResult(name=name, swapped=swapped,
                        version=current.ref.version if current else None,
                        last_error=store.status[name].last_error)


__all__ = ["model_infos", "router"]
