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

from collections.abc import Callable, Hashable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

from nearcast.pipelines.bucketing import check_aggregation
from nearcast.pipelines.errors import DataValidationError, Problem
from nearcast.pipelines.schema import DS, LONG_COLUMNS, UNIQUE_ID, Y

__all__ = ["DuplicatePolicy", "ValidationReport", "drop_short_series", "validate_long"]

DuplicatePolicy = Literal["reject", "aggregate"]

_SAMPLE = 3


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
        columns_dropped: Input columns neither required nor declared as covariates.
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


@dataclass(frozen=True)
class _Timestamps:
    """Parsed timestamp column: UTC values, which rows were naive, and the problems found."""

    values: pd.Series
    naive: pd.Series
    problems: list[Problem]


def validate_long(
    df: pd.DataFrame,
    *,
    min_length: int = 0,
    duplicates: DuplicatePolicy = "reject",
    agg: str = "mean",
    covariates: Sequence[str] = (),
) -> tuple[pd.DataFrame, ValidationReport]:
    """Validate a long frame and return it in canonical form.

    Checks, all reported together: missing required columns (raised at once, naming them and the
    columns present), then no rows at all (raised at once); rows without ``unique_id``;
    non-numeric and infinite ``y`` values; infinite numeric covariates; missing or unparseable
    timestamps; naive and tz-aware timestamps mixed in one column; duplicate (unique_id, ds)
    pairs (unless aggregated); series with fewer than ``min_length`` timestamps. NaN ``y`` is
    allowed (a missing value for the gap policy) and counted. Tz-aware timestamps with any
    offsets are converted to UTC; when every timestamp is naive they are taken as UTC and
    counted. Timestamp strings are parsed as ISO 8601 when possible, otherwise one by one by
    :class:`pandas.Timestamp` (``"01/02/2024"`` is January 2nd). Numeric strings in ``y``
    (``"2.5"``) are accepted.

    Args:
        df: Long frame with ``unique_id``, ``ds``, ``y`` and optional covariate columns.
        min_length: Minimum number of distinct timestamps per series.
        duplicates: ``"reject"`` raises on duplicate (unique_id, ds) pairs; ``"aggregate"``
            merges them with ``agg`` (NaN skipped; ``first``/``last`` follow input row order;
            non-numeric covariates keep the last non-missing value).
        agg: Aggregation for duplicates: one of :data:`pipelines.bucketing.AGGREGATIONS`.
        covariates: Extra columns to keep; other columns are dropped (and listed in the report).

    Returns:
        The frame with columns ``unique_id`` (str), ``ds`` (``datetime64[ns, UTC]``), ``y``
        (float64) and the covariates, sorted by ``unique_id``, ``ds``; and the report.

    Raises:
        DataValidationError: Listing every problem found.
        ValueError: On invalid arguments.
    """
    _check_arguments(min_length, duplicates, agg, covariates)
    columns = [*LONG_COLUMNS, *covariates]
    _check_columns(df, columns)
    if df.empty:
        raise DataValidationError([Problem(kind="empty", unique_id=None, message="no data rows")])
    work = df[columns].reset_index(drop=True)
    uids = work[UNIQUE_ID].astype(str)
    y, problems = _parse_target(work[Y], uids)
    problems = _missing_ids(uids) + problems + _infinite_covariates(work, covariates, uids)
    stamps = _parse_timestamps(work[DS], uids)
    if problems or stamps.problems:
        raise DataValidationError(problems + stamps.problems)
    clean = work.assign(**{UNIQUE_ID: uids, DS: stamps.values, Y: y})
    clean = clean.sort_values([UNIQUE_ID, DS], kind="stable")  # index: input row positions
    out = _resolve_duplicates(clean, duplicates, agg, covariates)
    _check_lengths(out, min_length)
    naive = stamps.naive.groupby(uids, sort=True).sum()
    report = _report(clean, out, naive, [c for c in df.columns if c not in columns])
    return out, report


def _check_arguments(min_length: int, duplicates: str, agg: str, covariates: Sequence[str]) -> None:
    """Raise ValueError on invalid arguments of :func:`validate_long`."""
    if min_length < 0:
        raise ValueError(f"min_length must be >= 0, got {min_length}")
    if duplicates not in ("reject", "aggregate"):
        raise ValueError(f"duplicates must be 'reject' or 'aggregate', got {duplicates!r}")
    check_aggregation(agg)
    clashing = [c for c in covariates if c in LONG_COLUMNS]
    if clashing or len(set(covariates)) != len(covariates):
        raise ValueError(
            f"covariates must be distinct and not among {list(LONG_COLUMNS)}: {list(covariates)}"
        )


def _check_columns(df: pd.DataFrame, columns: list[str]) -> None:
    """Raise DataValidationError naming missing columns and the columns present."""
    missing = [c for c in columns if c not in df.columns]
    if missing:
        present = [str(c) for c in df.columns]
        raise DataValidationError(
            [
                Problem(
                    kind="missing_column",
                    unique_id=None,
                    message=f"missing column(s) {missing}; columns present: {present}",
                )
            ]
        )


def _per_series(
    kind: str, mask: pd.Series, uids: pd.Series, describe: Callable[[pd.Index], str]
) -> list[Problem]:
    """One problem per series for the rows flagged in ``mask``."""
    hits = pd.DataFrame({UNIQUE_ID: uids[mask]})
    problems: list[Problem] = []
    for key, group in hits.groupby(UNIQUE_ID, dropna=False, sort=True):
        uid = None if pd.isna(key) else str(key)
        rows: list[Hashable] = list(group.index)
        problems.append(Problem(kind=kind, unique_id=uid, rows=rows, message=describe(group.index)))
    return problems


def _sample(values: pd.Series) -> str:
    """Show the first few values of ``values``."""
    shown = ", ".join(repr(v) for v in values.iloc[:_SAMPLE])
    return shown + (", ..." if len(values) > _SAMPLE else "")


def _missing_ids(uids: pd.Series) -> list[Problem]:
    """Problems for rows without a series id."""
    missing = uids.isna()
    if not missing.any():
        return []
    rows: list[Hashable] = list(uids.index[missing])
    message = f"{len(rows)} row(s) have no {UNIQUE_ID}"
    return [Problem(kind="missing_id", unique_id=None, rows=rows, message=message)]


def _parse_target(raw: pd.Series, uids: pd.Series) -> tuple[pd.Series, list[Problem]]:
    """Convert ``y`` to float64; report non-numeric and infinite values per series."""
    if pd.api.types.is_bool_dtype(raw):
        raw = raw.astype("float64")
    numeric = pd.to_numeric(raw, errors="coerce").astype("float64")
    bad = numeric.isna() & raw.notna()
    problems = _per_series(
        "non_numeric", bad, uids, lambda rows: f"{Y} is not numeric: {_sample(raw[rows])}"
    )
    infinite = pd.Series(np.isinf(numeric.to_numpy()), index=numeric.index)
    problems += _per_series(
        "infinite", infinite, uids, lambda rows: f"{Y} is infinite: {_sample(numeric[rows])}"
    )
    return numeric, problems


def _infinite_covariates(
    work: pd.DataFrame, covariates: Sequence[str], uids: pd.Series
) -> list[Problem]:
    """Problems for infinite values in numeric covariates."""
    problems: list[Problem] = []
    for col in covariates:
        if not pd.api.types.is_float_dtype(work[col]):
            continue
        values = work[col]
        infinite = pd.Series(np.isinf(values.to_numpy(dtype="float64")), index=values.index)
        problems += _per_series("infinite", infinite, uids, _covariate_message(col))
    return problems


def _covariate_message(column: str) -> Callable[[pd.Index], str]:
    """Describe infinite values of covariate ``column``."""

    def describe(rows: pd.Index) -> str:
        return f"covariate {column!r} is infinite in {len(rows)} row(s)"

    return describe


def _parse_timestamps(raw: pd.Series, uids: pd.Series) -> _Timestamps:
    """Parse ``ds`` to UTC; report missing, unparseable and naive/aware-mixed timestamps."""
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_datetime64_any_dtype(raw):
        problem = Problem(
            kind="unparseable_timestamp",
            unique_id=None,
            message=f"column {DS!r} has numeric dtype {raw.dtype}; convert it to timestamps "
            "first (e.g. pd.to_datetime(values, unit='s') for epoch seconds)",
        )
        return _Timestamps(values=raw, naive=raw.notna(), problems=[problem])
    if pd.api.types.is_datetime64_any_dtype(raw):
        aware = isinstance(raw.dtype, pd.DatetimeTZDtype)
        values = raw.dt.tz_convert("UTC") if aware else raw.dt.tz_localize("UTC")
        naive = pd.Series(not aware, index=raw.index) & raw.notna()
    else:
        values, naive = _parse_objects(raw)
    values = values.dt.as_unit("ns")
    missing = raw.isna()
    problems = _per_series(
        "missing_timestamp", missing, uids, lambda rows: f"{len(rows)} row(s) have no {DS}"
    )
    problems += _per_series(
        "unparseable_timestamp",
        values.isna() & ~missing,
        uids,
        lambda rows: f"cannot parse {DS} as a timestamp: {_sample(raw[rows])}",
    )
    problems += _mixed_timezones(raw, naive, values.notna() & ~naive, uids)
    return _Timestamps(values=values, naive=naive, problems=problems)


def _parse_objects(raw: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Parse an object/string timestamp column; return UTC values and the naive-row mask."""
    present = raw.dropna()
    uniques = pd.Index(pd.unique(present.to_numpy()))
    parsed, aware = _parse_uniques(uniques)
    positions = uniques.get_indexer(present.to_numpy())
    utc = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns, UTC]")
    utc[present.index] = parsed.take(positions).as_unit("ns")
    naive = pd.Series(False, index=raw.index)
    naive[present.index] = ~aware[positions] & parsed.take(positions).notna()
    return utc, naive


def _parse_uniques(uniques: pd.Index) -> tuple[pd.DatetimeIndex, npt.NDArray[np.bool_]]:
    """Parse distinct timestamp values; return them in UTC (NaT if unparseable) and awareness.

    The common cases (all ISO 8601, all naive or all with one time zone) take a vectorised
    path; mixed offsets, naive/aware mixes and other formats are parsed one value at a time.
    """
    try:
        fast = pd.DatetimeIndex(pd.to_datetime(uniques, format="ISO8601"))
    except (ValueError, TypeError, OverflowError):
        pass
    else:
        if fast.tz is None:
            return fast.tz_localize("UTC"), np.zeros(len(uniques), dtype=bool)
        return fast.tz_convert("UTC"), np.ones(len(uniques), dtype=bool)
    stamps = [_parse_one(value) for value in uniques]
    aware = np.array([ts is not None and ts.tzinfo is not None for ts in stamps], dtype=bool)
    utc = [
        pd.NaT if ts is None else ts.tz_convert("UTC") if ts.tzinfo else ts.tz_localize("UTC")
        for ts in stamps
    ]
    return pd.DatetimeIndex(utc, dtype="datetime64[ns, UTC]"), aware


def _parse_one(value: object) -> pd.Timestamp | None:
    """Parse one timestamp value, or return None if it cannot be parsed."""
    try:
        stamp = pd.Timestamp(value)  # type: ignore[arg-type]
    except (ValueError, TypeError, OverflowError):
        return None
    return None if pd.isna(stamp) else stamp


def _mixed_timezones(
    raw: pd.Series, naive: pd.Series, aware: pd.Series, uids: pd.Series
) -> list[Problem]:
    """Problems for naive timestamps in a column that also holds tz-aware ones."""
    if not (naive.any() and aware.any()):
        return []
    example = raw[aware].iloc[0]
    return _per_series(
        "mixed_timezones",
        naive,
        uids,
        lambda rows: (
            f"naive {DS} {_sample(raw[rows])} mixed with tz-aware ones such as "
            f"{example!r}; give every timestamp an offset, or none"
        ),
    )


def _resolve_duplicates(
    clean: pd.DataFrame, duplicates: str, agg: str, covariates: Sequence[str]
) -> pd.DataFrame:
    """Reject duplicate (unique_id, ds) pairs, or aggregate them; the result has a fresh index.

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
                f"(input rows {_sample(group.index.to_series())}); pass duplicates='aggregate' to "
                "merge them",
            )
            for uid, group in clean[dup].groupby(UNIQUE_ID, sort=True)
        )
    how = {Y: agg} | {
        c: agg if pd.api.types.is_numeric_dtype(clean[c]) else "last" for c in covariates
    }
    grouped = clean.groupby([UNIQUE_ID, DS], sort=True)
    merged = {
        col: grouped[col].sum(min_count=1) if func == "sum" else grouped[col].agg(func)
        for col, func in how.items()
    }
    return pd.DataFrame(merged).reset_index()[clean.columns.tolist()]


def _check_lengths(out: pd.DataFrame, min_length: int) -> None:
    """Raise DataValidationError naming the series shorter than ``min_length``."""
    lengths = out.groupby(UNIQUE_ID, sort=True).size()
    short = lengths[lengths < min_length]
    if not short.empty:
        raise DataValidationError(
            _too_short(short, f"min_length is {min_length}", "timestamp(s)")
        )


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
