"""Training data from a config: source -> regular, gap-filled long frame (+ reports)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pandas as pd
from pydantic import Field, field_validator, model_validator

from nearcast.pipelines import sources
from nearcast.pipelines.covariates import Covariate
from nearcast.pipelines.errors import DataSourceError, DataValidationError, Problem
from nearcast.pipelines.grid import GridRule
from nearcast.pipelines.origin import RowOrigin
from nearcast.pipelines.prepare import Regularized, regularize
from nearcast.pipelines.schema import LONG_COLUMNS, UNIQUE_ID


class DataConfig(GridRule):
    """Where observations come from, and the grid rule that makes them regular series.

    The grid keys (``freq``, ``agg``, ``gap_policy``, ``max_gap``, ``timezone``) are those of
    :class:`pipelines.grid.GridRule`; a model trained on this data keeps them.

    ``columns`` maps ``unique_id``, ``ds`` and ``y`` to the source's column names, verbatim
    (leading spaces included: ``" Price"``); ``""`` means a CSV's unnamed first column (a header
    starting with a comma). ``series_id`` gives every row one series key, for a source without
    an id column (one market per file). ``covariates`` declares the other columns to read, by
    their name inside nearcast (see :mod:`pipelines.covariates`), e.g.::

        columns: {ds: "", y: " Price"}
        series_id: NP
        covariates:
          load: {column: " Grid load forecast", role: future}
    """

    source: Literal["m4_hourly", "files", "sql"] = "m4_hourly"
    path: str | None = Field(None, description="File, folder or glob (source 'files').")
    url: str | None = Field(None, description="SQLAlchemy URL (source 'sql').")
    query: str | None = Field(None, description="Table name or SELECT (source 'sql').")
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="unique_id/ds/y -> your column ('' = the unnamed first column).",
    )
    series_id: str | None = Field(
        None, min_length=1, description="One series key for a source without an id column."
    )
    covariates: dict[str, Covariate] = Field(
        default_factory=dict, description="Covariate name -> role, kind, source column, ..."
    )
    n_series: int | None = Field(None, ge=1, description="Bundled M4: first n series only.")

    @field_validator("columns")
    @classmethod
    def _known_columns(cls, value: dict[str, str]) -> dict[str, str]:
        unknown = sorted(set(value) - set(LONG_COLUMNS))
        if unknown:
            raise ValueError(f"unknown key(s) {unknown}: columns maps {list(LONG_COLUMNS)} "
                             "to the names of your columns")
        sources.ColumnMap(**value)  # ValueError when one column is named twice
        return value

    @field_validator("covariates")
    @classmethod
    def _covariate_names(cls, value: dict[str, Covariate]) -> dict[str, Covariate]:
        taken = sorted(set(value) & set(LONG_COLUMNS))
        if taken:
            raise ValueError(f"covariate name(s) {taken} collide with the long format's columns "
                             f"{list(LONG_COLUMNS)}; name the covariate otherwise (its source "
                             "column goes in 'column')")
        if "" in value:
            raise ValueError("a covariate needs a non-empty name")
        return value

    @model_validator(mode="after")
    def _source_fields(self) -> DataConfig:
        if self.source == "files" and not self.path:
            raise ValueError("'path' is required when source is 'files'")
        if self.source == "sql" and not (self.url and self.query):
            raise ValueError("'url' and 'query' are required when source is 'sql'")
        if self.series_id is not None and UNIQUE_ID in self.columns:
            raise ValueError(f"give either 'series_id' (one series) or 'columns.{UNIQUE_ID}' "
                             "(the column holding the series key), not both")
        if self.source == "m4_hourly" and self.series_id is not None:
            raise ValueError("'series_id' needs source 'files' or 'sql' (the bundled M4 data "
                             "has its own series keys)")
        return self

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

    @property
    def grid(self) -> GridRule:
        """The grid rule the frame is on (with the inferred frequency when none was given)."""
        return self.prepared.rule


@dataclass(frozen=True)
class RawData:
    """Observations as read (long format, not yet validated) and where each row came from."""

    frame: pd.DataFrame
    origin: RowOrigin


def read_raw(cfg: DataConfig) -> RawData:
    """Read the configured source into the long format (not yet validated).

    Raises:
        DataNotFoundError: no file matches ``path``.
        DataSourceError: the file, database or table cannot be read (naming it).
        DataValidationError: a mapped column is missing (naming the file), or there is no row.
    """
    raw = _read(cfg)
    if raw.frame.empty:  # e.g. a CSV with only a header: refused before anything is tracked
        empty = Problem(kind="empty", unique_id=None, message="no data rows")
        raise raw.origin.locate(DataValidationError([empty]))
    return raw


def _read(cfg: DataConfig) -> RawData:
    mapping = sources.ColumnMap(**cfg.columns) if cfg.columns else None
    if cfg.source == "m4_hourly":
        if cfg.covariates:
            raise DataSourceError("the bundled M4 data has no covariates: declare covariates "
                                  "for source 'files' or 'sql', or pass a frame holding them")
        return RawData(sources.load_m4_hourly(n_series=cfg.n_series), RowOrigin(cfg.describe()))
    if cfg.source == "files":
        if not cfg.path:
            raise DataSourceError("data.path is required for source 'files'")
        return RawData(*sources.read_files_located(
            cfg.path, columns=mapping, covariates=cfg.covariates, series_id=cfg.series_id))
    if not cfg.url or not cfg.query:
        raise DataSourceError("data.url and data.query are required for source 'sql'")
    frame = sources.read_sql(cfg.url, cfg.query, columns=mapping, covariates=cfg.covariates,
                             series_id=cfg.series_id)
    return RawData(frame, RowOrigin(f"{sources.masked_url(cfg.url)} {cfg.query}"))


def prepare(cfg: DataConfig, raw: RawData) -> LoadedData:
    """Validate, bucket and gap-fill data read by :func:`read_raw` (covariates included).

    Raises:
        DataValidationError: naming the series and the file lines (or rows) of every problem.
        DataSourceError: when the grid cannot be made (e.g. no frequency can be inferred).
    """
    try:
        prepared = regularize(raw.frame, cfg, covariates=cfg.covariates)
    except DataValidationError as exc:
        raise raw.origin.locate(exc) from exc
    except ValueError as exc:  # bucketing: e.g. no frequency can be inferred from the data
        raise DataSourceError(f"{raw.origin.label}: {exc}") from exc
    return LoadedData(prepared.frame, cfg.describe(), prepared)


def load_dataset(cfg: DataConfig) -> LoadedData:
    """Read, validate, bucket and gap-fill the configured data (errors name file and line)."""
    return prepare(cfg, read_raw(cfg))


__all__ = ["DataConfig", "LoadedData", "RawData", "load_dataset", "prepare", "read_raw"]
