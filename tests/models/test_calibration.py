"""Interval calibration (acceptance 2): on a stream whose noise doubles, calibrated 80% intervals
return to 80 +- 5% coverage within D days, where the raw ones fall below 70%.

The stream: ``S = 100`` hourly series, each forecast once a day at midnight for ``H = 24`` steps.
The "model" knows each series' mean and the noise sigma of the days before the shift: its 0.1 and
0.9 quantiles are the true ones under that sigma. From day ``SHIFT`` the noise sigma doubles, so
the raw 80% interval covers ``P(|Z| < 1.2816 / 2)``, about 48%.

Each day, the factors are computed from the forecast log's ``matched`` frame (a real SQLite
``ForecastLog``) by :func:`calibration.factors` with the server's default settings (window 200,
min points 30), as ``service/calibrations.py`` does; the day's forecasts are served calibrated
and logged with their raw and served quantiles; their actuals are written at the end of the day.

D: each step gets one score per series and day, so the window of 200 spans 200 / 100 = 2 days:
the forecasts of day ``SHIFT + 2`` are the first served with factors made of post-shift errors
alone (``D = 2``, also stated in :mod:`nearcast.models.monitoring.calibration`). Measured with
this seed: raw coverage 0.46-0.50 after the shift; calibrated 0.80 before it, 0.48 on day
SHIFT, 0.64 on day SHIFT + 1 (half the window from before the shift) and 0.79-0.82 from day
SHIFT + 2 on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from nearcast.models.monitoring import calibration
from nearcast.models.monitoring.log_store import ForecastLog, LoggedForecast
from nearcast.models.settings import CalibrationSettings

S, H, DAYS, SHIFT, D = 100, 24, 9, 4, 2
Z90 = 1.2815515655446004  # the standard normal's 0.9 quantile
START = pd.Timestamp("2026-01-01", tz="UTC")
NAMES = ["q0.1", "q0.5", "q0.9"]
MODEL = "calib"


def _frame(rows: list[dict[str, float]]) -> pd.DataFrame:
    """A hand-made matched frame (the columns factors reads)."""
    frame = pd.DataFrame(rows)
    return frame.assign(unique_id=[f"s{i}" for i in range(len(frame))], logged_at=0.0,
                        point=frame["q0.5"])


def test_factor_is_the_conformal_order_statistic() -> None:
    # Median 0, raw interval [-1, 2]: an actual -s scores s (below), 2s scores s (above).
    wanted = [0.1, 0.9, 0.3, 1.5, 0.2, 2.0, 0.7, 1.1, 0.4]
    y = [-s if i % 2 == 0 else 2 * s for i, s in enumerate(wanted)]
    matched = _frame([{"step": 1, "origin": i, "y": v, "q0.1": -1.0, "q0.5": 0.0, "q0.9": 2.0}
                      for i, v in enumerate(y)])
    np.testing.assert_allclose(calibration.scores(
        matched["y"].to_numpy(), np.zeros(9), np.full(9, -1.0), np.full(9, 2.0)), wanted)
    cal = calibration.factors(matched, 2, [0.1, 0.5, 0.9], window=200, min_points=5, now=7.0)
    (iv,) = cal.intervals
    # n = 9: the ceil(10 * 0.8) = 8th smallest of 0.1 0.2 0.3 0.4 0.7 0.9 1.1 1.5 2.0
    assert (iv.key, iv.factors, iv.points, cal.computed_at) == ("0.1-0.9", (1.5, 1.0), (9, 0), 7.0)
    # window 5: the latest five by origin (0.2 2.0 0.7 1.1 0.4); ceil(6 * 0.8) = 5th = largest
    assert calibration.factors(matched, 1, [0.1, 0.5, 0.9], 5, 5).intervals[0].factors == (2.0,)
    # fewer points than min_points: factor 1, the points still reported
    assert calibration.factors(matched, 1, [0.1, 0.5, 0.9], 200, 10).intervals[0].factors == (1.0,)
    assert calibration.interval_pairs([0.05, 0.1, 0.2, 0.5, 0.9, 0.95]) == [(0.05, 0.95),
                                                                            (0.1, 0.9)]


def test_apply_rescales_around_the_median_and_keeps_the_order() -> None:
    values = np.array([[[8.0, 9.0, 10.0, 11.0, 12.0], [8.0, 9.0, 10.0, 11.0, 12.0]]])  # (1, 2, 5)
    names = ["q0.05", "q0.1", "q0.5", "q0.9", "q0.95"]
    cal = calibration.Calibration((
        calibration.IntervalFactors(0.05, 0.95, (1.0, 1.0), (50, 50)),
        calibration.IntervalFactors(0.1, 0.9, (3.0, 1.0), (50, 50))), 0.0)
    out = calibration.apply(values, names, cal)
    # step 1: the 0.1-0.9 interval becomes [7, 13], past the 0.05-0.95 one: each side sorted
    np.testing.assert_array_equal(out[0, 0], [7.0, 8.0, 10.0, 12.0, 13.0])
    np.testing.assert_array_equal(out[0, 1], values[0, 1])  # all factors 1 at step 2
    narrowed = calibration.Calibration((calibration.IntervalFactors(0.1, 0.9, (0.5,), (50,)),), 0)
    raw = np.array([[[9.0, 10.0, 14.0]]], dtype=np.float32)
    np.testing.assert_array_equal(calibration.apply(raw, NAMES, narrowed), [[[9.5, 10.0, 12.0]]])
    same = calibration.identity(1, [0.1, 0.5, 0.9], 0.0)
    assert calibration.apply(raw, NAMES, same) is raw and calibration.apply(raw, NAMES, None) is raw
    with pytest.raises(ValidationError, match="min_points"):
        CalibrationSettings(window=10, min_points=20)


def _forecasts(day: int, rng: np.random.Generator, sigma: np.ndarray, phase: np.ndarray
               ) -> tuple[np.ndarray, np.ndarray]:
    """Day ``day``: the model's raw outputs (S, H, 3) and the actuals (S, H)."""
    t = day * 24 + np.arange(1, H + 1)
    mean = 10 + 3 * np.sin(2 * np.pi * t[None, :] / 24 + phase[:, None])
    half = Z90 * sigma[:, None]
    values = np.stack([mean - half, mean, mean + half], axis=-1)
    noise = sigma[:, None] * (2.0 if day >= SHIFT else 1.0)
    return values, mean + noise * rng.standard_normal((S, H))


def _log_day(log: ForecastLog, day: int, values: np.ndarray, served: np.ndarray | None,
             actuals: np.ndarray) -> None:
    origin = START + pd.Timedelta(days=day)
    stamps = [int((origin + pd.Timedelta(hours=h)).timestamp()) for h in range(1, H + 1)]
    rows = [LoggedForecast(
        forecast_id=f"d{day}", request_id=None, model=MODEL, version=1, series_id=f"S{s}",
        source="api", origin=int(origin.timestamp()), timestamps=stamps,
        point=values[s, :, 1].tolist(),
        quantiles={n[1:]: values[s, :, k].tolist() for k, n in enumerate(NAMES)},
        served=None if served is None else {n[1:]: served[s, :, k].tolist()
                                            for k, n in enumerate(NAMES)},
        logged_at=origin.timestamp()) for s in range(S)]
    assert log.write_forecasts(rows) == S
    ds = pd.DatetimeIndex([origin + pd.Timedelta(hours=h) for h in range(1, H + 1)])
    log.write_actuals(MODEL, pd.DataFrame({"unique_id": np.repeat([f"S{s}" for s in range(S)], H),
                                           "ds": np.tile(ds, S), "y": actuals.ravel()}))


def test_calibrated_coverage_returns_to_nominal_after_the_noise_doubles(tmp_path: Path) -> None:
    settings = CalibrationSettings()  # the server's defaults: window 200, min_points 30
    rng = np.random.default_rng(17)
    sigma, phase = rng.uniform(0.5, 2.0, S), rng.uniform(0, 2 * np.pi, S)
    log = ForecastLog(f"sqlite:///{tmp_path / 'log.db'}")
    since: float | None = None  # as the server reads: only what the last windows hold
    try:
        for day in range(DAYS):
            cal = calibration.factors(log.matched(MODEL, version=1, since=since), H,
                                      [0.1, 0.5, 0.9], settings.window, settings.min_points)
            assert cal.intervals[0].points == (min(day * S, settings.window),) * H
            assert (cal.window_start is not None) == (day * S >= settings.window)
            since = cal.window_start
            values, actuals = _forecasts(day, rng, sigma, phase)
            served = calibration.apply(values, NAMES, cal)
            _log_day(log, day, values, None if served is values else served, actuals)
        matched = log.matched(MODEL, version=1)
        recent = log.matched(MODEL, version=1, since=since)
    finally:
        log.close()
    assert len(recent) < len(matched)
    full, windowed = (calibration.factors(m, H, [0.1, 0.5, 0.9], settings.window,
                                          settings.min_points) for m in (matched, recent))
    assert full.intervals == windowed.intervals  # the incremental read loses nothing
    day = (matched["origin"] - START).dt.days
    y = matched["y"]
    raw = ((matched["q0.1"] <= y) & (y <= matched["q0.9"])).groupby(day).mean()
    lo = matched["served_q0.1"].fillna(matched["q0.1"])
    hi = matched["served_q0.9"].fillna(matched["q0.9"])
    served = ((lo <= y) & (y <= hi)).groupby(day).mean()
    assert matched["served_q0.1"][day == 0].isna().all()  # no actuals yet: served raw
    assert matched["served_q0.1"][day > 0].notna().all()
    assert (raw[raw.index >= SHIFT] < 0.70).all(), raw
    assert (abs(served[served.index < SHIFT] - 0.80) <= 0.05).all(), served
    assert (abs(served[served.index >= SHIFT + D] - 0.80) <= 0.05).all(), served
    assert served[SHIFT + D - 1] < 0.75  # one day is not enough: D = 2 is the stated number
