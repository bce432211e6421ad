"""MASE and MSIS as in the M4 competition: scaled by each series' in-sample seasonal differences.

MSIS (mean scaled interval score, M4's interval metric) scales the interval score of a central
``100 (1 - alpha)`` % interval by the same per-series scale as MASE.

The per-series mean absolute errors come from ``utilsforecast.losses.mae``; the interval score
is hand-written (``utilsforecast.losses.winkler_score``, the same score, takes whole-percent
levels only; the tests check the two agree), and so is the scale
(:func:`mase_scales`): ``utilsforecast.losses.mase`` has no lag-1 fall-back for series shorter
than ``season + 1`` (its scale is NaN there) and divides by a zero scale silently, where this
module raises naming the series.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from utilsforecast import losses

from nearcast.models.metric_arrays import FloatArray, bounds, check_finite, mean_over, means, pair

__all__ = ["mase", "mase_by_step", "mase_scales", "msis"]


def _series_scale(series: npt.ArrayLike, season: int, index: int) -> float:
    """In-sample mean absolute seasonal difference of one series (lag 1 if too short)."""
    x = np.asarray(series, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"insample[{index}] must be 1-D, got shape {x.shape}")
    check_finite(f"insample[{index}]", x)
    lag = season if x.size > season else 1
    if x.size <= lag:
        raise ValueError(
            f"insample[{index}] has {x.size} point(s); MASE needs at least {lag + 1} for lag {lag}"
        )
    scale = float(np.mean(np.abs(x[lag:] - x[:-lag])))
    if scale == 0.0:
        raise ValueError(
            f"MASE scale is zero for series {index}: all in-sample differences at lag {lag} are 0"
        )
    return scale


def mase_scales(insample: Sequence[npt.ArrayLike], season: int) -> FloatArray:
    """MASE scale of each series (M4 definition).

    The scale is the mean absolute seasonal difference ``mean(|x[t] - x[t - season]|)`` of the
    in-sample part of each series; a series with fewer than ``season + 1`` points uses lag 1.

    Args:
        insample: One 1-D array per series (training data, varying lengths).
        season: Seasonal period (lag), >= 1.

    Returns:
        Array of shape (n_series,) with the scale of each series.

    Raises:
        ValueError: If ``season < 1``, a series is not 1-D, has NaN/infinite values or too few
            points, or its scale is zero (the message names the series index).
    """
    if isinstance(season, bool) or not isinstance(season, int | np.integer) or season < 1:
        raise ValueError(f"season must be an integer >= 1, got {season!r}")
    return np.array([_series_scale(s, int(season), i) for i, s in enumerate(insample)])


def _scales_of(insample: Sequence[npt.ArrayLike], y_true: FloatArray, season: int) -> FloatArray:
    """The MASE scale of each series of ``y_true``, shape (n_series,)."""
    if len(insample) != y_true.shape[0]:
        raise ValueError(
            f"insample has {len(insample)} series but y_true has shape {y_true.shape} "
            f"({y_true.shape[0]} series)"
        )
    return mase_scales(insample, season)


def mase_by_step(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    insample: Sequence[npt.ArrayLike],
    season: int,
) -> FloatArray:
    """Mean absolute scaled error (M4 definition) per forecast step.

    Args:
        y_true: Actual values, shape (n_series, horizon).
        y_pred: Point forecasts, shape (n_series, horizon).
        insample: One 1-D training array per series (n_series arrays, varying lengths).
        season: Seasonal lag of the scale (see :func:`mase_scales`).

    Returns:
        Array of shape (horizon,): mean over series of ``|y - f| / scale_i`` at each step.

    Raises:
        ValueError: On NaN/infinite values, mismatching shapes or series counts, or a zero scale.
    """
    true_arr, pred_arr = pair(y_true, y_pred)
    scales = _scales_of(insample, true_arr, season)[:, np.newaxis]
    return mean_over(np.abs(true_arr - pred_arr) / scales, 0)


def mase(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    insample: Sequence[npt.ArrayLike],
    season: int,
) -> float:
    """Mean absolute scaled error (M4 definition): mean over series of per-series MASE.

    Per-series MASE is ``mean_t |y[i, t] - f[i, t]| / scale_i`` (see :func:`mase_scales`).
    All series share one horizon, so this also equals the mean of :func:`mase_by_step`.

    Args:
        y_true: Actual values, shape (n_series, horizon).
        y_pred: Point forecasts, shape (n_series, horizon).
        insample: One 1-D training array per series (n_series arrays, varying lengths).
        season: Seasonal lag of the scale.

    Returns:
        The overall MASE.

    Raises:
        ValueError: On NaN/infinite values, mismatching shapes or series counts, or a zero scale.
    """
    true_arr, pred_arr = pair(y_true, y_pred)
    scales = _scales_of(insample, true_arr, season)
    per_series = means(losses.mae, true_arr, {"f": pred_arr}, "series") / scales
    return float(np.mean(per_series))


def msis(
    y_true: npt.ArrayLike,
    lower: npt.ArrayLike,
    upper: npt.ArrayLike,
    insample: Sequence[npt.ArrayLike],
    season: int,
    alpha: float,
) -> float:
    """Mean scaled interval score (M4) of central ``100 (1 - alpha)`` % intervals.

    Per series ``i``: ``mean_t [(U - L) + 2/alpha (L - y) 1(y < L) + 2/alpha (y - U) 1(y > U)]
    / scale_i`` (the MASE scale, :func:`mase_scales`); the result is the mean over series. Lower
    is better: it charges the width and, ``2 / alpha`` times, every miss's distance.

    Args:
        y_true: Actual values, shape (n_series, horizon).
        lower: Lower bounds, shape (n_series, horizon).
        upper: Upper bounds, shape (n_series, horizon), ``>= lower``.
        insample: One 1-D training array per series (the scale).
        season: Seasonal lag of the scale.
        alpha: ``1 -`` the nominal coverage (0.2 for an 80% interval; M4 used 0.05), in (0, 1).

    Returns:
        The MSIS.

    Raises:
        ValueError: On NaN/infinite values, mismatching shapes or series counts, ``lower >
            upper``, ``alpha`` outside (0, 1) or a zero scale.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    true_arr, low, up = bounds(y_true, lower, upper)
    scales = _scales_of(insample, true_arr, season)
    # utilsforecast's winkler_score (the same score) takes whole-percent levels only.
    misses = np.maximum(low - true_arr, 0.0) + np.maximum(true_arr - up, 0.0)
    per_series = mean_over((up - low) + (2.0 / alpha) * misses, 1) / scales
    return float(np.mean(per_series))
