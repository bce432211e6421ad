"""The arrays of the forecast metrics: checks, and means through :mod:`utilsforecast.losses`.

``y_true`` / ``y_pred`` (and interval bounds) are 2-D arrays of shape ``(n_series, horizon)``;
NaN or infinite values, and mismatching shapes, raise ``ValueError``. :func:`means` turns such
arrays into the long frame ``utilsforecast`` reads, with the series or the forecast step as
``unique_id``, so its losses come out per series (averaged over the horizon) or per step
(averaged over the series).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
import numpy.typing as npt
import pandas as pd

__all__ = ["FloatArray", "Loss", "as_2d", "bounds", "check_finite", "mean_over", "means", "pair"]

FloatArray = npt.NDArray[np.float64]

Loss = Callable[..., pd.DataFrame]
"""A :mod:`utilsforecast.losses` function: long frame and model columns in, one row per id."""


def check_finite(name: str, arr: FloatArray) -> None:
    """Raise ``ValueError`` if ``arr`` holds NaN or infinite values."""
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN values ({int(np.isnan(arr).sum())} of {arr.size})")
    if np.isinf(arr).any():
        raise ValueError(f"{name} contains infinite values")


def as_2d(name: str, values: npt.ArrayLike) -> FloatArray:
    """Convert ``values`` to a finite, non-empty float array of shape (n_series, horizon)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_series, horizon), got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {arr.shape}")
    check_finite(name, arr)
    return arr


def mean_over(arr: FloatArray, axis: int | tuple[int, ...]) -> FloatArray:
    """Mean of ``arr`` over ``axis`` as a float64 array."""
    return np.asarray(np.mean(arr, axis=axis), dtype=np.float64)


def means(
    loss: Loss, y_true: FloatArray, columns: dict[str, FloatArray], by: Literal["series", "step"]
) -> FloatArray:
    """``loss`` of the (n_series, horizon) arrays, one value per series or per step.

    Args:
        loss: e.g. ``utilsforecast.losses.mae``; it is given the model ``"f"``.
        y_true: Actual values (the ``y`` column).
        columns: The model's columns (``"f"``, or its bounds ``"f-lo-0"``, ``"f-hi-0"``).
        by: ``"series"``: shape ``(n_series,)``; ``"step"``: shape ``(horizon,)``.
    """
    n_series, horizon = y_true.shape
    if by == "series":
        ids = np.repeat(np.arange(n_series), horizon)
    else:
        ids = np.tile(np.arange(horizon), n_series)
    frame = pd.DataFrame({"unique_id": ids, "y": y_true.ravel()}
                         | {name: arr.ravel() for name, arr in columns.items()})
    return loss(frame, models=["f"])["f"].to_numpy(dtype=np.float64)


def pair(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    """Validate a (y_true, y_pred) pair of equal 2-D shapes."""
    true_arr = as_2d("y_true", y_true)
    pred_arr = as_2d("y_pred", y_pred)
    if true_arr.shape != pred_arr.shape:
        raise ValueError(
            f"y_true and y_pred must have the same shape, got {true_arr.shape} and {pred_arr.shape}"
        )
    return true_arr, pred_arr


def bounds(y_true: npt.ArrayLike, lower: npt.ArrayLike, upper: npt.ArrayLike
           ) -> tuple[FloatArray, FloatArray, FloatArray]:
    """Validate actuals and interval bounds: equal 2-D shapes, ``lower <= upper``."""
    true_arr, low, up = as_2d("y_true", y_true), as_2d("lower", lower), as_2d("upper", upper)
    if not true_arr.shape == low.shape == up.shape:
        raise ValueError(
            "y_true, lower and upper must have the same shape, "
            f"got {true_arr.shape}, {low.shape} and {up.shape}"
        )
    if (low > up).any():
        raise ValueError(f"lower exceeds upper at {int((low > up).sum())} point(s)")
    return true_arr, low, up
