"""The EPF day-ahead protocol: data, split, baselines, scores and a LightGBM peer.

Data: three hourly day-ahead electricity markets of the open EPF benchmark (Lago, Marcjasz,
De Schutter & Weron, Applied Energy 293 (2021) 116983), the first four years of each, in
``benchmarks/data/epf/{NP,PJM,DE}.csv``: an unnamed timestamp column, the price and two day-ahead
forecasts published the day before delivery (future-known covariates), 24 rows a day.

Protocol: the last ``val_days`` = 364 days of each file are the validation days; everything
before is the training part. For every validation day D the 24 prices of D are forecast from the
prices up to D-1 23:00 and both covariates up to D 23:00. Scores: MAE over all validation hours,
and rMAE = MAE / MAE of the benchmark's naive forecast (Monday, Saturday and Sunday: the same
hour one week earlier; Tuesday to Friday: the same hour one day earlier).

Every function takes the whole frame (training part followed by the validation days, as
:func:`load_market` returns it, or a shorter tail of it) and ``val_days``, the number of days at
its end that are forecast; forecasts are arrays of shape ``(val_days, 24)`` (day, hour), in the
order of the days. Only numpy and pandas are imported at module level; LightGBM is imported by
:func:`lightgbm_peer` when it runs.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "DATA_DIR",
    "HOURS",
    "MARKETS",
    "VAL_DAYS",
    "LightGBMResult",
    "Market",
    "daily",
    "daily_origins",
    "features",
    "lightgbm_peer",
    "load_market",
    "mae",
    "naive_forecast",
    "rmae",
    "seasonal_naive",
    "split",
]

DATA_DIR = Path(__file__).resolve().parent / "data" / "epf"
HOURS = 24
VAL_DAYS = 364
MONDAY, SATURDAY, SUNDAY = 0, 5, 6


@dataclass(frozen=True)
class Market:
    """One market's file and its column names (spelled as in the file, leading spaces kept)."""

    file: str
    price: str
    x1: str
    x2: str
    label: str


MARKETS: dict[str, Market] = {
    "NP": Market("NP.csv", " Price", " Grid load forecast", " Wind power forecast",
                 "Nord Pool"),
    "PJM": Market("PJM.csv", " Zonal COMED price", " System load forecast",
                  " Zonal COMED load foecast", "PJM, COMED zone"),
    "DE": Market("DE.csv", "Price", "Ampirion Load Forecast", "PV+Wind Forecast",
                 "EPEX Germany"),
}


# ----------------------------------------------------------------------------- data
def load_market(name: str, root: Path = DATA_DIR) -> pd.DataFrame:
    """``root/<file>`` as columns ``ds`` (timestamp), ``y`` (price), ``x1``, ``x2`` (the two
    day-ahead forecasts, in the order of :data:`MARKETS`), sorted by ``ds``.

    Fails naming the file and the row when a column is missing, a value is missing or not a
    number, or the rows are not whole consecutive days of 24 hours.
    """
    market = MARKETS[name]
    path = Path(root) / market.file
    raw = pd.read_csv(path)
    missing = [c for c in (market.price, market.x1, market.x2) if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: no column(s) {missing}; columns are {list(raw.columns)}")
    frame = pd.DataFrame({
        "ds": pd.to_datetime(raw.iloc[:, 0]),
        "y": pd.to_numeric(raw[market.price], errors="coerce"),
        "x1": pd.to_numeric(raw[market.x1], errors="coerce"),
        "x2": pd.to_numeric(raw[market.x2], errors="coerce"),
    })
    bad = frame[["y", "x1", "x2"]].isna().any(axis=1).to_numpy()
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{path}: line {row + 2} has a missing or non-numeric value "
                         f"({bad.sum()} such rows)")
    frame = frame.sort_values("ds", kind="stable").reset_index(drop=True)
    _check_days(frame, path)
    return frame


def _check_days(frame: pd.DataFrame, path: Path) -> None:
    """Whole days: every block of 24 rows lies on one date, one day after the block before."""
    if len(frame) % HOURS:
        raise ValueError(f"{path}: {len(frame)} rows is not a whole number of 24-hour days")
    dates = frame["ds"].dt.normalize().to_numpy().reshape(-1, HOURS)
    off = np.flatnonzero((dates != dates[:, :1]).any(axis=1))
    if off.size:
        raise ValueError(f"{path}: the 24 rows of day {int(off[0])} (from row "
                         f"{int(off[0]) * HOURS}) do not all lie on {dates[off[0], 0]}")
    steps = np.diff(dates[:, 0]) != np.timedelta64(1, "D")
    if steps.any():
        day = int(np.flatnonzero(steps)[0]) + 1
        raise ValueError(f"{path}: day {day} ({dates[day, 0]}) does not follow the day before "
                         f"({dates[day - 1, 0]})")


def daily(frame: pd.DataFrame, column: str = "y") -> np.ndarray:
    """One column as an array ``(days, 24)``: row = day, column = hour."""
    return frame[column].to_numpy(dtype=np.float64).reshape(-1, HOURS)


def _days(frame: pd.DataFrame) -> pd.DatetimeIndex:
    """The date (00:00) of every day of ``frame``."""
    return pd.DatetimeIndex(frame["ds"].to_numpy()[::HOURS]).normalize()


def split(frame: pd.DataFrame, val_days: int = VAL_DAYS) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(train, val)``: the last ``val_days`` days, and everything before them."""
    cut = len(frame) - val_days * HOURS
    if val_days < 1 or cut < 7 * HOURS:
        raise ValueError(f"{len(frame) // HOURS} days cannot hold {val_days} validation days "
                         "after a week of training data")
    return frame.iloc[:cut].reset_index(drop=True), frame.iloc[cut:].reset_index(drop=True)


def daily_origins(frame: pd.DataFrame, val_days: int = VAL_DAYS) -> pd.DatetimeIndex:
    """The validation days D (their 00:00 timestamps), one forecast each: the forecast of D
    may use prices strictly before D (up to D-1 23:00) and covariates up to D 23:00."""
    return _days(frame)[-val_days:]


# ----------------------------------------------------------------------------- baselines
def _val_index(frame: pd.DataFrame, val_days: int) -> np.ndarray:
    n = len(frame) // HOURS
    if not 7 <= n - val_days < n:
        raise ValueError(f"{n} days cannot hold {val_days} validation days after a week")
    return np.arange(n - val_days, n)


def naive_forecast(frame: pd.DataFrame, val_days: int = VAL_DAYS) -> np.ndarray:
    """The benchmark's naive forecast of the last ``val_days`` days, ``(val_days, 24)``: for
    Monday, Saturday and Sunday the same hour one week earlier, for Tuesday to Friday the same
    hour one day earlier."""
    prices, idx = daily(frame), _val_index(frame, val_days)
    weekday = _days(frame).weekday.to_numpy()[idx]
    back = np.where(np.isin(weekday, (MONDAY, SATURDAY, SUNDAY)), 7, 1)
    return np.asarray(prices[idx - back])


def seasonal_naive(frame: pd.DataFrame, val_days: int = VAL_DAYS,
                   season: int = HOURS) -> np.ndarray:
    """The same hour ``season`` hours earlier (24: the day before; 168: the week before), for
    the last ``val_days`` days, ``(val_days, 24)``. ``season`` is a whole number of days."""
    if season % HOURS or not HOURS <= season <= 7 * HOURS:
        raise ValueError(f"season {season} h is not 1 to 7 whole days")
    return np.asarray(daily(frame)[_val_index(frame, val_days) - season // HOURS])


# ----------------------------------------------------------------------------- scores
def mae(actual: np.ndarray, forecast: np.ndarray) -> float:
    """Mean absolute error over all values (shapes must agree)."""
    actual, forecast = np.asarray(actual, dtype=np.float64), np.asarray(forecast, np.float64)
    if actual.shape != forecast.shape:
        raise ValueError(f"actual {actual.shape} and forecast {forecast.shape} differ in shape")
    return float(np.mean(np.abs(actual - forecast)))


def rmae(actual: np.ndarray, forecast: np.ndarray, naive: np.ndarray) -> float:
    """MAE of ``forecast`` divided by the MAE of ``naive`` (the benchmark's naive forecast)."""
    return mae(actual, forecast) / mae(actual, naive)


# ----------------------------------------------------------------------------- LightGBM peer
PRICE_LAGS = (1, 2, 3, 7)  # days, same hour
DRIVER_LAGS = (0, 1, 7)  # days: t, t-24 h, t-168 h


def features(frame: pd.DataFrame, days: np.ndarray, drivers: bool = True) -> pd.DataFrame:
    """One row per (day, hour) of the day positions ``days`` (each >= 7), day-major.

    Prices (known up to D-1 23:00): the same hour 1, 2, 3 and 7 days earlier; the mean, min, max
    and last (23:00) price of day D-1. With ``drivers``, for each covariate: its value at t,
    t-24 h and t-168 h and its mean over day D (day-ahead forecasts, known for all of D). Then
    hour and weekday.
    """
    days = np.asarray(days, dtype=np.int64)
    if days.size and days.min() < 7:
        raise ValueError("features need 7 days of history before every day")
    prices = daily(frame)
    prev = prices[days - 1]
    n = len(days)

    def per_day(values: np.ndarray) -> np.ndarray:
        return np.repeat(values, HOURS)

    cols: dict[str, np.ndarray] = {
        f"price_lag_{d * HOURS}h": prices[days - d].ravel() for d in PRICE_LAGS}
    cols |= {"prev_day_mean": per_day(prev.mean(axis=1)), "prev_day_min": per_day(prev.min(1)),
             "prev_day_max": per_day(prev.max(axis=1)), "prev_day_last": per_day(prev[:, -1])}
    if drivers:
        for name in ("x1", "x2"):
            values = daily(frame, name)
            for d in DRIVER_LAGS:
                cols[f"{name}_lag_{d * HOURS}h"] = values[days - d].ravel()
            cols[f"{name}_day_mean"] = per_day(values[days].mean(axis=1))
    cols["hour"] = np.tile(np.arange(HOURS), n)
    cols["weekday"] = per_day(_days(frame).weekday.to_numpy()[days])
    return pd.DataFrame(cols)


@dataclass
class LightGBMResult:
    """The peer's forecast ``(val_days, 24)``, the settings chosen and its timings."""

    forecast: np.ndarray
    version: str
    params: dict[str, Any]
    rounds: int
    tuning: list[dict[str, Any]] = field(default_factory=list)
    tune_seconds: float = 0.0
    fit_seconds: float = 0.0
    forecast_seconds: float = 0.0
    train_rows: int = 0
    features: list[str] = field(default_factory=list)


def lightgbm_peer(frame: pd.DataFrame, val_days: int = VAL_DAYS, drivers: bool = True,
                  seed: int = 0, num_threads: int = 2, leaves: tuple[int, ...] = (31, 63),
                  rounds: tuple[int, ...] = (500, 1000, 1500),
                  inner_val_days: int | None = None) -> LightGBMResult:
    """LightGBM (L1 loss) on :func:`features`, fitted once on the training part, forecasting
    every validation day.

    Tuning never sees the validation days: the training part is cut by time into an inner
    training part and its last ``inner_val_days`` days (default: min(364, a third of it)); one
    model per ``leaves`` value is fitted there with ``max(rounds)`` trees, and the (leaves,
    rounds) pair with the lowest inner MAE is refitted on the whole training part. Learning rate
    0.05, deterministic, ``seed``, ``num_threads``.
    """
    import lightgbm as lgb

    idx = _val_index(frame, val_days)
    first_val = int(idx[0])
    train_days = np.arange(7, first_val)
    inner = inner_val_days or min(VAL_DAYS, len(train_days) // 3)
    if not 0 < inner < len(train_days):
        raise ValueError(f"{len(train_days)} training days cannot hold {inner} inner days")
    actual = daily(frame)
    base: dict[str, Any] = {
        "objective": "l1", "learning_rate": 0.05, "seed": seed, "deterministic": True,
        "force_row_wise": True, "num_threads": num_threads, "verbosity": -1,
    }

    def dataset(days: np.ndarray) -> Any:
        return lgb.Dataset(features(frame, days, drivers), label=actual[days].ravel(),
                           categorical_feature=["weekday"], free_raw_data=False)

    t0 = time.perf_counter()
    inner_fit, inner_val = train_days[:-inner], train_days[-inner:]
    fit_set, val_x = dataset(inner_fit), features(frame, inner_val, drivers)
    tuning: list[dict[str, Any]] = []
    for n_leaves in leaves:
        booster = lgb.train(base | {"num_leaves": n_leaves}, fit_set, num_boost_round=max(rounds))
        for n in rounds:
            pred = booster.predict(val_x, num_iteration=n)
            tuning.append({"num_leaves": n_leaves, "rounds": n,
                           "inner_mae": mae(actual[inner_val].ravel(), np.asarray(pred))})
    best = min(tuning, key=lambda r: r["inner_mae"])
    tune_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    params = base | {"num_leaves": best["num_leaves"]}
    full = dataset(train_days)
    booster = lgb.train(params, full, num_boost_round=int(best["rounds"]))
    fit_seconds = time.perf_counter() - t0

    t0 = time.perf_counter()
    pred = np.asarray(booster.predict(features(frame, idx, drivers))).reshape(-1, HOURS)
    forecast_seconds = time.perf_counter() - t0
    return LightGBMResult(
        forecast=pred, version=lgb.__version__, params=params, rounds=int(best["rounds"]),
        tuning=tuning, tune_seconds=tune_seconds, fit_seconds=fit_seconds,
        forecast_seconds=forecast_seconds, train_rows=len(train_days) * HOURS,
        features=list(full.data.columns))
