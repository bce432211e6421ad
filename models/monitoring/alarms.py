"""Degraded days and alarms, per model version, from its daily live scores.

A day (the UTC day of the forecast targets) is *degraded* when the live metric exceeds
``max_ratio`` times the version's holdout score, or the coverage of the served interval lies
outside ``coverage_band`` (:class:`models.config.MonitorConfig`). A check that cannot be made
(no holdout score, no interval) does not degrade a day. A version is *alarmed* when its newest
``days`` scored days are all degraded; days without forecasts of the version are skipped, not
counted as healthy. The alarm is *active* while the version still serves: it holds the serving
alias when the registry says which version does (``serving``), else it was scored on the newest
day any version of the model was. The registry decides first because the log may not hold the
newest version's forecasts yet (its first day unscored, or its rows still in a server's queue).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import pandas as pd

from nearcast.models.config import MonitorConfig
from nearcast.models.monitoring.live_scores import VersionInfo


@dataclass(frozen=True)
class AlarmState:
    """One version's daily checks and its alarm.

    Attributes:
        version: the model version.
        days: one row per scored day: ``day``, ``value`` (the live metric), ``ratio`` (to the
            holdout), ``coverage``, ``degraded`` and ``reason`` (empty when healthy).
        streak: degraded days in a row, ending at the version's newest day.
        alarm: ``streak >= days``.
        active: the version still serves (see the module's doc).
        since: the first day of the degraded streak (None without a streak).
    """

    version: int
    days: pd.DataFrame
    streak: int
    alarm: bool
    active: bool
    since: pd.Timestamp | None

    @property
    def raised(self) -> bool:
        """An alarm on a version that still serves (the one that acts)."""
        return self.alarm and self.active

    @property
    def reasons(self) -> list[str]:
        """Why the days of the streak were degraded, ``<day>: <why>`` (newest first)."""
        streak = self.days.iloc[::-1].head(self.streak)
        return [f"{pd.Timestamp(d).strftime('%Y-%m-%d')}: {r}"
                for d, r in zip(streak["day"], streak["reason"], strict=True)]


def daily_checks(by_day: pd.DataFrame, holdout: Mapping[str, float], cfg: MonitorConfig
                 ) -> pd.DataFrame:
    """The checks of one version's days (rows of :func:`live_scores.score` by day)."""
    base = holdout.get(cfg.metric, math.nan)
    value = by_day[cfg.metric].astype(float)
    ratio = value / base if base and math.isfinite(base) and base > 0 else value * math.nan
    coverage = by_day["coverage"].astype(float)
    low, high = cfg.coverage_band
    too_high = ratio > cfg.max_ratio
    outside = (coverage < low) | (coverage > high)
    reasons = []
    for v, r, c, bad_ratio, bad_cov in zip(value, ratio, coverage, too_high, outside,
                                           strict=True):
        why = []
        if bad_ratio:
            why.append(f"{cfg.metric} {v:.4g} is {r:.2f}x the holdout {base:.4g} "
                       f"(> {cfg.max_ratio:g})")
        if bad_cov:
            why.append(f"coverage {c:.2f} outside [{low:g}, {high:g}]")
        reasons.append("; ".join(why))
    return pd.DataFrame({"day": by_day["day"].to_numpy(), "value": value.to_numpy(),
                         "ratio": ratio.to_numpy(), "coverage": coverage.to_numpy(),
                         "degraded": (too_high | outside).to_numpy(), "reason": reasons})


def alarm_states(by_day: pd.DataFrame, infos: Mapping[int, VersionInfo], cfg: MonitorConfig,
                 serving: int | None = None) -> dict[int, AlarmState]:
    """Every version's :class:`AlarmState` (``by_day``: :attr:`LiveScores.by_day`).

    ``serving``: the version behind the alias the API follows (None: unknown, so the version
    scored on the newest day counts as serving).
    """
    newest = by_day["day"].max()
    out = {}
    for version, part in by_day.sort_values("day").groupby("version"):
        v = int(str(version))
        days = daily_checks(part, infos[v].holdout, cfg)
        degraded = days["degraded"].tolist()
        streak = next((i for i, bad in enumerate(reversed(degraded)) if not bad), len(degraded))
        since = pd.Timestamp(days["day"].iloc[len(days) - streak]) if streak else None
        active = v == serving if serving is not None else bool(days["day"].iloc[-1] == newest)
        out[v] = AlarmState(v, days, streak, streak >= cfg.days, active, since)
    return out


__all__ = ["AlarmState", "alarm_states", "daily_checks"]
