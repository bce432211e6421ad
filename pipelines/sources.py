"""Read observations from files, SQL databases, data frames and the M4 wide layout.

Every source returns a long frame whose columns are renamed to ``unique_id``, ``ds``, ``y``
according to a :class:`ColumnMap`, plus the declared covariates renamed to their names (see
:mod:`pipelines.source_columns`); nothing is validated here, so the next step is
:func:`pipelines.validation.validate_long`.
"""

from __future__ import annotations

import glob
import importlib.resources
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import sqlalchemy as sa

from nearcast.pipelines.covariates import Covariate
from nearcast.pipelines.errors import (
    DataNotFoundError,
    DataSourceError,
    DataValidationError,
    first_line,
)
from nearcast.pipelines.origin import FileRows, RowOrigin
from nearcast.pipelines.schema import DS, UNIQUE_ID, Y
from nearcast.pipelines.source_columns import ColumnMap, from_dataframe, text_columns
from nearcast.pipelines.sql_source import masked_url, read_rows

__all__ = [
    "M4_HOURLY_RESOURCE",
    "ColumnMap",
    "FileFormat",
    "from_dataframe",
    "load_m4_hourly",
    "masked_url",
    "read_files_located",
    "read_m4_wide",
    "read_sql",
]

FileFormat = Literal["csv", "parquet"]

M4_HOURLY_RESOURCE = "data/m4_hourly_train.csv.gz"
"""Path of the bundled M4 Hourly training set, relative to the ``pipelines`` package."""

_SUFFIXES: dict[str, FileFormat] = {
    ".csv": "csv",
    ".csv.gz": "csv",
    ".csv.bz2": "csv",
    ".csv.xz": "csv",
    ".csv.zst": "csv",
    ".csv.zip": "csv",
    ".parquet": "parquet",
    ".pq": "parquet",
}


def read_files_located(
    path_or_glob: str | os.PathLike[str],
    *,
    columns: ColumnMap | None = None,
    covariates: Mapping[str, Covariate] | None = None,
    series_id: str | None = None,
) -> tuple[pd.DataFrame, RowOrigin]:
    """Read long CSV or Parquet files (one file, every data file of a folder, or a glob).

    Args:
        path_or_glob: A file, a folder (its ``.csv``, ``.csv.gz``, ``.parquet`` ... files, not
            recursing) or a glob pattern such as ``"data/**/*.parquet"`` (``**`` recurses).
            Each file's format is told by its suffix.
        columns: Column mapping applied to every file (``""``: the unnamed first column).
        covariates: Covariate columns kept, renamed to their names (see
            :func:`~pipelines.source_columns.from_dataframe`).
        series_id: The series key of every row, for files without an id column.

    Returns:
        The files' rows concatenated in sorted path order, with a fresh index (CSV series ids
        and categorical covariates are read as strings, so ``"007"`` stays ``"007"``;
        timestamps are left as read), and
        its :class:`~pipelines.origin.RowOrigin`, whose ``locate`` turns row positions in
        validation errors into file lines.

    Raises:
        DataNotFoundError: If nothing matches (naming the pattern); a FileNotFoundError.
        DataSourceError: If a file's format cannot be told from its suffix, or a file is empty
            or cannot be parsed (naming the file).
        DataValidationError: If a mapped or covariate column is missing from a file (naming
            the file, and the covariate).
    """
    paths = _expand(str(path_or_glob))
    text = text_columns(columns, covariates)
    frames, parts = [], []
    for path in paths:
        raw = _read_one(path, text)
        try:
            frames.append(from_dataframe(raw, columns, covariates=covariates,
                                         series_id=series_id))
        except DataValidationError as exc:
            raise RowOrigin(str(path), (FileRows(str(path), 0),)).locate(exc) from None
        csv = _format_of(path) == "csv"
        parts.append(FileRows(str(path), len(raw), 2 if csv else 0, "line" if csv else "row"))
    return pd.concat(frames, ignore_index=True), RowOrigin(str(path_or_glob), tuple(parts))


def _expand(pattern: str) -> list[Path]:
    """Return the data files named by a path, folder or glob pattern."""
    path = Path(pattern)
    if path.is_dir():
        found = [p for p in path.iterdir() if p.is_file() and _format_of(p) is not None]
    elif path.is_file():
        found = [path]
    else:
        found = [Path(p) for p in glob.glob(pattern, recursive=True) if Path(p).is_file()]
    if not found:
        raise DataNotFoundError(f"no CSV or Parquet file matches {pattern!r}")
    return sorted(found)


def _format_of(path: Path) -> FileFormat | None:
    """Tell a file's format from its suffix, or None."""
    name = path.name.lower()
    for suffix, fmt in _SUFFIXES.items():
        if name.endswith(suffix):
            return fmt
    return None


def _read_one(path: Path, text: list[str]) -> pd.DataFrame:
    """Read one CSV or Parquet file (the ``text`` columns of a CSV as strings); errors name it."""
    kind = _format_of(path)
    if kind is None:
        raise DataSourceError(
            f"cannot tell the format of {str(path)!r} from its suffix (one of "
            f"{', '.join(_SUFFIXES)})"
        )
    try:
        if kind == "parquet":
            return pd.read_parquet(path)
        return pd.read_csv(path, dtype=dict.fromkeys(text, "str"))
    except pd.errors.EmptyDataError:
        raise DataSourceError(
            f"{path}: the file is empty (expected a header line such as "
            f"'{UNIQUE_ID},{DS},{Y}' and data rows)"
        ) from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataSourceError(f"{path}: cannot be read as {kind.upper()}: {first_line(exc)}") \
            from None
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError
        if isinstance(exc, FileNotFoundError | IsADirectoryError | PermissionError):
            raise DataSourceError(f"{path}: {exc.strerror or exc}") from None
        if kind == "parquet":
            raise DataSourceError(f"{path}: cannot be read as Parquet: {first_line(exc)}") \
                from None
        raise


def read_sql(
    url_or_engine: str | sa.Engine,
    table_or_query: str,
    *,
    columns: ColumnMap | None = None,
    covariates: Mapping[str, Covariate] | None = None,
    series_id: str | None = None,
) -> pd.DataFrame:
    """Read observations through SQLAlchemy from a table or a query.

    Works with any SQLAlchemy database, e.g. ``"sqlite:///obs.db"`` or, for PostgreSQL,
    ``"postgresql+psycopg2://user:password@host:5432/dbname"`` (needs ``psycopg2``). Timestamp
    columns come back as the driver returns them (SQLite: text; PostgreSQL ``timestamptz``:
    tz-aware datetimes); :func:`pipelines.validation.validate_long` parses either.

    Args:
        url_or_engine: A database URL (an engine is created and disposed of) or an engine.
        table_or_query: A table name (optionally ``schema.table``) or a SQL query.
        columns: Column mapping applied to the result.
        covariates: Covariate columns kept, renamed to their names.
        series_id: The series key of every row, for a result without an id column.

    Returns:
        The rows as a long frame.

    Raises:
        DataSourceError: If the database cannot be reached (naming it, without the password),
            its driver is not installed, the table does not exist (naming the tables there)
            or the query fails.
        DataValidationError: If a mapped or covariate column is missing from the result.
    """
    frame = read_rows(url_or_engine, table_or_query)
    return from_dataframe(frame, columns, covariates=covariates, series_id=series_id)


def read_m4_wide(
    path: str | os.PathLike[str],
    *,
    start: str | pd.Timestamp = "2000-01-01",
    freq: str = "h",
    n_series: int | None = None,
) -> pd.DataFrame:
    """Read a file in the wide M4 layout into the long format on a synthetic time index.

    The M4 files hold one series per row: the first column is the series id (``"H1"``), the
    next ones (``V2`` ... ``Vn``) its values, and shorter series end with empty cells. They
    carry **no timestamps**: each series gets the synthetic regular index ``start``,
    ``start + freq``, ... (so all series start together; their real dates are unknown).
    Trailing empty cells are dropped; an empty cell inside a series stays as NaN.

    Args:
        path: CSV file (compression such as ``.gz`` is inferred from the suffix).
        start: First timestamp of every series (naive is taken as UTC).
        freq: Step of the synthetic index (the M4 subset's frequency, e.g. ``"h"``).
        n_series: Read only the first ``n_series`` series (``None``: all).

    Returns:
        Long frame with ``unique_id`` (str), ``ds`` (``datetime64[ns, UTC]``) and ``y``.

    Raises:
        ValueError: If ``n_series`` is below 1.
    """
    if n_series is not None and n_series < 1:
        raise ValueError(f"n_series must be >= 1 or None, got {n_series}")
    wide = pd.read_csv(path, index_col=0, nrows=n_series)
    values = wide.to_numpy(dtype="float64")
    present = ~np.isnan(values)
    width = values.shape[1]
    lengths = np.where(present.any(axis=1), width - np.argmax(present[:, ::-1], axis=1), 0)
    keep = np.arange(width)[np.newaxis, :] < lengths[:, np.newaxis]
    rows, steps = np.nonzero(keep)
    origin = pd.Timestamp(start)
    origin = origin.tz_convert("UTC") if origin.tzinfo else origin.tz_localize("UTC")
    grid = pd.date_range(origin, periods=max(int(lengths.max(initial=0)), 1), freq=freq)
    return pd.DataFrame(
        {
            UNIQUE_ID: pd.Series(wide.index.astype(str), dtype="str").to_numpy()[rows],
            DS: grid.as_unit("ns")[steps],
            Y: values[keep],
        }
    ).astype({UNIQUE_ID: "str"})


def load_m4_hourly(n_series: int | None = None) -> pd.DataFrame:
    """Load the bundled M4 Hourly training set (414 series of 700 to 960 hourly points).

    The file ships as package data (``pipelines/data/m4_hourly_train.csv.gz``) and is read
    through :mod:`importlib.resources` with :func:`read_m4_wide`: timestamps are synthetic,
    hourly from 2000-01-01 00:00 UTC.

    Args:
        n_series: Load only the first ``n_series`` series (file order: H1, H2, ...).

    Returns:
        Long frame with ``unique_id``, ``ds`` and ``y``.
    """
    resource = importlib.resources.files("nearcast.pipelines").joinpath(M4_HOURLY_RESOURCE)
    with importlib.resources.as_file(resource) as path:
        return read_m4_wide(path, start="2000-01-01", freq="h", n_series=n_series)
