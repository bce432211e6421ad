"""Map a source's columns onto the long format: the id, timestamp, target and covariates.

A :class:`ColumnMap` names the user's columns for ``unique_id``, ``ds`` and ``y``; covariates
(:mod:`pipelines.covariates`) are read from their ``column`` (or their name) and renamed to
their name. Names are taken verbatim, leading spaces included (``" Price"``). The empty name
``""`` means a file's unnamed first column (a CSV whose header starts with a comma, which
pandas reads as ``"Unnamed: 0"``). A source without an id column (one series per file) takes
a constant ``series_id``.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass

import pandas as pd

from nearcast.pipelines.covariates import Covariate, source_column
from nearcast.pipelines.errors import DataValidationError, Problem
from nearcast.pipelines.schema import DS, UNIQUE_ID, Y

__all__ = ["UNNAMED_FIRST_COLUMN", "ColumnMap", "from_dataframe", "text_columns"]

UNNAMED_FIRST_COLUMN = "Unnamed: 0"
"""How pandas names a CSV's first column when its header cell is empty (mapped as ``""``)."""


@dataclass(frozen=True)
class ColumnMap:
    """How the user's columns map onto the long format.

    Attributes:
        unique_id: User column holding the series key.
        ds: User column holding the timestamp.
        y: User column holding the target.

    A name ``""`` means the file's unnamed first column (read by pandas as ``"Unnamed: 0"``).
    """

    unique_id: str = UNIQUE_ID
    ds: str = DS
    y: str = Y

    def __post_init__(self) -> None:
        if len({self.unique_id, self.ds, self.y}) != 3:
            raise ValueError(f"column map names a column twice: {self.renames()}")

    def renames(self) -> dict[str, str]:
        """Return the mapping from user column names to long-frame column names.

        Returns:
            ``{user_name: long_name}`` for the id, timestamp and target.
        """
        return {self.unique_id: UNIQUE_ID, self.ds: DS, self.y: Y}


def _resolve(name: str, present: pd.Index) -> str:
    """The column of ``present`` that ``name`` means (``""``: the unnamed first column)."""
    if name == "" and "" not in present and UNNAMED_FIRST_COLUMN in present:
        return UNNAMED_FIRST_COLUMN
    return name


def text_columns(
    columns: ColumnMap | None, covariates: Mapping[str, Covariate] | None
) -> list[str]:
    """Source columns to read as text: the series id and categorical covariates."""
    names = [columns.unique_id if columns is not None else UNIQUE_ID]
    names += [source_column(n, c) for n, c in (covariates or {}).items() if c.kind == "categorical"]
    return [UNNAMED_FIRST_COLUMN if n == "" else n for n in names]


def from_dataframe(
    df: pd.DataFrame,
    columns: ColumnMap | None = None,
    *,
    covariates: Mapping[str, Covariate] | None = None,
    series_id: str | None = None,
) -> pd.DataFrame:
    """Return ``df`` as a long frame: mapped columns selected and renamed, index reset.

    Args:
        df: The user's frame.
        columns: Column mapping; ``None`` keeps the frame's columns as they are (they should
            already be named ``unique_id``, ``ds``, ``y``).
        covariates: Covariates to keep, each read from its ``column`` (or its name) and renamed
            to its name, after the long columns.
        series_id: The series key of every row, for a frame without an id column (the id
            mapping is then not used).

    Returns:
        A new frame (``df`` is not modified).

    Raises:
        DataValidationError: If a mapped or covariate column is missing (naming the columns
            present), or ``series_id`` is given for a frame that has an id column.
    """
    covs = dict(covariates or {})
    if columns is None and not covs and series_id is None:
        return df.reset_index(drop=True)
    renames = {_resolve(user, df.columns): long
               for user, long in (columns or ColumnMap()).renames().items()
               if not (series_id is not None and long == UNIQUE_ID)}
    sources = {name: _resolve(source_column(name, cov), df.columns) for name, cov in covs.items()}
    problems = _missing(renames if columns is not None else {}, sources, covs, df.columns)
    id_column = (columns or ColumnMap()).unique_id
    if series_id is not None and _resolve(id_column, df.columns) in df.columns:
        problems.append(Problem(
            kind="conflicting_column", unique_id=None,
            message=f"series_id {series_id!r} is given but the data has an id column "
            f"{id_column!r}; give one or the other"))
    if problems:
        raise DataValidationError(problems)
    if columns is None:  # keep every column, as given, but the covariates' renamed sources
        taken = set(sources.values()) | set(sources)
        base: dict[Hashable, pd.Series] = {c: df[c] for c in df.columns if c not in taken}
    else:
        base = {long: df[user] for user, long in renames.items()}
    parts = base | {name: df[source] for name, source in sources.items()}
    out = pd.DataFrame({k: v.reset_index(drop=True) for k, v in parts.items()})
    if series_id is not None:
        out.insert(0, UNIQUE_ID, pd.Series(series_id, index=out.index, dtype="str"))
    return out


def _missing(
    renames: Mapping[str, str], sources: Mapping[str, str], covs: Mapping[str, Covariate],
    columns: pd.Index,
) -> list[Problem]:
    """Problems for the mapped and covariate columns that ``columns`` lacks."""
    problems: list[Problem] = []
    present = [str(c) for c in columns]
    missing = [user for user in renames if user not in columns]
    if missing:
        message = f"missing column(s) {missing}; columns present: {present}"
        problems.append(Problem(kind="missing_column", unique_id=None, message=message))
    for name, source in sources.items():
        if source not in columns:
            what = (f"column {source!r}" if source == name
                    else f"column {covs[name].column!r} (read as {name!r})")
            problems.append(Problem(
                kind="missing_column", unique_id=None, column=name,
                message=f"covariate {name!r}: {what} is missing; columns present: {present}"))
    return problems
