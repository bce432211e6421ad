"""Live scores and alarms on small matched frames whose numbers are computed by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nearcast.models.config import MonitorConfig
from nearcast.models.mase import mase_scales
from nearcast.models.monitoring.alarms import alarm_states, daily_checks
from nearcast.models.monitoring.live_scores import (
    VersionInfo,
    actuals_scales,
    interval_quantiles,
    live_scores,
)

T0 = pd.Timestamp("2026-01-01", tz="UTC")
HOUR = pd.Timedelta(hours=1)


def matched_row(uid: str, origin: int, step: int, y: float, point: float, q1: float,
                q9: float, served: tuple[float, float] | None = None, version: int = 1
                ) -> dict[str, object]:
    """One row of ForecastLog.matched (hours counted from T0)."""
    return {"forecast_id": f"f{uid}{origin}", "request_id": None, "model": "m",
            "version": version, "unique_id": uid, "source": "api", "origin": T0 + origin * HOUR,
            "step": step, "ds": T0 + (origin + step) * HOUR, "point": point, "q0.1": q1,
            "q0.5": point, "q0.9": q9,
            "served_q0.1": served[0] if served else np.nan, "served_q0.5": np.nan,
            "served_q0.9": served[1] if served else np.nan, "logged_at": 0.0, "y": y}


def actuals(uid: str, values: list[float], start: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"unique_id": uid, "y": values,
                         "ds": [T0 + (start + i) * HOUR for i in range(len(values))]})


# Series A: actuals 10 12 11 13 | 12 16; forecast from origin hour 3 (y=13) for hours 4, 5.
MATCHED = pd.DataFrame([
    matched_row("A", 3, 1, 12.0, 13.0, 11.0, 14.0, served=(10.0, 15.0)),
    matched_row("A", 3, 2, 16.0, 14.0, 12.0, 15.0, served=(11.0, 17.0)),
])
HISTORY = actuals("A", [10.0, 12.0, 11.0, 13.0, 12.0, 16.0])
INFO = VersionInfo(version=1, season=2, freq="h", scales={"A": 2.0},
                   holdout={"mase": 0.5, "mae": 1.0, "smape": 5.0})


def test_point_interval_and_naive_metrics_by_hand() -> None:
    scores = live_scores(MATCHED, HISTORY, {1: INFO}, interval=0.8)
    (row,) = scores.overall.to_dict("records")
    assert row["points"] == 2 and row["series"] == 1
    assert row["mae"] == pytest.approx(1.5)  # |12 - 13|, |16 - 14|
    assert row["bias"] == pytest.approx(-0.5)  # (1 - 2) / 2
    assert row["smape"] == pytest.approx(100 * (1 / 25 + 2 / 30))
    assert row["mase"] == pytest.approx((1 / 2 + 2 / 2) / 2)  # training scale 2
    assert row["coverage_raw"] == pytest.approx(0.5)  # 12 in [11, 14]; 16 not in [12, 15]
    assert row["coverage"] == pytest.approx(1.0)  # served: [10, 15] and [11, 17]
    assert row["interval_factor"] == pytest.approx((5 / 3 + 6 / 3) / 2)  # served / raw widths
    # Pinball over q0.1, q0.5, q0.9 (the served median is the raw one).
    assert row["pinball_raw"] == pytest.approx(((0.1 + 0.4) / 2 + (0.5 + 1.0) / 2
                                                + (0.2 + 0.9) / 2) / 3)
    assert row["pinball"] == pytest.approx(((0.2 + 0.5) / 2 + (0.5 + 1.0) / 2
                                            + (0.3 + 0.1) / 2) / 3)
    # Seasonal naive (season 2) from origin hour 3: hour 4 <- hour 2 (11), hour 5 <- hour 3 (13).
    assert scores.points["naive"].tolist() == [11.0, 13.0]
    assert row["naive_points"] == 2
    assert row["naive_mae"] == pytest.approx(2.0)
    assert row["naive_smape"] == pytest.approx(100 * (1 / 23 + 3 / 29))
    assert row["naive_mase"] == pytest.approx((1 / 2 + 3 / 2) / 2)
    assert scores.scale_source == {1: "training"}
    by_step = scores.by_step.set_index("step")
    assert by_step.loc[1, "mae"] == pytest.approx(1.0)
    assert by_step.loc[2, "mase"] == pytest.approx(1.0)
    assert scores.by_day["day"].tolist() == [T0]


def test_missing_naive_is_excluded_and_counted_and_scales_fall_back_to_actuals() -> None:
    # Series B: stored actuals from hour 3 on only, so step 1's naive (hour 2) is missing.
    b_hist = actuals("B", [5.0, 7.0, 6.0, 9.0], start=3)
    matched = pd.concat([MATCHED, pd.DataFrame([
        matched_row("B", 3, 1, 7.0, 6.0, 5.0, 8.0), matched_row("B", 3, 2, 6.0, 6.0, 5.0, 8.0),
    ])], ignore_index=True)
    scores = live_scores(matched, pd.concat([HISTORY, b_hist]), {1: INFO}, interval=0.8)
    (row,) = scores.overall.to_dict("records")
    assert row["points"] == 4 and row["naive_points"] == 3
    # B's scale from its stored actuals 5 7 6 9 at lag 2: (|6 - 5| + |9 - 7|) / 2 = 1.5
    assert scores.scale_source == {1: "training + actuals for 1 series"}
    series = scores.by_series.set_index("unique_id")
    assert series.loc["B", "mase"] == pytest.approx((1 / 1.5 + 0 / 1.5) / 2)
    assert series.loc["B", "naive_points"] == 1  # hour 5 <- hour 3 (5.0)
    assert series.loc["B", "naive_mae"] == pytest.approx(1.0)
    assert series.loc["B", "coverage"] == pytest.approx(1.0)  # no served: raw [5, 8]
    assert series.loc["B", "interval_factor"] == pytest.approx(1.0)


def test_actuals_scales_equal_mase_scales_without_gaps() -> None:
    values = [3.0, 5.0, 4.0, 8.0, 6.0, 7.0, 9.0]
    got = actuals_scales(actuals("S", values), season=3, freq="h")
    assert got["S"] == pytest.approx(float(mase_scales([np.array(values)], 3)[0]))
    short = actuals_scales(actuals("T", [1.0, 4.0]), season=3, freq="h")  # lag 1 fall-back
    assert short["T"] == pytest.approx(3.0)
    assert interval_quantiles(0.8) == (0.1, 0.9)


def by_day(values: list[float], coverage: list[float], version: int = 1,
           start: int = 0) -> pd.DataFrame:
    return pd.DataFrame({"version": version, "mase": values, "coverage": coverage,
                         "day": [T0 + pd.Timedelta(days=start + i) for i in range(len(values))]})


def test_degraded_days_by_ratio_and_coverage() -> None:
    cfg = MonitorConfig(max_ratio=1.5, coverage_band=(0.7, 0.9))
    checks = daily_checks(by_day([0.5, 0.8, 0.6, 0.6], [0.8, 0.8, 0.5, np.nan]),
                          {"mase": 0.5}, cfg)
    assert checks["ratio"].tolist() == pytest.approx([1.0, 1.6, 1.2, 1.2])
    assert checks["degraded"].tolist() == [False, True, True, False]
    assert "1.60x the holdout" in checks["reason"][1]
    assert checks["reason"][2] == "coverage 0.50 outside [0.7, 0.9]"
    unknown = daily_checks(by_day([9.0], [0.8]), {}, cfg)  # no holdout: no ratio check
    assert not unknown["degraded"].any() and np.isnan(unknown["ratio"][0])


def test_alarm_after_days_degraded_days_and_not_before() -> None:
    cfg = MonitorConfig(days=3, max_ratio=1.5)
    info = {1: VersionInfo(1, 24, "h", holdout={"mase": 1.0}),
            2: VersionInfo(2, 24, "h", holdout={"mase": 1.0})}
    healthy, bad = 1.0, 2.0
    two = alarm_states(by_day([healthy, bad, bad], [0.8] * 3), info, cfg)[1]
    assert (two.streak, two.alarm, two.active) == (2, False, True)
    three = alarm_states(by_day([healthy, bad, bad, bad], [0.8] * 4), info, cfg)[1]
    assert (three.streak, three.alarm, three.raised) == (3, True, True)
    assert three.since == T0 + pd.Timedelta(days=1) and len(three.reasons) == 3
    recovered = alarm_states(by_day([bad, bad, bad, healthy], [0.8] * 4), info, cfg)[1]
    assert not recovered.alarm and recovered.since is None
    # v1 alarmed, then v2 took over: v1's alarm is no longer active, v2 is healthy.
    states = alarm_states(pd.concat([by_day([bad] * 3, [0.8] * 3),
                                     by_day([healthy], [0.8], version=2, start=3)]), info, cfg)
    assert states[1].alarm and not states[1].active and not states[1].raised
    assert not states[2].alarm and states[2].active
    # The registry says v2 serves, before the log holds any day of v2: v1's alarm is retired.
    alone = alarm_states(by_day([bad] * 3, [0.8] * 3), info, cfg, serving=2)[1]
    assert alone.alarm and not alone.active and not alone.raised
    assert alarm_states(by_day([bad] * 3, [0.8] * 3), info, cfg, serving=1)[1].raised
