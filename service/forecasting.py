"""``POST /v1/forecast`` end to end: parse, check against the model, prepare, batch, answer.

Small requests on the fast path (regular ``start``, no nulls) are prepared on the event loop
with numpy only; larger or irregular ones are prepared and answered in a worker thread. The
model call always runs in the model's batcher thread (:mod:`service.batching`).
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio
import numpy as np
import pandas as pd
from pydantic import ValidationError
from pydantic_core import to_json

from nearcast.models.forecaster import Forecaster
from nearcast.models.monitoring import calibration
from nearcast.pipelines.feature_windows import (
    CovariateBatch,
    CovariateError,
    covariate_batch,
    future_frame,
)
from nearcast.pipelines.features import FeatureSpec
from nearcast.pipelines.padding import FitResult, HistoryTooShortError, fit_histories
from nearcast.pipelines.scaling_rules import POSITIVE_RULES
from nearcast.service import errors
from nearcast.service.admission import release_current, take_current
from nearcast.service.batching import BatcherClosedError, QueueFullError
from nearcast.service.covariate_fields import CovariateFieldError, check_covariates
from nearcast.service.errors import ApiError
from nearcast.service.forecast_log import log_item
from nearcast.service.preparation import (
    PreparedSeries,
    check_time_axis,
    future_timestamps,
    is_fast,
    prepare_series,
)
from nearcast.service.schemas import MAX_LISTED_PROBLEMS, ForecastRequest, request_model
from nearcast.service.settings import ApiSettings
from nearcast.service.shape import PRECHECK_BYTES, check_shape, loose_json
from nearcast.service.state import AppState
from nearcast.service.store import LoadedModel

_UNSEEN = ("series id not seen in training: the forecast uses the shared series vector of the "
           "model's embedding")
_THREAD_SERIES = 16  # more series than this: prepare and answer off the event loop
_THREAD_BYTES = 256 * 1024  # larger bodies are parsed off the event loop


@dataclass(frozen=True)
class _Plan:
    served: LoadedModel
    horizon: int
    quantiles: list[float]
    calibration: calibration.Calibration | None = None  # None: the raw quantiles are served


@dataclass(frozen=True)
class _Inputs:
    prepared: list[PreparedSeries]
    fit: FitResult
    covariates: CovariateBatch | None = None

    def arrays(self) -> dict[str, np.ndarray]:
        """Every input of the model call."""
        extra = self.covariates.inputs if self.covariates is not None else {}
        return {"history": self.fit.history, "mask": self.fit.mask} | extra


def parse_request(body: bytes, settings: ApiSettings) -> ForecastRequest:
    """Validate the JSON body against the configured limits; 422 naming each bad field.

    A large body is pre-checked for its shape first (:mod:`service.shape`), so the problems
    listed stay bounded whatever the body holds.
    """
    model = request_model(settings.max_series, settings.max_points)
    doc = None
    if len(body) > PRECHECK_BYTES:
        doc = loose_json(body)
        if (problem := check_shape(doc, settings.max_series, settings.max_points)) is not None:
            raise problem
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        raise errors.from_validation(exc, doc if doc is not None else loose_json(body)) from None


def _where(i: int, req: ForecastRequest) -> str:
    return f"series[{i}] (id {req.series[i].id!r})"


def plan(req: ForecastRequest, state: AppState) -> _Plan:
    """Pick the model and check the request against it before any grid is built."""
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
    seen: dict[str, int] = {}
    max_span = state.settings.max_span_windows * config.input_size
    for i, item in enumerate(req.series):
        first = seen.setdefault(item.id, i)
        if first != i:
            raise ApiError(422, f"{_where(i, req)}.id", f"repeats the id of series[{first}]; "
                                                        "series ids must be unique in a request")
        try:
            check_time_axis(item, config.freq, horizon, max_span)
        except ValueError as exc:
            raise ApiError(422, _where(i, req), str(exc)) from None
        try:
            check_covariates(item, served.forecaster.meta.features, config.horizon)
        except CovariateFieldError as exc:
            raise ApiError(422, f"{_where(i, req)}.{exc.field}", str(exc)) from None
    calibrations = state.calibration
    return _Plan(served, horizon, asked,
                 calibrations.get(served) if calibrations is not None else None)


def prepare(req: ForecastRequest, forecaster: Forecaster) -> _Inputs:
    """Regular histories fitted to the window: ``(B, L)`` history and mask."""
    prepared = [_prepare_one(i, req, forecaster) for i in range(len(req.series))]
    try:
        fit = fit_histories([p.values for p in prepared], forecaster.config.window_spec())
    except HistoryTooShortError as exc:
        raise ApiError(422, f"{_where(exc.index, req)}.values",
                       f"{exc}; shorter histories cannot be padded") from None
    features = forecaster.meta.features
    if features is None or not forecaster.meta.covariate_model:
        return _Inputs(prepared, fit)
    return _Inputs(prepared, fit, _covariates(req, forecaster, features, prepared))


def _covariates(req: ForecastRequest, forecaster: Forecaster, features: FeatureSpec,
                prepared: list[PreparedSeries]) -> CovariateBatch:
    """The covariate inputs of every series (their fields were checked by :func:`plan`)."""
    horizon = forecaster.config.horizon
    futures = []
    for i, (item, prep) in enumerate(zip(req.series, prepared, strict=True)):
        steps = pd.DatetimeIndex(future_timestamps(forecaster, prep.last, horizon))
        try:
            futures.append(future_frame(steps, item.future, features, i))
        except CovariateError as exc:
            raise ApiError(422, f"{_where(i, req)}.future", str(exc)) from None
    frames = [p.frame for p in prepared if p.frame is not None]
    try:
        return covariate_batch(features, forecaster.config.window_spec(), frames, futures,
                               [item.id for item in req.series])
    except CovariateError as exc:
        raise ApiError(422, f"{_where(exc.index, req)}.static", str(exc)) from None


def _prepare_one(i: int, req: ForecastRequest, forecaster: Forecaster) -> PreparedSeries:
    where = _where(i, req)
    try:
        prepared = prepare_series(req.series[i], forecaster)
    except ValueError as exc:
        raise ApiError(422, where, str(exc)) from None
    if forecaster.config.scaling not in POSITIVE_RULES:
        return prepared
    bad = np.flatnonzero(prepared.values <= 0)
    if bad.size:
        raise ApiError(422, f"{where}.values",
                       f"the model uses log scaling and needs values > 0; grid point "
                       f"{int(bad[0])} is {float(prepared.values[bad[0]]):g}")
    return prepared


def check_finite(req: ForecastRequest, p: _Plan, values: np.ndarray) -> None:
    """422 naming each series whose forecast ``values`` ``(B, H, K)`` is not finite."""
    finite = np.isfinite(values[:, : p.horizon, :]).all(axis=(1, 2))
    if finite.all():
        return
    bad = np.flatnonzero(~finite)
    problem = ("the forecast is not finite: the input is outside what the model can represent "
               "(values too large for its float32 arithmetic); scale the values down")
    raise errors.summarize([{"field": _where(int(i), req), "problem": problem}
                            for i in bad[:MAX_LISTED_PROBLEMS]], len(bad))


def render(req: ForecastRequest, p: _Plan, inputs: _Inputs, values: np.ndarray) -> bytes:
    """The JSON response (shaped as :class:`ForecastResponse`) for ``values`` ``(B, H, K)``.

    ``values`` are the outputs as served (the calibrated intervals, :mod:`service.calibrations`).

    A series whose forecast is not finite makes the request a 422 (:func:`check_finite`).

    Plain dicts serialized by pydantic-core: the schema classes document the shape, building
    them per request would only cost time (the tests validate responses against them).
    """
    check_finite(req, p, values)  # the encoder never emits NaN or Infinity
    fc = p.served.forecaster
    config, fit = fc.config, inputs.fit
    unseen = inputs.covariates.unseen if inputs.covariates is not None else None
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
            "warnings": [_UNSEEN] if unseen is not None and unseen[i] else [],
        })
    ref = p.served.ref
    provenance = {"model": p.served.name, "version": ref.version, "alias": p.served.alias,
                  "run_id": ref.run_id}
    return to_json({"model": provenance, "horizon": p.horizon, "series": out})


async def run_forecast(state: AppState, body: bytes) -> bytes:
    """Answer one forecast request body with the JSON response."""
    take_current()  # admission: 503 when too many requests are being parsed or prepared
    if len(body) > _THREAD_BYTES:
        req = await anyio.to_thread.run_sync(parse_request, body, state.settings)
    else:
        req = parse_request(body, state.settings)
    p = plan(req, state)
    forecaster = p.served.forecaster
    heavy = len(req.series) > _THREAD_SERIES or not all(
        is_fast(item, forecaster.config.freq, forecaster.meta.covariate_model)
        for item in req.series)
    if heavy:
        inputs = await anyio.to_thread.run_sync(prepare, req, forecaster)
    else:
        inputs = prepare(req, forecaster)
    release_current()  # admission covers receiving, parsing and preparing
    batcher = state.batchers[p.served.name]
    retry = {"Retry-After": str(state.settings.retry_after_seconds)}
    try:
        values = await batcher.submit(p.served, inputs.arrays())
    except QueueFullError as exc:
        raise ApiError(503, "server", f"busy: {exc}; retry later", headers=retry) from None
    except BatcherClosedError as exc:
        raise ApiError(503, "server", str(exc), headers=retry) from None
    # Calibrated intervals (service.calibrations); ``values`` itself when served raw.
    served = calibration.apply(values, forecaster.config.output_names, p.calibration)
    if heavy:
        out = await anyio.to_thread.run_sync(render, req, p, inputs, served)
    else:
        out = render(req, p, inputs, served)
    log_served(state, req, p, inputs, values, None if served is values else served)
    return out


def log_served(state: AppState, req: ForecastRequest, p: _Plan, inputs: _Inputs,
               values: np.ndarray, served: np.ndarray | None = None) -> None:
    """Offer an answered request to the forecast log: references only, never waits.

    Args:
        state: the app's state (no log writer: nothing to do).
        req: the request.
        p: its plan (the model version and the served horizon).
        inputs: its prepared series (each one's last history time).
        values: the model's raw outputs ``(B, H, K)``.
        served: the outputs as served after calibration ``(B, H, K)``; None when served raw.
    """
    writer = state.log_writer
    if writer is not None:
        writer.offer(log_item(p.served, [item.id for item in req.series],
                              [prep.last for prep in inputs.prepared], values, p.horizon, served))


__all__ = ["check_finite", "log_served", "parse_request", "plan", "prepare", "render",
           "run_forecast"]
