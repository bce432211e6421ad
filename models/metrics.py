"""Forecast accuracy metrics: arrays in, numbers out (MASE and MSIS are in :mod:`models.mase`).

Conventions used throughout:

* ``y_true`` / ``y_pred`` (and interval bounds) are 2-D arrays of shape ``(n_series, horizon)``
  (:mod:`models.metric_arrays`).
* ``insample`` is a sequence of 1-D arrays, one per series, of varying lengths (the training part
  of each series, used by MASE for its scale).
* Overall metrics return a ``float``, ``*_by_step`` ones a 1-D array of shape ``(horizon,)`` with
  one value per forecast step (averaged over series).
* Inputs containing NaN or infinite values, and inputs of mismatching shapes, raise ``ValueError``.

sMAPE, MASE and MSIS (the interval score, :func:`models.mase.msis`) follow the M4 competition
definitions, OWA is relative to a reference (Naive2).

The per-series (or per-step) means come from :mod:`utilsforecast.losses` where it computes the
same thing; they match the hand-written definitions in the docstrings up to floating-point
rounding (about 1e-15 relative). All series share one horizon, so the mean over series of
per-series means is the mean over all points. The deviations from ``utilsforecast``'s own
definitions are spelled out where they are used:

* its ``smape`` is ``mean(|y - f| / (|y| + |f|))`` in 0..1 (0/0 counting 0, as in M4): times
  200 it is the M4 sMAPE in percent (0..200);
* its ``rmse`` averages per-series RMSEs; ours pools all points, so it is the square root of
  the mean of its per-series ``mse``;
* the MASE scale stays hand-written (see :mod:`models.mase`).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Literal

import numpy as np
import numpy.typing as npt
from utilsforecast import losses

from nearcast.models.mase import mase, mase_by_step, mase_scales, msis
from nearcast.models.metric_arrays import FloatArray, bounds, means, pair

__all__ = [
    "evaluate_forecasts",
    "interval_coverage",
    "mae",
    "mase",
    "mase_by_step",
    "mase_scales",
    "msis",
    "owa",
    "rmse",
    "smape",
    "smape_by_step",
]

# --------------------------------------------------------------------------- point metrics


def mae(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Mean absolute error over all points.

    Args:
        y_true: Actual values, shape (n_series, horizon).
        y_pred: Point forecasts, shape (n_series, horizon).

    Returns:
        ``mean(|y_true - y_pred|)`` over all ``n_series * horizon`` points.

    Raises:
        ValueError: On NaN/infinite values, non-2-D input or mismatching shapes.
    """
    true_arr, pred_arr = pair(y_true, y_pred)
    return float(np.mean(means(losses.mae, true_arr, {"f": pred_arr}, "series")))


def rmse(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Root mean squared error over all points (pooled, not averaged per series).

    Args:
        y_true: Actual values, shape (n_series, horizon).
        y_pred: Point forecasts, shape (n_series, horizon).

    Returns:
        ``sqrt(mean((y_true - y_pred)**2))`` over all ``n_series * horizon`` points.

    Raises:
        ValueError: On NaN/infinite values, non-2-D input or mismatching shapes.
    """
    true_arr, pred_arr = pair(y_true, y_pred)
    return float(np.sqrt(np.mean(means(losses.mse, true_arr, {"f": pred_arr}, "series"))))


def _smapemeans(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike, by: Literal["series", "step"]
) -> FloatArray:
    """M4 sMAPE in percent per series or per step: 200 x ``utilsforecast``'s 0..1 sMAPE."""
    true_arr, pred_arr = pair(y_true, y_pred)
    return 200.0 * means(losses.smape, true_arr, {"f": pred_arr}, by)


def smape_by_step(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> FloatArray:
    """Symmetric MAPE (M4 definition, percent) per forecast step.

    Args:
        y_true: Actual values, shape (n_series, horizon).
        y_pred: Point forecasts, shape (n_series, horizon).

    Returns:
        Array of shape (horizon,): mean over series of ``200 * |y - f| / (|y| + |f|)``;
        a term where both ``|y|`` and ``|f|`` are 0 counts as 0.

    Raises:
        ValueError: On NaN/infinite values, non-2-D input or mismatching shapes.
    """
    return _smapemeans(y_true, y_pred, "step")


def smape(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> float:
    """Symmetric MAPE (M4 definition, percent) averaged over all points.

    Args:
        y_true: Actual values, shape (n_series, horizon).
        y_pred: Point forecasts, shape (n_series, horizon).

    Returns:
        ``200 * mean(|y - f| / (|y| + |f|))`` over all points, with 0/0 terms counted as 0.

    Raises:
        ValueError: On NaN/infinite values, non-2-D input or mismatching shapes.
    """
    return float(np.mean(_smapemeans(y_true, y_pred, "series")))


def owa(smape_model: float, mase_model: float, smape_ref: float, mase_ref: float) -> float:
    """Overall weighted average (M4): mean of the sMAPE and MASE ratios to a reference.

    Args:
        smape_model: sMAPE of the evaluated method.
        mase_model: MASE of the evaluated method.
        smape_ref: sMAPE of the reference method (Naive2 in M4), > 0.
        mase_ref: MASE of the reference method, > 0.

    Returns:
        ``0.5 * (smape_model / smape_ref + mase_model / mase_ref)``.

    Raises:
        ValueError: If any value is NaN/infinite or a reference value is not positive.
    """
    values = {
        "smape_model": smape_model,
        "mase_model": mase_model,
        "smape_ref": smape_ref,
        "mase_ref": mase_ref,
    }
    for name, value in values.items():
        if not np.isfinite(value):
            raise ValueError(f"{name} must be finite, got {value!r}")
    for name in ("smape_ref", "mase_ref"):
        if values[name] <= 0:
            raise ValueError(f"{name} must be > 0, got {values[name]!r}")
    return 0.5 * (float(smape_model) / float(smape_ref) + float(mase_model) / float(mase_ref))


# --------------------------------------------------------------------------- probabilistic metrics


def interval_coverage(y_true: npt.ArrayLike, lower: npt.ArrayLike, upper: npt.ArrayLike) -> float:
    """Fraction of all actual values lying in the closed interval ``[lower, upper]``.

    The mean over series of ``utilsforecast.losses.coverage`` (closed on both sides).

    Args:
        y_true: Actual values, shape (n_series, horizon).
        lower: Lower interval bounds, shape (n_series, horizon).
        upper: Upper interval bounds, shape (n_series, horizon), ``>= lower``.

    Returns:
        Coverage in [0, 1].

    Raises:
        ValueError: On NaN/infinite values, mismatching shapes or ``lower > upper``.
    """
    true_arr, low, up = bounds(y_true, lower, upper)
    # utilsforecast names the bounds of model f at level L "f-lo-L" and "f-hi-L".
    coverage = partial(losses.coverage, level=0)
    return float(np.mean(means(coverage, true_arr, {"f-lo-0": low, "f-hi-0": up}, "series")))


# --------------------------------------------------------------------------- summary


def evaluate_forecasts(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    insample: Sequence[npt.ArrayLike],
    season: int,
) -> dict[str, float]:
    """Compute the standard point-forecast metrics.

    Args:
        y_true: Actual values, shape (n_series, horizon).
        y_pred: Point forecasts, shape (n_series, horizon).
        insample: One 1-D training array per series, used for the MASE scale.
        season: Seasonal lag of the MASE scale.

    Returns:
        ``{"mae": ..., "rmse": ..., "smape": ..., "mase": ...}`` (sMAPE in percent).

    Raises:
        ValueError: As raised by the individual metrics.
    """
    return {
        "mae": mae(y_true, y_pred),
        "rmse": rmse(y_true, y_pred),
        "smape": smape(y_true, y_pred),
        "mase": mase(y_true, y_pred, insample, season),
    }
