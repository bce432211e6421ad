"""Check covariate columns of a long frame and parse them, naming series, rows and column.

Used by :func:`pipelines.validation.validate_long`: numeric covariates are parsed to float64
(numeric strings accepted; non-numeric and infinite values are problems), categorical ones
are kept as strings. A static covariate must have a value on every row of its series, and the
same one. Each problem names the series, the rows (file lines once located, see
:meth:`pipelines.origin.RowOrigin.locate`) and the covariate's column
(:attr:`pipelines.errors.Problem.column`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from nearcast.pipelines.covariates import Covariate
from nearcast.pipelines.errors import Problem
from nearcast.pipelines.problems import per_series, sample

__all__ = ["describe_covariate", "missing_covariate_columns", "parse_covariates",
           "parse_numeric"]


def describe_covariate(name: str, cov: Covariate) -> str:
    """``"covariate 'load'"``, with the source column when it is named otherwise."""
    source = f" (source column {cov.column!r})" if cov.column not in (None, name) else ""
    return f"{'static ' if cov.role == 'static' else ''}covariate {name!r}{source}"


def missing_covariate_columns(
    columns: Iterable[object], covs: Mapping[str, Covariate]
) -> list[Problem]:
    """One problem per declared covariate without a column in ``columns``."""
    present = [str(c) for c in columns]
    return [
        Problem(kind="missing_column", unique_id=None, column=name,
                message=f"{describe_covariate(name, cov)}: no column {name!r}; columns present: "
                f"{present}")
        for name, cov in covs.items() if name not in present
    ]


def parse_numeric(
    raw: pd.Series, uids: pd.Series, what: str, column: str | None = None
) -> tuple[pd.Series, list[Problem]]:
    """Convert ``raw`` to float64; report non-numeric and infinite values per series.

    Args:
        raw: The column as given (numbers, numeric strings, booleans, NaN).
        uids: The series id of each row (same index).
        what: How messages name the column (``"y"``, ``"covariate 'load'"``).
        column: Set as the problems' ``column`` (covariates).

    Returns:
        The float64 column (NaN where missing or not numeric) and the problems.
    """
    if pd.api.types.is_bool_dtype(raw):
        raw = raw.astype("float64")
    numeric = pd.to_numeric(raw, errors="coerce").astype("float64")
    bad = numeric.isna() & raw.notna()
    problems = per_series(
        "non_numeric", bad, uids, lambda rows: f"{what} is not numeric: {sample(raw[rows])}",
        column,
    )
    infinite = pd.Series(np.isinf(numeric.to_numpy()), index=numeric.index)
    problems += per_series(
        "infinite", infinite, uids, lambda rows: f"{what} is infinite: {sample(numeric[rows])}",
        column,
    )
    return numeric, problems


def parse_covariates(
    work: pd.DataFrame, covs: Mapping[str, Covariate], uids: pd.Series
) -> tuple[dict[str, pd.Series], list[Problem]]:
    """Parse every covariate column of ``work``; check that static ones are constant.

    Returns:
        name -> parsed column (float64, or str for categorical ones; NaN where missing), and
        the problems found.
    """
    values: dict[str, pd.Series] = {}
    problems: list[Problem] = []
    for name, cov in covs.items():
        raw, what = work[name], describe_covariate(name, cov)
        found: list[Problem] = []
        if cov.kind == "categorical":
            parsed = raw.astype("str")
        else:
            parsed, found = parse_numeric(raw, uids, what, name)
        if cov.role == "static":
            found += _static_problems(raw, parsed, uids, what, name)
        values[name] = parsed
        problems += found
    return values, problems


def _static_problems(
    raw: pd.Series, parsed: pd.Series, uids: pd.Series, what: str, name: str
) -> list[Problem]:
    """Rows of a static covariate without a value, and rows differing from the series' first."""
    missing = raw.isna()
    problems = per_series(
        "missing_static", missing, uids, lambda rows: f"{what} has no value on {len(rows)} "
        "row(s); a static covariate needs its series' value on every row", name,
    )
    first = parsed.groupby(uids, sort=False).transform("first")
    varies = parsed.notna() & (parsed != first)
    problems += per_series(
        "static_varies", varies, uids, lambda rows: f"{what} varies within the series: "
        f"{first[rows[0]]!r}, then {sample(parsed[rows])}", name,
    )
    return problems
