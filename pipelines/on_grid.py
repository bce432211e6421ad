"""Recognise a long frame that is already on a grid rule's grid, without regularising it.

A batch of series read from a clean source (one row per grid step, no gap, no NaN) comes out
of :func:`pipelines.prepare.regularize` exactly as it went in: validation changes nothing,
every bucket holds one value (any aggregation of one value is that value) and there is no gap
to fill. :func:`on_grid` checks those conditions with a few vectorised passes over the columns
and then hands the series over as arrays, so a caller can skip the pandas pipeline for them;
anything it cannot vouch for (another dtype, a missing id, a NaN, a duplicate, a step off the
grid, a calendar frequency) returns None and goes through the pipeline as before.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset
from pandas.tseries.offsets import Day, Tick

from nearcast.pipelines.grid import GridRule
from nearcast.pipelines.schema import DS, UNIQUE_ID, Y
from nearcast.pipelines.series_table import SeriesTable
from nearcast.pipelines.timestamps import check_timestamps

__all__ = ["GridSeries", "grid_step", "on_grid"]


@dataclass(frozen=True)
class GridSeries:
    """The series of a long frame already on the grid, in the frame's order.

    Attributes:
        ids: series keys (str), shape ``(S,)``.
        values: all ``y`` values, float64, series after series, shape ``(N,)``.
        offsets: start of each series in ``values`` plus the total, shape ``(S + 1,)``.
        last: each series' last timestamp, UTC nanoseconds since the epoch, shape ``(S,)``.
    """

    ids: pd.Index
    values: np.ndarray
    offsets: np.ndarray
    last: np.ndarray

    @property
    def lengths(self) -> np.ndarray:
        """Points per series, shape ``(S,)``."""
        return np.asarray(np.diff(self.offsets))

    def table(self) -> SeriesTable:
        """The series as a :class:`~pipelines.series_table.SeriesTable` (float32 values)."""
        return SeriesTable(self.ids.to_numpy(), self.values.astype(np.float32), self.offsets)


def grid_step(freq: str) -> int | None:
    """The length of a fixed-length frequency in nanoseconds; None for calendar ones.

    Fixed-length buckets are aligned to the Unix epoch (:mod:`pipelines.bucketing`), so a
    timestamp is on such a grid when it is a whole number of steps after 1970-01-01 UTC.
    """
    offset = to_offset(freq)
    return int(offset.nanos) if isinstance(offset, Tick | Day) else None


def on_grid(df: pd.DataFrame, rule: GridRule) -> GridSeries | None:
    """The series of ``df`` if ``rule`` would leave every one of them as it is, else None.

    True when: ``rule`` has a fixed-length frequency; ``y`` is a plain numeric column and
    every value finite; no ``unique_id`` is missing; every ``ds`` parses (as validation parses
    it); each series' rows, in time order, are one grid step apart on the epoch-aligned grid.
    Rows may come in any order (they are sorted by series and time when they are not already
    together and in order). Other columns are ignored (validation drops them).
    """
    step = grid_step(rule.freq) if rule.freq is not None else None
    target = df[Y]
    if (step is None or df.empty
            or not (isinstance(target.dtype, np.dtype) and target.dtype.kind in "fiu")):
        return None
    ids = df[UNIQUE_ID].astype(str)
    values = target.to_numpy(np.float64)
    if ids.isna().any() or not np.isfinite(values).all():
        return None
    ns = _utc_nanoseconds(df[DS], ids)
    if ns is None:
        return None
    found = _series_runs(ids, ns, values, step)
    if found is None:  # not together or not in time order: sorted, it may be
        codes = pd.factorize(ids)[0]
        order = np.lexsort((ns, codes))
        found = _series_runs(ids.iloc[order], ns[order], values[order], step)
    return found


def _series_runs(ids: pd.Series, ns: np.ndarray, values: np.ndarray, step: int
                 ) -> GridSeries | None:
    """The series of rows in this order, if each is one run of rows one step apart on the grid."""
    starts = np.flatnonzero(_new_runs(ids))
    runs = pd.Index(ids.iloc[starts])
    if not runs.is_unique:  # a series' rows are not together
        return None
    inside = np.ones(len(ns), dtype=bool)
    inside[starts] = False
    if not (np.diff(ns) == step)[inside[1:]].all() or (ns[starts] % step).any():
        return None  # a step off the grid (or a duplicate), or a series not starting on it
    offsets = np.append(starts, len(ns)).astype(np.int64)
    return GridSeries(runs, values, offsets, ns[offsets[1:] - 1])


def _utc_nanoseconds(column: pd.Series, ids: pd.Series) -> np.ndarray | None:
    """The timestamps as UTC nanoseconds; None when one is missing or cannot be parsed.

    Naive ones are taken as UTC, as validation takes them; text is parsed by validation's
    own :func:`pipelines.timestamps.check_timestamps`.
    """
    if not pd.api.types.is_datetime64_any_dtype(column):
        parsed, problems = check_timestamps(column, ids)
        if parsed is None or problems:
            return None
        column = parsed.values
    if column.isna().any():
        return None
    return np.asarray(pd.DatetimeIndex(column).as_unit("ns").asi8)


def _new_runs(ids: pd.Series) -> np.ndarray:
    """True at each row whose id differs from the row before (and at the first row)."""
    values = ids.array
    out = np.ones(len(values), dtype=bool)
    out[1:] = np.asarray(values[1:] != values[:-1], dtype=bool)
    return out
