"""Parse a timestamp column to UTC, remembering which values were naive, and name its problems.

Naive timestamps are taken as UTC, aware ones (any offsets) converted to UTC (the grid rule's
:data:`pipelines.grid.TimeZone`). Strings are parsed as ISO 8601 when possible, otherwise one by
one by :class:`pandas.Timestamp` (``"01/02/2024"`` is January 2nd). :func:`check_timestamps`
names the rows that are missing, cannot be parsed or mix naive and aware timestamps, for
:func:`pipelines.validation.validate_long`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from nearcast.pipelines.errors import Problem
from nearcast.pipelines.problems import per_series, sample
from nearcast.pipelines.schema import DS

__all__ = ["ParsedTimestamps", "check_timestamps"]


@dataclass(frozen=True)
class ParsedTimestamps:
    """A parsed timestamp column, aligned with the raw one.

    Attributes:
        values: ``datetime64[ns, UTC]``; NaT where the raw value is missing or unparseable.
        naive: Rows whose timestamp had no time zone (taken as UTC).
    """

    values: pd.Series
    naive: pd.Series

    @property
    def aware(self) -> pd.Series:
        """Rows whose timestamp had a time zone or offset."""
        aware: pd.Series = self.values.notna() & ~self.naive
        return aware


def _parse(raw: pd.Series) -> ParsedTimestamps:
    """Parse a datetime, string or object column to UTC (NaT where it cannot be parsed)."""
    if pd.api.types.is_datetime64_any_dtype(raw):
        aware = isinstance(raw.dtype, pd.DatetimeTZDtype)
        values = raw.dt.tz_convert("UTC") if aware else raw.dt.tz_localize("UTC")
        naive = pd.Series(not aware, index=raw.index) & raw.notna()
    else:
        values, naive = _parse_objects(raw)
    return ParsedTimestamps(values=values.dt.as_unit("ns"), naive=naive)


def check_timestamps(
    raw: pd.Series, uids: pd.Series
) -> tuple[ParsedTimestamps | None, list[Problem]]:
    """Parse ``ds`` to UTC; report missing, unparseable and naive/aware-mixed timestamps.

    Returns:
        The parsed column (None for a numeric column: epoch numbers are not guessed at) and
        one problem per series and kind, naming the rows by their index in ``raw``.
    """
    if pd.api.types.is_numeric_dtype(raw) and not pd.api.types.is_datetime64_any_dtype(raw):
        problem = Problem(
            kind="unparseable_timestamp",
            unique_id=None,
            message=f"column {DS!r} has numeric dtype {raw.dtype}; convert it to timestamps "
            "first (e.g. pd.to_datetime(values, unit='s') for epoch seconds)",
        )
        return None, [problem]
    parsed = _parse(raw)
    missing = raw.isna()
    problems = per_series(
        "missing_timestamp", missing, uids, lambda rows: f"{len(rows)} row(s) have no {DS}"
    )
    problems += per_series(
        "unparseable_timestamp",
        parsed.values.isna() & ~missing,
        uids,
        lambda rows: f"cannot parse {DS} as a timestamp: {sample(raw[rows])}",
    )
    problems += _mixed_timezones(raw, parsed, uids)
    return parsed, problems


def _mixed_timezones(raw: pd.Series, parsed: ParsedTimestamps, uids: pd.Series) -> list[Problem]:
    """Problems for naive timestamps in a column that also holds tz-aware ones."""
    if not (parsed.naive.any() and parsed.aware.any()):
        return []
    example = raw[parsed.aware].iloc[0]
    return per_series(
        "mixed_timezones",
        parsed.naive,
        uids,
        lambda rows: (
            f"naive {DS} {sample(raw[rows])} mixed with tz-aware ones such as "
            f"{example!r}; give every timestamp an offset, or none"
        ),
    )


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
