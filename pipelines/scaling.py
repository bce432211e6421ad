"""Per-window scaling rules shared by training and serving (named in :mod:`.scaling_rules`).

A rule turns a raw history window into a unit-free window using statistics of that window
alone (never of the future), and maps forecasts back. The same functions run inside the Keras
graph (serving) and on training targets, so there is no train/serve skew.

The statistic of a window ("level") has shape ``(batch, 1)``, or ``(batch, 2)`` (level, mean
absolute deviation) for ``level_mad``. ``log_level`` floors values at ``LOG_FLOOR * level``;
data with values <= 0 never reaches it (training and the API refuse it).
"""

from __future__ import annotations

import tensorflow as tf

from nearcast.pipelines.scaling_rules import SCALING_RULES, ScalingRule

LOG_FLOOR = 1e-3
MAD_FLOOR = 1e-3
"""The deviation of ``level_mad`` is at least this fraction of the window's mean |value|."""
_EPS = 1e-8


def window_level(history: tf.Tensor, mask: tf.Tensor, rule: str, season: int) -> tf.Tensor:
    """Compute the scaling statistic of each window.

    Args:
        history: raw values, shape ``(batch, time)``; padded positions may hold anything finite.
        mask: 1.0 where a value is real, 0.0 where padded, shape ``(batch, time)``.
        rule: one of ``SCALING_RULES``.
        season: points in one season; ``log_level`` averages the last ``season`` points.

    Returns:
        The level (or scale) per window, shape ``(batch, 1)``, strictly positive; for
        ``level_mad`` ``(batch, 2)``: the level (any sign) and the deviation (positive).
    """
    if rule == "none":
        return tf.ones_like(history[:, :1])
    if rule == "level_mad":
        return _level_mad(history, mask, season)
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


def _level_mad(history: tf.Tensor, mask: tf.Tensor, season: int) -> tf.Tensor:
    """``(level, deviation)`` per window: mean of the last season, mean |x - level| overall."""
    tail, tail_mask = history[:, -season:], mask[:, -season:]
    level = (tf.reduce_sum(tail * tail_mask, axis=1, keepdims=True)
             / tf.maximum(tf.reduce_sum(tail_mask, axis=1, keepdims=True), 1.0))
    count = tf.maximum(tf.reduce_sum(mask, axis=1, keepdims=True), 1.0)
    mad = tf.reduce_sum(tf.abs(history - level) * mask, axis=1, keepdims=True) / count
    size = tf.reduce_sum(tf.abs(history) * mask, axis=1, keepdims=True) / count
    return tf.concat([level, tf.maximum(mad, MAD_FLOOR * size + _EPS)], axis=1)


def _parts(level: tf.Tensor, rank: int) -> tuple[tf.Tensor, tf.Tensor]:
    """The window statistic's columns, shaped to broadcast over values of ``rank``."""
    first, last = level[:, :1], level[:, -1:]
    return (first, last) if rank == 2 else (first[:, :, None], last[:, :, None])


def apply_scaling(values: tf.Tensor, level: tf.Tensor, rule: str) -> tf.Tensor:
    """Scale raw values with a window's level.

    Args:
        values: raw values, shape ``(batch, time)`` or ``(batch, time, k)``.
        level: output of :func:`window_level`, shape ``(batch, 1)``.
        rule: one of ``SCALING_RULES``.

    Returns:
        Scaled values, same shape as ``values``.
    """
    lvl, dev = _parts(level, values.shape.rank)
    if rule == "level_mad":
        return (values - lvl) / dev
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
    lvl, dev = _parts(level, scaled.shape.rank)
    if rule == "level_mad":
        return scaled * dev + lvl
    if rule == "log_level":
        return tf.exp(scaled) * lvl
    if rule == "mean_abs":
        return scaled * lvl
    return scaled


__all__ = [
    "LOG_FLOOR",
    "MAD_FLOOR",
    "SCALING_RULES",
    "ScalingRule",
    "apply_scaling",
    "invert_scaling",
    "window_level",
]
