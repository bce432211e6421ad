"""Forecast heads: from the encoded history to scaled forecasts ``(B, H, K)``.

Both heads add their output to the seasonal skip ``(B, H)`` (zeros when the skip is off); with
the skip on, their last projection starts at zero so an untrained model forecasts exactly
seasonal naive.
"""

from __future__ import annotations

from typing import Any

import keras
import tensorflow as tf

from nearcast.models.architectures.families import family


def _projection(size: int, zero_init: bool, name: str) -> keras.layers.Dense:
    init = "zeros" if zero_init else "glorot_uniform"
    return keras.layers.Dense(size, kernel_initializer=init, bias_initializer="zeros", name=name)


def direct_head(
    encoded: Any, skip: Any, horizon: int, n_outputs: int, zero_init: bool
) -> Any:
    """All ``H`` steps at once: ``Dense(H*K)`` on the encoding ``(B, units)``, plus the skip."""
    flat = _projection(horizon * n_outputs, zero_init, "direct_projection")(encoded)
    correction = keras.layers.Reshape((horizon, n_outputs))(flat)
    skip_3d = keras.layers.Reshape((horizon, 1))(skip)
    return keras.layers.Add(name="scaled_raw")([correction, skip_3d])


def covariate_head(
    encoded: Any, context: list[Any], future: Any | None, skip: Any, config: Any, n_outputs: int
) -> Any:
    """The direct head of a covariate model, all ``H`` steps at once.

    It reads the encoding, the conditions (series embedding, statics) and the future-known
    inputs ``(B, H, F)`` flattened.

    One hidden ReLU layer (``units`` wide) lets the drivers act non-linearly; the projection
    sees its input and the hidden layer, so a linear driver effect needs no hidden unit.
    """
    parts = [encoded, *context]
    if future is not None:
        parts.append(keras.layers.Flatten(name="future_flat")(future))
    x = keras.layers.Concatenate(name="head_inputs")(parts)
    hidden = keras.layers.Dense(config.units, activation="relu", name="covariate_hidden")(x)
    joined = keras.layers.Concatenate(name="head_features")([x, hidden])
    return direct_head(joined, skip, config.horizon, n_outputs, config.seasonal_skip)


@keras.saving.register_keras_serializable(package="nearcast")
class AutoregressiveHead(keras.layers.Layer):
    """Decode ``step`` points at a time, feeding each point forecast back as the next input.

    Call args: ``[encoded (B, E), last_step (B, step), skip (B, S*step)]`` where ``S`` is the
    number of decoding steps, and with ``future_width`` a fourth, the future-known inputs
    ``(B, horizon, future_width)``: each decoding step also reads its own rows of them.
    Returns ``(B, horizon, K)``.
    """

    def __init__(
        self, cell: str, units: int, horizon: int, step: int, n_outputs: int, point_index: int,
        zero_init: bool, future_width: int = 0, **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.cell_name, self.units, self.horizon, self.step = cell, units, horizon, step
        self.n_outputs, self.point_index, self.zero_init = n_outputs, point_index, zero_init
        self.future_width = future_width
        fam = family(cell)
        self.cell = fam.make_cell(units)
        self.state_count: int = fam.STATE_COUNT
        self.init_state = keras.layers.Dense(units * self.state_count, activation="tanh")
        self.project = _projection(step * n_outputs, zero_init, "ar_projection")

    @property
    def n_steps(self) -> int:
        """Decoding steps needed to cover the horizon."""
        return -(-self.horizon // self.step)

    def build(self, input_shape: Any) -> None:
        encoded_shape = input_shape[0]
        self.init_state.build(encoded_shape)
        self.cell.build((encoded_shape[0], self.step * (1 + self.future_width)))
        self.project.build((encoded_shape[0], self.units))

    def call(self, inputs: list[tf.Tensor]) -> tf.Tensor:
        encoded, x, skip = inputs[:3]
        states = tf.split(self.init_state(encoded), self.state_count, axis=-1)
        future = None
        if self.future_width:
            future = tf.pad(inputs[3], [[0, 0], [0, self.n_steps * self.step - self.horizon],
                                        [0, 0]])
        outputs = []
        for i in range(self.n_steps):
            if future is not None:
                rows = future[:, i * self.step : (i + 1) * self.step, :]
                x = tf.concat([x, tf.reshape(rows, [-1, self.step * self.future_width])], -1)
            out, states = self.cell(x, states)
            states = list(states) if isinstance(states, list | tuple) else [states]
            chunk = tf.reshape(self.project(out), [-1, self.step, self.n_outputs])
            chunk = chunk + skip[:, i * self.step : (i + 1) * self.step, None]
            outputs.append(chunk)
            x = chunk[:, :, self.point_index]
        return tf.concat(outputs, axis=1)[:, : self.horizon]

    def get_config(self) -> dict[str, Any]:
        return {
            **super().get_config(), "cell": self.cell_name, "units": self.units,
            "horizon": self.horizon, "step": self.step, "n_outputs": self.n_outputs,
            "point_index": self.point_index, "zero_init": self.zero_init,
            "future_width": self.future_width,
        }


__all__ = ["AutoregressiveHead", "covariate_head", "direct_head"]
