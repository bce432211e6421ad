"""Thin HTTP routes: parse, delegate, answer."""

from __future__ import annotations

from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, HTTPException, Request

from service.forecasting import RequestError, run_forecast
from service.schemas import ForecastRequest, ForecastResponse
from service.settings import ApiSettings
from service.store import ModelStore

router = APIRouter()


def get_store(request: Request) -> ModelStore:
    """The model store living on app state."""
    store: ModelStore = request.app.state.store
    return store


def get_settings(request: Request) -> ApiSettings:
    """The API settings the app was built with."""
    settings: ApiSettings = request.app.state.api_settings
    return settings


def _key(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def require_key(request: Request, settings: Annotated[ApiSettings, Depends(get_settings)]) -> None:
    """Check the bearer key when keys are configured (admin keys work everywhere)."""
    allowed = set(settings.api_keys) | set(settings.admin_keys)
    if not allowed:
        return
    key = _key(request)
    if key is None:
        raise HTTPException(401, "missing API key: send 'Authorization: Bearer <key>'",
                            headers={"WWW-Authenticate": "Bearer"})
    if key not in allowed:
        raise HTTPException(403, "API key not accepted")


def require_admin(
    request: Request, settings: Annotated[ApiSettings, Depends(get_settings)]
) -> None:
    """Check for an admin key (reload); open only when no keys are configured at all."""
    if not settings.api_keys and not settings.admin_keys:
        return
    key = _key(request)
    if key is None:
        raise HTTPException(401, "missing admin key", headers={"WWW-Authenticate": "Bearer"})
    if key not in settings.admin_keys:
        raise HTTPException(403, "this key has no admin scope")


Store = Annotated[ModelStore, Depends(get_store)]
Settings = Annotated[ApiSettings, Depends(get_settings)]


@router.get("/healthz", tags=["ops"])
async def healthz() -> dict[str, str]:
    """Alive."""
    return {"status": "ok"}


@router.get("/readyz", tags=["ops"])
async def readyz(store: Store) -> Any:
    """Ready when a model is loaded; details say whether the registry answers."""
    body = {"ready": store.ready, "models": sorted(store.models),
            "registry_reachable": all(s.registry_reachable for s in store.status.values())}
    if not store.ready:
        raise HTTPException(503, "no model loaded yet")
    return body


@router.get("/v1/models", tags=["models"], dependencies=[Depends(require_key)])
async def list_models(store: Store) -> list[dict[str, Any]]:
    """What is served: version, alias, frequency, window, horizon, quantiles, metrics."""
    out = []
    for name in store.names:
        status = store.status.get(name)
        entry: dict[str, Any] = {
            "name": name, "alias": store.alias,
            "last_error": status.last_error if status else None,
            "registry_reachable": status.registry_reachable if status else None,
        }
        if name in store.models:
            m = store.models[name]
            entry |= {"version": m.ref.version, "run_id": m.ref.run_id,
                      **m.forecaster.describe(), "metrics": m.forecaster.meta.metrics}
        out.append(entry)
    return out


@router.post("/v1/forecast", tags=["forecast"], dependencies=[Depends(require_key)])
async def forecast(req: ForecastRequest, store: Store, settings: Settings) -> ForecastResponse:
    """Forecast a batch of series with the served model."""
    if len(req.series) > settings.max_series:
        raise HTTPException(422, f"series: {len(req.series)} series; the limit is "
                                 f"{settings.max_series}")
    try:
        served = store.get(req.model)
    except KeyError as exc:
        raise HTTPException(404, str(exc.args[0])) from None
    try:
        return await anyio.to_thread.run_sync(run_forecast, req, served, settings.max_points)
    except RequestError as exc:
        raise HTTPException(422, f"{exc.field}: {exc}") from None


@router.post("/v1/models/{name}/reload", tags=["models"], dependencies=[Depends(require_admin)])
async def reload_model(name: str, store: Store) -> dict[str, Any]:
    """Check the alias now and swap in a new version if it moved."""
    if name not in store.names:
        raise HTTPException(404, f"model {name!r} is not configured; configured: {store.names}")
    swapped = await anyio.to_thread.run_sync(store.refresh, name)
    status = store.status[name]
    current = store.models.get(name)
    return {"name": name, "swapped": swapped, "version": current.ref.version if current else None,
            "last_error": status.last_error}


__all__ = ["router"]
