"""The XLA-compiled serving path: a fixed ladder of batch sizes, each compiled once.

XLA compiles one executable per concrete input shape, and compiling the recommended ensemble
takes seconds; a function compiled for "any batch size" would therefore compile again whenever a
request brought a batch size it had not seen. :class:`CompiledLadder` instead fixes the batch
sizes up front (powers of two up to the serving batch limit by default), compiles every one of
them in :meth:`CompiledLadder.compile` (the model's warm-up, before it serves), and pads each
call's batch up to the next ladder size (chunking above the largest), then slices the answer.
Padding repeats the last row, so padded rows are valid inputs; rows do not interact in
inference, so the real rows' forecasts are those of an unpadded call.

:attr:`CompiledLadder.compiles` is TensorFlow's own trace count of the compiled function
(``experimental_get_tracing_count``): the function has no input signature, so every new input
shape traces (and XLA-compiles) once more, and a shape outside the ladder, if one ever reached
it, would show up in the count.
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

#: Default serving batch limit (the service's ``batch_max_series`` default).
DEFAULT_LIMIT = 256


def ladder_sizes(limit: int) -> tuple[int, ...]:
    """Powers of two below ``limit``, and ``limit`` itself: ``ladder_sizes(100)`` = 1 … 64, 100.

    Raises:
        ValueError: ``limit`` is below 1.
    """
    if limit < 1:
        raise ValueError(f"the batch limit must be at least 1, got {limit}")
    sizes = [1 << i for i in range(limit.bit_length()) if 1 << i < limit]
    return (*sizes, limit)


def example_inputs(specs: dict[str, tf.TensorSpec], batch: int) -> dict[str, np.ndarray]:
    """Inputs of the given batch size for ``specs`` (ones; zeros for series codes)."""
    out = {}
    for key, spec in specs.items():
        shape = (batch, *spec.shape[1:])
        out[key] = (np.zeros(shape, np.int32) if spec.dtype == tf.int32
                    else np.ones(shape, np.float32))
    return out


def _pad(value: np.ndarray, size: int) -> np.ndarray:
    """``value`` with its last row repeated up to ``size`` rows."""
    missing = size - len(value)
    if missing == 0:
        return value
    return np.concatenate([value, np.repeat(value[-1:], missing, axis=0)])


class CompiledLadder:
    """An XLA-compiled model function over a fixed set of batch sizes."""

    def __init__(self, call: Callable[[dict[str, tf.Tensor]], tf.Tensor],
                 specs: dict[str, tf.TensorSpec], sizes: Sequence[int]) -> None:
        """Wrap ``call`` (inputs by name -> one tensor, batch first); nothing compiles yet.

        Args:
            call: the model function (``tf.function``-traceable).
            specs: input specs by name, batch dimension first (its size is ignored).
            sizes: the batch sizes to compile.

        Raises:
            ValueError: no size, or a size below 1.
        """
        if not sizes or min(sizes) < 1:
            raise ValueError(f"ladder batch sizes must be at least 1, got {list(sizes)}")
        self.sizes = tuple(sorted(set(sizes)))
        self.specs = specs
        self.warmup_seconds = 0.0
        self._fn = tf.function(call, jit_compile=True, reduce_retracing=False)
        # Each compiled size's concrete function, called directly: skips tf.function's argument
        # binding and cache lookup (about 0.2 ms a call). Other shapes go through ``_fn``.
        self._compiled: dict[int, Callable[[dict[str, tf.Tensor]], tf.Tensor]] = {}

    @property
    def largest(self) -> int:
        """The largest compiled batch size (bigger batches run in chunks of it)."""
        return self.sizes[-1]

    @property
    def compiles(self) -> int:
        """Traces (each an XLA compile) of the function so far: TensorFlow's own count."""
        return int(self._fn.experimental_get_tracing_count())

    def size_for(self, n: int) -> int:
        """The ladder size a batch of ``n <= largest`` rows is padded to."""
        return self.sizes[bisect.bisect_left(self.sizes, n)]

    def compile(self) -> float:
        """Compile every ladder size now (one call each); returns and records the seconds."""
        started = time.perf_counter()
        for size in self.sizes:
            feed = self._feed(example_inputs(self.specs, size))
            self._fn(feed)  # traces and compiles (the count); the lookup below does not trace
            self._compiled[size] = self._fn.get_concrete_function(feed)
        self.warmup_seconds = time.perf_counter() - started
        return self.warmup_seconds

    def __call__(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Forecast a batch of any size: ``(B, ...)`` inputs -> ``(B, ...)`` output.

        Raises:
            ValueError: an empty batch.
        """
        n = len(inputs["history"])
        if n == 0:
            raise ValueError("an empty batch has nothing to forecast")
        top = self.largest
        if n > top:
            return np.concatenate([self({k: v[i:i + top] for k, v in inputs.items()})
                                   for i in range(0, n, top)])
        size = self.size_for(n)
        return self._run({k: _pad(v, size) for k, v in inputs.items()})[:n]

    def _feed(self, inputs: dict[str, np.ndarray]) -> dict[str, tf.Tensor]:
        return {k: tf.convert_to_tensor(inputs[k], dtype=spec.dtype)
                for k, spec in self.specs.items()}

    def _run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        feed = self._feed(inputs)
        compiled = self._compiled.get(len(inputs["history"]))
        return np.asarray(compiled(feed) if compiled is not None else self._fn(feed))


__all__ = ["DEFAULT_LIMIT", "CompiledLadder", "example_inputs", "ladder_sizes"]
