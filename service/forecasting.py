"""Turn a validated request into model inputs and the response (off the event loop)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from models.forecaster import Forecaster
from models.inference import check_horizon
from pipelines.padding import HistoryTooShortError
from pipelines.prepare import regularize
from pipelines.schema import DS, UNIQUE_ID, Y
from service.schemas import (
    ForecastRequest,
    ForecastResponse,
    PipelineReport,
    Provenance,
    SeriesIn,
    SeriesOut,
)
from service.store import LoadedModel


class RequestError(ValueError):
    """A request the model cannot answer; ``field`` says where (e.g. ``series[2].values``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class _Prepared:
    values: np.ndarray
    last_ds: pd.Timestamp
    filled: int
    imputed: int


def _prepare(item: SeriesIn, forecaster: Forecaster) -> _Prepared:
    """Regular float32 history of one series, with what the gap rule did."""
    meta = forecaster.meta
    values = np.asarray([np.nan if v is None else v for v in item.values], dtype=np.float64)
    missing = int(np.isnan(values).sum())
    if item.start is not None and not missing:
        step = pd.tseries.frequencies.to_offset(meta.config.freq)
        last = pd.Timestamp(item.start) + step * (len(values) - 1)
        return _Prepared(values.astype(np.float32), _utc(last), 0, 0)
    if item.timestamps is not None:
        ds = pd.DatetimeIndex(item.timestamps)
    else:
        assert item.start is not None  # the schema requires one of the two
        ds = pd.date_range(item.start, periods=len(values), freq=meta.config.freq)
    frame = pd.DataFrame({UNIQUE_ID: item.id, DS: ds, Y: values})
    prepared = regularize(frame, meta.config.freq, agg=meta.bucket_agg, gap_policy=meta.gap_policy)
    out = prepared.frame
    if out[Y].isna().any():
        raise ValueError("leading missing values cannot be filled; start the history at a value")
    empty, filled = prepared.buckets.totals.empty_buckets, prepared.gaps.totals.filled
    return _Prepared(out[Y].to_numpy(np.float32), _utc(out[DS].iloc[-1]), empty, filled)


def _utc(ts: pd.Timestamp) -> pd.Timestamp:
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def _check_quantiles(req: ForecastRequest, forecaster: Forecaster) -> list[float]:
    trained = forecaster.config.quantiles
    asked = req.quantiles or []
    unknown = [q for q in asked if q not in trained]
    if unknown:
        raise RequestError("quantiles", f"quantiles {unknown} not served; model has {trained}")
    return asked


def run_forecast(req: ForecastRequest, served: LoadedModel, max_points: int) -> ForecastResponse:
    """Validate against the model, forecast all series in one batch, build the response."""
    fc = served.forecaster
    horizon = req.horizon or fc.config.horizon
    try:
        check_horizon(fc, horizon)
    except ValueError as exc:
        raise RequestError("horizon", str(exc)) from None
    quantiles = _check_quantiles(req, fc)
    prepared = [_prepare_checked(i, item, fc, max_points) for i, item in enumerate(req.series)]
    try:
        result = fc.forecast([p.values for p in prepared])
    except HistoryTooShortError as exc:
        raise RequestError(f"series[{exc.index}].values",
                           f"series {req.series[exc.index].id!r}: {exc}") from None
    return _response(req, served, horizon, quantiles, prepared, result)


def _prepare_checked(i: int, item: SeriesIn, fc: Forecaster, max_points: int) -> _Prepared:
    where = f"series[{i}]"
    if len(item.values) > max_points:
        raise RequestError(f"{where}.values", f"series {item.id!r}: {len(item.values)} points; "
                                              f"the limit is {max_points}")
    try:
        prepared = _prepare(item, fc)
    except ValueError as exc:
        raise RequestError(where, f"series {item.id!r}: {exc}") from None
    if fc.config.scaling == "log_level" and (bad := np.flatnonzero(prepared.values <= 0)).size:
        raise RequestError(f"{where}.values", f"series {item.id!r}: the model uses log scaling "
                                              f"and needs values > 0; index {int(bad[0])} is "
                                              f"{float(prepared.values[bad[0]])}")
    return prepared


def _response(req: ForecastRequest, served: LoadedModel, horizon: int, quantiles: list[float],
              prepared: list[_Prepared], result: object) -> ForecastResponse:
    fc = served.forecaster
    values, fit = result.values, result.fit  # type: ignore[attr-defined]
    names = fc.config.output_names
    out = []
    for i, (item, prep) in enumerate(zip(req.series, prepared, strict=True)):
        block = values[i, :horizon, :]
        qs = {f"{q:g}": block[:, names.index(f"q{q:g}")].tolist() for q in quantiles}
        report = PipelineReport(
            points_in=len(item.values), points_used=int(fit.used[i]),
            points_dropped=int(fit.dropped[i]), padded=fc.config.input_size - int(fit.used[i]),
            buckets_filled=prep.filled, values_imputed=prep.imputed)
        out.append(SeriesOut(id=item.id, timestamps=list(fc.future_index(prep.last_ds, horizon)),
                             forecast=block[:, fc.config.point_index].tolist(), quantiles=qs,
                             pipeline=report))
    prov = Provenance(model=served.name, version=served.ref.version, alias=served.alias,
                      run_id=served.ref.run_id)
    return ForecastResponse(model=prov, horizon=horizon, series=out)


__all__ = ["RequestError", "run_forecast"]
