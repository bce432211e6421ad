"""One interface for every architecture: :class:`ModelConfig` in, Keras model out."""

from __future__ import annotations

from typing import Any

import keras

from nearcast.models.architectures.families import family
from nearcast.models.architectures.heads import AutoregressiveHead, direct_head
from nearcast.models.architectures.layers import (
    FoldSteps,
    ScaleWindow,
    SeasonalSkip,
    SortLast,
    Unscale,
    ZeroLike,
)
from nearcast.models.config import ModelConfig


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


def build_model(config: ModelConfig, name: str | None = None) -> keras.Model:
    """Build the forecaster graph.

    Inputs: ``{"history": (B, T), "mask": (B, T)}`` raw values and 1.0/0.0 padding mask,
    ``T`` a multiple of ``config.fold`` (normally ``config.input_size``).
    Outputs: ``{"forecast": (B, H, K), "scaled": (B, H, K), "level": (B, 1)}``: raw-scale
    forecasts, the same in the scaled space (what the loss sees) and the window level.
    ``name`` must be unique among models joined into one ensemble graph.
    """
    history = keras.Input((None,), name="history")
    mask = keras.Input((None,), name="mask")
    z, level = ScaleWindow(config.scaling, config.season, name="scale")([history, mask])
    steps, step_mask = FoldSteps(config.fold, name="fold")([z, mask])
    encoded = _encoder(steps, step_mask, config)
    k = len(config.output_names)
    if config.head == "direct":
        skip = _skip(z, config, config.horizon)
        scaled = direct_head(encoded, skip, config.horizon, k, config.seasonal_skip)
    else:
        n_steps = -(-config.horizon // config.fold)
        skip = _skip(z, config, n_steps * config.fold)
        head = AutoregressiveHead(
            config.cell, config.units, config.horizon, config.fold, k, config.point_index,
            config.seasonal_skip, name="autoregressive",
        )
        last_step = keras.layers.Reshape((config.fold,))(steps[:, -1, :])
        scaled = head([encoded, last_step, skip])
    if k > 1:
        scaled = SortLast(name="sort_quantiles")(scaled)
    forecast = Unscale(config.scaling, name="unscale")([scaled, level])
    outputs = {"forecast": forecast, "scaled": scaled, "level": level}
    return keras.Model({"history": history, "mask": mask}, outputs,
                       name=name or f"nearcast_{config.cell}")


def _skip(z: Any, config: ModelConfig, length: int) -> Any:
    skip = SeasonalSkip(config.season, length, name="seasonal_skip")(z)
    return skip if config.seasonal_skip else ZeroLike(name="no_skip")(skip)


__all__ = ["build_model"]
