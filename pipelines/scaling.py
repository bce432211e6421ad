"""Per-window scaling rules shared by training and serving.

A rule turns a raw history window into a unit-free window using statistics of that window
alone (never of the future), and maps forecasts back. The same functions run inside the Keras
graph (serving) and on training targets, so there is no train/serve skew.

Rules:
    ``log_level``: ``z = log(x / level)``, level = mean of the last ``season`` observed points.
        Needs positive data; values are floored at ``LOG_FLOOR * level``.
    ``mean_abs``: ``z = x / scale``, scale = mean absolute value of the observed window.
    ``none``: identity.
"""

from __future__ import annotations

from typing import Literal

import tensorflow as tf

ScalingRule = Literal["log_level", "mean_abs", "none"]
SCALING_RULES: tuple[str, ...] = ("log_level", "mean_abs", "none")
LOG_FLOOR = 1e-3
_EPS = 1e-8


def window_level(history: tf.Tensor, mask: tf.Tensor, rule: str, season: int) -> tf.Tensor:
    """Compute the scaling statistic of each window.

    Args:
        history: raw values, shape ``(batch, time)``; padded positions may hold anything finite.
        mask: 1.0 where a value is real, 0.0 where padded, shape ``(batch, time)``.
        rule: one of ``SCALING_RULES``.
        season: points in one season; ``log_level`` averages the last ``season`` points.

    Returns:
        The level (or scale) per window, shape ``(batch, 1)``, strictly positive.
    """
    if rule == "none":
        return tf.ones_like(history[:, :1])
    if rule == "log_level":
        tail, tail_mask = history[:, -season:], mask[:, -season:]
        total = tf.reduce_sum(tail * tail_mask, axis=1, keepdims=True)
        count = tf.reduce_sum(tail_mask, axis=1, keepdims=True)
    elif rule == "mean_abs":
        total = tf.reduce_sum(tf.abs(history) * mask, axis=1, keepdims=True)
        count = tf.reduce_sum(mask, axis=1, keepdims=True)
    else:
        raise ValueError(f"unknown scaling rule {rule!r}; choose one of {SCALING_RULES}")
    return tf.maximum(total / tf.maximum(count, 1.0), _EPS)


def apply_scaling(values: tf.Tensor, level: tf.Tensor, rule: str) -> tf.Tensor:
    """Scale raw values with a window's level.

    Args:
        values: raw values, shape ``(batch, time)`` or ``(batch, time, k)``.
        level: output of :func:`window_level`, shape ``(batch, 1)``.
        rule: one of ``SCALING_RULES``.

    Returns:
        Scaled values, same shape as ``values``.
    """
    lvl = level if values.shape.rank == 2 else level[:, :, None]
    if rule == "log_level":
        return tf.math.log(tf.maximum(values, LOG_FLOOR * lvl) / lvl)
    if rule == "mean_abs":
        return values / lvl
    return values


def invert_scaling(scaled: tf.Tensor, level: tf.Tensor, rule: str) -> tf.Tensor:
    """Map scaled values back to the raw scale (inverse of :func:`apply_scaling`).

    Args:
        scaled: scaled values, shape ``(batch, time)`` or ``(batch, time, k)``.
        level: output of :func:`window_level`, shape ``(batch, 1)``.
        rule: one of ``SCALING_RULES``.

    Returns:
        Raw-scale values, same shape as ``scaled``.
    """
    lvl = level if scaled.shape.rank == 2 else level[:, :, None]
    if rule == "log_level":
        return tf.exp(scaled) * lvl
    if rule == "mean_abs":
        return scaled * lvl
    return scaled


__all__ = [
    "LOG_FLOOR",
    "SCALING_RULES",
    "ScalingRule",
    "apply_scaling",
    "invert_scaling",
    "window_level",
]
