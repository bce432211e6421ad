"""Forecast accuracy metrics (pure numpy): arrays in, numbers out.

Conventions used throughout this module:

* ``y_true`` / ``y_pred`` (and interval bounds) are 2-D arrays of shape ``(n_series, horizon)``.
* ``insample`` is a sequence of 1-D arrays, one per series, of varying lengths (the training part
  of each series, used by MASE for its scale).
* Every metric has an overall version returning a ``float`` and a ``*_by_step`` version returning
  a 1-D array of shape ``(horizon,)`` with one value per forecast step (averaged over series).
* Inputs containing NaN or infinite values, and inputs of mismatching shapes, raise ``ValueError``.

sMAPE and MASE follow the M4 competition definitions.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    "evaluate_forecasts",
    "interval_coverage",
    "interval_coverage_by_step",
    "mae",
    "mae_by_step",
    "mase",
    "mase_by_step",
    "mase_scales",
    "owa",
    "pinball_loss",
    "pinball_loss_by_step",
    "rmse",
    "rmse_by_step",
    "smape",
    "smape_by_step",
]

FloatArray = npt.NDArray[np.float64]


# --------------------------------------------------------------------------- validation helpers


def _check_finite(name: str, arr: FloatArray) -> None:
    """Raise ``ValueError`` if ``arr`` holds NaN or infinite values."""
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN values ({int(np.isnan(arr).sum())} of {arr.size})")
    if np.isinf(arr).any():
        raise ValueError(f"{name} contains infinite values")


def _as_2d(name: str, values: npt.ArrayLike) -> FloatArray:
    """Convert ``values`` to a finite, non-empty float array of shape (n_series, horizon)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_series, horizon), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    _check_finite(name, arr)
    return arr


def _mean_over(arr: FloatArray, axis: int | tuple[int, ...]) -> FloatArray:
    """Mean of ``arr`` over ``axis`` as a float64 array."""
    return np.asarray(np.mean(arr, axis=axis), dtype=np.float64)


def _pair(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Validate a (y_true, y_pred) pair of equal 2-D shapes."""
    true_arr = _as_2d("y_true", y_true)
    pred_arr = _as_2d("y_pred", y_pred)
    if true_arr.shape != pred_arr.shape:
        raise ValueError(
            f"y_true and y_pred must have the same shape, got {true_arr.shape} and {pred_arr.shape}"
        )
    return true_arr, pred_arr


# --------------------------------------------------------------------------- point metrics


def mae_by_step(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> FloatArray:
    """Mean absolute error per forecast step.

    Args:
        y_true: Actual values, shape (n_series, horizon).
        y_pred: Point forecasts, shape (n_series, horizon).

    Returns:
        Array of shape (horizon,): mean over series of ``|y_true - y_pred|`` at each step.

    Raises:
        ValueError: On NaN/infinite values, non-2-D input or mismatching shapes.
    """
    true_arr, pred_arr = _pair(y_true, y_pred)
    return _mean_over(np.abs(true_arr - pred_arr), 0)


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
    return float(np.mean(mae_by_step(y_true, y_pred)))


def rmse_by_step(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> FloatArray:
    """Root mean squared error per forecast step.

    Args:
        y_true: Actual values, shape (n_series, horizon).
        y_pred: Point forecasts, shape (n_series, horizon).

    Returns:
        Array of shape (horizon,): ``sqrt(mean over series of (y_true - y_pred)**2)`` per step.

    Raises:
        ValueError: On NaN/infinite values, non-2-D input or mismatching shapes.
    """
    true_arr, pred_arr = _pair(y_true, y_pred)
    return np.sqrt(_mean_over((true_arr - pred_arr) ** 2, 0))


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
    true_arr, pred_arr = _pair(y_true, y_pred)
    return float(np.sqrt(np.mean((true_arr - pred_arr) ** 2)))


def _smape_terms(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> FloatArray:
    """Pointwise sMAPE terms in percent, shape (n_series, horizon); 0/0 terms count as 0."""
    true_arr, pred_arr = _pair(y_true, y_pred)
    num = 200.0 * np.abs(true_arr - pred_arr)
    den = np.abs(true_arr) + np.abs(pred_arr)
    out = np.zeros_like(num)
    np.divide(num, den, out=out, where=den > 0)
    return out


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
    return _mean_over(_smape_terms(y_true, y_pred), 0)


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
    return float(np.mean(_smape_terms(y_true, y_pred)))


# --------------------------------------------------------------------------- MASE


def _series_scale(series: npt.ArrayLike, season: int, index: int) -> float:
    """In-sample mean absolute seasonal difference of one series (lag 1 if too short)."""
    x = np.asarray(series, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"insample[{index}] must be 1-D, got shape {x.shape}")
    _check_finite(f"insample[{index}]", x)
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


def _scaled_abs_errors(
    y_true: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    insample: Sequence[npt.ArrayLike],
    season: int,
) -> FloatArray:
    """Absolute errors divided by each series' MASE scale, shape (n_series, horizon)."""
    true_arr, pred_arr = _pair(y_true, y_pred)
    if len(insample) != true_arr.shape[0]:
        raise ValueError(
            f"insample has {len(insample)} series but y_true has shape {true_arr.shape} "
            f"({true_arr.shape[0]} series)"
        )
    scales = mase_scales(insample, season)
    return np.abs(true_arr - pred_arr) / scales[:, np.newaxis]


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
    return _mean_over(_scaled_abs_errors(y_true, y_pred, insample, season), 0)


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
    per_series = np.mean(_scaled_abs_errors(y_true, y_pred, insample, season), axis=1)
    return float(np.mean(per_series))


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


def _pinball_terms(
    y_true: npt.ArrayLike, q_pred: npt.ArrayLike, quantiles: npt.ArrayLike
) -> FloatArray:
    """Pointwise pinball losses, shape (n_series, horizon, n_quantiles)."""
    true_arr = _as_2d("y_true", y_true)
    pred_arr = np.asarray(q_pred, dtype=np.float64)
    q_arr = np.asarray(quantiles, dtype=np.float64)
    if q_arr.ndim != 1 or q_arr.size == 0:
        raise ValueError(f"quantiles must be a non-empty 1-D array, got shape {q_arr.shape}")
    _check_finite("quantiles", q_arr)
    _check_finite("q_pred", pred_arr)
    if ((q_arr <= 0) | (q_arr >= 1)).any():
        raise ValueError(f"quantiles must lie strictly between 0 and 1, got {q_arr.tolist()}")
    expected = (*true_arr.shape, q_arr.size)
    if pred_arr.shape != expected:
        raise ValueError(
            f"q_pred must have shape (n_series, horizon, n_quantiles) = {expected}, "
            f"got {pred_arr.shape} (y_true {true_arr.shape}, quantiles {q_arr.shape})"
        )
    diff = true_arr[:, :, np.newaxis] - pred_arr
    return np.maximum(q_arr * diff, (q_arr - 1.0) * diff)


def pinball_loss_by_step(
    y_true: npt.ArrayLike, q_pred: npt.ArrayLike, quantiles: npt.ArrayLike
) -> FloatArray:
    """Pinball (quantile) loss per forecast step, averaged over series and quantiles.

    Args:
        y_true: Actual values, shape (n_series, horizon).
        q_pred: Quantile forecasts, shape (n_series, horizon, n_quantiles).
        quantiles: Quantile levels, shape (n_quantiles,), each strictly in (0, 1).

    Returns:
        Array of shape (horizon,).

    Raises:
        ValueError: On NaN/infinite values, bad quantile levels or mismatching shapes.
    """
    return _mean_over(_pinball_terms(y_true, q_pred, quantiles), (0, 2))


def pinball_loss(y_true: npt.ArrayLike, q_pred: npt.ArrayLike, quantiles: npt.ArrayLike) -> float:
    """Mean pinball (quantile) loss over all series, steps and quantiles.

    For level ``q`` and error ``d = y - f_q`` the loss is ``max(q * d, (q - 1) * d)``.

    Args:
        y_true: Actual values, shape (n_series, horizon).
        q_pred: Quantile forecasts, shape (n_series, horizon, n_quantiles).
        quantiles: Quantile levels, shape (n_quantiles,), each strictly in (0, 1).

    Returns:
        The mean loss.

    Raises:
        ValueError: On NaN/infinite values, bad quantile levels or mismatching shapes.
    """
    return float(np.mean(_pinball_terms(y_true, q_pred, quantiles)))


def _inside(y_true: npt.ArrayLike, lower: npt.ArrayLike, upper: npt.ArrayLike) -> FloatArray:
    """1.0 where ``lower <= y_true <= upper`` else 0.0, shape (n_series, horizon)."""
    true_arr = _as_2d("y_true", y_true)
    low = _as_2d("lower", lower)
    up = _as_2d("upper", upper)
    if not true_arr.shape == low.shape == up.shape:
        raise ValueError(
            "y_true, lower and upper must have the same shape, "
            f"got {true_arr.shape}, {low.shape} and {up.shape}"
        )
    if (low > up).any():
        raise ValueError(f"lower exceeds upper at {int((low > up).sum())} point(s)")
    return ((true_arr >= low) & (true_arr <= up)).astype(np.float64)


def interval_coverage_by_step(
    y_true: npt.ArrayLike, lower: npt.ArrayLike, upper: npt.ArrayLike
) -> FloatArray:
    """Fraction of series whose actual value lies in ``[lower, upper]``, per forecast step.

    Args:
        y_true: Actual values, shape (n_series, horizon).
        lower: Lower interval bounds, shape (n_series, horizon).
        upper: Upper interval bounds, shape (n_series, horizon), ``>= lower``.

    Returns:
        Array of shape (horizon,) with values in [0, 1].

    Raises:
        ValueError: On NaN/infinite values, mismatching shapes or ``lower > upper``.
    """
    return _mean_over(_inside(y_true, lower, upper), 0)


def interval_coverage(y_true: npt.ArrayLike, lower: npt.ArrayLike, upper: npt.ArrayLike) -> float:
    """Fraction of all actual values lying in the closed interval ``[lower, upper]``.

    Args:
        y_true: Actual values, shape (n_series, horizon).
        lower: Lower interval bounds, shape (n_series, horizon).
        upper: Upper interval bounds, shape (n_series, horizon), ``>= lower``.

    Returns:
        Coverage in [0, 1].

    Raises:
        ValueError: On NaN/infinite values, mismatching shapes or ``lower > upper``.
    """
    return float(np.mean(_inside(y_true, lower, upper)))


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
