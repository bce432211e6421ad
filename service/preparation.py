"""One request series -> a regular float32 history on the model's grid, with what was done.

Fast path (no pandas): a regular series (``start``) without nulls at a fixed-length frequency
is converted with numpy only. Everything else (irregular ``timestamps``, nulls, calendar
frequencies) goes through the model's own grid rule (:class:`pipelines.grid.GridRule`, read from
its metadata) by :func:`pipelines.prepare.regularize`: validate -> bucket with the model's
aggregation -> fill gaps with the model's policy and longest gap.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset
from pandas.tseries.offsets import Day, Tick

from nearcast.models.forecaster import Forecaster
from nearcast.pipelines.grid import GridRule
from nearcast.pipelines.schema import DS, UNIQUE_ID, Y
from nearcast.service.covariate_fields import history_columns
from nearcast.service.schemas import SeriesIn
from nearcast.service.timestamps import TIME_END, TIME_RANGE

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class PreparedSeries:
    """A regular history and the pipeline's counts.

    Attributes:
        values: float32 history on the grid, shape ``(T,)``, finite.
        last: UTC time of the last grid point.
        aggregated: points merged into a bucket with an earlier point.
        filled: grid buckets that held no observation.
        imputed: values filled by the gap rule.
    """

    values: np.ndarray
    last: datetime
    aggregated: int = 0
    filled: int = 0
    imputed: int = 0
    frame: pd.DataFrame | None = None
    """A covariate model's regular history frame (``ds``, covariates, statics)."""


@lru_cache(maxsize=64)
def fixed_step(freq: str) -> timedelta | None:
    """The length of one step of ``freq`` when it is fixed (hours, minutes, days), else None."""
    offset = to_offset(freq)
    if isinstance(offset, Tick | Day):
        return timedelta(microseconds=int(offset.nanos) // 1000)
    return None


def is_fast(item: SeriesIn, freq: str, covariates: bool = False) -> bool:
    """True when ``item`` needs no pandas: regular ``start``, no nulls, fixed-length steps.

    A covariate model (``covariates``) always goes through pandas.
    """
    return (not covariates and item.start is not None and None not in item.values
            and fixed_step(freq) is not None)


def future_timestamps(forecaster: Forecaster, last: datetime, horizon: int) -> list[datetime]:
    """The ``horizon`` grid times after ``last`` (UTC)."""
    step = fixed_step(forecaster.config.freq)
    if step is not None:
        return [last + step * k for k in range(1, horizon + 1)]
    return list(forecaster.future_index(pd.Timestamp(last), horizon).to_pydatetime())


def _steps_after(first: datetime, freq: str, steps: int) -> datetime | None:
    """The grid time ``steps`` after ``first``'s bucket, or None when past the supported range."""
    step = fixed_step(freq)
    try:
        if step is not None:
            end = _EPOCH + ((first - _EPOCH) // step + steps) * step
        else:
            end = (pd.Timestamp(first) + to_offset(freq) * steps).to_pydatetime()
    except (OverflowError, ValueError, pd.errors.OutOfBoundsDatetime):
        return None
    return end if end < TIME_END else None


def _too_wide(first: datetime, last: datetime, freq: str, limit: int) -> bool:
    """True when the grid from ``first`` to ``last`` has more than ``limit`` points."""
    step = fixed_step(freq)
    if step is not None:
        return (last - _EPOCH) // step - (first - _EPOCH) // step + 1 > limit
    try:
        beyond = pd.Timestamp(first) + to_offset(freq) * limit
    except (OverflowError, ValueError, pd.errors.OutOfBoundsDatetime):
        return False  # past pandas' range: later than any accepted timestamp
    return bool(pd.Timestamp(last) >= beyond)


def check_time_axis(item: SeriesIn, freq: str, horizon: int, max_span: int) -> None:
    """Refuse a series whose grid is too long or whose times would leave the supported range.

    Runs before any grid is built: from ``start`` and the number of values, or from the first
    and last timestamp. ``max_span`` caps the grid points of a series with timestamps.

    Raises:
        ValueError: the message names the problem (the caller names the series).
    """
    if item.start is not None:
        first, n = item.start, len(item.values)
        if _steps_after(first, freq, n - 1 + horizon) is None:
            history = "run" if _steps_after(first, freq, n - 1) is None else (
                f"and a forecast of {horizon} steps would run")
            raise ValueError(f"{n} values at frequency {freq!r} from {first.isoformat()} "
                             f"{history} past the supported time range {TIME_RANGE}")
        return
    assert item.timestamps is not None  # the schema requires one of the two
    first, last = item.timestamps[0], item.timestamps[-1]
    if _too_wide(first, last, freq, max_span):
        raise ValueError(
            f"timestamps from {first.isoformat()} to {last.isoformat()} span more than "
            f"{max_span} grid points of the model's frequency {freq!r}; the limit is {max_span} "
            "(NEARCAST_MAX_SPAN_WINDOWS times the model's input window)")
    if _steps_after(last, freq, horizon) is None:
        raise ValueError(f"a forecast of {horizon} steps at frequency {freq!r} after "
                         f"{last.isoformat()} would run past the supported time range "
                         f"{TIME_RANGE}")


def prepare_series(item: SeriesIn, forecaster: Forecaster) -> PreparedSeries:
    """Put one series on the model's grid (its span checked by :func:`check_time_axis`).

    Raises:
        ValueError: the pipeline rejected the series or could not fill it (message says why).
    """
    freq = forecaster.config.freq
    if is_fast(item, freq, forecaster.meta.covariate_model):
        step = fixed_step(freq)
        assert step is not None and item.start is not None  # is_fast checked both
        values = _finite32(np.asarray(item.values, dtype=np.float64))
        # Flooring onto the epoch-aligned grid is what bucketing does to a regular series.
        start = _EPOCH + ((item.start - _EPOCH) // step) * step
        return PreparedSeries(values, start + step * (len(values) - 1))
    return _regularize(item, forecaster)


def _regularize(item: SeriesIn, forecaster: Forecaster) -> PreparedSeries:
    meta = forecaster.meta
    raw = np.asarray([np.nan if v is None else v for v in item.values], dtype=np.float64)
    if item.timestamps is not None:
        ds = pd.DatetimeIndex(item.timestamps)
    else:
        assert item.start is not None  # the schema requires one of the two
        ds = pd.date_range(item.start, periods=len(raw), freq=meta.config.freq)
    frame = pd.DataFrame({UNIQUE_ID: item.id, DS: ds, Y: raw})
    if meta.features is not None and meta.covariate_model:
        frame = frame.assign(**history_columns(item, meta.features))
    done = forecaster.regularize(frame)
    out = done.frame
    missing = np.flatnonzero(out[Y].isna().to_numpy())
    if missing.size:
        raise ValueError(_unfilled(out, missing, meta.grid))
    last = pd.Timestamp(out[DS].iloc[-1])
    last = last.tz_localize("UTC") if last.tzinfo is None else last.tz_convert("UTC")
    return PreparedSeries(
        values=_finite32(out[Y].to_numpy(np.float64)), last=last.to_pydatetime(),
        aggregated=done.buckets.totals.rows_aggregated, filled=done.buckets.totals.empty_buckets,
        imputed=done.gaps.totals.filled, frame=out if meta.covariate_model else None,
    )


def _unfilled(frame: pd.DataFrame, missing: np.ndarray, grid: GridRule) -> str:
    """Why the grid points at positions ``missing`` of ``frame`` are still empty."""
    if missing[0] == 0 or missing[-1] == len(frame) - 1:
        where = "the start" if missing[0] == 0 else "the end"
        return (f"missing values at {where} of the history cannot be filled by the model's gap "
                f"rule ({grid.gap_policy!r}); begin and end the history with a value")
    first = pd.Timestamp(frame[DS].iloc[int(missing[0])]).isoformat()
    return (f"the gap from {first} is longer than the model's max_gap ({grid.max_gap} grid "
            "points) and cannot be filled; send the missing values")


def _finite32(values: np.ndarray) -> np.ndarray:
    """float64 -> float32, rejecting values the model cannot represent."""
    with np.errstate(over="ignore"):
        out = values.astype(np.float32)
    if not np.isfinite(out).all():
        bad = int(np.flatnonzero(~np.isfinite(out))[0])
        raise ValueError(f"value {values[bad]:g} at position {bad} is outside the float32 range "
                         "the model computes in")
    return out


__all__ = ["PreparedSeries", "check_time_axis", "fixed_step", "future_timestamps", "is_fast",
           "prepare_series"]
