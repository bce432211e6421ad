"""GRU cell family (cuDNN-compatible defaults: reset_after=True, no recurrent dropout)."""

from __future__ import annotations

import keras


def make_layer(units: int, return_sequences: bool) -> keras.layers.Layer:
    """A GRU layer over ``(B, steps, features)``; ``(B, units)`` or ``(B, steps, units)`` out."""
    return keras.layers.GRU(units, return_sequences=return_sequences)


def make_cell(units: int) -> keras.layers.Layer:
    """A single GRU cell for step-by-step decoding (state: ``[h]``, ``(B, units)``)."""
    return keras.layers.GRUCell(units)


STATE_COUNT = 1
