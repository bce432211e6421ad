"""Request and response bodies of the forecast API (strict: unknown fields are rejected)."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, model_validator

_STRICT = ConfigDict(extra="forbid")


class SeriesIn(BaseModel):
    """One history: values with either timestamps or a regular start."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"id": "H1", "start": "2024-01-01T00:00:00Z",
                                          "values": [605.0, 586.0, None, 559.0]}]},
    )

    id: str = Field(..., min_length=1, max_length=200, description="Series key, echoed back.")
    values: list[float | None] = Field(
        ..., min_length=1, description="History, oldest first; null marks a missing value."
    )
    timestamps: list[datetime] | None = Field(
        None, description="ISO 8601 time of each value (irregular allowed: bucketed onto the "
        "model's grid with the model's aggregation and gap rule)."
    )
    start: datetime | None = Field(
        None, description="Time of the first value when values are regular at the model's "
        "frequency."
    )

    @model_validator(mode="after")
    def _one_time_axis(self) -> SeriesIn:
        if (self.timestamps is None) == (self.start is None):
            raise ValueError("give exactly one of 'timestamps' or 'start'")
        if self.timestamps is not None and len(self.timestamps) != len(self.values):
            raise ValueError(
                f"{len(self.timestamps)} timestamps for {len(self.values)} values"
            )
        return self


class ForecastRequest(BaseModel):
    """A batch of series to forecast with one model."""

    model_config = _STRICT

    series: list[SeriesIn] = Field(..., min_length=1, description="Series to forecast.")
    horizon: int | None = Field(None, ge=1, description="Steps ahead (≤ the model's horizon).")
    quantiles: list[float] | None = Field(
        None, description="Quantiles to return (among those the model was trained with)."
    )
    model: str | None = Field(None, description="Served model name; default the first one.")


class PipelineReport(BaseModel):
    """What the input pipeline did to one series."""

    points_in: int
    points_used: int
    points_dropped: int = Field(description="Oldest points beyond the model's window.")
    padded: int = Field(description="Zero-padded (masked) steps at the start of the window.")
    buckets_filled: int = Field(description="Grid buckets that held no observation.")
    values_imputed: int = Field(
        description="Values filled by the gap rule (nulls and empty buckets)."
    )


class SeriesOut(BaseModel):
    """Forecast of one series."""

    id: str
    timestamps: list[datetime]
    forecast: list[float]
    quantiles: dict[str, list[float]] = Field(default_factory=dict)
    pipeline: PipelineReport


class Provenance(BaseModel):
    """Which model answered."""

    model: str
    version: int
    alias: str
    run_id: str


class ForecastResponse(BaseModel):
    """Forecasts plus provenance."""

    model: Provenance
    horizon: int
    series: list[SeriesOut]


class ErrorBody(BaseModel):
    """Every 4xx/5xx body."""

    error: str
    detail: list[dict[str, object]] = Field(default_factory=list)


__all__ = ["ErrorBody", "ForecastRequest", "ForecastResponse", "PipelineReport", "Provenance",
           "SeriesIn", "SeriesOut"]
