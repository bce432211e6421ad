"""``POST /v1/forecast`` end to end: parse, check against the model, prepare, batch, answer.

Small requests on the fast path (regular ``start``, no nulls) are prepared on the event loop
with numpy only; larger or irregular ones are prepared and answered in a worker thread. The
model call always runs in the model's batcher thread (:mod:`service.batching`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import anyio
import numpy as np
from pydantic import ValidationError
from pydantic_core import to_json

from models.forecaster import Forecaster
from pipelines.padding import FitResult, HistoryTooShortError, fit_histories
from service import errors
from service.batching import BatcherClosedError, QueueFullError
from service.errors import ApiError
from service.preparation import PreparedSeries, future_timestamps, is_fast, prepare_series
from service.schemas import ForecastRequest
from service.state import AppState
from service.store import LoadedModel

_THREAD_SERIES = 16  # more series than this: prepare and answer off the event loop
_THREAD_BYTES = 256 * 1024  # larger bodies are parsed off the event loop


@dataclass(frozen=True)
class _Plan:
    served: LoadedModel
    horizon: int
    quantiles: list[float]


@dataclass(frozen=True)
class _Inputs:
    prepared: list[PreparedSeries]
    fit: FitResult


def parse_request(body: bytes) -> ForecastRequest:
    """Validate the JSON body; 422 :class:`ApiError` naming each bad field."""
    try:
        return ForecastRequest.model_validate_json(body)
    except ValidationError as exc:
        raise errors.from_validation(exc, _loose_json(body)) from None


def _loose_json(body: bytes) -> object:
    """The body as plain JSON (error path only: to name series by their id)."""
    try:
        return json.loads(body)
    except ValueError:
        return None


def plan(req: ForecastRequest, state: AppState) -> _Plan:
    """Pick the model and check the request against it and the server limits."""
    settings = state.settings
    if len(req.series) > settings.max_series:
        raise ApiError(422, "series", f"{len(req.series)} series; the limit is "
                                      f"{settings.max_series} per request")
    try:
        served = state.require_store().get(req.model)
    except KeyError as exc:
        raise ApiError(404, "model", str(exc.args[0])) from None
    config = served.forecaster.config
    horizon = config.horizon if req.horizon is None else req.horizon
    if horizon > config.horizon:
        raise ApiError(422, "horizon", f"{horizon} is longer than the model's horizon "
                                       f"{config.horizon}")
    asked = req.quantiles or []
    unknown = [q for q in asked if q not in config.quantiles]
    if unknown:
        served_qs = config.quantiles or "none"
        raise ApiError(422, "quantiles", f"{unknown} not served; the model has {served_qs}")
    for i, item in enumerate(req.series):
        if len(item.values) > settings.max_points:
            raise ApiError(422, f"series[{i}] (id {item.id!r}).values",
                           f"{len(item.values)} points; the limit is {settings.max_points}")
    return _Plan(served, horizon, asked)


def prepare(req: ForecastRequest, forecaster: Forecaster, max_points: int) -> _Inputs:
    """Regular histories fitted to the window: ``(B, L)`` history and mask."""
    prepared = [_prepare_one(i, req, forecaster, max_points) for i in range(len(req.series))]
    try:
        fit = fit_histories([p.values for p in prepared], forecaster.config.window_spec())
    except HistoryTooShortError as exc:
        item = req.series[exc.index]
        raise ApiError(422, f"series[{exc.index}] (id {item.id!r}).values",
                       f"{exc}; shorter histories cannot be padded") from None
    return _Inputs(prepared, fit)


def _prepare_one(i: int, req: ForecastRequest, forecaster: Forecaster,
                 max_points: int) -> PreparedSeries:
    item = req.series[i]
    where = f"series[{i}] (id {item.id!r})"
    try:
        prepared = prepare_series(item, forecaster, max_points)
    except ValueError as exc:
        raise ApiError(422, where, str(exc)) from None
    bad = np.flatnonzero(prepared.values <= 0)
    if forecaster.config.scaling == "log_level" and bad.size:
        raise ApiError(422, f"{where}.values",
                       f"the model uses log scaling and needs values > 0; grid point "
                       f"{int(bad[0])} is {float(prepared.values[bad[0]]):g}")
    return prepared


def render(req: ForecastRequest, p: _Plan, inputs: _Inputs, values: np.ndarray) -> bytes:
    """The JSON response (shaped as :class:`ForecastResponse`) for ``values`` ``(B, H, K)``.

    Plain dicts serialized by pydantic-core: the schema classes document the shape, building
    them per request would only cost time (the tests validate responses against them).
    """
    fc = p.served.forecaster
    config, fit = fc.config, inputs.fit
    columns = {f"{q:g}": config.output_names.index(f"q{q:g}") for q in p.quantiles}
    out = []
    for i, (item, prep) in enumerate(zip(req.series, inputs.prepared, strict=True)):
        block = values[i, : p.horizon, :].astype(np.float64).T  # (K, H)
        used = int(fit.used[i])
        out.append({
            "id": item.id, "timestamps": future_timestamps(fc, prep.last, p.horizon),
            "forecast": block[config.point_index].tolist(),
            "quantiles": {key: block[k].tolist() for key, k in columns.items()},
            "pipeline": {"points_in": len(item.values), "points_used": used,
                         "points_dropped": int(fit.dropped[i]),
                         "padded": config.input_size - used,
                         "points_aggregated": prep.aggregated, "buckets_filled": prep.filled,
                         "values_imputed": prep.imputed},
        })
    ref = p.served.ref
    provenance = {"model": p.served.name, "version": ref.version, "alias": p.served.alias,
                  "run_id": ref.run_id}
    return to_json({"model": provenance, "horizon": p.horizon, "series": out})


async def run_forecast(state: AppState, body: bytes) -> bytes:
    """Answer one forecast request body with the JSON response."""
    if len(body) > _THREAD_BYTES:
        req = await anyio.to_thread.run_sync(parse_request, body)
    else:
        req = parse_request(body)
    p = plan(req, state)
    forecaster = p.served.forecaster
    heavy = len(req.series) > _THREAD_SERIES or not all(
        is_fast(item, forecaster.config.freq) for item in req.series)
    if heavy:
        inputs = await anyio.to_thread.run_sync(prepare, req, forecaster,
                                                state.settings.max_points)
    else:
        inputs = prepare(req, forecaster, state.settings.max_points)
    batcher = state.batchers[p.served.name]
    retry = {"Retry-After": str(state.settings.retry_after_seconds)}
    try:
        values = await batcher.submit(p.served, inputs.fit.history, inputs.fit.mask)
    except QueueFullError as exc:
        raise ApiError(503, "server", f"busy: {exc}; retry later", headers=retry) from None
    except BatcherClosedError as exc:
        raise ApiError(503, "server", str(exc), headers=retry) from None
    if heavy:
        return await anyio.to_thread.run_sync(render, req, p, inputs, values)
    return render(req, p, inputs, values)


__all__ = ["parse_request", "plan", "prepare", "render", "run_forecast"]
