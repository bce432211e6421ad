"""Check a long frame of observations and bring it to the canonical form.

:func:`validate_long` finds every problem of the input in one pass and raises a single
:class:`~pipelines.errors.DataValidationError` listing them (series, rows and what is wrong), or
returns the clean frame with a :class:`ValidationReport` accounting for every input row.

Rows are referred to by their 0-based position in the input frame;
:meth:`pipelines.origin.RowOrigin.locate` turns them into file lines for data read from files.

:func:`drop_short_series` leaves out (and names) series too short for a job, so that one short
series does not sink the whole job.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

import pandas as pd

from nearcast.pipelines.bucketing import aggregate, check_aggregation
from nearcast.pipelines.covariate_checks import (
    missing_covariate_columns,
    parse_covariates,
    parse_numeric,
)
from nearcast.pipelines.covariates import Covariate, bucket_aggregation
from nearcast.pipelines.errors import DataValidationError, Problem
from nearcast.pipelines.problems import sample
from nearcast.pipelines.schema import DS, LONG_COLUMNS, UNIQUE_ID, Y
from nearcast.pipelines.timestamps import check_timestamps

__all__ = ["DuplicatePolicy", "ValidationReport", "drop_short_series", "validate_long"]

DuplicatePolicy = Literal["reject", "aggregate"]


@dataclass
class ValidationReport:
    """What :func:`validate_long` found and changed; every input row is accounted for.

    Attributes:
        rows_in: Rows of the input frame.
        rows_out: Rows of the output frame.
        rows_aggregated_away: Rows merged into another row with the same (unique_id, ds), so
            that ``rows_in == rows_out + rows_aggregated_away``.
        n_series: Number of series in the output.
        counts: Count per kind: ``missing_y`` (NaN targets kept, in the output),
            ``naive_timestamp`` (input rows whose naive timestamp was taken as UTC),
            ``duplicate_rows_aggregated`` (same as ``rows_aggregated_away``).
        per_series: For each series, ``rows_in``, ``rows_out`` and the non-zero counts above.
        columns_dropped: Input columns other than the required ones.
    """

    rows_in: int = 0
    rows_out: int = 0
    rows_aggregated_away: int = 0
    n_series: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    per_series: dict[str, dict[str, int]] = field(default_factory=dict)
    columns_dropped: list[str] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        """Whether every input row is in the output or was aggregated away."""
        return self.rows_in == self.rows_out + self.rows_aggregated_away

    def as_dict(self) -> dict[str, Any]:
        """Return the report as plain data for logging.

        Returns:
            The report fields as a dictionary.
        """
        return asdict(self)


def validate_long(
    df: pd.DataFrame,
    *,
    duplicates: DuplicatePolicy = "reject",
    agg: str = "mean",
    covariates: Mapping[str, Covariate] | None = None,
) -> tuple[pd.DataFrame, ValidationReport]:
    """Validate a long frame and return it in canonical form.

    Checks, all reported together: missing required columns (raised at once, naming them and the
    columns present), then no rows at all (raised at once); rows without ``unique_id``;
    non-numeric and infinite ``y`` values; missing or unparseable timestamps; naive and
    tz-aware timestamps mixed in one column; duplicate (unique_id, ds) pairs (unless
    aggregated). Columns other than ``unique_id``, ``ds``, ``y`` and the covariates are
    dropped. NaN ``y`` is allowed (a missing value for the gap policy) and counted. Tz-aware
    timestamps with any offsets are converted to UTC; when every timestamp is naive they are
    taken as UTC and counted (see :mod:`pipelines.timestamps` for how strings are parsed).
    Numeric strings in ``y`` (``"2.5"``) are accepted.

    Declared ``covariates`` are kept (after ``y``, in declaration order) and checked too: a
    missing covariate column (raised with the missing required ones), non-numeric or infinite
    values of a numeric covariate, and a static covariate without a value or with more than
    one value in a series; problems name the series, the rows and the column. Numeric ones
    become float64 (NaN allowed in time-varying ones, for their gap policy), categorical ones
    strings. Duplicates merge each covariate with its own aggregation (static ones: first).

    Args:
        df: Long frame with ``unique_id``, ``ds`` and ``y`` (other columns are dropped and
            listed in the report).
        duplicates: ``"reject"`` raises on duplicate (unique_id, ds) pairs; ``"aggregate"``
            merges them with ``agg`` (NaN skipped; ``first``/``last`` follow input row order).
        agg: Aggregation for duplicates: one of :data:`pipelines.bucketing.AGGREGATIONS`.
        covariates: Covariate columns to keep and check, by name (see
            :mod:`pipelines.covariates`); ``None`` or empty: none.

    Returns:
        The frame with columns ``unique_id`` (str), ``ds`` (``datetime64[ns, UTC]``), ``y``
        (float64) and the covariates, sorted by ``unique_id``, ``ds``; and the report.

    Raises:
        DataValidationError: Listing every problem found.
        ValueError: On invalid arguments.
    """
    if duplicates not in get_args(DuplicatePolicy):
        raise ValueError(f"duplicates must be one of {get_args(DuplicatePolicy)}, "
                         f"got {duplicates!r}")
    check_aggregation(agg)
    covs = dict(covariates or {})
    if clash := sorted(set(covs) & set(LONG_COLUMNS)):
        raise ValueError(f"covariate name(s) {clash} collide with {list(LONG_COLUMNS)}")
    _check_columns(df, covs)
    if df.empty:
        raise DataValidationError([Problem(kind="empty", unique_id=None, message="no data rows")])
    kept = [*LONG_COLUMNS, *covs]
    work = df[kept].reset_index(drop=True)
    uids = work[UNIQUE_ID].astype(str)
    y, target_problems = parse_numeric(work[Y], uids, Y)
    cov_values, cov_problems = parse_covariates(work, covs, uids)
    stamps, stamp_problems = check_timestamps(work[DS], uids)
    problems = _missing_ids(uids) + target_problems + cov_problems + stamp_problems
    if problems or stamps is None:
        raise DataValidationError(problems)
    clean = work.assign(**{UNIQUE_ID: uids, DS: stamps.values, Y: y, **cov_values})
    clean = clean.sort_values([UNIQUE_ID, DS], kind="stable")  # index: input row positions
    out = _resolve_duplicates(clean, duplicates, agg, covs)
    naive = stamps.naive.groupby(uids, sort=True).sum()
    report = _report(clean, out, naive, [c for c in df.columns if c not in kept])
    return out, report


def _check_columns(df: pd.DataFrame, covs: Mapping[str, Covariate]) -> None:
    """Raise DataValidationError naming missing columns and the columns present."""
    missing = [c for c in LONG_COLUMNS if c not in df.columns]
    problems = missing_covariate_columns(df.columns, covs)
    if missing:
        present = [str(c) for c in df.columns]
        message = f"missing column(s) {missing}; columns present: {present}"
        problems.insert(0, Problem(kind="missing_column", unique_id=None, message=message))
    if problems:
        raise DataValidationError(problems)


def _missing_ids(uids: pd.Series) -> list[Problem]:
    """Problems for rows without a series id."""
    missing = uids.isna()
    if not missing.any():
        return []
    rows: list[Hashable] = list(uids.index[missing])
    message = f"{len(rows)} row(s) have no {UNIQUE_ID}"
    return [Problem(kind="missing_id", unique_id=None, rows=rows, message=message)]


def _resolve_duplicates(
    clean: pd.DataFrame, duplicates: str, agg: str, covs: Mapping[str, Covariate]
) -> pd.DataFrame:
    """Reject duplicate (unique_id, ds) pairs, or aggregate them; the result has a fresh index.

    Each covariate merges with its own aggregation (static ones: the first value).

    ``clean`` is sorted by (unique_id, ds) and indexed by input row position.
    """
    dup = clean.duplicated([UNIQUE_ID, DS], keep=False)
    if not dup.any():
        return clean.reset_index(drop=True)
    if duplicates == "reject":
        raise DataValidationError(
            Problem(
                kind="duplicate",
                unique_id=str(uid),
                rows=list(pd.DatetimeIndex(group[DS].unique())),
                message=f"{group[DS].nunique()} timestamp(s) appear more than once "
                f"(input rows {sample(group.index.to_series())}); pass duplicates='aggregate' to "
                "merge them",
            )
            for uid, group in clean[dup].groupby(UNIQUE_ID, sort=True)
        )
    grouped = clean.groupby([UNIQUE_ID, DS], sort=True)
    merged = aggregate(grouped[Y], agg)
    if not covs:
        return merged.reset_index()
    parts = {Y: merged} | {n: aggregate(grouped[n], bucket_aggregation(c)) for n, c in covs.items()}
    return pd.concat(parts, axis=1).reset_index()


def _too_short(short: pd.Series, why: str, unit: str = "point(s)") -> list[Problem]:
    """One ``too_short`` problem per series of ``short`` (id -> length)."""
    return [
        Problem(kind="too_short", unique_id=str(uid), message=f"series has {n} {unit}; {why}")
        for uid, n in short.items()
    ]


def drop_short_series(
    df: pd.DataFrame, min_length: int, *, strict: bool = False, why: str = ""
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Leave out the series with fewer than ``min_length`` rows, and say which.

    Args:
        df: Long frame with ``unique_id``.
        min_length: Fewest rows a series needs.
        strict: Raise instead of leaving series out.
        why: What the rows are needed for (ends the problem messages), e.g. ``"training needs
            at least 120 (2 x horizon 48 + 24 of history)"``.

    Returns:
        The frame without the short series (row order kept, index reset) and, for each series
        left out, its number of rows.

    Raises:
        DataValidationError: Naming every short series when ``strict`` or when no series is
            long enough.
    """
    lengths = df.groupby(UNIQUE_ID, sort=True).size()
    short = lengths[lengths < min_length]
    if short.empty:
        return df, {}
    if strict or len(short) == len(lengths):
        raise DataValidationError(_too_short(short, why or f"need at least {min_length}"))
    kept = df[~df[UNIQUE_ID].isin(short.index)].reset_index(drop=True)
    return kept, {str(uid): int(n) for uid, n in short.items()}


def _report(
    clean: pd.DataFrame, out: pd.DataFrame, naive: pd.Series, dropped: list[Hashable]
) -> ValidationReport:
    """Build the report from the frame before and after aggregating duplicates.

    ``naive`` holds the number of naive input timestamps per series.
    """
    rows_in = clean.groupby(UNIQUE_ID, sort=True).size()
    rows_out = out.groupby(UNIQUE_ID, sort=True).size()
    missing = out[Y].isna().groupby(out[UNIQUE_ID], sort=True).sum()
    kinds = pd.DataFrame(
        {
            "rows_in": rows_in,
            "rows_out": rows_out,
            "missing_y": missing,
            "naive_timestamp": naive,
            "duplicate_rows_aggregated": rows_in - rows_out,
        }
    ).fillna(0)
    per_series = {
        str(uid): {str(k): int(v) for k, v in row.items() if str(k).startswith("rows_") or v}
        for uid, row in kinds.astype("int64").iterrows()
    }
    totals = {str(k): int(v) for k, v in kinds.sum().items()}
    return ValidationReport(
        rows_in=len(clean),
        rows_out=len(out),
        rows_aggregated_away=len(clean) - len(out),
        n_series=len(rows_out),
        counts={k: v for k, v in totals.items() if not k.startswith("rows_")},
        per_series=per_series,
        columns_dropped=[str(c) for c in dropped],
    )
