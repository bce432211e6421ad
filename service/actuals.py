"""``POST /v1/actuals``: what happened, in the series contract of ``/v1/forecast``.

A body lists series exactly as a forecast request does (:class:`service.schemas.SeriesIn`:
an id, values with nulls, one of ``start`` or ``timestamps``) and optionally the model they
belong to. Each value's time is ``start + i`` steps of the model's frequency, or its timestamp;
it must lie on the model's grid (fixed-length steps counted from the Unix epoch, calendar
frequencies anchored as pandas anchors them, as in training), else a 422 names the series and
the point. Nulls are skipped. The same point sent twice is stored once
(:meth:`models.monitoring.log_store.ForecastLog.write_actuals`).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from functools import lru_cache

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from nearcast.pipelines.schema import DS, UNIQUE_ID, Y
from nearcast.service import errors
from nearcast.service.errors import ApiError
from nearcast.service.preparation import fixed_step
from nearcast.service.schemas import SeriesIn, request_model
from nearcast.service.settings import ApiSettings
from nearcast.service.shape import loose_json

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


class ActualsRequest(BaseModel):
    """Observed values of served series (the series contract of ``/v1/forecast``)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "model": "nearcast-m4-hourly",
        "series": [{"id": "H1", "start": "2024-01-08T00:00:00Z", "values": [612.0, None, 598.0]}],
    }]})

    model: str | None = Field(None, min_length=1, max_length=256, strict=True,
                              examples=["nearcast-m4-hourly"],
                              description="Served model the actuals belong to; default the "
                              "first served model.")
    series: list[SeriesIn] = Field(
        ..., min_length=1, description="Series and their observed values; each time must lie "
        "on the model's grid (GET /v1/models: freq; fixed steps counted from 1970-01-01 UTC). "
        "Nulls are skipped; a point already stored with the same value changes nothing, with "
        "another value it is corrected. Covariate fields are not taken.")


class ActualsResult(BaseModel):
    """What the write did."""

    model: str = Field(description="The model the actuals were stored for.",
                       examples=["nearcast-m4-hourly"])
    inserted: int = Field(description="New points stored.", examples=[48])
    updated: int = Field(description="Points stored before with another value, corrected.",
                         examples=[0])
    unchanged: int = Field(description="Points already stored with the same value.",
                           examples=[0])


@lru_cache(maxsize=16)
def actuals_model(max_series: int, max_points: int) -> type[ActualsRequest]:
    """:class:`ActualsRequest` with the server's caps (those of a forecast request)."""
    capped = request_model(max_series, max_points).model_fields["series"].annotation
    assert capped is not None  # list[SeriesIn] with the configured caps
    described = ActualsRequest.model_fields["series"].description
    return create_model("ActualsRequest", __base__=ActualsRequest, __module__=__name__,
                        __doc__=ActualsRequest.__doc__,
                        series=(capped, Field(..., min_length=1, max_length=max_series,
                                              description=described)))


def parse_actuals(body: bytes, settings: ApiSettings) -> ActualsRequest:
    """Validate the body; 422 naming each bad field (as ``/v1/forecast`` does)."""
    model = actuals_model(settings.max_series, settings.max_points)
    try:
        req = model.model_validate_json(body)
    except ValidationError as exc:
        raise errors.from_validation(exc, loose_json(body)) from None
    seen: dict[str, int] = {}
    for i, item in enumerate(req.series):
        where = f"series[{i}] (id {item.id!r})"
        if (first := seen.setdefault(item.id, i)) != i:
            raise ApiError(422, f"{where}.id", f"repeats the id of series[{first}]; series "
                                               "ids must be unique in a request")
        extra = [n for n in ("covariates", "future", "static") if getattr(item, n) is not None]
        if extra:
            raise ApiError(422, f"{where}.{extra[0]}", "actuals take the target values only")
    return req


def _times(item: SeriesIn, freq: str) -> tuple[list[datetime], str]:
    """Each value's time, and the field they come from."""
    if item.timestamps is not None:
        return list(item.timestamps), "timestamps"
    assert item.start is not None  # the schema requires one of the two
    step = fixed_step(freq)
    if step is not None:
        return [item.start + step * k for k in range(len(item.values))], "start"
    stamps = pd.date_range(item.start, periods=len(item.values), freq=freq)
    return list(stamps.to_pydatetime()), "start"


def _off_grid(ts: datetime, freq: str) -> bool:
    step = fixed_step(freq)
    if step is not None:
        return ((ts - _EPOCH) // _MICRO) % (step // _MICRO) != 0
    stamp = pd.Timestamp(ts)
    return stamp != stamp.normalize() or not to_offset(freq).is_on_offset(stamp)


def _grid_name(freq: str) -> str:
    step = fixed_step(freq)
    if step is not None:
        return f"the model's grid (steps of {freq!r} counted from 1970-01-01T00:00:00Z)"
    return f"the model's grid (frequency {freq!r}, at midnight UTC)"


def actuals_frame(req: ActualsRequest, freq: str) -> pd.DataFrame:
    """The long frame (``unique_id``, ``ds`` UTC, ``y``) of the request's non-null values.

    Raises:
        ApiError: 422 naming the series and the point that is not on the model's grid.
    """
    ids: list[str] = []
    stamps: list[datetime] = []
    values: list[float] = []
    for i, item in enumerate(req.series):
        times, field = _times(item, freq)
        # start + k steps stays on the grid when start is on it
        for j, ts in enumerate(times[:1] if field == "start" else times):
            if _off_grid(ts, freq):
                where = f"series[{i}] (id {item.id!r}).{field}" + (f"[{j}]" if field ==
                                                                   "timestamps" else "")
                raise ApiError(422, where, f"{ts.isoformat()} is not on {_grid_name(freq)}")
        kept = [(ts, v) for ts, v in zip(times, item.values, strict=True) if v is not None]
        ids.extend([item.id] * len(kept))
        stamps.extend(ts for ts, _ in kept)
        values.extend(float(v) for _, v in kept)
    return pd.DataFrame({UNIQUE_ID: pd.Series(ids, dtype=object),
                         DS: pd.to_datetime(pd.Series(stamps, dtype=object), utc=True),
                         Y: np.asarray(values, dtype=np.float64)})


__all__ = ["ActualsRequest", "ActualsResult", "actuals_frame", "actuals_model", "parse_actuals"]
