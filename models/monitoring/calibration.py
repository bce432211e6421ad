"""Interval calibration: served intervals rescaled from recent forecast errors (conformal).

Method, per model version, per horizon step ``h`` and per central interval of the model's
quantiles (a pair ``q``, ``1 - q``; nominal level ``1 - 2q``, e.g. 80% for 0.1/0.9):

* each forecast point matched with its actual ``y`` (:meth:`ForecastLog.matched
  <nearcast.models.monitoring.log_store.ForecastLog.matched>`) gets the score
  ``s = max((m - y) / (m - lo), (y - m) / (hi - m))``, with ``m`` the median output (``q0.5``,
  else the point) and ``lo``/``hi`` the RAW quantiles (a width below ``1e-9 * max(|m|, 1)``
  counts as that small width). ``s <= f`` exactly when ``y`` lies in the interval widened by
  ``f`` on both sides, so ``s`` is the factor this point needed;
* the factor of step ``h`` is the ``ceil((n + 1)(1 - 2q))``-th smallest of the latest
  ``n <= window`` scores of that step (latest by origin): split conformal prediction, which
  covers a new point of the same distribution with probability at least ``1 - 2q``. While
  ``n < min_points`` the factor is 1 (the raw interval);
* served: ``lo' = m - f (m - lo)``, ``hi' = m + f (hi - m)``, the median unchanged. A factor
  below 1 narrows an interval wider than it needs to be. At a step where some factor is not 1,
  the lower quantiles are kept at or below the median, the upper ones at or above it, each side
  sorted (several intervals with their own factors could cross otherwise). A calibration whose
  factors are all 1 serves the raw values bit for bit.

How fast it follows a shift: a step gets one score per series forecast, so with ``S`` series
forecast once a day the window spans ``window / S`` days. After the errors change (a shift on
day k), the factors are made of post-shift scores alone once ``D = ceil(window / S)`` days of
forecasts have their actuals: the forecasts of day ``k + D`` are served with them. Coverage is
close to nominal a little earlier (the window's 80% quantile needs about 80% of it from after
the shift), but D is the number to state. The calibration test (tests/models/test_calibration.
py) forecasts ``S = 100`` series a day with the default window of 200: ``D = 2`` days. A smaller
window follows faster and estimates the factor from fewer points (a conformal interval from
``n`` scores covers ``k / (n + 1)`` on average, with spread ``sqrt(c (1 - c) / (n + 2))``).

Settings: :class:`nearcast.models.settings.CalibrationSettings` (``NEARCAST_CALIBRATION_``).
The service keeps one :class:`Calibration` per served version (``service/calibrations.py``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

METHOD = "conformal (per horizon step)"
MEDIAN = "q0.5"
_TINY = 1e-9  # relative guard of an interval's half width


def interval_pairs(quantiles: Sequence[float]) -> list[tuple[float, float]]:
    """The central intervals of ``quantiles``: pairs ``(q, 1 - q)`` with ``q < 0.5``, widest first.

    A quantile without its partner (0.2 in ``[0.2, 0.5, 0.9]``) is in no pair and never
    calibrated.
    """
    qs = sorted(set(quantiles))
    pairs = []
    for lo in qs:
        if lo >= 0.5:
            break
        hi = next((q for q in qs if math.isclose(q, 1.0 - lo, abs_tol=1e-9)), None)
        if hi is not None:
            pairs.append((lo, hi))
    return pairs


def interval_key(lo: float, hi: float) -> str:
    """The name of an interval in listings: ``"0.1-0.9"``."""
    return f"{lo:g}-{hi:g}"


@dataclass(frozen=True)
class IntervalFactors:
    """The factors of one central interval.

    Attributes:
        lo: lower quantile (``q``).
        hi: upper quantile (``1 - q``).
        factors: per horizon step (index 0 = step 1), the factor applied to both half widths.
        points: per step, the scores the factor was computed from (0 .. window).
    """

    lo: float
    hi: float
    factors: tuple[float, ...]
    points: tuple[int, ...]

    @property
    def key(self) -> str:
        """``"0.1-0.9"``."""
        return interval_key(self.lo, self.hi)

    @property
    def level(self) -> float:
        """Nominal coverage ``1 - 2q``."""
        return round(self.hi - self.lo, 12)


@dataclass(frozen=True)
class Calibration:
    """The factors of one model version, per central interval and step.

    Attributes:
        intervals: one entry per central interval of the model's quantiles.
        computed_at: epoch seconds of the computation.
        window_start: the smallest ``logged_at`` of the points used when every step of every
            interval has a full window, else None. Forecasts logged before it are outside every
            window (unless their actuals arrive late), so a refresh may read only the newer ones.
    """

    intervals: tuple[IntervalFactors, ...]
    computed_at: float
    window_start: float | None = None

    @property
    def identity(self) -> bool:
        """True when every factor is 1 (the raw quantiles are served)."""
        return all(f == 1.0 for iv in self.intervals for f in iv.factors)

    def mean_factors(self) -> dict[str, float]:
        """Per interval, the factor averaged over the steps (the exported gauge)."""
        return {iv.key: float(np.mean(iv.factors)) if iv.factors else 1.0
                for iv in self.intervals}

    def to_json(self) -> dict[str, Any]:
        """``{"method", "intervals": {"0.1-0.9": {"factors", "points"}}, "computed_at"}``."""
        return {"method": METHOD, "computed_at": self.computed_at,
                "intervals": {iv.key: {"factors": list(iv.factors), "points": list(iv.points)}
                              for iv in self.intervals}}


def identity(horizon: int, quantiles: Sequence[float], computed_at: float) -> Calibration:
    """A calibration with every factor 1 and no points (nothing matched yet)."""
    return Calibration(tuple(IntervalFactors(lo, hi, (1.0,) * horizon, (0,) * horizon)
                             for lo, hi in interval_pairs(quantiles)), computed_at)


def scores(y: np.ndarray, median: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Conformal scores: the factor each point's interval needed to hold its actual ``y``."""
    guard = _TINY * np.maximum(np.abs(median), 1.0)
    below = np.maximum(median - lo, guard)
    above = np.maximum(hi - median, guard)
    out: np.ndarray = np.maximum((median - y) / below, (y - median) / above)
    return out


def conformal_factor(step_scores: np.ndarray, level: float) -> float:
    """The ``ceil((n + 1) level)``-th smallest of ``n`` scores (the largest when that is > n)."""
    n = step_scores.size
    k = min(max(math.ceil((n + 1) * level - 1e-9), 1), n)
    return float(np.partition(step_scores, k - 1)[k - 1])


def factors(matched: pd.DataFrame, horizon: int, quantiles: Sequence[float], window: int,
            min_points: int, now: float | None = None) -> Calibration:
    """The calibration of one model version from its forecasts matched with actuals.

    Args:
        matched: :meth:`ForecastLog.matched` of one version: ``step`` (1-based), ``origin``,
            ``logged_at``, ``unique_id``, ``y``, ``point`` and the raw ``q<q>`` columns.
        horizon: the version's horizon (steps beyond it are ignored).
        quantiles: the version's quantiles.
        window: the latest scores kept per step.
        min_points: fewer scores than this at a step: factor 1.
        now: the ``computed_at`` stamp (default: the current time).

    Returns:
        The factors per interval and step, with the points each used.
    """
    stamp = pd.Timestamp.now(tz="UTC").timestamp() if now is None else now
    median_col = MEDIAN if MEDIAN in matched.columns else "point"
    rows = matched[(matched["step"] >= 1) & (matched["step"] <= horizon)]
    rows = rows.sort_values(["step", "origin", "logged_at", "unique_id"], kind="stable")
    step = rows["step"].to_numpy(np.int64)
    bounds = np.searchsorted(step, np.arange(1, horizon + 2))
    y = rows["y"].to_numpy(np.float64)
    median = rows[median_col].to_numpy(np.float64)
    logged = rows["logged_at"].to_numpy(np.float64)
    out, oldest, full = [], math.inf, True
    for lo, hi in interval_pairs(quantiles):
        cols = (f"q{lo:g}", f"q{hi:g}")
        if not all(c in rows.columns for c in cols):
            out.append(IntervalFactors(lo, hi, (1.0,) * horizon, (0,) * horizon))
            full = False
            continue
        s = scores(y, median, rows[cols[0]].to_numpy(np.float64),
                   rows[cols[1]].to_numpy(np.float64))
        usable = np.isfinite(s)
        level = round(hi - lo, 12)
        fs, ns = [], []
        for h in range(horizon):
            start, stop = bounds[h], bounds[h + 1]
            picked = np.flatnonzero(usable[start:stop])[-window:] + start
            ns.append(int(picked.size))
            fs.append(conformal_factor(s[picked], level) if picked.size >= min_points else 1.0)
            if picked.size < window:
                full = False
            elif picked.size:
                oldest = min(oldest, float(logged[picked].min()))
        out.append(IntervalFactors(lo, hi, tuple(fs), tuple(ns)))
    start_hint = oldest if full and out and math.isfinite(oldest) else None
    return Calibration(tuple(out), stamp, start_hint)


def apply(values: np.ndarray, output_names: Sequence[str],
          calibration: Calibration | None) -> np.ndarray:
    """The served outputs: ``values`` ``(B, H, K)`` with each interval rescaled around the median.

    Returns ``values`` itself (bit for bit) when there is no calibration or every factor is 1;
    else a float64 copy in which the median (or point) column is unchanged.
    """
    if calibration is None or calibration.identity:
        return values
    names = list(output_names)
    mid = names.index(MEDIAN) if MEDIAN in names else names.index("point")
    horizon = values.shape[1]
    raw = values.astype(np.float64)
    out = raw.copy()
    m = raw[:, :, mid]
    changed = np.zeros(horizon, dtype=bool)
    for iv in calibration.intervals:
        lo_name, hi_name = f"q{iv.lo:g}", f"q{iv.hi:g}"
        if lo_name not in names or hi_name not in names:
            continue
        f = np.ones(horizon)
        given = np.asarray(iv.factors[:horizon], dtype=np.float64)
        f[: given.size] = given
        lo_k, hi_k = names.index(lo_name), names.index(hi_name)
        out[:, :, lo_k] = m - f * (m - raw[:, :, lo_k])
        out[:, :, hi_k] = m + f * (raw[:, :, hi_k] - m)
        changed |= f != 1.0
    if not changed.any():
        return values
    out[:, ~changed, :] = raw[:, ~changed, :]
    _order(out, names, mid, changed)
    return out


def _order(out: np.ndarray, names: list[str], mid: int, steps: np.ndarray) -> None:
    """At ``steps``: lower quantiles <= median <= upper ones, each side sorted (in place)."""
    qs = {k: float(n[1:]) for k, n in enumerate(names) if n.startswith("q") and k != mid}
    lower = sorted((k for k, q in qs.items() if q < 0.5), key=qs.__getitem__)
    upper = sorted((k for k, q in qs.items() if q > 0.5), key=qs.__getitem__)
    sub = out[:, steps]  # (B, S, K), a copy: written back below
    m = sub[:, :, mid : mid + 1]
    if lower:
        sub[:, :, lower] = np.sort(np.minimum(sub[:, :, lower], m), axis=-1)
    if upper:
        sub[:, :, upper] = np.sort(np.maximum(sub[:, :, upper], m), axis=-1)
    out[:, steps] = sub


__all__ = ["METHOD", "Calibration", "IntervalFactors", "apply", "conformal_factor", "factors",
           "identity", "interval_key", "interval_pairs", "scores"]
