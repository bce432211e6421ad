"""Training losses computed in the scaled space, so every series weighs the same.

Shapes: ``target`` ``(B, H)`` raw values; the model's outputs dict holds ``scaled (B, H, K)``
and ``level (B, 1)``. The target is scaled with the window's own level, by the same rule the
model applies to its inputs (:mod:`pipelines.scaling`).
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from nearcast.models.config import ModelConfig
from nearcast.pipelines.scaling import apply_scaling

LossFn = Callable[[tf.Tensor, dict[str, tf.Tensor]], tf.Tensor]


def pinball(z_true: tf.Tensor, z_pred: tf.Tensor, quantiles: list[float]) -> tf.Tensor:
    """Mean pinball loss; ``z_true (B, H)``, ``z_pred (B, H, K)``, one quantile per ``K``."""
    q = tf.constant(quantiles, dtype=z_pred.dtype)[None, None, :]
    err = z_true[:, :, None] - z_pred
    return tf.reduce_mean(tf.maximum(q * err, (q - 1.0) * err))


def make_loss(config: ModelConfig, loss: str) -> LossFn:
    """Build the loss for a model config.

    Args:
        config: the model's config (scaling rule, quantiles, point index).
        loss: ``mae``, ``mse`` or ``pinball`` (pinball is forced for quantile models).

    Returns:
        ``fn(target (B, H), outputs) -> scalar``.
    """
    if config.quantiles and loss != "pinball":
        loss = "pinball"
    if loss == "pinball" and not config.quantiles:
        raise ValueError("loss 'pinball' needs model quantiles")
    rule, point = config.scaling, config.point_index

    def fn(target: tf.Tensor, outputs: dict[str, tf.Tensor]) -> tf.Tensor:
        z_true = apply_scaling(target, outputs["level"], rule)
        z_pred = outputs["scaled"]
        if loss == "pinball":
            return pinball(z_true, z_pred, config.quantiles)
        err = z_true - z_pred[:, :, point]
        return tf.reduce_mean(tf.abs(err)) if loss == "mae" else tf.reduce_mean(tf.square(err))

    return fn


__all__ = ["LossFn", "make_loss", "pinball"]
