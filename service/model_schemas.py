"""Response bodies of the model endpoints: what is served (``GET /v1/models``) and reloads."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field

from nearcast.pipelines.grid import Aggregation, GapPolicy, TimeZone


class CovariateInfo(BaseModel):
    """One covariate a model takes."""

    name: str = Field(description="Covariate name (the key in a request).", examples=["load"])
    role: str = Field(description="future (known over the horizon), past (known up to the "
                      "origin) or static (one value per series).", examples=["future"])
    kind: str = Field(description="numeric or categorical (static only).",
                      examples=["numeric"])
    categories: list[str] | None = Field(None, description="A categorical covariate's values.")


class IntervalCalibration(BaseModel):
    """The calibration factors of one central interval, per horizon step."""

    factors: list[float] = Field(description="Per step (index 0 = step 1): the factor both half "
                                 "widths of the raw interval are multiplied by (1: raw).",
                                 examples=[[1.0, 1.42, 1.87]])
    points: list[int] = Field(description="Per step: the recent forecast errors (scores) the "
                              "factor was computed from; below the minimum the factor is 1.",
                              examples=[[0, 40, 200]])


class CalibrationInfo(BaseModel):
    """How the served intervals of a model are adjusted from its recent forecast errors."""

    enabled: bool = Field(description="Whether calibrated intervals are served; false when "
                          "switched off (NEARCAST_CALIBRATION_ENABLED) or without a forecast "
                          "log to learn from.", examples=[True])
    method: str = Field(description="How the factors are computed: split conformal per model "
                        "version and horizon step.", examples=["conformal (per horizon step)"])
    intervals: dict[str, IntervalCalibration] = Field(
        default_factory=dict, examples=[{"0.1-0.9": {"factors": [1.0, 1.42], "points": [0, 40]}}],
        description="Per central interval of the model's quantiles (\"lo-hi\"), the served "
        "version's factors; empty: served raw (no factors yet, or off).")
    computed_at: datetime | None = Field(None, description="When the factors were computed; "
                                         "null: not yet.", examples=["2026-01-08T00:00:30Z"])


class ModelInfo(BaseModel):
    """One configured model name: what is served and how the alias follower is doing."""

    name: str = Field(description="Registered model name.", examples=["nearcast-m4-hourly"])
    alias: str = Field(description="Alias the server follows.", examples=["champion"])
    version: int | None = Field(None, description="Served version; null before the first "
                                "successful load.", examples=[3])
    run_id: str | None = Field(None, description="MLflow run that trained the served version.",
                               examples=["0f5c1f0d6a8e4f1b9c3d2e1f0a9b8c7d"])
    loaded_at: datetime | None = Field(None, description="When the served version was loaded.",
                                       examples=["2024-01-08T00:00:00Z"])
    freq: str | None = Field(None, description="Grid frequency (pandas alias).", examples=["h"])
    horizon: int | None = Field(None, description="Longest horizon (steps).", examples=[48])
    input_size: int | None = Field(None, description="Input window (points).", examples=[168])
    min_history: int | None = Field(None, description="Shortest accepted history.",
                                    examples=[48])
    quantiles: list[float] = Field(default_factory=list, examples=[[0.1, 0.5, 0.9]],
                                   description="Quantiles the model was trained with.")
    cell: str | None = Field(None, description="Recurrent cell.", examples=["lstm"])
    scaling: str | None = Field(None, description="Per-window scaling rule.",
                                examples=["log_level"])
    agg: Aggregation | None = Field(None, description="How the points falling into one grid "
                                    "bucket are combined (the model's grid rule).",
                                    examples=["mean"])
    gap_policy: GapPolicy | None = Field(None, description="How missing grid values are "
                                         "filled.", examples=["linear"])
    max_gap: int | None = Field(None, description="Longest run of missing grid values filled; "
                                "null: any.", examples=[None])
    timezone: TimeZone | None = Field(None, description="Time zone of the grid; naive "
                                      "timestamps are read in it.", examples=["UTC"])
    covariates: list[CovariateInfo] = Field(
        default_factory=list, description="Covariates a forecast request must send per series: "
        "past and future ones in 'covariates' (one value per history value), future ones also "
        "in 'future' (one per step of the horizon), static ones in 'static'.")
    calendar: dict[str, Any] | None = Field(
        None, examples=[None], description="Calendar features the model "
                                            "computes from the timestamps (never sent).")
    series_embedding: bool = Field(
        False, examples=[False], description="Whether the model has a learned series "
                                   "embedding (an unseen id uses the shared vector).")
    metrics: dict[str, float] = Field(default_factory=dict, description="Holdout scores.",
                                      examples=[{"smape": 13.6, "mase": 1.25, "owa": 0.61}])
    last_check: datetime | None = Field(None, description="Last registry poll.",
                                        examples=["2024-01-08T00:00:30Z"])
    last_error: str | None = Field(None, description="Why the newest version is not served.",
                                   examples=[None])
    failed_version: int | None = Field(None, description="Version that failed to load or warm.",
                                       examples=[None])
    registry_reachable: bool | None = Field(None, description="Whether the last poll reached "
                                            "the registry.", examples=[True])
    calibration: CalibrationInfo | None = Field(
        None, description="Interval calibration of the served version (null: not known yet).")


class ReloadResult(BaseModel):
    """Outcome of a forced alias check."""

    name: str = Field(description="Registered model name.", examples=["nearcast-m4-hourly"])
    swapped: bool = Field(description="True when a new version was loaded and swapped in.",
                          examples=[True])
    version: int | None = Field(description="Version served now.", examples=[4])
    last_error: str | None = Field(None, description="Why the alias' version is not served.",
                                   examples=[None])


__all__ = ["CalibrationInfo", "CovariateInfo", "IntervalCalibration", "ModelInfo",
           "ReloadResult"]
