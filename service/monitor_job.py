"""``nearcast monitor``: served forecasts against their actuals, per model version; alarms.

One pass: read the job file; with ``monitor.actuals_from_data``, store the actuals of the job's
``data:`` source first; score the forecast log's matched forecasts of the newest
``monitor.lookback_days`` days (:mod:`models.monitoring.live_scores`) against each version's
holdout; decide the alarms (:mod:`models.monitoring.alarms`); record a ``monitor <model>``
MLflow run (:mod:`models.monitoring.monitor_run`); store the summary in the forecast log (what
``GET /v1/monitor`` and the gauges show). An alarm on a version that still serves is logged as
a WARNING and, with ``monitor.retrain_on_alarm``, starts ``nearcast retrain --config <the same
file>`` in a subprocess; its gate decides whether the challenger takes over.

Exit codes of the command: 0 no alarm (also when the log holds nothing to score yet: the output
says so), 4 an alarm was raised, 1 the pass failed, 2 the job file has a mistake.
"""

from __future__ import annotations

import logging
import math
import os
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from nearcast.models import registry
from nearcast.models.jobconfig import JobConfig
from nearcast.models.monitoring import monitor_run
from nearcast.models.monitoring.alarms import AlarmState, alarm_states
from nearcast.models.monitoring.data_actuals import actuals_from_data
from nearcast.models.monitoring.live_scores import VersionInfo, live_scores
from nearcast.models.monitoring.log_store import ForecastLog
from nearcast.models.monitoring.summary import build_summary, summary_lines
from nearcast.models.monitoring.versions import read_version_info
from nearcast.models.settings import MlflowSettings, get_forecast_log_settings, get_mlflow_settings
from nearcast.pipelines.schema import DS, UNIQUE_ID

EXIT_OK, EXIT_FAILED, EXIT_INPUT, EXIT_ALARM = 0, 1, 2, 4
"""Exit codes of ``nearcast monitor``."""

Echo = Callable[[str], None]
log = logging.getLogger("nearcast.monitor")


class MonitorError(RuntimeError):
    """The monitor pass failed (the message says where); nothing was retrained."""


@dataclass(frozen=True)
class MonitorOutcome:
    """What one monitor pass found.

    Attributes:
        model: registered model name.
        summary: the body stored with :meth:`ForecastLog.write_summary` (see
            :mod:`models.monitoring.summary`).
        run_id: the ``monitor`` MLflow run (None when there was nothing to score).
        retrain_exit_code: exit code of the retraining an alarm started, else None.
    """

    model: str
    summary: dict[str, Any]
    run_id: str | None
    retrain_exit_code: int | None = None

    @property
    def alarmed(self) -> list[int]:
        """Versions still serving whose alarm is raised."""
        return [int(v) for v in self.summary["alarmed"]]

    @property
    def exit_code(self) -> int:
        """:data:`EXIT_ALARM` when an alarm was raised, else :data:`EXIT_OK`."""
        return EXIT_ALARM if self.alarmed else EXIT_OK

    def report(self) -> str:
        """Lines for a person; the last one starts with ``monitor: ``."""
        lines = summary_lines(self.summary)
        if self.retrain_exit_code is not None:
            lines.append(f"retrain started by the alarm exited {self.retrain_exit_code}")
        if not self.summary["versions"]:
            verdict = self.summary["notes"][0]
        elif self.alarmed:
            verdict = "ALARM on " + ", ".join(f"v{v}" for v in self.alarmed)
        else:
            verdict = "no alarm"
        lines.append(f"monitor: {self.model}: {verdict}" + (
            f" (MLflow run {self.run_id})" if self.run_id else ""))
        return "\n".join(lines)


def run_monitor(config: str | Path, settings: MlflowSettings | None = None, echo: Echo = print,
                *, forecast_log: ForecastLog | None = None,
                command: Sequence[str] | None = None) -> MonitorOutcome:
    """One monitor pass over the model of a job file.

    Args:
        config: job YAML (its ``model_name``, ``data``, ``model`` and ``monitor`` sections).
        settings: the MLflow store; default from the environment (``NEARCAST_HOME`` ...).
        echo: receives progress lines and the retraining's output.
        forecast_log: the log to read; default ``NEARCAST_FORECAST_LOG_URL``, else SQLite
            under the store's home.
        command: how to start ``nearcast`` for a retraining (default ``python -m nearcast``).

    Raises:
        JobConfigError: the job file is invalid (naming the file and the key).
        MonitorError: anything else failed.
    """
    job = JobConfig.from_yaml(config)
    settings = settings or get_mlflow_settings()
    name = job.model_name or settings.model_name
    settings = settings.model_copy(update={"model_name": name})
    store = forecast_log
    try:
        store = store or ForecastLog(get_forecast_log_settings().resolved_url(settings.home))
        return _monitor(Path(config), job, settings, store, echo, command)
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise MonitorError(f"monitoring {name} failed: {type(exc).__name__}: {first}") from exc
    finally:
        if forecast_log is None and store is not None:
            store.close()


def _monitor(config: Path, job: JobConfig, settings: MlflowSettings, store: ForecastLog,
             echo: Echo, command: Sequence[str] | None) -> MonitorOutcome:
    name, cfg = settings.model_name, job.monitor
    if cfg.actuals_from_data:
        wrote = store.write_actuals(name, actuals_from_data(job.data))
        echo(f"actuals from {job.data.describe()}: {wrote.inserted} new, {wrote.updated} "
             f"corrected, {wrote.unchanged} already stored")
    matched = _window(store.matched(name), cfg.lookback_days)
    if matched.empty:
        note = (f"no forecasts with actuals for model {name!r} in the forecast log "
                f"{store.display_url}: nothing to score yet")
        summary = build_summary(name, cfg, None, {}, {}, None, [note])
        store.write_summary(name, summary)
        return MonitorOutcome(name, summary, None)
    history = store.actuals(name, unique_ids=matched[UNIQUE_ID].unique().tolist())
    client, run_id = monitor_run.open_run(settings, name, job.data.describe())
    echo(f"monitoring {name}: {len(matched)} forecast points with actuals, MLflow run {run_id}")
    try:
        infos, notes = _versions(client, name, sorted(matched["version"].unique()), job,
                                 cfg.interval)
        scores = live_scores(matched, history, infos, cfg.interval)
        serving = registry.version_for_alias(client, name, registry.CHAMPION)
        states = alarm_states(scores.by_day, infos, cfg,
                              None if serving is None else serving.version)
        summary = build_summary(name, cfg, scores, states, infos, run_id, notes + scores.notes)
        monitor_run.record(client, run_id, scores, states, infos, cfg, history, summary)
        store.write_summary(name, summary)
        _log_alarms(name, states)
        code = None
        if summary["alarm"] and cfg.retrain_on_alarm:
            code = _retrain(config, settings, echo, command)
            monitor_run.record_retrain(client, run_id, code)
            summary["retrain"] = {"exit_code": code}
            store.write_summary(name, summary)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return MonitorOutcome(name, summary, run_id, code)


def _window(matched: pd.DataFrame, lookback_days: int) -> pd.DataFrame:
    """The rows whose target lies in the newest ``lookback_days`` UTC days with actuals."""
    if matched.empty:
        return matched
    days = pd.to_datetime(matched[DS], utc=True).dt.floor("D")
    return matched[days > days.max() - pd.Timedelta(days=lookback_days)].reset_index(drop=True)


def _versions(client: Any, name: str, versions: list[Any], job: JobConfig, interval: float
              ) -> tuple[dict[int, VersionInfo], list[str]]:
    infos, notes = {}, []
    for v in versions:
        info, more = read_version_info(client, name, int(v), job.model, interval)
        infos[int(v)] = info
        notes += more
    return infos, notes


def _log_alarms(name: str, states: dict[int, AlarmState]) -> None:
    for state in states.values():
        if not state.raised:
            continue
        last = state.days.iloc[-1]
        since = state.since.strftime("%Y-%m-%d") if state.since is not None else None
        log.warning("alarm: %s v%d degraded for %d days in a row since %s: %s", name,
                    state.version, state.streak, since, state.reasons[0], extra={
                        "event": "alarm", "model": name, "version": state.version,
                        "degraded_days": state.streak, "since": since,
                        "ratio": None if math.isnan(last["ratio"]) else float(last["ratio"]),
                        "coverage": None if math.isnan(last["coverage"])
                        else float(last["coverage"])})


def _retrain(config: Path, settings: MlflowSettings, echo: Echo,
             command: Sequence[str] | None) -> int:
    """``nearcast retrain --config <config>`` on the same store; its output echoed."""
    argv = [*(command or [sys.executable, "-m", "nearcast"]), "retrain", "--config", str(config)]
    echo(f"alarm: starting {' '.join(argv[-4:])}")
    env = _store_env(settings)
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=env)
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            echo(f"retrain | {line.rstrip()}")
        code = proc.wait()
    finally:  # the monitor stopped (SIGTERM, Ctrl-C): the retraining stops too (run KILLED)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
    log.info("retrain started by the alarm exited %d", code,
             extra={"event": "retrain", "model": settings.model_name, "exit_code": code})
    return code


def _store_env(settings: MlflowSettings) -> dict[str, str]:
    """This process's environment, pointed at ``settings``' store (a caller's settings win)."""
    env = dict(os.environ) | {"NEARCAST_HOME": str(settings.home),
                              "NEARCAST_EXPERIMENT": settings.experiment,
                              "NEARCAST_MODEL_NAME": settings.model_name}
    for key, value in (("NEARCAST_TRACKING_URI", settings.tracking_uri),
                       ("NEARCAST_ARTIFACT_ROOT", settings.artifact_root)):
        if value:
            env[key] = value
    return env


__all__ = ["EXIT_ALARM", "EXIT_FAILED", "EXIT_INPUT", "EXIT_OK", "MonitorError",
           "MonitorOutcome", "run_monitor"]
