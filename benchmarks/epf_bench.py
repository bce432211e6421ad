"""Day-ahead electricity prices (EPF): nearcast, LightGBM and the naive baselines, 3 markets.

The protocol is :mod:`benchmarks.epf_protocol`'s (the EPF benchmark's own, Lago et al. 2021):
the last 364 days of each file (``benchmarks/data/epf/{NP,PJM,DE}.csv``) are the validation days,
everything before is the training part; every validation day D is forecast (24 hours) from the
prices up to D-1 23:00 and both day-ahead covariates up to D 23:00. Scores: MAE over all
validation hours and rMAE = MAE / MAE of the benchmark's naive forecast.

Methods, per market:

- naive (the benchmark's: Monday, Saturday, Sunday one week back, other days one day back),
  seasonal naive (24 h) and seasonal naive (168 h);
- LightGBM (L1 loss) on lagged prices, previous-day statistics, calendar and (``with drivers``)
  the two covariates at t, t-24 h, t-168 h and their mean over day D; and the same without the
  covariate features. Fitted once on the training part, tuned lightly on a time-based split of
  the training part only (:func:`benchmarks.epf_protocol.lightgbm_peer`);
- nearcast with and without covariates (:data:`NEARCAST_CONFIGS`, trained once and run by
  :func:`benchmarks.epf_nearcast.run`; a row says "not run" when its config is missing).

Train seconds: LightGBM's tuning plus the final fit (the split is in the JSON); forecast seconds:
building the validation features and predicting every validation day. A nearcast row's train
seconds are its one fit, its forecast seconds the one batched call over every validation day.

Run: ``python -m benchmarks.epf_bench [--quick] [--data DIR] [--markets NP PJM DE] [--out PATH]``;
writes ``benchmarks/results/epf.json`` (``results/quick/epf.json`` with ``--quick``: the last
548 training days and the last 28 validation days of each market, a smaller tuning grid; for
checking the script, not the numbers).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks.common import ROOT, machine_info, print_table, result_path, write_json
from benchmarks.epf_nearcast import run as run_nearcast
from benchmarks.epf_protocol import (
    HOURS,
    MARKETS,
    VAL_DAYS,
    daily,
    daily_origins,
    lightgbm_peer,
    load_market,
    mae,
    naive_forecast,
    rmae,
    seasonal_naive,
    split,
)

DEFAULT_DATA = ROOT / "benchmarks" / "data" / "epf"
# Job files of nearcast's EPF models, per market ("{market}" is the key of MARKETS: NP, PJM, DE).
NEARCAST_CONFIGS = {"with covariates": "configs/epf-{market}.yaml",  # market in lower case
                    "without covariates": "configs/epf-{market}-univariate.yaml"}
QUICK_TRAIN_DAYS, QUICK_VAL_DAYS = 548, 28
SEED, THREADS = 0, 2
FULL_GRID: dict[str, tuple[int, ...]] = {"leaves": (31, 63), "rounds": (500, 1000, 1500)}
QUICK_GRID: dict[str, tuple[int, ...]] = {"leaves": (31,), "rounds": (250, 500)}
COLUMNS = ["method", "library", "mae", "rmae", "train_seconds", "forecast_seconds", "note"]


# ----------------------------------------------------------------------------- scoring
def _shown(path: Path) -> str:
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _row(method: str, library: str, actual: np.ndarray, forecast: np.ndarray,
         naive: np.ndarray, train_seconds: float | None, forecast_seconds: float | None,
         **extra: Any) -> dict[str, Any]:
    forecast = np.asarray(forecast, dtype=np.float64)
    if forecast.shape != actual.shape or not np.isfinite(forecast).all():
        raise ValueError(f"{method}: forecast of shape {forecast.shape} (finite: "
                         f"{bool(np.isfinite(forecast).all())}), expected {actual.shape}")
    return {"method": method, "library": library, "mae": mae(actual, forecast),
            "rmae": rmae(actual, forecast, naive), "train_seconds": train_seconds,
            "forecast_seconds": forecast_seconds, "note": None, **extra}


def _timed(make: Callable[[], np.ndarray]) -> tuple[np.ndarray, float]:
    t0 = time.perf_counter()
    out = make()
    return out, time.perf_counter() - t0


def _period(part: pd.DataFrame) -> dict[str, Any]:
    return {"from": str(part["ds"].iloc[0]), "to": str(part["ds"].iloc[-1]),
            "days": len(part) // HOURS}


def run_market(name: str, data: Path, quick: bool) -> dict[str, Any]:
    """Score every method on one market; returns its rows and the data's periods."""
    frame = load_market(name, data)
    val_days = QUICK_VAL_DAYS if quick else VAL_DAYS
    if quick:  # the last 548 days before the last 28
        frame = frame.iloc[-(QUICK_TRAIN_DAYS + val_days) * HOURS:].reset_index(drop=True)
    train, val = split(frame, val_days)
    actual = daily(val)
    numpy_lib = f"numpy {np.__version__}"
    naive, naive_s = _timed(lambda: naive_forecast(frame, val_days))
    rows = [_row("naive (EPF benchmark)", numpy_lib, actual, naive, naive, None, naive_s)]
    for season in (24, 168):
        pred, seconds = _timed(partial(seasonal_naive, frame, val_days, season))
        rows.append(_row(f"seasonal naive ({season} h)", numpy_lib, actual, pred, naive, None,
                         seconds))

    grid = QUICK_GRID if quick else FULL_GRID
    lightgbm = []
    for drivers in (True, False):
        res = lightgbm_peer(frame, val_days, drivers=drivers, seed=SEED, num_threads=THREADS,
                            leaves=grid["leaves"], rounds=grid["rounds"])
        label = "with drivers" if drivers else "without drivers"
        rows.append(_row(f"LightGBM L1, {label}", f"lightgbm {res.version}", actual,
                         res.forecast, naive, res.tune_seconds + res.fit_seconds,
                         res.forecast_seconds,
                         note=f"{res.params['num_leaves']} leaves, {res.rounds} trees"))
        lightgbm.append({"method": f"LightGBM L1, {label}", "num_leaves": res.params["num_leaves"],
                         "rounds": res.rounds, "tune_seconds": res.tune_seconds,
                         "fit_seconds": res.fit_seconds, "train_rows": res.train_rows,
                         "features": res.features, "params": res.params, "tuning": res.tuning})

    version = _nearcast_version()
    for label, template in NEARCAST_CONFIGS.items():
        config = ROOT / template.format(market=name.lower())
        method = f"nearcast, {label}"
        if not config.exists():
            rows.append({"method": method, "library": version, "mae": None, "rmae": None,
                         "train_seconds": None, "forecast_seconds": None,
                         "note": f"not run: {_shown(config)} does not exist",
                         "config": _shown(config)})
            continue
        result = run_nearcast(config, name, train, val, quick)
        rows.append(_row(method, version, actual, result.forecast, naive, result.train_seconds,
                         result.forecast_seconds, note="trained once on 2 cores",
                         config=_shown(config)))
    origins = daily_origins(frame, val_days)
    return {"market": name, "label": MARKETS[name].label, "file": MARKETS[name].file,
            "train": _period(train), "validation": _period(val) | {
                "origins": len(origins), "first_day_weekday": origins[0].day_name()},
            "price_mean_validation": float(actual.mean()), "methods": rows,
            "lightgbm": lightgbm}


def _nearcast_version() -> str:
    try:
        return f"nearcast {metadata.version('nearcast')}"
    except metadata.PackageNotFoundError:
        return "nearcast"


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print one table per market and write the JSON results."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"last {QUICK_TRAIN_DAYS} training and {QUICK_VAL_DAYS} "
                             "validation days, smaller LightGBM grid")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA,
                        help="folder holding NP.csv, PJM.csv, DE.csv")
    parser.add_argument("--markets", nargs="+", choices=list(MARKETS), default=list(MARKETS))
    parser.add_argument("--out", type=Path, default=None, help="JSON output path")
    args = parser.parse_args(argv)
    machine, t0 = machine_info(), time.perf_counter()
    markets = []
    for name in args.markets:
        started = time.perf_counter()
        market = run_market(name, args.data, args.quick)
        market["seconds"] = time.perf_counter() - started
        markets.append(market)
        val = market["validation"]
        print_table(market["methods"], COLUMNS,
                    title=f"{name} ({market['label']}): train {market['train']['days']} days, "
                          f"validation {val['days']} days {val['from'][:10]} to {val['to'][:10]}")
    result = {
        "benchmark": "epf", "quick": args.quick, "machine": machine,
        "load_average_end": [round(x, 2) for x in os.getloadavg()],
        "seconds": time.perf_counter() - t0, "data": _shown(args.data),
        "protocol": {
            "validation_days": QUICK_VAL_DAYS if args.quick else VAL_DAYS,
            "train_days_quick": QUICK_TRAIN_DAYS if args.quick else None,
            "forecast": "each validation day D: 24 prices from prices up to D-1 23:00 and "
                        "both covariates up to D 23:00",
            "naive": "Mon, Sat, Sun: same hour one week earlier; Tue-Fri: one day earlier",
            "seed": SEED, "threads": THREADS,
            "lightgbm_grid": QUICK_GRID if args.quick else FULL_GRID},
        "markets": markets,
    }
    write_json(args.out or result_path("epf", args.quick), result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
