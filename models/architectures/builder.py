"""One interface for every architecture: :class:`ModelConfig` in, Keras model out."""

from __future__ import annotations

from typing import Any

import keras

from nearcast.models.architectures.families import family
from nearcast.models.architectures.heads import AutoregressiveHead, covariate_head, direct_head
from nearcast.models.architectures.layers import (
    FoldFeatures,
    FoldSteps,
    ScaleWindow,
    SeasonalSkip,
    SortLast,
    Unscale,
    ZeroLike,
)
from nearcast.models.config import ModelConfig
from nearcast.pipelines.features import FeatureSpec


def _encoder(steps: Any, step_mask: Any, config: ModelConfig) -> Any:
    """Stacked (optionally bidirectional) recurrent encoder: ``(B, S, F)`` -> ``(B, E)``."""
    fam = family(config.cell)
    x = steps
    for i in range(config.layers):
        last = i == config.layers - 1
        layer = fam.make_layer(config.units, return_sequences=not last)
        if config.bidirectional:
            layer = keras.layers.Bidirectional(layer)
        x = layer(x, mask=step_mask)
        if config.dropout:
            x = keras.layers.Dropout(config.dropout)(x)
    return x


def build_model(
    config: ModelConfig, name: str | None = None, features: FeatureSpec | None = None
) -> keras.Model:
    """Build the forecaster graph.

    Inputs: ``{"history": (B, T), "mask": (B, T)}`` raw values and 1.0/0.0 padding mask,
    ``T`` a multiple of ``config.fold`` (normally ``config.input_size``). With an active
    ``features`` spec also (those it has, :meth:`FeatureSpec.input_widths`): ``past``
    ``(B, T, C)`` covariates and calendar over the window, folded beside the values into the
    encoder's timesteps; ``future`` ``(B, H, F)`` the future-known ones over the horizon,
    read by the head; ``static`` ``(B, D)`` and ``series`` ``(B,)`` (a learned embedding,
    code 0 the shared vector), which condition the head.
    Outputs: ``{"forecast": (B, H, K), "scaled": (B, H, K), "level": (B, 1)}``: raw-scale
    forecasts, the same in the scaled space (what the loss sees) and the window level.
    ``name`` must be unique among models joined into one ensemble graph.
    """
    history = keras.Input((None,), name="history")
    mask = keras.Input((None,), name="mask")
    inputs = {"history": history, "mask": mask} | covariate_inputs(features, config.horizon)
    widths = features.input_widths() if features is not None else {}
    z, level = ScaleWindow(config.scaling, config.season, name="scale")([history, mask])
    steps, step_mask = FoldSteps(config.fold, name="fold")([z, mask])
    if "past" in inputs:
        folded = FoldFeatures(config.fold, name="fold_covariates")(inputs["past"])
        steps = keras.layers.Concatenate(name="steps_with_covariates")([steps, folded])
    encoded = _encoder(steps, step_mask, config)
    context = _conditions(inputs, widths, config)
    k = len(config.output_names)
    if config.head == "direct":
        skip = _skip(z, config, config.horizon)
        if context or "future" in inputs:
            scaled = covariate_head(encoded, context, inputs.get("future"), skip, config, k)
        else:
            scaled = direct_head(encoded, skip, config.horizon, k, config.seasonal_skip)
    else:
        n_steps = -(-config.horizon // config.fold)
        skip = _skip(z, config, n_steps * config.fold)
        future_width = widths.get("future", 0)
        head = AutoregressiveHead(
            config.cell, config.units, config.horizon, config.fold, k, config.point_index,
            config.seasonal_skip, future_width, name="autoregressive",
        )
        last_step = keras.layers.Reshape((config.fold,))(steps[:, -1, : config.fold])
        state_in = (keras.layers.Concatenate(name="encoded_with_conditions")([encoded, *context])
                    if context else encoded)
        head_inputs = [state_in, last_step, skip]
        scaled = head([*head_inputs, inputs["future"]] if future_width else head_inputs)
    if k > 1:
        scaled = SortLast(name="sort_quantiles")(scaled)
    forecast = Unscale(config.scaling, name="unscale")([scaled, level])
    outputs = {"forecast": forecast, "scaled": scaled, "level": level}
    return keras.Model(inputs, outputs, name=name or f"nearcast_{config.cell}")


def covariate_inputs(features: FeatureSpec | None, horizon: int) -> dict[str, Any]:
    """One ``keras.Input`` per covariate input the spec feeds (none for a target-only model)."""
    if features is None:
        return {}
    return {key: keras.Input(shape, dtype=dtype, name=key)
            for key, (shape, dtype) in features.input_shapes(horizon).items()}


def _conditions(inputs: dict[str, Any], widths: dict[str, int], config: ModelConfig) -> list[Any]:
    """The series embedding and the static inputs, which condition the head."""
    out = []
    if "series" in inputs:
        out.append(keras.layers.Embedding(widths["series"] + 1, config.embedding,
                                          name="series_embedding")(inputs["series"]))
    if "static" in inputs:
        out.append(inputs["static"])
    return out


def _skip(z: Any, config: ModelConfig, length: int) -> Any:
    skip = SeasonalSkip(config.season, length, name="seasonal_skip")(z)
    return skip if config.seasonal_skip else ZeroLike(name="no_skip")(skip)


__all__ = ["build_model", "covariate_inputs"]
