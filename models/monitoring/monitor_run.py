"""The monitor's MLflow run: ``monitor <model>``, tag ``nearcast.kind=monitor``.

What a reviewer finds on the run page:

* the description: the summary table (live metric, holdout, ratio, seasonal naive, coverage
  served/raw, alarm per version), the alarms' reasons and the notes;
* metrics over time, one point per UTC day of the forecast targets (``step`` = the day's index
  in the window, ``timestamp`` = the day's midnight): ``v<N>/mae``, ``v<N>/smape``,
  ``v<N>/mase``, ``v<N>/holdout_ratio``, ``v<N>/coverage``, ``v<N>/coverage_raw``,
  ``v<N>/interval_factor`` (served / raw interval width: the calibration as served),
  ``v<N>/naive_<metric>``, ``v<N>/bias``, ``v<N>/degraded``; summary metrics over the window
  ``v<N>/overall_<...>``, ``v<N>/alarm``, ``v<N>/degraded_days``, ``alarm`` and, after an
  alarm's retraining, ``retrain_exit_code``;
* tables ``monitor/by_day.json``, ``monitor/by_step.json``, ``monitor/by_series.json`` and the
  summary ``monitor/summary.json``;
* plots ``plots/error_over_time.png``, ``plots/coverage_over_time.png``,
  ``plots/worst_series.png``.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag

from nearcast.models.config import MonitorConfig
from nearcast.models.monitoring import monitor_plots
from nearcast.models.monitoring.alarms import AlarmState
from nearcast.models.monitoring.live_scores import POINT_METRICS, LiveScores, VersionInfo
from nearcast.models.monitoring.summary import day_label, num, summary_table
from nearcast.models.run_info import NOTE, run_tags
from nearcast.models.settings import MlflowSettings
from nearcast.pipelines.schema import UNIQUE_ID

RUN_KIND = "monitor"
TAG = "nearcast.monitor."
_BATCH = 1000  # metrics per log_batch call (the tracking API's limit)


def open_run(settings: MlflowSettings, model: str, source: str) -> tuple[MlflowClient, str]:
    """A new RUNNING ``monitor <model>`` run in the configured experiment: (client, run id)."""
    client = settings.connect()
    experiment_id = settings.ensure_experiment(client)
    tags = run_tags(source, kind=RUN_KIND) | {"nearcast.model": model}
    run = client.create_run(experiment_id, run_name=f"monitor {model}", tags=tags)
    return client, str(run.info.run_id)


def _daily(scores: LiveScores, states: Mapping[int, AlarmState], metric: str) -> list[Metric]:
    days = sorted(scores.by_day["day"].unique())
    index = {pd.Timestamp(d): i for i, d in enumerate(days)}
    out = []
    for (_, row), version in zip(scores.by_day.iterrows(), scores.by_day["version"], strict=True):
        state = states[int(version)]
        check = state.days.set_index("day").loc[row["day"]]
        day = pd.Timestamp(row["day"])
        values = {m: row[m] for m in (*POINT_METRICS, "bias", "coverage", "coverage_raw",
                                      "interval_factor")}
        values |= {f"naive_{metric}": row[f"naive_{metric}"], "holdout_ratio": check["ratio"],
                   "degraded": float(bool(check["degraded"]))}
        stamp = int(day.timestamp() * 1000)
        out += [Metric(f"v{int(version)}/{k}", float(v), stamp, index[day])
                for k, v in values.items() if num(v) is not None]
    return out


def _overall(summary: Mapping[str, Any], now: int) -> list[Metric]:
    metric = summary["config"]["metric"]
    out = [Metric("alarm", float(summary["alarm"]), now, 0)]
    for e in summary["versions"]:
        v = f"v{e['version']}"
        values = {f"overall_{k}": x for k, x in e["metrics"].items()}
        values |= {f"overall_naive_{metric}": e["seasonal_naive"][metric],
                   "overall_holdout_ratio": e["ratios"][metric],
                   "overall_coverage": e["coverage"]["served"],
                   "overall_coverage_raw": e["coverage"]["raw"],
                   "overall_interval_factor": e["coverage"]["factor"],
                   "alarm": float(e["alarm"]["raised"]),
                   "degraded_days": float(e["alarm"]["degraded_days"])}
        out += [Metric(f"{v}/{k}", float(x), now, 0) for k, x in values.items()
                if num(x) is not None]
    return out


def _tables(client: MlflowClient, run_id: str, scores: LiveScores) -> None:
    for name, table in (("by_day", scores.by_day), ("by_step", scores.by_step),
                        ("by_series", scores.by_series)):
        frame = table.copy()
        if "day" in frame:
            frame["day"] = frame["day"].map(day_label)
        client.log_table(run_id, frame, f"monitor/{name}.json")


def worst_ids(scores: LiveScores, metric: str, n: int) -> list[str]:
    """The ``n`` series with the highest live ``metric`` (over the versions; MAE without it)."""
    per = scores.by_series.groupby(UNIQUE_ID)[[metric, "mae"]].max()
    ranked = per.sort_values([metric, "mae"], ascending=False, na_position="last")
    return [str(i) for i in ranked.index[:n]]


def record(client: MlflowClient, run_id: str, scores: LiveScores,
           states: Mapping[int, AlarmState], infos: Mapping[int, VersionInfo],
           cfg: MonitorConfig, history: pd.DataFrame, summary: Mapping[str, Any]) -> None:
    """Write the scores, tables, plots, tags and description onto the monitor run."""
    metrics = _daily(scores, states, cfg.metric) + _overall(summary, int(time.time() * 1000))
    for lo in range(0, len(metrics), _BATCH):
        client.log_batch(run_id, metrics=metrics[lo : lo + _BATCH])
    _tables(client, run_id, scores)
    client.log_dict(run_id, dict(summary), "monitor/summary.json")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        monitor_plots.error_over_time(scores, infos, cfg, states,
                                      folder / "error_over_time.png")
        monitor_plots.coverage_over_time(scores, cfg, folder / "coverage_over_time.png")
        monitor_plots.worst_series(scores, worst_ids(scores, cfg.metric, cfg.worst_series),
                                   history, cfg.metric, folder / "worst_series.png")
        client.log_artifacts(run_id, str(folder), "plots")
    active = [e["version"] for e in summary["versions"] if e["active"]]
    tags = {f"{TAG}versions": ",".join(str(e["version"]) for e in summary["versions"]),
            "nearcast.model_version": ",".join(str(v) for v in active),
            f"{TAG}metric": cfg.metric, f"{TAG}alarm": str(bool(summary["alarm"])).lower(),
            f"{TAG}alarmed": ",".join(f"v{v}" for v in summary["alarmed"]),
            NOTE: description(summary)}
    client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])


def description(summary: Mapping[str, Any]) -> str:
    """The run's markdown description: the table, the alarms, where the scales came from."""
    window = summary["window"]
    cfg = summary["config"]
    lines = [f"Live accuracy of **{summary['model']}** on the forecasts served for "
             f"{window['first_day']} .. {window['last_day']} (UTC days of the targets), "
             f"against each version's holdout:", "", summary_table(summary), "",
             f"A day is degraded when {cfg['metric']} exceeds {cfg['max_ratio']:g} x the "
             f"holdout or the coverage of the central {cfg['interval']:.0%} interval leaves "
             f"[{cfg['coverage_band'][0]:g}, {cfg['coverage_band'][1]:g}]; {cfg['days']} such "
             "days in a row raise an alarm."]
    for e in summary["versions"]:
        if e["alarm"]["alarm"]:
            lines += ["", f"**Alarm on v{e['version']}** since {e['alarm']['since']}: "
                      + "; ".join(e["alarm"]["reasons"][:3])]
    lines += ["", "MASE scales: " + ", ".join(f"v{e['version']} from {e['scale_source']}"
                                             for e in summary["versions"]) + "."]
    lines += [f"- {note}" for note in summary["notes"]]
    return "\n".join(lines)


def record_retrain(client: MlflowClient, run_id: str, exit_code: int) -> None:
    """The exit code of the retraining an alarm started, as a metric and a tag."""
    client.log_batch(run_id, metrics=[Metric("retrain_exit_code", float(exit_code),
                                             int(time.time() * 1000), 0)],
                     tags=[RunTag(f"{TAG}retrain_exit_code", str(exit_code))])


__all__ = ["RUN_KIND", "description", "open_run", "record", "record_retrain", "worst_ids"]
