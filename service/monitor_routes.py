"""Routes of the monitoring side: actuals in (``POST /v1/actuals``), the monitor's view out."""

from __future__ import annotations

from typing import Any

import anyio
import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, Field

from nearcast.service.actuals import ActualsResult, actuals_frame, parse_actuals
from nearcast.service.auth import require_key
from nearcast.service.errors import ApiError
from nearcast.service.monitor_summaries import read_summaries
from nearcast.service.schemas import ErrorBody
from nearcast.service.state import State

router = APIRouter()

_ACTUALS_BODY = {"requestBody": {"required": True, "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/ActualsRequest"}}}}}
_ACTUALS_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text} for code, text in [
        (401, "Missing or unknown API key."), (404, "Unknown model."),
        (413, "Body too large."), (415, "The body is not 'application/json'."),
        (422, "Invalid actuals: the error names the series and the point."),
        (503, "The forecast log is disabled or unavailable, or the model has no loaded "
              "version."),
    ]
}


@router.post("/v1/actuals", tags=["monitoring"], dependencies=[Depends(require_key)],
             openapi_extra=_ACTUALS_BODY, responses=_ACTUALS_ERRORS)
async def post_actuals(request: Request, state: State) -> ActualsResult:
    """Store observed values of served series; the same point sent twice is stored once.

    Answers once the values are stored: how many were new, corrected (another value than
    stored before) and unchanged. The model's interval calibration is refreshed with them
    before the answer.
    """
    log = state.require_forecast_log()
    req = parse_actuals(await request.body(), state.settings)
    try:
        served = state.require_store().get(req.model)
    except KeyError as exc:
        raise ApiError(404, "model", str(exc.args[0])) from None
    frame = actuals_frame(req, served.forecaster.config.freq)
    try:
        written = await anyio.to_thread.run_sync(log.write_actuals, served.name, frame)
    except sa.exc.SQLAlchemyError as exc:
        raise ApiError(503, "server", f"the forecast log {log.display_url} could not store the "
                       f"actuals: {type(exc).__name__}; retry later",
                       headers={"Retry-After": str(state.settings.retry_after_seconds)}) from None
    if state.calibration is not None and (written.inserted or written.updated):
        await state.calibration.refresh_now(state.require_store(), [served.name])
    return ActualsResult(model=served.name, inserted=written.inserted, updated=written.updated,
                         unchanged=written.unchanged)


class MonitorEntry(BaseModel):
    """One served model and the monitor's latest summary of it."""

    model: str
    summary: dict[str, Any] | None = Field(
        description="The latest `nearcast monitor` summary (per version: live metrics, holdout, "
        "ratios, coverage, alarm, daily checks; keys in the README's Monitoring section); null "
        "when the monitor never ran for the model.")
    message: str | None = Field(None, description="Why `summary` is null.")


class MonitorAnswer(BaseModel):
    """The monitor's latest summary of every served model."""

    models: list[MonitorEntry]


_MONITOR_ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text} for code, text in [
        (401, "Missing or unknown API key."), (404, "The model is not served."),
        (503, "The forecast log is disabled or unavailable."),
    ]
}


async def _entries(state: State, names: list[str]) -> list[MonitorEntry]:
    log = state.require_forecast_log()
    try:
        found = await anyio.to_thread.run_sync(read_summaries, log, names)
    except sa.exc.SQLAlchemyError as exc:
        raise ApiError(503, "server", f"the forecast log {log.display_url} could not be read: "
                       f"{type(exc).__name__}; retry later",
                       headers={"Retry-After": str(state.settings.retry_after_seconds)}) from None
    never = ("nearcast monitor has not summarised {name!r} yet: run `nearcast monitor --config "
             "<job file>` (or give the job file a monitor.schedule for `nearcast scheduler`)")
    return [MonitorEntry(model=name, summary=body,
                         message=None if body is not None else never.format(name=name))
            for name, body in found.items()]


@router.get("/v1/monitor", tags=["monitoring"], dependencies=[Depends(require_key)],
            responses=_MONITOR_ERRORS)
async def get_monitor(state: State) -> MonitorAnswer:
    """The latest `nearcast monitor` summary of every served model."""
    return MonitorAnswer(models=await _entries(state, state.settings.served_models()))


@router.get("/v1/monitor/{model}", tags=["monitoring"], dependencies=[Depends(require_key)],
            responses=_MONITOR_ERRORS)
async def get_model_monitor(model: str, state: State) -> MonitorEntry:
    """The latest `nearcast monitor` summary of one served model (404 when not served)."""
    served = state.settings.served_models()
    if model not in served:
        raise ApiError(404, "model", f"model {model!r} is not served; served: {served}")
    (entry,) = await _entries(state, [model])
    return entry


__all__ = ["MonitorAnswer", "MonitorEntry", "router"]
