"""Put every series on a regular time grid.

:func:`bucket` aggregates the observations of each series into buckets of a fixed frequency,
from the series' first bucket to its last one. Buckets without any observation appear as rows
whose values are NaN, so downstream steps (the gap policy, windowing) see a regular grid.

Buckets are those of :meth:`pandas.DataFrame.resample` with ``closed="left", label="left"``:
bucket ``[t, t + freq)`` is labelled ``t``, and a point exactly on ``t`` belongs to it. They are
computed in UTC and fixed-length ones are aligned to the Unix epoch (``origin="epoch"``), so
every series shares the same grid whatever its first timestamp; daily buckets are UTC days.
Calendar frequencies (``"W-MON"``, ``"MS"``, ``"ME"``, ...) are anchored as by pandas.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, get_args

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset
from pandas.tseries.offsets import Day, Tick

from nearcast.pipelines.covariates import Covariate, bucket_aggregation, static_names
from nearcast.pipelines.frequency import infer_freq, naive_utc
from nearcast.pipelines.grid import Aggregation
from nearcast.pipelines.schema import DS, UNIQUE_ID, Y

__all__ = [
    "AGGREGATIONS",
    "BucketReport",
    "SeriesBuckets",
    "aggregate",
    "bucket",
    "check_aggregation",
]

AGGREGATIONS: tuple[str, ...] = get_args(Aggregation)
"""Supported aggregations. All skip NaN; ``sum`` of only-NaN values is NaN (not 0)."""


@dataclass(frozen=True)
class SeriesBuckets:
    """Bucketing counts of one series (or totals over all series).

    Attributes:
        rows_in: Input rows of the series.
        buckets: Rows in the output (buckets from the first to the last one).
        empty_buckets: Buckets created without any input row (their values are NaN).
        rows_aggregated: Input rows merged into a bucket together with an earlier row, so that
            ``rows_in == buckets - empty_buckets + rows_aggregated``.
    """

    rows_in: int
    buckets: int
    empty_buckets: int
    rows_aggregated: int


@dataclass(frozen=True)
class BucketReport:
    """What :func:`bucket` did, per series.

    Attributes:
        freq: The bucket frequency used (inferred when ``bucket`` was given ``freq=None``).
        per_series: Counts keyed by ``unique_id``.
    """

    freq: str
    per_series: dict[str, SeriesBuckets] = field(default_factory=dict)

    @property
    def totals(self) -> SeriesBuckets:
        """Counts summed over all series."""
        series = list(self.per_series.values())
        return SeriesBuckets(
            rows_in=sum(s.rows_in for s in series),
            buckets=sum(s.buckets for s in series),
            empty_buckets=sum(s.empty_buckets for s in series),
            rows_aggregated=sum(s.rows_aggregated for s in series),
        )

    def as_dict(self) -> dict[str, Any]:
        """Return the report as plain data for logging.

        Returns:
            ``{"freq": ..., "totals": {...}, "per_series": {uid: {...}}}``.
        """
        return {
            "freq": self.freq,
            "totals": asdict(self.totals),
            "per_series": {uid: asdict(counts) for uid, counts in self.per_series.items()},
        }


def check_aggregation(name: str) -> str:
    """Check that ``name`` is a supported aggregation.

    Args:
        name: Aggregation name.

    Returns:
        The name, unchanged.

    Raises:
        ValueError: If the aggregation is unknown; the message lists the options.
    """
    if name not in AGGREGATIONS:
        raise ValueError(f"unknown aggregation {name!r}; choose one of {', '.join(AGGREGATIONS)}")
    return name


def aggregate(grouped: Any, how: str) -> pd.Series:
    """Apply aggregation ``how`` to a grouped column (NaN skipped; ``sum`` of only NaN is NaN)."""
    result: pd.Series = grouped.sum(min_count=1) if how == "sum" else grouped.agg(how)
    return result


def bucket(
    df: pd.DataFrame,
    freq: str | None,
    *,
    agg: str = "mean",
    covariates: Mapping[str, Covariate] | None = None,
) -> tuple[pd.DataFrame, BucketReport]:
    """Aggregate each series onto a regular grid of ``freq`` from its first to its last bucket.

    The buckets are those of :meth:`pandas.DataFrame.resample` with ``closed="left",
    label="left"`` (see the module docstring): pandas assigns the rows to buckets and
    aggregates them; the empty buckets between a series' first and last one are added as NaN.

    Args:
        df: Long frame with ``unique_id``, ``ds`` (datetime; naive values are taken as UTC, other
            time zones are converted to UTC) and ``y``; other columns are left out.
        freq: A pandas frequency such as ``"h"``, ``"15min"``, ``"D"`` or ``"MS"``; ``None``
            infers it with :func:`pipelines.frequency.infer_freq`.
        agg: How the values of a bucket become one, see :data:`AGGREGATIONS`; ``first``/``last``
            take the first/last non-missing value of the bucket (in time order).
        covariates: Covariate columns of ``df`` bucketed along, each time-varying one with its
            own aggregation (empty buckets NaN, for its gap policy); a static one keeps its
            series' value (empty buckets too). ``None`` or empty: none.

    Returns:
        The bucketed frame ``(unique_id, ds, y, covariates...)`` sorted by ``unique_id``, ``ds``
        (``ds`` as ``datetime64[ns, UTC]``), with empty buckets as rows of NaN, and a
        :class:`BucketReport`.

    Raises:
        ValueError: On an unknown aggregation, a missing required column or a frequency that
            cannot be inferred.
    """
    _require_columns(df)
    check_aggregation(agg)
    # Work on naive UTC wall time (same instants; calendar anchors are then UTC dates).
    ds = naive_utc(df[DS]).dt.as_unit("ns")
    uids = df[UNIQUE_ID].astype(str)
    if ds.isna().any() or uids.isna().any():
        raise ValueError(f"{UNIQUE_ID!r} and {DS!r} must not be missing; run validate_long first")
    covs = dict(covariates or {})
    for how in [bucket_aggregation(cov) for cov in covs.values()]:
        check_aggregation(how)
    used_freq = freq if freq is not None else infer_freq(df)
    frame = pd.DataFrame({UNIQUE_ID: uids.to_numpy(), DS: ds.to_numpy(),
                          Y: df[Y].to_numpy(dtype="float64")})
    for name in covs:
        frame[name] = df[name].to_numpy()
    if frame.empty:
        return frame.assign(**{DS: ds.dt.tz_localize("UTC")}), BucketReport(freq=used_freq)
    # Time order within each series (ties keep row order), so that first/last follow time.
    frame = frame.sort_values([UNIQUE_ID, DS], kind="stable")
    grouped = frame.groupby([UNIQUE_ID, pd.Grouper(key=DS, **_bins(used_freq))], sort=True)
    values = aggregate(grouped[Y], agg)
    grid = _grid(values.index, pd.DatetimeIndex([ds.min(), ds.max()]), used_freq)
    out = values.reindex(grid).reset_index()
    if covs:
        out = _with_covariates(out, grouped, grid, covs)
    out[DS] = out[DS].dt.tz_localize("UTC").dt.as_unit("ns")
    return out, _report(used_freq, grouped[Y].size().reindex(grid, fill_value=0))


def _with_covariates(
    out: pd.DataFrame, grouped: Any, grid: pd.MultiIndex, covs: Mapping[str, Covariate]
) -> pd.DataFrame:
    """Add the covariates' bucket values to ``out`` (rows in ``grid`` order).

    Static covariates fill the empty buckets with their series' value.
    """
    columns = {name: aggregate(grouped[name], bucket_aggregation(cov)).reindex(grid).to_numpy()
               for name, cov in covs.items()}
    out = out.assign(**columns)
    for name in static_names(covs):
        out[name] = out[name].groupby(out[UNIQUE_ID], sort=False).transform("first")
    return out


def _bins(freq: str) -> dict[str, Any]:
    """Resample arguments of the buckets: left-closed, left-labelled, fixed ones on the epoch."""
    fixed = isinstance(to_offset(freq), Tick | Day)
    return {"freq": freq, "closed": "left", "label": "left",
            "origin": "epoch" if fixed else "start_day"}  # origin is for fixed lengths only


def _grid(observed: pd.Index, extremes: pd.DatetimeIndex, freq: str) -> pd.MultiIndex:
    """Every (series, bucket) from each series' first observed bucket to its last one.

    ``observed`` holds the sorted (unique_id, bucket label) pairs that have rows; the labels of
    all buckets come from resampling the two extreme timestamps, so they are the same buckets.
    """
    rule = _bins(freq)
    labels = pd.Series(0, index=extremes).resample(rule.pop("freq"), **rule).size().index
    uids, stamps = observed.get_level_values(0), pd.DatetimeIndex(observed.get_level_values(1))
    first = labels.get_indexer(stamps[~uids.duplicated(keep="first")])
    counts = labels.get_indexer(stamps[~uids.duplicated(keep="last")]) - first + 1
    steps = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return pd.MultiIndex.from_arrays(
        [np.repeat(uids.unique().to_numpy(), counts), labels[np.repeat(first, counts) + steps]],
        names=[UNIQUE_ID, DS],
    )


def _require_columns(df: pd.DataFrame) -> None:
    """Raise ValueError naming the missing required columns, if any."""
    missing = [c for c in (UNIQUE_ID, DS, Y) if c not in df.columns]
    if missing:
        raise ValueError(
            f"missing required column(s) {missing}; columns present: {list(df.columns)}"
        )


def _report(freq: str, rows: pd.Series) -> BucketReport:
    """Build the per-series report from the number of input rows of every output bucket."""
    stats = pd.DataFrame({"rows_in": rows, "buckets": 1, "empty": rows == 0})
    totals = stats.groupby(level=UNIQUE_ID, sort=True).sum()
    per_series = {
        str(uid): SeriesBuckets(
            rows_in=int(rows_in),
            buckets=int(buckets),
            empty_buckets=int(empty),
            rows_aggregated=int(rows_in - (buckets - empty)),
        )
        for uid, rows_in, buckets, empty in totals.itertuples()
    }
    return BucketReport(freq=freq, per_series=per_series)
