"""SimpleRNN cell family (the plain Elman recurrence; no cuDNN kernel exists for it)."""

from __future__ import annotations

import keras


def make_layer(units: int, return_sequences: bool) -> keras.layers.Layer:
    """A SimpleRNN layer over ``(B, steps, features)``."""
    return keras.layers.SimpleRNN(units, return_sequences=return_sequences)


def make_cell(units: int) -> keras.layers.Layer:
    """A single SimpleRNN cell for step-by-step decoding (state: ``[h]``, ``(B, units)``)."""
    return keras.layers.SimpleRNNCell(units)


STATE_COUNT = 1
