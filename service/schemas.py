"""Request and response bodies of the forecast API (strict: unknown fields are rejected).

Numbers are strict JSON numbers (no numeric strings, no ``NaN``/``Infinity``) in the float32
range; timestamps are ISO 8601 strings inside the supported range (:mod:`service.timestamps`),
naive ones read as UTC. The list caps here are hard limits of the schema; :func:`request_model`
derives the model the server validates with from its configured limits (``/openapi.json``
shows them).
Validation stops at the first bad item of each list (``fail_fast``): a list of a million bad
values costs one error, not a million.
"""

from __future__ import annotations

import copy
from datetime import datetime
from functools import lru_cache
from typing import Annotated, Any

from annotated_types import MaxLen
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    create_model,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo

from nearcast.service.settings import MAX_HORIZON_CAP, MAX_POINTS_CAP, MAX_SERIES_CAP
from nearcast.service.timestamps import Timestamp

#: Problems listed in an error body's ``detail``.
MAX_LISTED_PROBLEMS = 20
#: float32 limits: the model computes in float32.
FLOAT32_MAX = 3.4028234663852886e38


def _integral(value: Any) -> Any:
    # JSON Schema's integer includes 24.0; strings and booleans stay refused (strict int).
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


Value = Annotated[float, Field(strict=True, allow_inf_nan=False, ge=-FLOAT32_MAX,
                               le=FLOAT32_MAX)]
_EXAMPLE_VALUES: list[JsonValue] = [605.0, 586.0, None, 559.0, 511.0]


def _series_schema(schema: dict[str, Any]) -> None:
    """Exactly one of ``start`` or ``timestamps`` (a ``oneOf``); neither takes ``null``."""
    props = schema["properties"]
    for name in ("start", "timestamps"):
        prop = props[name]
        inner = next(s for s in prop.pop("anyOf") if s.get("type") != "null")
        prop.pop("default", None)
        props[name] = {**inner, **prop}
    schema["oneOf"] = [{"required": ["start"]}, {"required": ["timestamps"]}]
    schema["examples"] = [
        {"id": "H1", "start": "2024-01-01T00:00:00Z", "values": _EXAMPLE_VALUES},
        {"id": "H2", "timestamps": ["2024-01-01T00:00:00Z", "2024-01-01T01:10:00Z",
                                    "2024-01-01T03:00:00Z"], "values": [5.0, 6.5, 7.0]},
    ]


class SeriesIn(BaseModel):
    """One history: values with exactly one of ``timestamps`` or a regular ``start``."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_series_schema)

    id: str = Field(..., min_length=1, max_length=200, strict=True, examples=["H1"],
                    description="Series key, echoed back; unique within a request.")
    values: list[Value | None] = Field(
        ..., min_length=1, max_length=MAX_POINTS_CAP, fail_fast=True, examples=[_EXAMPLE_VALUES],
        description="History, oldest first; finite JSON numbers within the float32 range, null "
        "marks a missing value (filled by the model's gap rule, up to its max_gap: GET "
        "/v1/models; the first and last values must be numbers). Histories longer than the "
        "model's window are cut to its newest points; shorter ones are padded and masked down "
        "to the model's min_history (GET /v1/models).",
    )
    timestamps: list[Timestamp] | None = Field(
        None, min_length=1, max_length=MAX_POINTS_CAP, fail_fast=True,
        examples=[["2024-01-01T00:00:00Z", "2024-01-01T01:10:00Z", "2024-01-01T02:00:00Z",
                   "2024-01-01T03:00:00Z", "2024-01-01T04:30:00Z"]],
        description="Time of each value (one per value), strictly increasing. Irregular times "
        "are bucketed onto the model's grid with the model's aggregation and gap rule; the grid "
        "from the first to the last timestamp may span at most NEARCAST_MAX_SPAN_WINDOWS times "
        "the model's input window (GET /v1/models: input_size).",
    )
    start: Timestamp | None = Field(
        None, examples=["2024-01-01T00:00:00Z"],
        description="Time of the first value when values are regular at the model's frequency "
        "(an off-grid start is floored onto the grid, as bucketing would).",
    )

    covariates: dict[str, list[Value | None]] | None = Field(
        None, max_length=64, examples=[{"load": [41.2, 40.8, 39.9, 40.1, 42.0]}],
        description="Covariate models only (GET /v1/models: covariates): each past and "
        "future-known covariate's values, one per history value (null: filled by the "
        "covariate's own gap rule).",
    )
    future: dict[str, list[Value]] | None = Field(
        None, max_length=64, examples=[{"load": [43.5, 44.1]}],
        description="Covariate models only: each future-known covariate's values for the "
        "model's whole horizon (GET /v1/models: horizon), one per forecast step.",
    )
    static: dict[str, Annotated[float, Field(strict=True, allow_inf_nan=False)] | str] | None = (
        Field(None, max_length=64, examples=[{"region": "north"}],
              description="Covariate models only: each static covariate's value (a number, or "
              "one of the categories the model was trained with)."))

    @field_validator("timestamps", "start", mode="before")
    @classmethod
    def _not_null(cls, value: Any) -> Any:
        # Absent means "not this axis"; an explicit null is not a timestamp (the schema says so).
        if value is None:
            raise ValueError("give a value or leave the field out (null is not accepted)")
        return value

    @model_validator(mode="after")
    def _one_time_axis(self) -> SeriesIn:
        if (self.timestamps is None) == (self.start is None):
            raise ValueError("give exactly one of 'timestamps' or 'start'")
        stamps = self.timestamps
        if stamps is not None:
            if len(stamps) != len(self.values):
                raise ValueError(f"{len(stamps)} timestamps for {len(self.values)} "
                                 "values; give one timestamp per value")
            for i in range(1, len(stamps)):
                if stamps[i] <= stamps[i - 1]:
                    kind = "repeats" if stamps[i] == stamps[i - 1] else "is before"
                    raise ValueError(
                        f"timestamps[{i}] ({stamps[i].isoformat()}) {kind} "
                        f"timestamps[{i - 1}]; timestamps must be strictly increasing")
        for name, column in (self.covariates or {}).items():
            if len(column) != len(self.values):
                raise ValueError(f"covariates.{name} has {len(column)} values for "
                                 f"{len(self.values)} history values; give one per value")
        return self


class ForecastRequest(BaseModel):
    """A batch of series to forecast with one model."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{
            "series": [{"id": "H1", "start": "2024-01-01T00:00:00Z", "values": _EXAMPLE_VALUES}],
            "horizon": 24, "quantiles": [0.1, 0.9]}]},
    )

    series: list[SeriesIn] = Field(
        ..., min_length=1, max_length=MAX_SERIES_CAP,
        examples=[[{"id": "H1", "start": "2024-01-01T00:00:00Z", "values": _EXAMPLE_VALUES}]],
        description="Series to forecast (one model call for all).",
    )
    horizon: int | None = Field(
        None, ge=1, le=MAX_HORIZON_CAP, strict=True, examples=[24],
        description="Steps ahead, at most the model's horizon; default the model's horizon.",
    )
    quantiles: list[Annotated[float, Field(gt=0.0, lt=1.0, strict=True)]] | None = Field(
        None, max_length=99, examples=[[0.1, 0.9]],
        description="Quantiles to return, among those the model was trained with "
        "(GET /v1/models); default none.",
    )
    model: str | None = Field(None, min_length=1, max_length=256, strict=True,
                              examples=["nearcast-m4-hourly"],
                              description="Served model name; default the first served model.")

    _integral_horizon = field_validator("horizon", mode="before")(_integral)


class PipelineReport(BaseModel):
    """What the input pipeline did to one series."""

    points_in: int = Field(description="Values received.", examples=[200])
    points_used: int = Field(description="Real grid points in the model window.",
                             examples=[168])
    points_dropped: int = Field(description="Oldest grid points beyond the model's window (or "
                                "not filling a whole fold).", examples=[32])
    padded: int = Field(description="Zero-padded (masked) steps at the start of the window.",
                        examples=[0])
    points_aggregated: int = Field(0, description="Points merged into a grid bucket with an "
                                   "earlier point (irregular timestamps).", examples=[0])
    buckets_filled: int = Field(description="Grid buckets that held no observation.",
                                examples=[1])
    values_imputed: int = Field(
        description="Values filled by the gap rule (nulls and empty buckets).", examples=[2]
    )


class SeriesOut(BaseModel):
    """Forecast of one series."""

    id: str = Field(description="The request's series id.", examples=["H1"])
    timestamps: list[datetime] = Field(description="UTC time of each forecast step.",
                                       examples=[["2024-01-08T00:00:00Z"]])
    forecast: list[float] = Field(description="Point forecast (the median for quantile "
                                  "models).", examples=[[612.5]])
    quantiles: dict[str, list[float]] = Field(
        default_factory=dict, examples=[{"0.1": [580.1], "0.9": [640.7]}],
        description="Requested quantile forecasts keyed by quantile; each ordered like "
        "'forecast'.",
    )
    pipeline: PipelineReport = Field(description="What the input pipeline did.")
    warnings: list[str] = Field(
        default_factory=list, examples=[[]],
        description="What the caller should know about this forecast, "
        "e.g. a series not seen in training (its forecast uses the shared series vector).")


class Provenance(BaseModel):
    """Which model answered."""

    model: str = Field(description="Registered model name.", examples=["nearcast-m4-hourly"])
    version: int = Field(description="Registered version.", examples=[3])
    alias: str = Field(description="The alias the server follows.", examples=["champion"])
    run_id: str = Field(description="MLflow run that trained the version.",
                        examples=["0f5c1f0d6a8e4f1b9c3d2e1f0a9b8c7d"])


class ForecastResponse(BaseModel):
    """Forecasts plus provenance."""

    model: Provenance = Field(description="The model version that answered.")
    horizon: int = Field(description="Steps forecast.", examples=[24])
    series: list[SeriesOut] = Field(description="One forecast per request series, in order.")


class ErrorDetail(BaseModel):
    """One problem of a request."""

    field: str = Field(description="Where: a JSON path such as series[2].values[7].",
                       examples=["series[0].values[3]"])
    problem: str = Field(description="What is wrong.",
                         examples=["Input should be a finite number"])


class ErrorBody(BaseModel):
    """Every 4xx/5xx body.

    ``detail`` lists at most the first 20 problems (:data:`MAX_LISTED_PROBLEMS`). ``error`` names
    the first one; when there are more it ends with ``(and N more problems)``, N counting every
    other problem found, listed or not (``..., 20 listed`` when some are left out). Validation
    stops at the first bad item of each list, so a long list counts as one problem.
    """

    error: str = Field(description="One-line summary naming the field and the problem, and "
                       "how many more problems there are.",
                       examples=["series[0] (id 'H1').values[3]: Input should be a finite number"])
    detail: list[ErrorDetail] = Field(default_factory=list, max_length=MAX_LISTED_PROBLEMS,
                                      description="The problems found, first one first (at "
                                      "most 20).")


def _capped(info: FieldInfo, limit: int) -> FieldInfo:
    """A copy of ``info`` whose list length cap is ``limit``."""
    out = copy.copy(info)
    out.metadata = [MaxLen(limit) if isinstance(m, MaxLen) else m for m in info.metadata]
    return out


@lru_cache(maxsize=16)
def request_model(max_series: int = MAX_SERIES_CAP,
                  max_points: int = MAX_POINTS_CAP) -> type[ForecastRequest]:
    """:class:`ForecastRequest` with the configured caps (an oversize list fails validation)."""
    if (max_series, max_points) == (MAX_SERIES_CAP, MAX_POINTS_CAP):
        return ForecastRequest
    fields = SeriesIn.model_fields
    series_cls: type[SeriesIn] = create_model(  # same name: the schema keeps "SeriesIn"
        "SeriesIn", __base__=SeriesIn, __module__=__name__, __doc__=SeriesIn.__doc__,
        values=(list[Value | None], _capped(fields["values"], max_points)),
        timestamps=(list[Timestamp] | None, _capped(fields["timestamps"], max_points)),
    )
    series = ForecastRequest.model_fields["series"]
    return create_model(
        "ForecastRequest", __base__=ForecastRequest, __module__=__name__,
        __doc__=ForecastRequest.__doc__,
        series=(list[series_cls], _capped(series, max_series)),  # type: ignore[valid-type]
    )


__all__ = ["FLOAT32_MAX", "MAX_LISTED_PROBLEMS", "ErrorBody", "ErrorDetail", "ForecastRequest",
           "ForecastResponse",
           "PipelineReport", "Provenance", "SeriesIn", "SeriesOut",
           "Timestamp", "Value", "request_model"]
