"""``nearcast monitor --config`` in its own process, on a real forecast log and MLflow store.

The session champion (``tiny`` v1) "served" four days of forecasts, logged through
:class:`ForecastLog` with their actuals: two good days (errors 0.1 training scales, inside the
interval), then two bad ones (errors 5x the holdout MASE in training scales, outside it). With
``days: 2`` the second bad day raises the alarm: exit code 4, a WARNING line, an MLflow run
with the daily metrics and plots, and the summary in the log.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow import MlflowClient
from retrain_helpers import cli_env, start_cli
from svc_helpers import metric, scrape

from conftest import Champion, LiveServer, start_server, stop_server
from nearcast.models.monitoring.log_store import ForecastLog, LoggedForecast
from nearcast.models.monitoring.training_scales import SCALES_ARTIFACT
from nearcast.models.settings import ForecastLogSettings
from nearcast.pipelines.schema import DS, UNIQUE_ID, Y
from nearcast.service.app import create_app
from nearcast.service.monitor_job import EXIT_ALARM, run_monitor
from nearcast.service.settings import ApiSettings

SERIES, DAYS, GOOD_DAYS = ["H1", "H2", "H3"], 4, 2
# Recent days: the API prunes what is older than the retention (90 days) when it starts.
START = pd.Timestamp.now(tz="UTC").floor("D") - pd.Timedelta(days=10)
THIRD_DAY = (START + pd.Timedelta(days=2)).strftime("%Y-%m-%d")
EXPERIMENT = "monitor-cli"


def level(uid: str, t: np.ndarray) -> np.ndarray:
    """Daily cycle plus a rise of 2 a day: seasonal naive (24 h back) is off by exactly 2."""
    return 100 + 10 * np.sin(2 * np.pi * t / 24) + 2 * t / 24 + 5 * SERIES.index(uid)


def training_facts(champion: Champion) -> tuple[dict[str, float], float]:
    client = champion.settings.connect()
    run_id = champion.job.run_id
    local = client.download_artifacts(run_id, SCALES_ARTIFACT, str(Path(champion.settings.home)))
    body = json.loads(Path(local).read_text())
    scales = dict(zip(body["unique_id"], body["scale"], strict=True))
    return scales, client.get_run(run_id).data.metrics["model_mase"]


def fill_log(url: str, scales: dict[str, float], holdout: float) -> None:
    """One 24-step forecast per series and day (origin 23:00 the day before) and the actuals."""
    log = ForecastLog(url)
    hours = np.arange(-24, DAYS * 24)
    log.write_actuals("tiny", pd.concat([pd.DataFrame({
        UNIQUE_ID: uid, DS: START + pd.to_timedelta(hours, "h"), Y: level(uid, hours)})
        for uid in SERIES], ignore_index=True))
    rows = []
    for day in range(DAYS):
        t = np.arange(day * 24, day * 24 + 24)
        for uid in SERIES:
            err = (0.1 if day < GOOD_DAYS else 5 * holdout) * scales[uid]
            point = level(uid, t) + err
            stamps = [int((START + pd.Timedelta(hours=int(h))).timestamp()) for h in t]
            rows.append(LoggedForecast(
                f"f{day}{uid}", f"req{day}", "tiny", 1, uid, "api", stamps[0] - 3600, stamps,
                point.tolist(), {f"{q:g}": (point + d * scales[uid]).tolist()
                                 for q, d in ((0.1, -0.2), (0.5, 0.0), (0.9, 0.2))}, None,
                time.time()))
    log.write_forecasts(rows)
    log.close()


def write_job(path: Path, **monitor: Any) -> Path:
    path.write_text(yaml.safe_dump({
        "model_name": "tiny", "data": {"source": "files", "path": "unused.csv", "freq": "h"},
        "model": {"input_size": 72, "horizon": 24, "fold": 24, "season": 24, "min_history": 48},
        "monitor": {"max_ratio": 1.5, "coverage_band": [0.5, 1.0], "days": 2} | monitor}))
    return path


def test_monitor_alarm_run_plots_summary_route_and_gauges(champion: Champion, tmp_path: Path
                                                          ) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    scales, holdout = training_facts(champion)
    fill_log(url, scales, holdout)
    env = cli_env(champion.settings) | {"NEARCAST_FORECAST_LOG_URL": url,
                                        "NEARCAST_EXPERIMENT": EXPERIMENT}
    proc = start_cli(["monitor", "--config", str(write_job(tmp_path / "job.yaml"))], env)
    server = start_server(create_app(ApiSettings(models=["tiny"], poll_seconds=60),
                                     champion.settings, ForecastLogSettings(url=url)))
    try:
        before = httpx.get(f"{server.url}/v1/monitor/tiny", timeout=10)
        assert proc.finish(120) == EXIT_ALARM, proc.text
        _check_route_and_gauges(server, before)
    finally:
        stop_server(server)
    assert "monitor: tiny: ALARM on v1" in proc.text
    warning = next(json.loads(line) for line in proc.lines if '"event": "alarm"' in line)
    assert warning["level"] == "WARNING" and warning["degraded_days"] == 2, warning
    assert warning["since"] == THIRD_DAY

    summary = ForecastLog(url).latest_summary("tiny")
    assert summary is not None and summary["alarmed"] == [1]
    (v1,) = summary["versions"]
    assert v1["points"] == DAYS * 24 * len(SERIES) and v1["scale_source"] == "training"
    assert v1["holdout"]["mase"] == pytest.approx(holdout)
    mase = [d["value"] for d in v1["days"]]  # |error| / training scale, by hand
    assert mase == pytest.approx([0.1, 0.1, 5 * holdout, 5 * holdout])
    assert [d["ratio"] for d in v1["days"]] == pytest.approx([0.1 / holdout] * 2 + [5.0] * 2)
    assert [d["coverage"] for d in v1["days"]] == [1.0, 1.0, 0.0, 0.0]
    assert v1["seasonal_naive"]["mae"] == pytest.approx(2.0)
    assert v1["seasonal_naive"]["excluded"] == 0
    assert v1["alarm"] == {"alarm": True, "active": True, "raised": True, "degraded_days": 2,
                           "since": THIRD_DAY, "reasons": v1["alarm"]["reasons"]}

    client = MlflowClient(champion.settings.resolved_tracking_uri())
    run = client.get_run(summary["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "monitor tiny"
    assert run.data.tags["nearcast.kind"] == "monitor"
    assert run.data.tags["nearcast.model"] == "tiny"
    assert run.data.tags["nearcast.model_version"] == "1"
    assert run.data.tags["nearcast.monitor.alarm"] == "true"
    assert "| v1 |" in run.data.tags["mlflow.note.content"]
    history = client.get_metric_history(run.info.run_id, "v1/mase")
    assert [m.step for m in history] == [0, 1, 2, 3]
    assert [m.timestamp for m in history] == [
        int((START + pd.Timedelta(days=d)).timestamp() * 1000) for d in range(DAYS)]
    assert len(client.get_metric_history(run.info.run_id, "v1/coverage")) == DAYS
    assert run.data.metrics["alarm"] == 1.0
    plots = {a.path: a for a in client.list_artifacts(run.info.run_id, "plots")}
    for name in ("error_over_time", "coverage_over_time", "worst_series"):
        local = client.download_artifacts(run.info.run_id, f"plots/{name}.png", str(tmp_path))
        assert Path(local).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", plots
    tables = {a.path for a in client.list_artifacts(run.info.run_id, "monitor")}
    assert {"monitor/by_day.json", "monitor/by_step.json", "monitor/by_series.json",
            "monitor/summary.json"} <= tables


def _check_route_and_gauges(server: LiveServer, before: httpx.Response) -> None:
    if before.json()["summary"] is None:  # the monitor had not finished when it was asked
        assert "nearcast monitor has not summarised 'tiny' yet" in before.json()["message"]
    answer = httpx.get(f"{server.url}/v1/monitor", timeout=10).json()
    (entry,) = answer["models"]
    assert entry["model"] == "tiny" and entry["summary"]["alarmed"] == [1]
    unknown = httpx.get(f"{server.url}/v1/monitor/nope", timeout=10)
    assert unknown.status_code == 404 and "'nope' is not served" in unknown.json()["error"]
    text = scrape(server)
    v1 = {"model": "tiny", "version": "1"}
    assert metric(text, "nearcast_monitor_alarm", **v1) == 1.0
    assert metric(text, "nearcast_monitor_holdout_ratio", **v1) == pytest.approx(
        entry["summary"]["versions"][0]["ratios"]["mase"])
    assert metric(text, "nearcast_monitor_coverage", kind="served", **v1) == 0.5
    assert metric(text, "nearcast_monitor_metric", metric="mae", **v1) > 0
    assert metric(text, "nearcast_monitor_seasonal_naive_metric", metric="mae",
                  **v1) == pytest.approx(2.0)
    assert metric(text, "nearcast_monitor_last_run_timestamp_seconds", model="tiny") == (
        pytest.approx(entry["summary"]["computed_at"]))


def test_alarm_starts_retrain_and_records_its_exit_code(champion: Champion, tmp_path: Path
                                                        ) -> None:
    """In process (as the lead's end-to-end test calls it), with a stand-in for retrain."""
    url = f"sqlite:///{tmp_path / 'log.db'}"
    fill_log(url, *training_facts(champion))
    job = write_job(tmp_path / "job.yaml", retrain_on_alarm=True)
    settings = champion.settings.model_copy(update={"experiment": EXPERIMENT})
    lines: list[str] = []
    fake = [sys.executable, "-c", "import sys; print('decision: ' + ' '.join(sys.argv[1:]))"
            "; raise SystemExit(3)"]
    log = ForecastLog(url)
    outcome = run_monitor(job, settings, lines.append, forecast_log=log, command=fake)
    assert outcome.exit_code == EXIT_ALARM and outcome.retrain_exit_code == 3
    assert f"retrain | decision: retrain --config {job}" in lines
    assert log.latest_summary("tiny")["retrain"] == {"exit_code": 3}  # type: ignore[index]
    run = MlflowClient(champion.settings.resolved_tracking_uri()).get_run(outcome.run_id or "")
    assert run.data.metrics["retrain_exit_code"] == 3.0

    quiet = run_monitor(write_job(tmp_path / "calm.yaml", days=3), settings, lines.append,
                        forecast_log=log)  # two bad days are not three: no alarm
    assert quiet.exit_code == 0 and quiet.summary["versions"][0]["alarm"]["degraded_days"] == 2
    log.close()


def test_empty_log_and_bad_job_file(champion: Champion, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'log.db'}"
    log = ForecastLog(url)
    empty = run_monitor(write_job(tmp_path / "job.yaml"), champion.settings, print,
                        forecast_log=log)
    assert empty.exit_code == 0 and empty.run_id is None
    assert empty.report().endswith(f"monitor: tiny: no forecasts with actuals for model 'tiny' "
                                   f"in the forecast log {url}: nothing to score yet")
    assert log.latest_summary("tiny") == empty.summary
    log.close()

    bad = tmp_path / "bad.yaml"
    bad.write_text("monitor: {days: 0, coverage_band: [0.9, 0.1]}\n")
    proc = start_cli(["monitor", "--config", str(bad)], cli_env(champion.settings))
    assert proc.finish(60) == 2, proc.text
    (line,) = proc.lines
    assert line.startswith(f"error: {bad}: monitor.coverage_band: needs 0 <= low <= high <= 1")
    assert "monitor.days: Input should be greater than or equal to 1" in line


def test_scheduler_runs_monitor_schedules_too(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    from nearcast.service.retraining.schedule import Runner, build_scheduler, load_jobs

    job = write_job(tmp_path / "both.yaml", schedule="*/10 * * * *")
    raw = yaml.safe_load(job.read_text()) | {"retrain": {"schedule": "0 3 * * *"}}
    job.write_text(yaml.safe_dump(raw))
    retrain, monitor = load_jobs([job])
    assert (retrain.command, monitor.command) == ("retrain", "monitor")
    assert monitor.label == "both.yaml (tiny) monitor"
    assert {j.id for j in build_scheduler([retrain, monitor], Runner()).get_jobs()} == {
        str(job), f"{job} monitor"}
    fake = [sys.executable, "-c", "import sys; print('monitor: tiny: ALARM on v1', sys.argv[1:])"
            "; raise SystemExit(4)"]
    with caplog.at_level("INFO", "nearcast.scheduler"):
        assert Runner(fake).run(monitor) == EXIT_ALARM
    assert (f"both.yaml (tiny) monitor: monitor finished: tiny: ALARM on v1 ['monitor', "
            f"'--config', '{job}'] (exit 4") in caplog.text
