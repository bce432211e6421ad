"""LSTM cell family (cuDNN-compatible defaults: tanh/sigmoid, no recurrent dropout)."""

from __future__ import annotations

import keras


def make_layer(units: int, return_sequences: bool) -> keras.layers.Layer:
    """An LSTM layer over ``(B, steps, features)``; ``(B, units)`` or ``(B, steps, units)`` out."""
    return keras.layers.LSTM(units, return_sequences=return_sequences)


def make_cell(units: int) -> keras.layers.Layer:
    """A single LSTM cell for step-by-step decoding (state: ``[h, c]``, each ``(B, units)``)."""
    return keras.layers.LSTMCell(units)


STATE_COUNT = 2
