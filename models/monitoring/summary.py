"""The monitor's summary: one JSON-able dict per model, stored in the forecast log.

``GET /v1/monitor``, the Prometheus gauges and the monitor run's description read it. Keys::

    model, computed_at (epoch s), computed_at_iso, run_id, alarm (any raised), alarmed (versions),
    config {metric, max_ratio, interval, coverage_band, days, lookback_days},
    window {first_day, last_day}, notes [..], retrain (None or {exit_code}),
    versions [{version, active, run_id, first_day, last_day, points, series, scale_source,
               metrics {mae, smape, mase, bias, pinball, pinball_raw},
               coverage {served, raw, interval, band, factor (served / raw width), holdout},
               seasonal_naive {mae, smape, mase, points, excluded},
               holdout {mae, smape, mase, coverage, seasonal_naive_<m>},
               ratios {mae, smape, mase}  (live / holdout over the window),
               alarm {alarm, active, raised, degraded_days, since, reasons},
               days [{day, value, ratio, coverage, coverage_raw, interval_factor, naive, bias,
                      points, degraded, reason}]}]

Numbers that cannot be computed are ``null`` (never NaN: the body is strict JSON).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from nearcast.models.config import MonitorConfig
from nearcast.models.monitoring.alarms import AlarmState
from nearcast.models.monitoring.live_scores import POINT_METRICS, LiveScores, VersionInfo


def num(value: Any) -> float | None:
    """A finite float, or None."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if math.isfinite(out) else None


def day_label(day: Any) -> str:
    """``2026-01-05`` for a UTC day."""
    return pd.Timestamp(day).strftime("%Y-%m-%d")


def _ratio(live: Any, base: Any) -> float | None:
    a, b = num(live), num(base)
    return a / b if a is not None and b else None


def _days(scores: LiveScores, state: AlarmState, metric: str) -> list[dict[str, Any]]:
    rows = scores.by_day[scores.by_day["version"] == state.version].sort_values("day")
    out = []
    for (_, check), (_, row) in zip(state.days.iterrows(), rows.iterrows(), strict=True):
        out.append({"day": day_label(check["day"]), "value": num(check["value"]),
                    "ratio": num(check["ratio"]), "coverage": num(check["coverage"]),
                    "coverage_raw": num(row["coverage_raw"]),
                    "interval_factor": num(row["interval_factor"]),
                    "naive": num(row[f"naive_{metric}"]),
                    "bias": num(row["bias"]), "points": int(row["points"]),
                    "degraded": bool(check["degraded"]), "reason": str(check["reason"])})
    return out


def version_entry(scores: LiveScores, state: AlarmState, info: VersionInfo,
                  cfg: MonitorConfig) -> dict[str, Any]:
    """One version's part of the summary."""
    overall = scores.overall
    row = overall[overall["version"] == state.version].iloc[0].to_dict()
    days = state.days["day"]
    return {
        "version": state.version, "active": state.active, "run_id": info.run_id,
        "first_day": day_label(days.iloc[0]), "last_day": day_label(days.iloc[-1]),
        "points": int(row["points"]), "series": int(row["series"]),
        "scale_source": scores.scale_source.get(state.version),
        "metrics": {k: num(row[k]) for k in (*POINT_METRICS, "bias", "pinball", "pinball_raw")},
        "coverage": {"served": num(row["coverage"]), "raw": num(row["coverage_raw"]),
                     "interval": cfg.interval, "band": list(cfg.coverage_band),
                     "factor": num(row["interval_factor"]),
                     "holdout": num(info.holdout.get("coverage"))},
        "seasonal_naive": {m: num(row[f"naive_{m}"]) for m in POINT_METRICS} | {
            "points": int(row["naive_points"]),
            "excluded": int(row["points"] - row["naive_points"])},
        "holdout": {k: num(v) for k, v in info.holdout.items()},
        "ratios": {m: _ratio(row[m], info.holdout.get(m)) for m in POINT_METRICS},
        "alarm": {"alarm": state.alarm, "active": state.active, "raised": state.raised,
                  "degraded_days": state.streak,
                  "since": day_label(state.since) if state.since is not None else None,
                  "reasons": state.reasons},
        "days": _days(scores, state, cfg.metric),
    }


def build_summary(model: str, cfg: MonitorConfig, scores: LiveScores | None,
                  states: Mapping[int, AlarmState], infos: Mapping[int, VersionInfo],
                  run_id: str | None, notes: list[str], computed_at: float | None = None
                  ) -> dict[str, Any]:
    """The summary of one monitor pass (``scores`` None: nothing was scored)."""
    at = time.time() if computed_at is None else computed_at
    versions = [] if scores is None else [
        version_entry(scores, states[v], infos[v], cfg) for v in sorted(states)]
    days = [] if scores is None else sorted(scores.by_day["day"])
    return {
        "model": model, "computed_at": at,
        "computed_at_iso": datetime.fromtimestamp(at, UTC).isoformat(timespec="seconds"),
        "run_id": run_id, "alarm": any(s.raised for s in states.values()),
        "alarmed": [v for v in sorted(states) if states[v].raised],
        "config": {"metric": cfg.metric, "max_ratio": cfg.max_ratio, "interval": cfg.interval,
                   "coverage_band": list(cfg.coverage_band), "days": cfg.days,
                   "lookback_days": cfg.lookback_days},
        "window": {"first_day": day_label(days[0]) if days else None,
                   "last_day": day_label(days[-1]) if days else None},
        "notes": list(notes), "retrain": None, "versions": versions,
    }


def _fmt(value: Any, spec: str) -> str:
    v = num(value)
    return "–" if v is None else format(v, spec)


def summary_lines(summary: Mapping[str, Any]) -> list[str]:
    """A few lines for a person: one per version, then the alarms."""
    metric = summary["config"]["metric"]
    lines = []
    for entry in summary["versions"]:
        cov = entry["coverage"]
        state = "ALARM" if entry["alarm"]["raised"] else (
            "alarm (no longer serving)" if entry["alarm"]["alarm"] else "ok")
        lines.append(
            f"v{entry['version']}{'' if entry['active'] else ' (retired)'}: "
            f"{entry['first_day']}..{entry['last_day']}, {entry['points']} points, "
            f"{metric} {_fmt(entry['metrics'][metric], '.4g')} "
            f"(holdout {_fmt(entry['holdout'].get(metric), '.4g')}, ratio "
            f"{_fmt(entry['ratios'][metric], '.2f')}), seasonal naive "
            f"{_fmt(entry['seasonal_naive'][metric], '.4g')}, coverage "
            f"{_fmt(cov['served'], '.2f')} served / {_fmt(cov['raw'], '.2f')} raw: {state}")
        if entry["alarm"]["raised"]:
            lines.append(f"  {entry['alarm']['degraded_days']} degraded days since "
                         f"{entry['alarm']['since']}: {entry['alarm']['reasons'][0]}")
    return lines


def summary_table(summary: Mapping[str, Any]) -> str:
    """Markdown table of the versions (the monitor run's description)."""
    metric = summary["config"]["metric"]
    lines = [f"| version | days | points | {metric} | holdout | ratio | seasonal naive | "
             "coverage served / raw | alarm |", "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for e in summary["versions"]:
        alarm = (f"**raised** ({e['alarm']['degraded_days']} days)" if e["alarm"]["raised"]
                 else "retired with an alarm" if e["alarm"]["alarm"] else "no")
        lines.append(
            f"| v{e['version']}{'' if e['active'] else ' (retired)'} | {e['first_day']} .. "
            f"{e['last_day']} | {e['points']} | {_fmt(e['metrics'][metric], '.4g')} | "
            f"{_fmt(e['holdout'].get(metric), '.4g')} | {_fmt(e['ratios'][metric], '.2f')} | "
            f"{_fmt(e['seasonal_naive'][metric], '.4g')} | {_fmt(e['coverage']['served'], '.2f')}"
            f" / {_fmt(e['coverage']['raw'], '.2f')} | {alarm} |")
    return "\n".join(lines)


__all__ = ["build_summary", "day_label", "num", "summary_lines", "summary_table",
           "version_entry"]
