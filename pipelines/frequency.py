"""Infer the sampling frequency of long series from their timestamps (all in UTC)."""

from __future__ import annotations

import warnings

import pandas as pd

from nearcast.pipelines.schema import DS, UNIQUE_ID

__all__ = ["infer_freq", "naive_utc"]

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


def naive_utc(ds: pd.Series) -> pd.Series:
    """Return ``ds`` as naive UTC wall times (naive values are taken as UTC).

    Raises:
        ValueError: If ``ds`` does not hold datetimes.
    """
    if not pd.api.types.is_datetime64_any_dtype(ds):
        raise ValueError(f"column {DS!r} must hold datetimes, got dtype {ds.dtype}")
    if isinstance(ds.dtype, pd.DatetimeTZDtype):
        converted: pd.Series = ds.dt.tz_convert("UTC").dt.tz_localize(None)
        return converted
    return ds


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
        {UNIQUE_ID: df[UNIQUE_ID].astype(str).to_numpy(), DS: naive_utc(df[DS]).to_numpy()}
    )
    return frame.dropna().drop_duplicates().sort_values([UNIQUE_ID, DS])


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
