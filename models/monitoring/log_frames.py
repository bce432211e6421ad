"""Rows of the forecast log as text, and back as long frames (no database here).

The log keeps one row per served (forecast, series): its steps' timestamps, point, raw
quantiles and served quantiles are JSON arrays, so a request of S series costs S rows to write,
not S x H. Reading expands them into the long frame the monitor joins with actuals: one row
per step, all rows parsed by one ``json.loads`` call per column.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain, repeat
from typing import Any

import numpy as np
import pandas as pd

from nearcast.pipelines.schema import DS, UNIQUE_ID, Y

# The long frame's leading columns, before the quantile columns.
BASE_COLUMNS = ["forecast_id", "request_id", "model", "version", UNIQUE_ID, "source", "origin",
                "step", DS, "point"]
ACTUAL_COLUMNS = [UNIQUE_ID, DS, Y]


@dataclass(frozen=True)
class LoggedForecast:
    """One served forecast of one series.

    Attributes:
        forecast_id: unique per served request (made by the server), not the client's id.
        request_id: the request's X-Request-ID (or the batch job's id).
        model: registered model name.
        version: registered model version.
        series_id: the series' id.
        source: ``"api"`` or ``"batch"``.
        origin: epoch seconds of the series' last history point.
        timestamps: epoch seconds of each forecast step (length H).
        point: the point forecast per step.
        quantiles: the RAW quantile outputs of the model, keyed ``f"{q:g}"``, each length H.
        served: the quantiles as served after calibration; None when served raw.
        logged_at: epoch seconds when the forecast was logged.
    """

    forecast_id: str
    request_id: str | None
    model: str
    version: int
    series_id: str
    source: str
    origin: int
    timestamps: list[int]
    point: list[float]
    quantiles: dict[str, list[float]]
    served: dict[str, list[float]] | None
    logged_at: float


def forecast_record(row: LoggedForecast) -> dict[str, Any]:
    """The database row of ``row`` (arrays as JSON text).

    Raises:
        ValueError: naming the series when a step count disagrees with the timestamps.
    """
    steps = len(row.timestamps)
    arrays = [row.point, *row.quantiles.values(), *(row.served or {}).values()]
    if any(len(a) != steps for a in arrays):
        raise ValueError(f"forecast {row.forecast_id} of series {row.series_id!r}: every "
                         f"array must have {steps} steps, one per timestamp")
    return {"forecast_id": row.forecast_id, "series_id": row.series_id,
            "request_id": row.request_id, "model": row.model, "version": int(row.version),
            "source": row.source, "origin": int(row.origin),
            "timestamps": json.dumps(row.timestamps), "point": json.dumps(row.point),
            "quantiles": json.dumps(row.quantiles),
            "served": None if row.served is None else json.dumps(row.served),
            "logged_at": float(row.logged_at)}


def _parse(texts: Sequence[str | None]) -> list[Any]:
    """Each JSON text parsed (None stays None), by one ``json.loads`` call."""
    return list(json.loads("[" + ",".join("null" if t is None else t for t in texts) + "]"))


def _stamps(seconds: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(pd.to_datetime(seconds.astype(np.int64), unit="s", utc=True))


def _quantile_key(name: str) -> float:
    try:
        return float(name)
    except ValueError:
        return math.inf


def _column(dicts: Sequence[dict[str, list[float]] | None], key: str, lengths: Sequence[int]
            ) -> np.ndarray:
    """``key``'s arrays of every row laid end to end, NaN where a row lacks it."""
    parts = ((d or {}).get(key) or repeat(math.nan, n) for d, n in zip(dicts, lengths,
                                                                         strict=True))
    return np.fromiter(chain.from_iterable(parts), dtype=np.float64, count=sum(lengths))


def long_forecasts(rows: Sequence[Any]) -> pd.DataFrame:
    """The long frame of log rows (one per step; see :meth:`ForecastLog.forecasts`)."""
    if not rows:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in (
            ("forecast_id", object), ("request_id", object), ("model", object),
            ("version", np.int64), (UNIQUE_ID, object), ("source", object),
            ("origin", "datetime64[ns, UTC]"), ("step", np.int64), (DS, "datetime64[ns, UTC]"),
            ("point", np.float64), ("logged_at", np.float64))})
    stamps = _parse([r.timestamps for r in rows])
    lengths = [len(s) for s in stamps]
    total = sum(lengths)
    raw = _parse([r.quantiles for r in rows])
    served = _parse([r.served for r in rows])
    keys = sorted({k for d in raw for k in d} | {k for d in served if d for k in d},
                  key=_quantile_key)
    counts = np.asarray(lengths)
    frame: dict[str, Any] = {
        name: np.repeat(np.asarray([getattr(r, field) for r in rows], dtype=dtype), counts)
        for name, field, dtype in (
            ("forecast_id", "forecast_id", object), ("request_id", "request_id", object),
            ("model", "model", object), ("version", "version", np.int64),
            (UNIQUE_ID, "series_id", object), ("source", "source", object))}
    frame["origin"] = _stamps(np.repeat(np.asarray([r.origin for r in rows]), counts))
    ends = np.cumsum(counts)
    frame["step"] = np.arange(total, dtype=np.int64) - np.repeat(ends - counts, counts) + 1
    frame[DS] = _stamps(np.fromiter(chain.from_iterable(stamps), dtype=np.int64, count=total))
    frame["point"] = np.fromiter(chain.from_iterable(_parse([r.point for r in rows])),
                                 dtype=np.float64, count=total)
    frame |= {f"q{k}": _column(raw, k, lengths) for k in keys}
    frame |= {f"served_q{k}": _column(served, k, lengths) for k in keys}
    frame["logged_at"] = np.repeat(np.asarray([r.logged_at for r in rows], dtype=np.float64),
                                   counts)
    return pd.DataFrame(frame)


def epoch_seconds(stamps: pd.Series, what: str) -> np.ndarray:
    """UTC timestamps as int64 epoch seconds.

    Raises:
        ValueError: a timestamp missing or not on a whole second, naming ``what``.
    """
    ds = pd.to_datetime(stamps, utc=True)
    if ds.isna().any():
        raise ValueError(f"{what}: a timestamp is missing (row {int(np.argmax(ds.isna()))})")
    ns = pd.DatetimeIndex(ds).as_unit("ns").asi8
    if (ns % 1_000_000_000).any():
        bad = int(np.argmax(ns % 1_000_000_000 != 0))
        raise ValueError(f"{what}: timestamp {ds.iloc[bad].isoformat()} is not on a whole second")
    return np.asarray(ns // 1_000_000_000, dtype=np.int64)


def actual_arrays(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Validated ``(unique_id, ds epoch seconds, y)`` arrays of an actuals frame.

    Raises:
        ValueError: a column missing, or naming the series and timestamp of a value that is
            not a finite number or of a timestamp given twice.
    """
    missing = [c for c in ACTUAL_COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"actuals need columns {ACTUAL_COLUMNS}; missing {missing}")
    ids = frame[UNIQUE_ID].astype(str).to_numpy(dtype=object)
    ds = epoch_seconds(frame[DS], "actuals")
    y = pd.to_numeric(frame[Y], errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(y)
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"actuals of series {ids[i]!r} at {_iso(ds[i])}: y "
                         f"{str(frame[Y].iloc[i])!r} is not a finite number")
    twice = pd.DataFrame({UNIQUE_ID: ids, DS: ds}).duplicated().to_numpy()
    if twice.any():
        i = int(np.argmax(twice))
        raise ValueError(f"actuals of series {ids[i]!r}: timestamp {_iso(ds[i])} given twice")
    return ids, ds, y


def _iso(seconds: int) -> str:
    return pd.Timestamp(int(seconds), unit="s", tz="UTC").isoformat()


def actuals_frame(ids: Sequence[str], ds: Sequence[int], y: Sequence[float]) -> pd.DataFrame:
    """The long actuals frame (``unique_id``, ``ds`` UTC, ``y``), sorted by series and time."""
    frame = pd.DataFrame({UNIQUE_ID: pd.Series(list(ids), dtype=object),
                          DS: _stamps(np.asarray(ds, dtype=np.int64)),
                          Y: np.asarray(y, dtype=np.float64)})
    return frame.sort_values([UNIQUE_ID, DS], kind="stable", ignore_index=True)


__all__ = ["ACTUAL_COLUMNS", "BASE_COLUMNS", "LoggedForecast", "actual_arrays", "actuals_frame",
           "epoch_seconds", "forecast_record", "long_forecasts"]
