"""The forecast log from the API's side, over real HTTP: every forecast served is logged once
(one app in-process, and ``nearcast serve --workers 2`` in its own process), a full queue drops
and counts without holding a request, ``nearcast forecast`` logs its output, and
``POST /v1/actuals`` stores actuals idempotently, refusing bad ones with a 422 naming the
series and the point."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from retrain_helpers import cli_env, start_cli
from svc_helpers import AUTH, USER_KEY, metric, post, scrape, series_body, wait_for
from typer.testing import CliRunner

from conftest import Champion, LiveServer, free_port, start_server, stop_server
from nearcast.models.monitoring.log_store import ForecastLog
from nearcast.models.settings import ForecastLogSettings, get_forecast_log_settings
from nearcast.service.app import create_app
from nearcast.service.cli import app as cli
from nearcast.service.forecast_log import LogItem, logged_rows
from nearcast.service.settings import ApiSettings

HOUR = pd.Timedelta(hours=1)
API = ApiSettings(models=["tiny"], poll_seconds=60, api_keys=[USER_KEY])


def _serve(champion: Champion, log: ForecastLogSettings) -> LiveServer:
    return start_server(create_app(API, champion.settings, log))


@pytest.fixture(scope="module")
def log_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    return f"sqlite:///{tmp_path_factory.mktemp('forecast_log') / 'log.db'}"


@pytest.fixture(scope="module")
def server(champion: Champion, log_url: str) -> Iterator[LiveServer]:
    live = _serve(champion, ForecastLogSettings(url=log_url, flush_seconds=0.05))
    yield live
    stop_server(live)


def _request(tiny_df: pd.DataFrame, k: int) -> dict[str, Any]:
    """Request ``k``: 1 to 3 series of different lengths."""
    ids = ["H1", "H2", "H3", "H4"][: 1 + k % 3]
    return {"series": [series_body(tiny_df, uid, 72 + 8 * (k % 4)) for uid in ids],
            "horizon": 12 + k % 2 * 12}


def test_every_served_forecast_is_logged_once_as_served(
    server: LiveServer, log_url: str, champion: Champion, tiny_df: pd.DataFrame
) -> None:
    answers = {}
    for k in range(8):
        resp = post(server, _request(tiny_df, k), AUTH | {"X-Request-ID": f"log-test-{k}"})
        assert resp.status_code == 200, resp.text
        answers[f"log-test-{k}"] = resp.json()
    bad = post(server, {"series": [series_body(tiny_df, "H1", 10)]}, AUTH)  # too short: 422
    assert bad.status_code == 422
    series = sum(len(a["series"]) for a in answers.values())
    store = ForecastLog(log_url)
    assert wait_for(lambda: store.count_forecasts("tiny") >= series, timeout=20)
    logged = store.forecasts("tiny")
    assert store.count_forecasts("tiny") == series == 15  # the refused request left no row
    store.close()
    for request_id, answer in answers.items():
        rows = logged[logged["request_id"] == request_id]
        assert rows["forecast_id"].nunique() == 1  # one served request, one forecast id
        assert rows.groupby("unique_id").size().to_dict() == {
            s["id"]: answer["horizon"] for s in answer["series"]}
        for s in answer["series"]:
            one = rows[rows["unique_id"] == s["id"]].sort_values("step")
            stamps = pd.to_datetime(s["timestamps"], utc=True)
            assert list(one["ds"]) == list(stamps)
            assert (one["origin"] == stamps[0] - HOUR).all()
            assert one["point"].tolist() == s["forecast"]  # the float32 outputs, bit for bit
            assert one["step"].tolist() == list(range(1, answer["horizon"] + 1))
    assert set(logged["version"]) == {answers["log-test-0"]["model"]["version"]}
    assert set(logged["source"]) == {"api"}
    text = scrape(server)
    assert metric(text, "nearcast_forecast_log_written_total") == series
    assert metric(text, "nearcast_forecast_log_dropped_total") == 0
    assert metric(text, "nearcast_forecast_log_failed_total") == 0
    assert metric(text, "nearcast_forecast_log_queue_series") == 0


def test_rows_keep_raw_and_served_quantiles_and_calendar_steps() -> None:
    config = SimpleNamespace(freq="MS", output_names=["q0.1", "q0.5", "q0.9"], point_index=1)
    served_model: Any = SimpleNamespace(  # a monthly quantile model's facts
        name="m", ref=SimpleNamespace(version=3), forecaster=SimpleNamespace(
            config=config,
            future_index=lambda last, h: pd.date_range(last, periods=h + 1, freq="MS")[1:]))
    values = np.arange(2 * 2 * 3, dtype=np.float32).reshape(2, 2, 3) / 4
    origins = [pd.Timestamp("2024-01-01", tz="UTC").to_pydatetime(),
               pd.Timestamp("2024-11-01", tz="UTC").to_pydatetime()]
    item = LogItem("f", "r", served_model, ["a", "b"], origins, values, values * 2)
    first, second = logged_rows(item, 5.0)
    assert first.point == [0.25, 1.0] and first.quantiles == {
        "0.1": [0.0, 0.75], "0.5": [0.25, 1.0], "0.9": [0.5, 1.25]}
    assert first.served == {"0.1": [0.0, 1.5], "0.5": [0.5, 2.0], "0.9": [1.0, 2.5]}
    months = pd.to_datetime(second.timestamps, unit="s", utc=True)
    assert list(months) == [pd.Timestamp("2024-12-01", tz="UTC"),
                            pd.Timestamp("2025-01-01", tz="UTC")]
    assert (second.origin, second.version, second.logged_at) == (int(origins[1].timestamp()),
                                                                  3, 5.0)


def test_a_full_queue_drops_and_counts_without_holding_requests(
    champion: Champion, tiny_df: pd.DataFrame, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'full.db'}"
    live = _serve(champion, ForecastLogSettings(url=url, queue_max_series=2, flush_seconds=600))
    try:
        body = {"series": [series_body(tiny_df, "H1", 72)]}
        for _ in range(6):  # the writer sleeps for 10 minutes: the queue stays full
            resp = post(live, body)
            assert resp.status_code == 200, resp.text
        text = scrape(live)
        assert metric(text, "nearcast_forecast_log_queue_series") == 2
        assert metric(text, "nearcast_forecast_log_dropped_total") == 4
        assert metric(text, "nearcast_forecast_log_written_total") == 0
        assert ForecastLog(url).count_forecasts() == 0
    finally:
        stop_server(live)
    assert ForecastLog(url).count_forecasts() == 2  # shutdown drained the queue


def _actuals(server: LiveServer, body: object, headers: dict[str, str] | None = None
             ) -> httpx.Response:
    return httpx.post(f"{server.url}/v1/actuals", json=body, timeout=30,
                      headers=AUTH if headers is None else headers)


def test_actuals_are_stored_once_and_corrections_update(
    server: LiveServer, log_url: str, tiny_df: pd.DataFrame
) -> None:
    start = pd.Timestamp("2030-01-01T00:00:00Z")
    stamps = [(start + HOUR * k).isoformat() for k in (0, 1, 5)]
    body = {"series": [{"id": "A1", "start": start.isoformat(), "values": [1.0, None, 3.5, 4]},
                       {"id": "A2", "timestamps": stamps, "values": [7.0, 8.0, 9.0]}]}
    first = _actuals(server, body)
    assert first.status_code == 200, first.text
    assert first.json() == {"model": "tiny", "inserted": 6, "updated": 0, "unchanged": 0}
    store = ForecastLog(log_url)
    stored = store.actuals("tiny", unique_ids=["A1", "A2"])
    again = _actuals(server, body | {"model": "tiny"})
    assert again.json() == {"model": "tiny", "inserted": 0, "updated": 0, "unchanged": 6}
    pd.testing.assert_frame_equal(store.actuals("tiny", unique_ids=["A1", "A2"]), stored)
    assert stored["ds"].tolist() == [start, start + 2 * HOUR, start + 3 * HOUR,
                                     start, start + HOUR, start + 5 * HOUR]
    assert stored["y"].tolist() == [1.0, 3.5, 4.0, 7.0, 8.0, 9.0]
    fix = {"series": [{"id": "A2", "start": stamps[1], "values": [8.5]}]}
    assert _actuals(server, fix).json() == {"model": "tiny", "inserted": 0, "updated": 1,
                                            "unchanged": 0}
    assert store.actuals("tiny", unique_ids=["A2"])["y"].tolist() == [7.0, 8.5, 9.0]
    store.close()


@pytest.mark.parametrize(("series", "field", "problem"), [
    ({"id": "B", "start": "2030-01-01T00:30:00Z", "values": [1.0]}, "series[0] (id 'B').start",
     "2030-01-01T00:30:00+00:00 is not on the model's grid"),
    ({"id": "B", "timestamps": ["2030-01-01T00:00:00Z", "2030-01-01T01:10:00Z"],
      "values": [1.0, 2.0]}, "series[0] (id 'B').timestamps[1]",
     "2030-01-01T01:10:00+00:00 is not on the model's grid"),
    ({"id": "B", "timestamps": ["2030-01-01T00:00:00Z", "2030-01-01T00:00:00Z"],
      "values": [1.0, 2.0]}, "series[0] (id 'B')", "timestamps[1] (2030-01-01T00:00:00+00:00) "
     "repeats timestamps[0]"),
    ({"id": "B", "start": "2030-01-01T00:00:00Z", "values": [1.0, "2"]},
     "series[0] (id 'B').values[1]", "Input should be a valid number"),
    ({"id": "B", "start": "2030-01-01T00:00:00Z", "values": [1.0], "static": {"x": 1.0}},
     "series[0] (id 'B').static", "actuals take the target values only"),
])
def test_bad_actuals_are_refused_naming_the_field(
    server: LiveServer, series: dict[str, Any], field: str, problem: str
) -> None:
    resp = _actuals(server, {"series": [series]})
    assert resp.status_code == 422, resp.text
    (detail,) = resp.json()["detail"]
    assert detail["field"] == field and detail["problem"].startswith(problem), detail


def test_actuals_need_a_key_a_known_model_and_unique_ids(server: LiveServer) -> None:
    one = {"id": "C", "start": "2030-01-01T00:00:00Z", "values": [1.0]}
    assert _actuals(server, {"series": [one]}, headers={}).status_code == 401
    unknown = _actuals(server, {"model": "nope", "series": [one]})
    assert unknown.status_code == 404 and unknown.json()["detail"][0]["field"] == "model"
    twice = _actuals(server, {"series": [one, one]})
    assert twice.status_code == 422
    assert twice.json()["detail"][0]["field"] == "series[1] (id 'C').id"


def test_actuals_with_the_log_disabled_answer_503(champion: Champion) -> None:
    live = _serve(champion, ForecastLogSettings(enabled=False))
    try:
        one = {"id": "C", "start": "2030-01-01T00:00:00Z", "values": [1.0]}
        resp = _actuals(live, {"series": [one]})
        assert resp.status_code == 503
        assert "forecast log is disabled" in resp.json()["error"]
        assert metric(scrape(live), "nearcast_forecast_log_queue_series") == 0  # not exported
    finally:
        stop_server(live)


def test_batch_forecasts_go_to_the_log_one_forecast_id_per_series(
    champion: Champion, champion_cli_env: dict[str, str], tiny_df: pd.DataFrame, tmp_path: Path
) -> None:
    source, out = tmp_path / "source.parquet", tmp_path / "forecasts.parquet"
    tiny_df[tiny_df["unique_id"].isin(["H1", "H2", "H3"])].to_parquet(source)
    url = f"sqlite:///{tmp_path / 'batch.db'}"
    get_forecast_log_settings.cache_clear()
    try:
        done = CliRunner().invoke(cli, ["forecast", "--data", str(source), "--out", str(out)],
                                  env=champion_cli_env | {"NEARCAST_FORECAST_LOG_URL": url})
    finally:
        get_forecast_log_settings.cache_clear()
    assert done.exit_code == 0, done.output
    (line,) = [ln for ln in done.output.splitlines() if ln.startswith("forecast log: job ")]
    job_id = line.split()[3].rstrip(",")
    assert line.endswith(f"3 series logged to {url}")
    written = pd.read_parquet(out).sort_values(["unique_id", "ds"], ignore_index=True)
    logged = ForecastLog(url).forecasts(champion.settings.model_name)
    assert set(logged["source"]) == {"batch"} and set(logged["request_id"]) == {job_id}
    assert logged.groupby("unique_id")["forecast_id"].nunique().to_dict() == {
        "H1": 1, "H2": 1, "H3": 1}
    assert logged["forecast_id"].nunique() == 3
    logged = logged.sort_values(["unique_id", "ds"], ignore_index=True)
    assert logged["point"].tolist() == written["forecast"].astype(float).tolist()
    assert list(logged["ds"]) == list(pd.to_datetime(written["ds"], utc=True))
    assert list(logged["origin"]) == list(pd.to_datetime(written["origin"], utc=True))
    assert (logged.groupby("unique_id")["ds"].min()
            - logged.groupby("unique_id")["origin"].first() == HOUR).all()
    assert set(logged["version"]) == set(written["model_version"])


def test_serve_refuses_bad_log_settings_in_one_line() -> None:
    get_forecast_log_settings.cache_clear()
    try:
        done = CliRunner().invoke(cli, ["serve"], env={
            "NEARCAST_FORECAST_LOG_QUEUE_MAX_SERIES": "0"})
    finally:
        get_forecast_log_settings.cache_clear()
    assert done.exit_code == 2
    assert done.output.strip() == ("error: NEARCAST_FORECAST_LOG_QUEUE_MAX_SERIES: Input should "
                                   "be greater than or equal to 1")


@pytest.mark.slow
def test_two_workers_log_every_forecast_once_and_drain_on_sigterm(
    champion: Champion, tiny_df: pd.DataFrame, tmp_path: Path
) -> None:
    port, url = free_port(), f"sqlite:///{tmp_path / 'workers.db'}"
    env = cli_env(champion.settings) | {
        "NEARCAST_MODELS": champion.settings.model_name, "TMPDIR": str(tmp_path),
        "NEARCAST_FORECAST_LOG_URL": url, "NEARCAST_FORECAST_LOG_FLUSH_SECONDS": "0.2"}
    proc = start_cli(["serve", "--workers", "2", "--port", str(port)], env)
    base = f"http://127.0.0.1:{port}"
    sent: dict[str, int] = {}
    try:
        assert wait_for(lambda: _ready(base), timeout=120, every=0.25), proc.text
        for k in range(40):  # a fresh connection each: the kernel spreads them over workers
            body = _request(tiny_df, k)
            resp = httpx.post(f"{base}/v1/forecast", json=body, timeout=30,
                              headers={"X-Request-ID": f"w-{k}"})
            assert resp.status_code == 200, resp.text
            sent[f"w-{k}"] = len(body["series"])
        store = ForecastLog(url)
        assert wait_for(lambda: store.count_forecasts() >= sum(sent.values()), timeout=30)
        assert wait_for(lambda: metric(  # whichever worker answers: the sum over both
            httpx.get(f"{base}/metrics", timeout=10).text,
            "nearcast_forecast_log_written_total") == sum(sent.values()), timeout=10)
        for k in range(40, 50):  # the last ones may still be queued when SIGTERM arrives
            body = _request(tiny_df, k)
            resp = httpx.post(f"{base}/v1/forecast", json=body, timeout=30,
                              headers={"X-Request-ID": f"w-{k}"})
            assert resp.status_code == 200, resp.text
            sent[f"w-{k}"] = len(body["series"])
    finally:
        proc.popen.send_signal(signal.SIGTERM)
        code = proc.finish(60)
    assert code == 0, proc.text
    logged = store.forecasts(champion.settings.model_name)
    rows = logged.drop_duplicates(["forecast_id", "unique_id"])
    assert store.count_forecasts() == len(rows) == sum(sent.values())
    per_request = rows.groupby("request_id").agg(ids=("forecast_id", "nunique"),
                                                 series=("unique_id", "size"))
    assert per_request["ids"].eq(1).all()  # one forecast id per request, none logged twice
    assert per_request["series"].to_dict() == sent
    assert any('"drained": true' in line for line in proc.lines), proc.text[-3000:]
    store.close()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
