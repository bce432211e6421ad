"""Custom Keras layers of the forecaster graph (registered, so ``safe_mode=True`` loads them).

Tensor shapes: ``B`` batch, ``T`` history points, ``F`` fold (points per timestep),
``H`` horizon, ``K`` outputs (1 point forecast, or one per quantile).
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from nearcast.pipelines.scaling import apply_scaling, invert_scaling, window_level

_PACKAGE = "nearcast"


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ScaleWindow(keras.layers.Layer):
    """Scale each history window by its own statistic (see :mod:`pipelines.scaling`).

    Call args: ``[history (B, T), mask (B, T)]``. Returns ``[z (B, T), level (B, 1)]`` with
    padded positions of ``z`` set to 0.
    """

    def __init__(self, rule: str, season: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rule, self.season = rule, season

    def call(self, inputs: list[tf.Tensor]) -> list[tf.Tensor]:
        history, mask = inputs
        level = window_level(history, mask, self.rule, self.season)
        return [apply_scaling(history, level, self.rule) * mask, level]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rule": self.rule, "season": self.season}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class Unscale(keras.layers.Layer):
    """Map scaled forecasts ``(B, H, K)`` back to raw values with the level ``(B, 1)``."""

    def __init__(self, rule: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rule = rule

    def call(self, inputs: list[tf.Tensor]) -> tf.Tensor:
        scaled, level = inputs
        return invert_scaling(scaled, level, self.rule)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "rule": self.rule}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FoldSteps(keras.layers.Layer):
    """Fold ``F`` consecutive points into one timestep.

    Call args: ``[z (B, T), mask (B, T)]`` with ``T`` a multiple of ``F``. Returns
    ``[steps (B, T/F, F), step_mask (B, T/F) bool]``; padding always covers whole folds, so the
    last point of a fold decides its mask.
    """

    def __init__(self, fold: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fold = fold

    def call(self, inputs: list[tf.Tensor]) -> list[tf.Tensor]:
        z, mask = inputs
        steps = tf.reshape(z, [tf.shape(z)[0], -1, self.fold])
        step_mask = tf.reshape(mask, [tf.shape(mask)[0], -1, self.fold])[:, :, -1] > 0.5
        return [steps, step_mask]

    def compute_mask(self, inputs: Any, mask: Any = None) -> None:
        return None

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "fold": self.fold}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class FoldFeatures(keras.layers.Layer):
    """Fold ``F`` consecutive rows of covariates into one timestep.

    ``(B, T, C)`` with ``T`` a multiple of ``F`` -> ``(B, T/F, F*C)``, the layout of
    :class:`FoldSteps` (so a timestep's covariates sit beside its values).
    """

    def __init__(self, fold: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.fold = fold

    def call(self, x: tf.Tensor) -> tf.Tensor:
        width = x.shape[-1]
        return tf.reshape(x, [tf.shape(x)[0], -1, self.fold * width])

    def compute_output_shape(self, input_shape: Any) -> Any:
        steps = None if input_shape[1] is None else input_shape[1] // self.fold
        return (input_shape[0], steps, self.fold * input_shape[2])

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "fold": self.fold}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SeasonalSkip(keras.layers.Layer):
    """Seasonal naive in the scaled space: the last ``season`` points of ``z (B, T)`` repeated.

    Returns shape ``(B, length)``.
    """

    def __init__(self, season: int, length: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.season, self.length = season, length

    def call(self, z: tf.Tensor) -> tf.Tensor:
        reps = -(-self.length // self.season)
        return tf.tile(z[:, -self.season :], [1, reps])[:, : self.length]

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "season": self.season, "length": self.length}


@keras.saving.register_keras_serializable(package=_PACKAGE)
class SortLast(keras.layers.Layer):
    """Sort the last axis so quantile forecasts never cross (``(B, H, K)`` in and out)."""

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return tf.sort(x, axis=-1)


@keras.saving.register_keras_serializable(package=_PACKAGE)
class ZeroLike(keras.layers.Layer):
    """Zeros shaped like ``x`` (the seasonal skip's stand-in when the skip is off)."""

    def call(self, x: tf.Tensor) -> tf.Tensor:
        return tf.zeros_like(x)


__all__ = ["FoldFeatures", "FoldSteps", "ScaleWindow", "SeasonalSkip", "SortLast", "Unscale",
           "ZeroLike"]
