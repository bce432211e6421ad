"""Peers on the accuracy benchmark's holdout: statsforecast MSTL and AutoETS next to the baselines.

The data is read exactly as ``benchmarks/accuracy_bench.py`` reads it (the ``data:`` section of
``configs/lstm.yaml``: bundled M4 Hourly, hourly grid, linear gap policy) and the last 48 points
of every series are held out. Every method forecasts those 48 points from the history before
them and is scored by :func:`models.evaluation.score_methods`, the function that scores
nearcast's own models (sMAPE, MASE with the seasonal lag-24 scale, OWA relative to Naive2).

Methods: naive, seasonal naive and Naive2 (:mod:`models.baselines`), and from statsforecast
(the ``bench`` extra: ``pip install -e '.[bench]'``):

* ``mstl_24_168``: ``MSTL(season_length=[24, 168])`` (daily + weekly seasonality; trend by its
  default ``AutoETS(model="ZZN")``);
* ``mstl_24``: ``MSTL(season_length=24)``;
* ``autoets``: ``AutoETS(season_length=24)``.

Each statsforecast model is fitted and forecast in its own ``StatsForecast.forecast`` call, timed
after a one-series warm-up (numba compiles on first use; the warm-up time is reported apart).

Run: ``python -m benchmarks.peers [--quick] [--n-jobs 2] [--out PATH]``; writes
``benchmarks/results/peers.json`` (``results/quick/peers.json`` with ``--quick``: the first 20
series, to check the script, not the figures).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from benchmarks.common import ROOT, machine_info, print_table, result_path, write_json  # noqa: E402

CONFIG = ROOT / "configs" / "lstm.yaml"
HORIZON, SEASON, QUICK_SERIES = 48, 24, 20
BASELINE_NAMES = ("naive", "seasonal_naive", "naive2")
PEER_NAMES = ("mstl_24_168", "mstl_24", "autoets")


def _peer_models() -> dict[str, Any]:
    try:
        from statsforecast.models import MSTL, AutoETS
    except ImportError as exc:  # the bench-only extra is missing
        raise SystemExit(f"statsforecast is not installed ({exc}); run "
                         "`.venv/bin/pip install -c constraints.txt -e '.[bench]'` "
                         "or `make bench`") from exc
    return {"mstl_24_168": MSTL(season_length=[SEASON, 7 * SEASON], alias="mstl_24_168"),
            "mstl_24": MSTL(season_length=SEASON, alias="mstl_24"),
            "autoets": AutoETS(season_length=SEASON, alias="autoets")}


def load_holdout(n_series: int | None) -> tuple[pd.DataFrame, np.ndarray, list[np.ndarray],
                                               np.ndarray]:
    """The accuracy benchmark's split.

    Returns:
        ``(train_frame, ids (S,), insample (S arrays), actual (S, 48))``: the long frame of
        every series without its last 48 points (what the peers fit on), and the same
        histories as float64 arrays next to the held-out values.
    """
    from nearcast.models.jobconfig import JobConfig
    from nearcast.pipelines.dataset import load_dataset
    from nearcast.pipelines.schema import DS, UNIQUE_ID, Y
    from nearcast.pipelines.windows import SeriesTable

    data_cfg = JobConfig.from_yaml(CONFIG).data.model_copy(update={"n_series": n_series})
    frame = load_dataset(data_cfg).frame
    table = SeriesTable.from_long(frame)
    insample = [table.series(i)[:-HORIZON].astype(np.float64) for i in range(len(table.ids))]
    actual = np.stack([table.series(i)[-HORIZON:] for i in range(len(table.ids))]).astype(float)
    train = frame.sort_values([UNIQUE_ID, DS], kind="stable").groupby(UNIQUE_ID).head(-HORIZON)
    order = np.repeat(table.ids, [len(s) for s in insample])
    if not np.array_equal(train[UNIQUE_ID].to_numpy(dtype=str), order):
        raise RuntimeError("series order of the frame and of the table differ")
    # the very values (float32, as nearcast's table holds them) that every method sees
    train = train[[UNIQUE_ID, DS]].assign(**{Y: np.concatenate(insample)})
    return train.reset_index(drop=True), table.ids, insample, actual


def _statsforecast(model: Any, train: pd.DataFrame, ids: np.ndarray, n_jobs: int) -> np.ndarray:
    """Fit ``model`` on every series and forecast 48 steps: shape ``(S, 48)`` in ``ids`` order."""
    from statsforecast import StatsForecast

    sf = StatsForecast(models=[model], freq="h", n_jobs=n_jobs)
    out = sf.forecast(df=train, h=HORIZON)
    from nearcast.pipelines.schema import DS, UNIQUE_ID

    out = out.reset_index() if UNIQUE_ID not in out.columns else out
    # Per series in time order: series end at different timestamps, so no pivot on ``ds``.
    ordered = out.sort_values([UNIQUE_ID, DS], kind="stable")
    rows = {str(k): g[model.alias].to_numpy(dtype=np.float64)
            for k, g in ordered.groupby(UNIQUE_ID, sort=False)}
    return np.stack([rows[str(i)] for i in ids])  # a fresh array: filled in place below


def _fill_non_finite(name: str, fc: np.ndarray, insample: list[np.ndarray]) -> int:
    """Replace non-finite forecast rows by naive (counted, reported); returns the count."""
    bad = np.flatnonzero(~np.isfinite(fc).all(axis=1))
    for i in bad:
        fc[i] = insample[i][-1]
    if bad.size:
        print(f"{name}: {bad.size} series gave non-finite forecasts; naive used instead")
    return int(bad.size)


def forecast_all(train: pd.DataFrame, ids: np.ndarray, insample: list[np.ndarray],
                 n_jobs: int) -> tuple[dict[str, np.ndarray], dict[str, dict[str, Any]]]:
    """Forecasts ``(S, 48)`` and timings of every baseline and peer."""
    from nearcast.models.baselines import BASELINES
    from nearcast.pipelines.schema import UNIQUE_ID

    forecasts, timing = {}, {}
    for name in BASELINE_NAMES:
        t0 = time.perf_counter()
        forecasts[name] = BASELINES[name](insample, HORIZON, SEASON)
        timing[name] = {"fit_forecast_seconds": time.perf_counter() - t0}
    first = train[train[UNIQUE_ID] == ids[0]]
    for name, model in _peer_models().items():
        t0 = time.perf_counter()
        _statsforecast(model, first, ids[:1], 1)  # numba compilation, not counted
        warm = time.perf_counter() - t0
        t0 = time.perf_counter()
        forecasts[name] = _statsforecast(model, train, ids, n_jobs)
        timing[name] = {"fit_forecast_seconds": time.perf_counter() - t0,
                        "warmup_seconds": warm,
                        "fallback_series": _fill_non_finite(name, forecasts[name], insample)}
        print(f"{name}: {timing[name]['fit_forecast_seconds']:.1f}s", flush=True)
    return forecasts, timing


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the peers, print the table and write the JSON results."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"first {QUICK_SERIES} series")
    parser.add_argument("--n-jobs", type=int, default=min(2, os.cpu_count() or 1),
                        help="statsforecast worker processes (default: 2)")
    parser.add_argument("--out", type=Path, default=None, help="JSON output path")
    args = parser.parse_args(argv)
    from nearcast.models.config import METRICS
    from nearcast.models.evaluation import score_methods

    conditions = machine_info()
    train, ids, insample, actual = load_holdout(QUICK_SERIES if args.quick else None)
    forecasts, timing = forecast_all(train, ids, insample, args.n_jobs)
    scores = score_methods(forecasts, actual, insample, SEASON)
    rows = [{"method": m, **{k: scores[m][k] for k in METRICS}, **timing[m]} for m in forecasts]
    print_table(rows, ["method", "smape", "mase", "owa", "fit_forecast_seconds"],
                title=f"M4 Hourly, {len(ids)} series, last {HORIZON} points held out")
    result = {
        "benchmark": "peers", "quick": args.quick, "conditions": conditions,
        "data": {"config": str(CONFIG.relative_to(ROOT)), "series": len(ids),
                 "points": int(sum(len(s) for s in insample) + actual.size),
                 "holdout": HORIZON, "season": SEASON},
        "n_jobs": args.n_jobs, "scored_by": "nearcast.models.evaluation.score_methods",
        "methods": rows,
    }
    write_json(args.out or result_path("peers", args.quick), result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
