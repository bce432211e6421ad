"""The monitor run's PNG figures (matplotlib, headless; the conventions of :mod:`models.plots`).

Kept apart from :mod:`models.plots`, which imports the model (and TensorFlow) for its types:
``nearcast monitor`` never loads TensorFlow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from nearcast.models.config import MonitorConfig  # noqa: E402
from nearcast.models.monitoring.alarms import AlarmState  # noqa: E402
from nearcast.models.monitoring.live_scores import LiveScores, VersionInfo  # noqa: E402
from nearcast.pipelines.schema import DS, UNIQUE_ID, Y  # noqa: E402


def error_over_time(scores: LiveScores, infos: Mapping[int, VersionInfo], cfg: MonitorConfig,
                    states: Mapping[int, AlarmState], path: Path) -> Path:
    """The live metric per day and version, seasonal naive, the holdout level and the limit.

    Degraded days are marked with a red cross.
    """
    metric = cfg.metric
    fig, ax = plt.subplots(figsize=(10, 4))
    for version, part in scores.by_day.groupby("version"):
        v = int(str(version))
        line = ax.plot(part["day"], part[metric], marker="o", lw=2.0, label=f"v{v} model")[0]
        bad = part[states[v].days["degraded"].to_numpy()] if v in states else part.iloc[:0]
        ax.plot(bad["day"], bad[metric], ls="", marker="X", ms=11, color="red",
                label=f"v{v} degraded day")
        ax.plot(part["day"], part[f"naive_{metric}"], ls="--", marker=".", color=line.get_color(),
                alpha=0.7, label=f"v{v} seasonal naive")
        level = infos[v].holdout.get(metric)
        if level is not None:
            span = [part["day"].min(), part["day"].max()]
            ax.plot(span, [level] * 2, ls=":", color=line.get_color(), label=f"v{v} holdout")
            ax.plot(span, [level * cfg.max_ratio] * 2, ls="-.", lw=0.8, color="red",
                    label=f"v{v} alarm limit (x{cfg.max_ratio:g})")
    ax.set(xlabel="day (UTC, of the forecast targets)", ylabel=metric,
           title=f"Live {metric} per day against seasonal naive and the holdout")
    ax.legend(fontsize=8, ncol=2)
    _days_axis(ax)
    return _save(fig, path)


def coverage_over_time(scores: LiveScores, cfg: MonitorConfig, path: Path) -> Path:
    """Coverage of the served and the raw interval per day and version; the band shaded."""
    fig, ax = plt.subplots(figsize=(10, 4))
    low, high = cfg.coverage_band
    ax.axhspan(low, high, color="green", alpha=0.12, label=f"band [{low:g}, {high:g}]")
    ax.axhline(cfg.interval, color="green", lw=0.8, ls=":", label=f"nominal {cfg.interval:g}")
    for version, part in scores.by_day.groupby("version"):
        line = ax.plot(part["day"], part["coverage"], marker="o", lw=2.0,
                       label=f"v{version} served")[0]
        ax.plot(part["day"], part["coverage_raw"], ls="--", marker=".", color=line.get_color(),
                label=f"v{version} raw")
    ax.set(xlabel="day (UTC, of the forecast targets)", ylabel="coverage", ylim=(-0.02, 1.02),
           title=f"Coverage of the central {cfg.interval:.0%} interval per day")
    ax.legend(fontsize=8, ncol=2)
    _days_axis(ax)
    return _save(fig, path)


def worst_series(scores: LiveScores, ids: Sequence[str], history: pd.DataFrame, metric: str,
                 path: Path) -> Path:
    """The series' actuals and their freshest forecast per target (point and interval)."""
    n = max(len(ids), 1)
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.4 * n), squeeze=False)
    points = scores.points
    by_series = scores.by_series.groupby(UNIQUE_ID)[metric].max()
    for row, uid in enumerate(ids):
        ax = axes[row][0]
        mine = points[points[UNIQUE_ID] == uid].sort_values([DS, "step"])
        fresh = mine.drop_duplicates(DS, keep="first")  # the smallest step: the latest origin
        start = fresh[DS].min() - (fresh[DS].max() - fresh[DS].min()) * 0.25
        seen = history[(history[UNIQUE_ID] == uid) & (history[DS] >= start)].sort_values(DS)
        ax.plot(seen[DS], seen[Y], color="black", lw=1.0, label="actual")
        ax.plot(fresh[DS], fresh["point"], color="tab:blue", label="forecast (freshest)")
        if fresh["lo"].notna().any():
            ax.fill_between(fresh[DS], fresh["lo"], fresh["hi"], color="tab:blue", alpha=0.2,
                            label="served interval")
        ax.set_title(f"series {uid}: {metric} {by_series.get(uid, float('nan')):.3g}",
                     fontsize=9)
    axes[0][0].legend(fontsize=8, ncol=3)
    return _save(fig, path)


def _days_axis(ax: Axes) -> None:
    """Ticks on whole days (at most about 10), labelled by date."""
    low, high = ax.get_xlim()  # matplotlib dates: days
    days = max(1, math.ceil((high - low) / 10))
    ax.xaxis.set_major_locator(mdates.DayLocator(interval=days))  # type: ignore[no-untyped-call]
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%Y-%m-%d"))  # type: ignore[no-untyped-call]
    for label in ax.get_xticklabels():
        label.set(rotation=30, horizontalalignment="right")


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


__all__ = ["coverage_over_time", "error_over_time", "worst_series"]
