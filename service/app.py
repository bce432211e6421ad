"""The FastAPI application factory: lifespan loads models, a task follows the alias."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import anyio
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from models.settings import MlflowSettings, get_mlflow_settings
from service.routes import router
from service.settings import ApiSettings, get_api_settings
from service.store import ModelStore

log = logging.getLogger("nearcast.app")


async def _follow_alias(store: ModelStore, every: float) -> None:
    """Poll the registry forever; each refresh runs in a worker thread."""
    while True:
        await asyncio.sleep(every)
        try:
            await anyio.to_thread.run_sync(store.refresh_all)
        except Exception:  # never let the follower die
            log.exception("alias refresh failed")


def create_app(
    api: ApiSettings | None = None, mlflow_settings: MlflowSettings | None = None
) -> FastAPI:
    """Build the API; models load in the lifespan, before readiness turns true."""
    api = api or get_api_settings()
    mlflow_settings = mlflow_settings or get_mlflow_settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        client = mlflow_settings.connect()
        store = ModelStore(client, api.served_models(), api.alias, api.jit_compile)
        app.state.store = store
        await anyio.to_thread.run_sync(store.refresh_all)
        task = asyncio.create_task(_follow_alias(store, api.poll_seconds))
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    app = FastAPI(title="nearcast", version="0.1.0", lifespan=lifespan,
                  description="Forecasts from the model that holds the registry alias.")
    app.state.api_settings = api
    app.include_router(router)
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    return app


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    detail = [{"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]}
              for e in exc.errors()]
    first = detail[0] if detail else {"field": "body", "problem": "invalid"}
    return JSONResponse(status_code=422, content={
        "error": f"{first['field']}: {first['problem']}", "detail": detail})


async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    headers = getattr(exc, "headers", None)
    return JSONResponse(status_code=exc.status_code, content={"error": str(exc.detail)},
                        headers=headers)


__all__ = ["create_app"]
