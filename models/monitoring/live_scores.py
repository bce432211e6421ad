"""Live accuracy of served forecasts, from the forecast log's forecasts matched with actuals.

Input: the ``matched`` frame of :meth:`models.monitoring.log_store.ForecastLog.matched` (one row
per forecast step with its actual ``y``), the stored actuals (the seasonal-naive forecasts and
the fall-back MASE scales come from them) and, per model version, a :class:`VersionInfo`.

Each point gets:

* the seasonal-naive forecast made at the same origin from the stored actuals:
  ``y(origin + h - season * ceil(h / season))`` (a point without that actual is left out of the
  seasonal-naive columns and counted: ``naive_points`` < ``points``);
* its series' MASE scale: the training scale of the version (:mod:`.training_scales`), else the
  in-sample seasonal scale of the stored actuals (:func:`actuals_scales`; :attr:`LiveScores.
  scale_source` says which);
* the central interval checked, ``q((1 - i)/2)`` .. ``q((1 + i)/2)``, as served (the calibrated
  quantiles where the log has them, else the raw ones) and raw.

:func:`score` then averages over any grouping (version x day, step, series, or the version
alone) with :mod:`utilsforecast.losses`, the library the holdout metrics use: MAE, sMAPE (M4,
percent), MASE (mean of ``|y - f| / scale``), bias (mean ``f - y``), coverage (closed interval),
pinball loss (mean over the quantiles) and the seasonal naive's MAE, sMAPE and MASE.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset
from utilsforecast import losses

from nearcast.pipelines.schema import DS, UNIQUE_ID, Y

KEY = "_key"
_QUANTILE = re.compile(r"^q(\d*\.?\d+(?:e-?\d+)?)$")
POINT_METRICS = ("mae", "smape", "mase")
"""The point metrics scored for the model and for seasonal naive."""


@dataclass(frozen=True)
class VersionInfo:
    """What scoring needs of one model version, and its holdout scores to compare with.

    Attributes:
        version: registered version.
        season: the model's seasonal period (seasonal naive, MASE scales).
        freq: the grid frequency of its forecasts (pandas alias).
        holdout: ``mae``, ``smape``, ``mase``, ``coverage`` (of the checked interval) and
            ``seasonal_naive_<metric>`` as scored on the training holdout (missing keys: not
            known).
        scales: series id -> training MASE scale; None when the training run has none.
        run_id: the version's training run.
    """

    version: int
    season: int
    freq: str
    holdout: dict[str, float] = field(default_factory=dict)
    scales: Mapping[str, float] | None = None
    run_id: str | None = None


@dataclass(frozen=True)
class LiveScores:
    """Scored points and their means per version and day, step, series, and overall.

    Every table has the columns of :func:`score` after its keys (``version`` first).
    ``scale_source``: per version, where its MASE scales came from (``training``, ``actuals``,
    or ``training + actuals for N series``); ``notes``: what could not be scored, and why.
    """

    points: pd.DataFrame
    by_day: pd.DataFrame
    by_step: pd.DataFrame
    by_series: pd.DataFrame
    overall: pd.DataFrame
    scale_source: dict[int, str]
    notes: list[str]


def interval_quantiles(interval: float) -> tuple[float, float]:
    """The quantile levels bounding the central ``interval``: ``(1 - i)/2``, ``(1 + i)/2``."""
    return round((1.0 - interval) / 2.0, 6), round((1.0 + interval) / 2.0, 6)


def quantile_levels(frame: pd.DataFrame) -> list[float]:
    """The raw quantile levels of a forecast-log frame (its ``q<level>`` columns), sorted."""
    return sorted(float(m.group(1)) for c in frame.columns if (m := _QUANTILE.match(str(c))))


def _utc(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values, utc=True).astype("datetime64[ns, UTC]")


def _lookup(history: pd.DataFrame, ids: pd.Series, stamps: pd.Series) -> np.ndarray:
    """The stored actual of each (series, timestamp), NaN where there is none."""
    keys = pd.DataFrame({UNIQUE_ID: ids.to_numpy(), DS: _utc(stamps).to_numpy()})
    table = history[[UNIQUE_ID, DS, Y]].assign(**{DS: _utc(history[DS])}).drop_duplicates(
        [UNIQUE_ID, DS], keep="last")
    found = keys.merge(table, on=[UNIQUE_ID, DS], how="left")
    return found[Y].to_numpy(dtype=np.float64)


def _minus_steps(stamps: pd.Series, steps: np.ndarray, freq: str) -> pd.Series:
    """``stamps - steps * freq`` (one pandas offset per distinct step count)."""
    offset = to_offset(freq)
    out = stamps.copy()
    for k in np.unique(steps):
        mask = steps == k
        out[mask] = stamps[mask] - int(k) * offset
    return out


def seasonal_naive(points: pd.DataFrame, history: pd.DataFrame, season: int, freq: str
                   ) -> np.ndarray:
    """Seasonal naive at each point's origin: ``y(origin + h - season * ceil(h / season))``.

    ``points`` has ``unique_id``, ``ds`` (the target) and ``step`` (h, 1-based); the value is
    read from ``history`` (stored actuals) and is NaN where it is not stored.
    """
    steps = points["step"].to_numpy(dtype=np.int64)
    back = season * np.ceil(steps / season).astype(np.int64)
    return _lookup(history, points[UNIQUE_ID], _minus_steps(_utc(points[DS]), back, freq))


def actuals_scales(history: pd.DataFrame, season: int, freq: str) -> dict[str, float]:
    """Each series' in-sample MASE scale from stored actuals (NaN when it is zero).

    The mean of ``|y(t) - y(t - season)|`` over the stored pairs ``season`` steps apart (lag 1
    for a series without such a pair), as :func:`models.mase.mase_scales` on a series without
    gaps; a series without any pair is left out.
    """
    table = history[[UNIQUE_ID, DS, Y]].assign(**{DS: _utc(history[DS])})
    out: dict[str, float] = {}
    for lag in (season, 1):
        earlier = table.assign(**{DS: _minus_steps(table[DS], np.full(len(table), -lag), freq)})
        pairs = table.merge(earlier, on=[UNIQUE_ID, DS], suffixes=("", "_before"))
        diffs = (pairs[Y] - pairs[f"{Y}_before"]).abs().groupby(pairs[UNIQUE_ID]).mean()
        for uid, scale in diffs.items():
            out.setdefault(str(uid), float(scale) if scale > 0 else math.nan)
    return out


def prepare_points(matched: pd.DataFrame, history: pd.DataFrame,
                   infos: Mapping[int, VersionInfo], interval: float
                   ) -> tuple[pd.DataFrame, dict[int, str], list[str]]:
    """The matched rows with ``day``, ``naive``, ``scale`` and the interval bounds.

    Bounds: ``lo``/``hi`` as served (``served_q`` where logged, else raw), ``lo_raw``/``hi_raw``;
    each ``served_q<level>`` is filled from the raw one where a row has none.

    Returns:
        The points, the scale source per version, and notes on what was left out.

    Raises:
        KeyError: a version of ``matched`` has no :class:`VersionInfo`.
    """
    frame = matched.copy()
    frame[DS] = _utc(frame[DS])
    frame["day"] = frame[DS].dt.floor("D")
    levels = quantile_levels(frame)
    for q in levels:
        served = f"served_q{q:g}"
        frame[served] = frame[served].fillna(frame[f"q{q:g}"]) if served in frame else frame[
            f"q{q:g}"]
    lo_q, hi_q = interval_quantiles(interval)
    notes: list[str] = []
    if lo_q in levels and hi_q in levels:
        frame["lo"], frame["hi"] = frame[f"served_q{lo_q:g}"], frame[f"served_q{hi_q:g}"]
        frame["lo_raw"], frame["hi_raw"] = frame[f"q{lo_q:g}"], frame[f"q{hi_q:g}"]
    else:
        for col in ("lo", "hi", "lo_raw", "hi_raw"):
            frame[col] = np.nan
        notes.append(f"no quantiles q{lo_q:g}/q{hi_q:g} in the log: coverage of the "
                     f"{interval:g} interval not scored")
    frame["naive"], frame["scale"] = np.nan, np.nan
    sources: dict[int, str] = {}
    for version, part in frame.groupby("version"):
        info = infos[int(str(version))]
        frame.loc[part.index, "naive"] = seasonal_naive(part, history, info.season, info.freq)
        scales, source = _scales(part, history, info)
        frame.loc[part.index, "scale"] = part[UNIQUE_ID].astype(str).map(scales).to_numpy(float)
        sources[info.version] = source
        missing = sorted(set(part[UNIQUE_ID].astype(str)) - {k for k, v in scales.items()
                                                              if np.isfinite(v)})
        if missing:
            notes.append(f"v{info.version}: no MASE scale for {len(missing)} series "
                         f"({', '.join(missing[:5])}{', ...' if len(missing) > 5 else ''}): "
                         "left out of MASE")
    return frame, sources, notes


def _scales(part: pd.DataFrame, history: pd.DataFrame, info: VersionInfo
            ) -> tuple[dict[str, float], str]:
    ids = set(part[UNIQUE_ID].astype(str))
    trained = {k: v for k, v in (info.scales or {}).items() if k in ids}
    rest = ids - set(trained)
    if not rest:
        return trained, "training"
    stored = actuals_scales(history[history[UNIQUE_ID].astype(str).isin(rest)], info.season,
                            info.freq)
    source = "actuals" if not trained else f"training + actuals for {len(rest)} series"
    return trained | stored, source


def _means(loss: Any, frame: pd.DataFrame, columns: Mapping[str, str], **kwargs: Any
           ) -> pd.DataFrame:
    """``loss`` (a :mod:`utilsforecast.losses` function) per group key, one column per name.

    ``columns`` maps each output name to the frame's column it scores (coverage: a prefix
    whose ``-lo-0`` / ``-hi-0`` columns are the bounds).
    """
    names = list(columns)
    data = {KEY: frame[KEY].to_numpy(), Y: frame[Y].to_numpy()}
    for name, col in columns.items():
        if loss is losses.coverage:
            data[f"{name}-lo-0"] = frame[f"{col}-lo-0"].to_numpy()
            data[f"{name}-hi-0"] = frame[f"{col}-hi-0"].to_numpy()
        else:
            data[name] = frame[col].to_numpy()
    if frame.empty:
        return pd.DataFrame(columns=names, index=pd.Index([], name=KEY), dtype=float)
    models = {n: n for n in names} if loss is losses.quantile_loss else names  # name -> column
    out: pd.DataFrame = loss(pd.DataFrame(data), models, id_col=KEY, **kwargs)
    return out.set_index(KEY)[names].astype(float)


def score(points: pd.DataFrame, keys: list[str]) -> pd.DataFrame:
    """Means of the scored points per group of ``keys`` (sorted by them).

    Columns after the keys: ``points``, ``series``, ``mae``, ``smape``, ``mase``, ``bias``,
    ``coverage`` (served interval), ``coverage_raw``, ``interval_factor`` (mean served width /
    raw width: the calibration's factor as served, 1 when served raw), ``pinball``,
    ``pinball_raw``,
    ``mase_points`` (points with a scale), ``naive_points`` (points with a seasonal-naive
    forecast) and ``naive_mae``, ``naive_smape``, ``naive_mase`` on those points. A mean over
    no point is NaN.
    """
    frame = points.assign(**{KEY: points.groupby(keys, sort=True).ngroup()})
    grouped = frame.groupby(KEY)
    out = grouped[keys].first()
    out["points"] = grouped.size()
    out["series"] = grouped[UNIQUE_ID].nunique()
    parts = [_means(losses.mae, frame, {"mae": "point"}),
             200.0 * _means(losses.smape, frame, {"smape": "point"}),
             _means(losses.bias, frame, {"bias": "point"})]
    scaled = frame[frame["scale"].notna()]
    scaled = scaled.assign(**{Y: scaled[Y] / scaled["scale"], "point": scaled["point"] /
                              scaled["scale"], "naive": scaled["naive"] / scaled["scale"]})
    parts.append(_means(losses.mae, scaled, {"mase": "point"}))
    with_interval = frame[frame["lo"].notna() & frame["hi"].notna()].rename(columns={
        "lo": "s-lo-0", "hi": "s-hi-0", "lo_raw": "r-lo-0", "hi_raw": "r-hi-0"})
    parts.append(_means(losses.coverage, with_interval, {"coverage": "s", "coverage_raw": "r"},
                        level=0))
    raw_width = with_interval["r-hi-0"] - with_interval["r-lo-0"]
    factor = (with_interval["s-hi-0"] - with_interval["s-lo-0"]) / raw_width.where(raw_width > 0)
    parts.append(factor.groupby(with_interval[KEY]).mean().rename("interval_factor").to_frame())
    parts.append(_pinball(frame))
    naive = frame[frame["naive"].notna()]
    parts += [_means(losses.mae, naive, {"naive_mae": "naive"}),
              200.0 * _means(losses.smape, naive, {"naive_smape": "naive"}),
              _means(losses.mae, scaled[scaled["naive"].notna()], {"naive_mase": "naive"})]
    for part in parts:
        out = out.join(part)
    out["mase_points"] = scaled.groupby(KEY).size().reindex(out.index, fill_value=0)
    out["naive_points"] = naive.groupby(KEY).size().reindex(out.index, fill_value=0)
    return out.reset_index(drop=True)


def _pinball(frame: pd.DataFrame) -> pd.DataFrame:
    """Mean pinball loss over the quantile levels, served and raw."""
    levels = quantile_levels(frame)
    if not levels:
        return pd.DataFrame(columns=["pinball", "pinball_raw"], dtype=float,
                            index=pd.Index([], name=KEY))
    each = [_means(losses.quantile_loss, frame, {"pinball": f"served_q{q:g}"}, q=q).join(
        _means(losses.quantile_loss, frame, {"pinball_raw": f"q{q:g}"}, q=q)) for q in levels]
    return pd.concat(each).groupby(level=0).mean()


def live_scores(matched: pd.DataFrame, history: pd.DataFrame,
                infos: Mapping[int, VersionInfo], interval: float) -> LiveScores:
    """Score every matched point and average per version x day, step and series, and overall.

    See :func:`prepare_points` and :func:`score`; ``matched`` must not be empty.
    """
    points, sources, notes = prepare_points(matched, history, infos, interval)
    points = points.sort_values(["version", UNIQUE_ID, DS, "origin"], ignore_index=True)
    return LiveScores(points, score(points, ["version", "day"]),
                      score(points, ["version", "step"]), score(points, ["version", UNIQUE_ID]),
                      score(points, ["version"]), sources, notes)


__all__ = ["POINT_METRICS", "LiveScores", "VersionInfo", "actuals_scales", "interval_quantiles",
           "live_scores", "prepare_points", "quantile_levels", "score", "seasonal_naive"]
