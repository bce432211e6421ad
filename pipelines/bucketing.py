"""Put every series on a regular time grid.

:func:`bucket` aggregates the observations of each series into buckets of a fixed frequency,
from the series' first bucket to its last one. Buckets without any observation appear as rows
whose values are NaN, so downstream steps (the gap policy, windowing) see a regular grid.

Bucket boundaries follow :meth:`pandas.DataFrame.resample`:

* ``closed="left", label="left"`` (default): bucket ``[t, t + freq)`` is labelled ``t``;
  a point exactly on ``t`` belongs to the bucket labelled ``t``.
* ``closed="left", label="right"``: bucket ``[t, t + freq)`` is labelled ``t + freq``.
* ``closed="right", label="right"``: bucket ``(t - freq, t]`` is labelled ``t``; a point exactly
  on ``t`` belongs to the bucket labelled ``t`` (and not to ``t + freq``).
* ``closed="right", label="left"``: bucket ``(t - freq, t]`` is labelled ``t - freq``.

Buckets are computed in UTC and fixed-length ones are aligned to the Unix epoch
(``origin="epoch"``), so every series shares the same grid whatever its first timestamp; daily
buckets are UTC days. Calendar frequencies (``"W-MON"``, ``"MS"``, ``"ME"``, ...) are anchored
as by pandas; as in :meth:`pandas.DataFrame.resample`, with ``closed="right"`` an end-of-period
bucket (week, month, quarter or year end) includes the whole day it ends on.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, get_args

import numpy as np
import numpy.typing as npt
import pandas as pd
from pandas.tseries.frequencies import to_offset
from pandas.tseries.offsets import Day, Tick

from nearcast.pipelines.grid import Aggregation
from nearcast.pipelines.schema import DS, UNIQUE_ID, Y

__all__ = [
    "AGGREGATIONS",
    "BucketReport",
    "SeriesBuckets",
    "bucket",
    "check_aggregation",
    "infer_freq",
]

AGGREGATIONS: tuple[str, ...] = get_args(Aggregation)
"""Supported aggregations. All skip NaN; ``sum`` of only-NaN values is NaN (not 0)."""

_MIN_POINTS_TO_INFER = 3
_MIN_TOP_SHARE = 0.5
_CALENDAR_FROM = pd.Timedelta(days=7)
_UNITS: tuple[tuple[str, int], ...] = (
    ("D", 86_400 * 10**9),
    ("h", 3_600 * 10**9),
    ("min", 60 * 10**9),
    ("s", 10**9),
    ("ms", 10**6),
    ("us", 10**3),
    ("ns", 1),
)


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


def bucket(
    df: pd.DataFrame,
    freq: str | None,
    *,
    agg: str | Mapping[str, str] = "mean",
    closed: Literal["left", "right"] = "left",
    label: Literal["left", "right"] = "left",
) -> tuple[pd.DataFrame, BucketReport]:
    """Aggregate each series onto a regular grid of ``freq`` from its first to its last bucket.

    Args:
        df: Long frame with ``unique_id``, ``ds`` (datetime; naive values are taken as UTC, other
            time zones are converted to UTC), ``y`` and optional numeric covariate columns.
        freq: A pandas frequency such as ``"h"``, ``"15min"``, ``"D"`` or ``"MS"``; ``None``
            infers it with :func:`infer_freq`.
        agg: One aggregation for every value column, or a mapping from column name to
            aggregation (columns not in the mapping use ``"mean"``). See :data:`AGGREGATIONS`;
            ``first``/``last`` take the first/last non-missing value of the bucket (in time
            order) and are the ones to use for non-numeric columns.
        closed: Which side of each bucket interval is closed (see the module docstring).
        label: Which edge of each bucket interval labels it (see the module docstring).

    Returns:
        The bucketed frame sorted by ``unique_id``, ``ds`` (``ds`` as ``datetime64[ns, UTC]``),
        with empty buckets as rows of NaN values, and a :class:`BucketReport`.

    Raises:
        ValueError: On an unknown aggregation or column, a missing required column, an invalid
            ``closed``/``label`` or a frequency that cannot be inferred.
    """
    _require_columns(df)
    if closed not in ("left", "right") or label not in ("left", "right"):
        raise ValueError(f"closed and label must be 'left' or 'right'; got {closed!r}, {label!r}")
    value_columns = [c for c in df.columns if c not in (UNIQUE_ID, DS)]
    how = _resolve_aggregations(agg, value_columns)
    # Work on naive UTC wall time (same instants; calendar anchors are then UTC dates).
    ds = _to_utc(df[DS]).dt.tz_localize(None)
    uids = df[UNIQUE_ID].astype(str)
    if ds.isna().any() or uids.isna().any():
        raise ValueError(f"{UNIQUE_ID!r} and {DS!r} must not be missing; run validate_long first")
    used_freq = freq if freq is not None else infer_freq(df)
    if df.empty:
        empty = df.assign(**{DS: _to_utc(df[DS]).dt.as_unit("ns")}).reset_index(drop=True)
        return empty, BucketReport(freq=used_freq)
    bins, label_of = _assign_buckets(ds, used_freq, closed, label)
    codes, names = pd.factorize(uids, sort=True)
    grid = _Grid.build(codes, bins, len(names))
    order = np.lexsort((ds.to_numpy(), codes))  # time order within each series, for first/last
    grouped = df[value_columns].iloc[order].groupby([codes[order], bins[order]], sort=True)
    sizes = grouped.size()
    slots = grid.slots(sizes.index)
    out = pd.DataFrame(
        {
            UNIQUE_ID: pd.Series(names, dtype="str").take(grid.codes).to_numpy(),
            DS: label_of(grid.bins).tz_localize("UTC").as_unit("ns"),
        }
    )
    for col in value_columns:
        out[col] = _aggregate(grouped[col], how[col]).set_axis(slots).reindex(out.index)
    out[Y] = out[Y].astype("float64")
    filled = pd.Series(sizes.to_numpy(), index=slots).reindex(out.index, fill_value=0)
    return out, _report(used_freq, out[UNIQUE_ID], filled)


def infer_freq(df: pd.DataFrame) -> str:
    """Infer the sampling frequency from the most common timestamp difference across series.

    Only series with at least 3 distinct timestamps take part. The most common positive
    difference wins when it accounts for at least half of all differences, is not tied and is
    shorter than 7 days. From 7 days on (or when no difference is clearly the most common), a
    calendar frequency that :func:`pandas.infer_freq` finds for every series alike is preferred
    (``"W-MON"`` for weeks starting on Mondays, ``"MS"`` for month starts, ...), falling back to
    the most common difference (e.g. ``"7D"``, aligned on the Unix epoch, a Thursday). Monthly
    data with missing months may thus come out as ``"31D"``: pass ``freq`` explicitly then.

    Args:
        df: Long frame with ``unique_id`` and ``ds``.

    Returns:
        A pandas frequency string such as ``"h"``, ``"15min"``, ``"D"`` or ``"W-MON"``.

    Raises:
        ValueError: If no series has 3 timestamps, or the differences are ambiguous; the message
            says why (series lengths, or the top candidate differences and their shares).
    """
    frame = _distinct_timestamps(df)
    lengths = frame.groupby(UNIQUE_ID).size()
    eligible = lengths[lengths >= _MIN_POINTS_TO_INFER].index
    if len(eligible) == 0:
        raise ValueError(_too_short_message(lengths))
    frame = frame[frame[UNIQUE_ID].isin(eligible)]
    shares = frame.groupby(UNIQUE_ID)[DS].diff().dropna().value_counts(normalize=True)
    deltas = pd.TimedeltaIndex(shares.index)
    tied = len(shares) > 1 and shares.iloc[1] == shares.iloc[0]
    clear = bool(shares.iloc[0] >= _MIN_TOP_SHARE) and not tied
    if clear and deltas[0] < _CALENDAR_FROM:
        return _format_timedelta(deltas[0])
    calendar = _calendar_freq(frame)
    if calendar is not None:
        return calendar
    if clear:
        return _format_timedelta(deltas[0])
    candidates = ", ".join(
        f"{_format_timedelta(delta)} ({share:.0%})"
        for delta, share in zip(deltas[:3], shares.iloc[:3], strict=True)
    )
    raise ValueError(
        "cannot infer a frequency: no timestamp difference is clearly the most common "
        f"(top candidates: {candidates}); pass freq explicitly"
    )


def _distinct_timestamps(df: pd.DataFrame) -> pd.DataFrame:
    """Return the distinct (unique_id, naive UTC ds) pairs of ``df``, sorted."""
    frame = pd.DataFrame(
        {
            UNIQUE_ID: df[UNIQUE_ID].astype(str).to_numpy(),
            DS: _to_utc(df[DS]).dt.tz_localize(None).to_numpy(),
        }
    )
    return frame.dropna().drop_duplicates().sort_values([UNIQUE_ID, DS])


@dataclass(frozen=True)
class _Grid:
    """The output rows: for every series, every bucket from its first to its last one."""

    codes: npt.NDArray[np.intp]
    bins: npt.NDArray[np.intp]
    starts: npt.NDArray[np.intp]
    first_bin: npt.NDArray[np.intp]

    @classmethod
    def build(cls, codes: npt.NDArray[np.intp], bins: npt.NDArray[np.intp], n: int) -> _Grid:
        """Build the grid from the series code and bucket index of every input row."""
        first_bin = np.full(n, np.iinfo(np.intp).max, dtype=np.intp)
        last_bin = np.full(n, -1, dtype=np.intp)
        np.minimum.at(first_bin, codes, bins)
        np.maximum.at(last_bin, codes, bins)
        counts = last_bin - first_bin + 1
        starts = np.cumsum(counts) - counts
        out_codes = np.repeat(np.arange(n, dtype=np.intp), counts)
        offsets = np.arange(int(counts.sum()), dtype=np.intp) - np.repeat(starts, counts)
        out_bins = np.repeat(first_bin, counts) + offsets
        return cls(codes=out_codes, bins=out_bins, starts=starts, first_bin=first_bin)

    def slots(self, keys: pd.Index) -> npt.NDArray[np.intp]:
        """Return the output row of each (series code, bucket index) key."""
        codes = keys.get_level_values(0).to_numpy(dtype=np.intp)
        bins = keys.get_level_values(1).to_numpy(dtype=np.intp)
        slots: npt.NDArray[np.intp] = self.starts[codes] + bins - self.first_bin[codes]
        return slots


def _assign_buckets(
    ds: pd.Series, freq: str, closed: Literal["left", "right"], label: Literal["left", "right"]
) -> tuple[npt.NDArray[np.intp], Callable[[npt.NDArray[np.intp]], pd.DatetimeIndex]]:
    """Return each row's bucket index (0 = earliest bucket) and a bucket-index-to-label map."""
    offset = to_offset(freq)
    if isinstance(offset, Tick | Day):
        step = int(offset.nanos)
        return _fixed_buckets(ds, step, closed, label)
    return _calendar_buckets(ds, freq, closed, label)


def _fixed_buckets(
    ds: pd.Series, step: int, closed: Literal["left", "right"], label: Literal["left", "right"]
) -> tuple[npt.NDArray[np.intp], Callable[[npt.NDArray[np.intp]], pd.DatetimeIndex]]:
    """Buckets of ``step`` nanoseconds aligned on the Unix epoch, computed arithmetically."""
    nanos = ds.dt.as_unit("ns").to_numpy().view("int64")
    # Bucket k covers [k * step, (k + 1) * step) if closed left, (k * step, (k + 1) * step] if
    # closed right; it is labelled by its left or right edge.
    index = nanos // step if closed == "left" else -(-nanos // step) - 1
    first = int(index.min())
    shift = first + (1 if label == "right" else 0)

    def label_of(bins: npt.NDArray[np.intp]) -> pd.DatetimeIndex:
        return pd.DatetimeIndex(((bins.astype("int64") + shift) * step).astype("datetime64[ns]"))

    return (index - first).astype(np.intp), label_of


def _calendar_buckets(
    ds: pd.Series, freq: str, closed: Literal["left", "right"], label: Literal["left", "right"]
) -> tuple[npt.NDArray[np.intp], Callable[[npt.NDArray[np.intp]], pd.DatetimeIndex]]:
    """Buckets of an anchored calendar frequency (weeks, months, ...), as resample makes them.

    The labels come from resampling the two extreme timestamps with the same arguments, so the
    boundaries are those of :meth:`pandas.DataFrame.resample`, including its rule that a bucket
    closed on the right at the end of a week, month, quarter or year includes that whole day.
    """
    extremes = pd.Series([0, 0], index=pd.DatetimeIndex([ds.min(), ds.max()]))
    labels = pd.DatetimeIndex(extremes.resample(freq, closed=closed, label=label).size().index)
    labels = labels.as_unit("ns")
    left_edges = labels if label == "left" else labels - to_offset(freq)
    if closed == "right" and _is_period_end(freq):
        left_edges = left_edges + (pd.Timedelta(days=1) - pd.Timedelta(1, unit="ns"))
    side: Literal["left", "right"] = "right" if closed == "left" else "left"
    values = ds.dt.as_unit("ns").to_numpy()
    bins = np.searchsorted(left_edges.as_unit("ns").to_numpy(), values, side=side) - 1
    return bins.astype(np.intp), labels.take


def _is_period_end(freq: str) -> bool:
    """Tell whether ``freq`` anchors on period ends (weeks, month/quarter/year ends)."""
    rule = to_offset(freq).rule_code.split("-")[0]
    return rule in ("W", "ME", "BME", "QE", "BQE", "YE", "BYE")


def _require_columns(df: pd.DataFrame) -> None:
    """Raise ValueError naming the missing required columns, if any."""
    missing = [c for c in (UNIQUE_ID, DS, Y) if c not in df.columns]
    if missing:
        raise ValueError(
            f"missing required column(s) {missing}; columns present: {list(df.columns)}"
        )


def _to_utc(ds: pd.Series) -> pd.Series:
    """Return ``ds`` as UTC datetimes; naive values are taken as UTC."""
    if not pd.api.types.is_datetime64_any_dtype(ds):
        raise ValueError(f"column {DS!r} must hold datetimes, got dtype {ds.dtype}")
    if isinstance(ds.dtype, pd.DatetimeTZDtype):
        converted: pd.Series = ds.dt.tz_convert("UTC")
    else:
        converted = ds.dt.tz_localize("UTC")
    return converted


def _resolve_aggregations(agg: str | Mapping[str, str], columns: list[str]) -> dict[str, str]:
    """Map every value column to a checked aggregation name."""
    if isinstance(agg, str):
        return {col: check_aggregation(agg) for col in columns}
    unknown = sorted(set(agg) - set(columns))
    if unknown:
        raise ValueError(f"aggregation given for unknown column(s) {unknown}; columns: {columns}")
    return {col: check_aggregation(agg.get(col, "mean")) for col in columns}


def _aggregate(values: Any, how: str) -> pd.Series:
    """Apply aggregation ``how`` to a grouped column (``sum`` of only-NaN values stays NaN)."""
    if how == "sum":
        result: pd.Series = values.sum(min_count=1)
    else:
        result = getattr(values, how)()
    return result


def _report(freq: str, uids: pd.Series, rows_per_bucket: pd.Series) -> BucketReport:
    """Build the per-series report from the number of input rows of every output bucket."""
    stats = pd.DataFrame(
        {"rows": rows_per_bucket.to_numpy(), "empty": rows_per_bucket.to_numpy() == 0},
        index=uids.to_numpy(),
    )
    totals = stats.groupby(level=0, sort=True).agg(
        rows_in=("rows", "sum"), buckets=("rows", "size"), empty_buckets=("empty", "sum")
    )
    per_series = {
        str(uid): SeriesBuckets(
            rows_in=int(rows_in),
            buckets=int(buckets),
            empty_buckets=int(empty),
            rows_aggregated=int(rows_in - (buckets - empty)),
        )
        for uid, rows_in, buckets, empty in zip(
            totals.index, totals["rows_in"], totals["buckets"], totals["empty_buckets"], strict=True
        )
    }
    return BucketReport(freq=freq, per_series=per_series)


def _too_short_message(lengths: pd.Series) -> str:
    """Explain that no series is long enough to infer a frequency."""
    if lengths.empty:
        return "cannot infer a frequency: the frame has no timestamps"
    details = "; ".join(
        f"series {uid!r} has {n} timestamp{'s' if n != 1 else ''}"
        for uid, n in lengths.head(3).items()
    )
    more = f" (and {len(lengths) - 3} more series)" if len(lengths) > 3 else ""
    return (
        f"cannot infer a frequency: {details}{more}; need {_MIN_POINTS_TO_INFER} timestamps in "
        "at least one series to infer a frequency; pass freq explicitly"
    )


def _calendar_freq(frame: pd.DataFrame) -> str | None:
    """Return the frequency :func:`pandas.infer_freq` finds for every series alike, or None."""
    found: set[str] = set()
    for _, ds in frame.groupby(UNIQUE_ID)[DS]:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # pandas 3 warns that a later version returns offsets
            inferred: object = pd.infer_freq(pd.DatetimeIndex(ds))
        if inferred is None:
            return None
        found.add(str(getattr(inferred, "freqstr", inferred)))
        if len(found) > 1:
            return None
    return found.pop() if found else None


def _format_timedelta(delta: pd.Timedelta) -> str:
    """Format a positive timedelta as a pandas frequency string such as ``"h"`` or ``"15min"``."""
    nanos = int(delta.as_unit("ns").value)
    for unit, size in _UNITS:
        if nanos % size == 0:
            count = nanos // size
            return unit if count == 1 else f"{count}{unit}"
    return f"{nanos}ns"  # pragma: no cover - the "ns" unit always divides
