"""Layers that join member forecasters into one ensemble graph (registered for safe loading).

Shapes: ``B`` batch, ``T`` history points, ``H`` horizon, ``K`` outputs, ``M`` members.
"""

from __future__ import annotations

from typing import Any, get_args

import keras
import tensorflow as tf

from nearcast.models.config import Combiner


@keras.saving.register_keras_serializable(package="nearcast")
class TakeLast(keras.layers.Layer):
    """The newest ``size`` points of ``(B, T)`` (all of them when ``T < size``)."""

    def __init__(self, size: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.size = size

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return x[:, -self.size :]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "size": self.size}


@keras.saving.register_keras_serializable(package="nearcast")
class Combine(keras.layers.Layer):
    """Median (or mean) over members: a list of ``M`` tensors ``(B, H, K)`` -> ``(B, H, K)``."""

    def __init__(self, how: Combiner = "median", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if how not in get_args(Combiner):
            raise ValueError(f"unknown combiner {how!r}; choose one of {get_args(Combiner)}")
        self.how = how

    def call(self, members: list[tf.Tensor]) -> tf.Tensor:
        stacked = tf.stack(members, axis=-1)
        if self.how == "mean":
            return tf.reduce_mean(stacked, axis=-1)
        ordered = tf.sort(stacked, axis=-1)
        m = len(members)
        # Even count: the mean of the two middle members, as numpy's median does.
        return (ordered[..., (m - 1) // 2] + ordered[..., m // 2]) / 2.0

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "how": self.how}


@keras.saving.register_keras_serializable(package="nearcast")
class WidenIntervals(keras.layers.Layer):
    """Scale every quantile's distance from the point forecast by ``factor``.

    ``(B, H, K)`` in and out; the point column (``point_index``) is unchanged. The factor is
    fitted on validation windows so the outer interval reaches its nominal coverage.
    """

    def __init__(self, factor: float, point_index: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.factor, self.point_index = float(factor), point_index

    def call(self, x: tf.Tensor) -> tf.Tensor:
        point = x[:, :, self.point_index : self.point_index + 1]
        return point + (x - point) * self.factor

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "factor": self.factor, "point_index": self.point_index}


__all__ = ["Combine", "TakeLast", "WidenIntervals"]
