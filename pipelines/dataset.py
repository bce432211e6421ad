"""Training data from a config: source -> regular, gap-filled long frame (+ reports)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from pipelines import sources
from pipelines.prepare import Regularized, regularize


class DataConfig(BaseModel):
    """Where observations come from and how they become regular series."""

    model_config = ConfigDict(extra="forbid")

    source: Literal["m4_hourly", "files", "sql"] = "m4_hourly"
    path: str | None = Field(None, description="File, folder or glob (source 'files').")
    url: str | None = Field(None, description="SQLAlchemy URL (source 'sql').")
    query: str | None = Field(None, description="Table name or SELECT (source 'sql').")
    columns: dict[str, str] = Field(
        default_factory=dict, description="Your column -> unique_id/ds/y."
    )
    n_series: int | None = Field(None, ge=1, description="Bundled M4: first n series only.")
    freq: str | None = Field("h", description="Grid frequency; null infers it.")
    agg: str = "mean"
    gap_policy: Literal["ffill", "linear", "zero"] = "linear"
    max_gap: int | None = Field(None, ge=1)

    def describe(self) -> str:
        """A short source label for tags and the dataset name."""
        if self.source == "m4_hourly":
            return "bundled:m4_hourly_train (synthetic hourly index)"
        return f"{self.source}:{self.path or self.query}"


@dataclass(frozen=True)
class LoadedData:
    """A regular long frame and the reports of the pipeline stages."""

    frame: pd.DataFrame
    source: str
    prepared: Regularized


def read_raw(cfg: DataConfig) -> pd.DataFrame:
    """Read the configured source into the long format (not yet validated)."""
    mapping = sources.ColumnMap(**cfg.columns) if cfg.columns else None
    if cfg.source == "m4_hourly":
        return sources.load_m4_hourly(n_series=cfg.n_series)
    if cfg.source == "files":
        if not cfg.path:
            raise ValueError("data.path is required for source 'files'")
        return sources.read_files(cfg.path, columns=mapping)
    if not cfg.url or not cfg.query:
        raise ValueError("data.url and data.query are required for source 'sql'")
    return sources.read_sql(cfg.url, cfg.query, columns=mapping)


def load_dataset(cfg: DataConfig) -> LoadedData:
    """Read, validate, bucket and gap-fill the configured data."""
    prepared = regularize(read_raw(cfg), cfg.freq, agg=cfg.agg, gap_policy=cfg.gap_policy,
                          max_gap=cfg.max_gap)
    return LoadedData(prepared.frame, cfg.describe(), prepared)


__all__ = ["DataConfig", "LoadedData", "load_dataset", "read_raw"]
