"""Calibrated intervals over real HTTP: forecasts, actuals far outside the raw intervals, and
the next forecast's intervals widened by exactly the factor ``/v1/models`` reports.

A tiny 0.1/0.5/0.9 model (``tinycal``) serves 8 series; the actuals posted for them lie at
``m + c (q0.9 - m)`` with ``c`` = 2.0, 2.5, ..., 5.5 per series: every step's scores are the
eight ``c``, and with 8 points the conformal factor of the 80% interval is the
``ceil(9 * 0.8) = 8``-th smallest, 5.5. The forecast log keeps the raw quantiles and the served
ones; with ``NEARCAST_CALIBRATION_ENABLED=false`` the raw values are served bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from svc_helpers import (
    QuantileModel,
    metric,
    post,
    scrape,
    series_body,
    train_quantile_model,
    wait_for,
)

from conftest import Champion, LiveServer, start_server, stop_server
from nearcast.models.monitoring.log_store import ForecastLog
from nearcast.models.settings import (
    CalibrationSettings,
    ForecastLogSettings,
    get_calibration_settings,
)
from nearcast.service.app import create_app
from nearcast.service.settings import ApiSettings

NAME = "tinycal"
IDS = [f"H{i}" for i in range(1, 9)]
SCALES = [2.0 + 0.5 * i for i in range(8)]
API = ApiSettings(models=[NAME], poll_seconds=60)
CALIBRATION = CalibrationSettings(window=50, min_points=8, refresh_seconds=3600)


@pytest.fixture(scope="module")
def qmodel(champion: Champion, tiny_df: pd.DataFrame) -> QuantileModel:
    return train_quantile_model(champion, tiny_df, NAME)


@pytest.fixture(scope="module")
def log_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('calibration') / 'log.db'}"


def _serve(qmodel: QuantileModel, log_url: str, calibration: CalibrationSettings | None
           ) -> LiveServer:
    log = ForecastLogSettings(url=log_url, flush_seconds=0.05)
    return start_server(create_app(API, qmodel.settings, log, calibration))


@pytest.fixture
def server(qmodel: QuantileModel, log_url: str) -> Iterator[LiveServer]:
    live = _serve(qmodel, log_url, CALIBRATION)
    yield live
    stop_server(live)


def _forecast(server: LiveServer, tiny_df: pd.DataFrame) -> dict[str, Any]:
    body = {"model": NAME, "quantiles": [0.1, 0.9],
            "series": [series_body(tiny_df, uid, 72) for uid in IDS]}
    resp = post(server, body)
    assert resp.status_code == 200, resp.text
    out: dict[str, Any] = resp.json()
    return out


def _arrays(out: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(series, steps) arrays of q0.1, the point (median) and q0.9."""
    s = out["series"]
    return (np.array([x["quantiles"]["0.1"] for x in s]), np.array([x["forecast"] for x in s]),
            np.array([x["quantiles"]["0.9"] for x in s]))


def _calibration(server: LiveServer) -> dict[str, Any]:
    (info,) = httpx.get(f"{server.url}/v1/models", timeout=10).json()
    body: dict[str, Any] = info["calibration"]
    return body


def _logged(log: ForecastLog, n: int) -> pd.DataFrame:
    assert wait_for(lambda: log.count_forecasts(NAME) >= n, timeout=20)
    return log.forecasts(NAME)


def test_served_intervals_widen_by_the_reported_factor(
    server: LiveServer, log_url: str, tiny_df: pd.DataFrame
) -> None:
    before = _calibration(server)
    assert before["enabled"] and before["method"] == "conformal (per horizon step)"
    assert before["intervals"]["0.1-0.9"]["points"] == [0] * 24  # nothing matched yet
    first = _forecast(server, tiny_df)
    lo, mid, hi = _arrays(first)
    actuals = {"model": NAME, "series": [
        {"id": s["id"], "start": s["timestamps"][0], "values": (mid[i] + c * (hi[i] - mid[i]))
         .tolist()} for i, (s, c) in enumerate(zip(first["series"], SCALES, strict=True))]}
    log = ForecastLog(log_url)
    try:
        _logged(log, len(IDS))
        resp = httpx.post(f"{server.url}/v1/actuals", json=actuals, timeout=30)
        assert resp.status_code == 200, resp.text
        assert resp.json()["inserted"] == 24 * len(IDS)
        after = _calibration(server)["intervals"]["0.1-0.9"]
        assert after["points"] == [len(IDS)] * 24
        factors = np.array(after["factors"])
        np.testing.assert_allclose(factors, SCALES[-1], rtol=1e-9)  # the 8th of 8 scores
        second = _forecast(server, tiny_df)
        lo2, mid2, hi2 = _arrays(second)
        np.testing.assert_array_equal(mid2, mid)  # the point is unchanged
        np.testing.assert_allclose(lo2, mid - factors * (mid - lo), rtol=1e-12)
        np.testing.assert_allclose(hi2, mid + factors * (hi - mid), rtol=1e-12)
        version = str(second["model"]["version"])
        gauge = metric(scrape(server), "nearcast_calibration_factor", model=NAME,
                       version=version, interval="0.1-0.9")
        assert gauge == pytest.approx(factors.mean(), rel=1e-12)
        logged = _logged(log, 2 * len(IDS))
    finally:
        log.close()
    # the log keeps the raw quantiles of both forecasts, and what was served of the second
    raw_first, raw_second = (logged[logged["forecast_id"] == fid] for fid in
                             logged.drop_duplicates("forecast_id")["forecast_id"])
    assert raw_first["served_q0.9"].isna().all()
    np.testing.assert_array_equal(raw_second["q0.9"].to_numpy(), hi.ravel())
    np.testing.assert_allclose(raw_second["served_q0.9"].to_numpy(), hi2.ravel(), rtol=1e-12)


def test_switched_off_serves_raw_bit_for_bit(
    qmodel: QuantileModel, log_url: str, tiny_df: pd.DataFrame, monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path
) -> None:
    on = _serve(qmodel, log_url, CALIBRATION)  # the factors of the first test are in the log
    try:
        calibrated = _forecast(on, tiny_df)
    finally:
        stop_server(on)
    monkeypatch.setenv("NEARCAST_CALIBRATION_ENABLED", "false")
    get_calibration_settings.cache_clear()
    try:
        off = _serve(qmodel, log_url, None)  # settings from the environment
    finally:
        get_calibration_settings.cache_clear()
    try:
        assert _calibration(off) == {"enabled": False, "method": "conformal (per horizon step)",
                                     "intervals": {}, "computed_at": None}
        raw = _forecast(off, tiny_df)
    finally:
        stop_server(off)
    fresh = ForecastLog(log_url)
    try:
        logged = fresh.forecasts(NAME)
    finally:
        fresh.close()
    first = logged[logged["forecast_id"] == logged["forecast_id"].iloc[0]]
    lo, mid, hi = _arrays(raw)
    np.testing.assert_array_equal(hi.ravel(), first["q0.9"].to_numpy())  # raw, as first served
    np.testing.assert_array_equal(lo.ravel(), first["q0.1"].to_numpy())
    assert (_arrays(calibrated)[2] > hi).all()  # calibration on: wider than raw
