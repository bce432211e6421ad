"""Model windows as prefetched ``tf.data`` datasets, without materialising them.

The windows come from a :class:`~pipelines.series_table.SeriesTable` (every series in one
float32 vector) and are described by :class:`WindowRuns`; each batch is one numpy gather
(:func:`~pipelines.series_table.gather_windows`) handed to ``tf.data`` by a generator, so the
values are never copied into TensorFlow and memory grows with the data, not with
``window x windows``: a full pass over every window (:func:`window_dataset`) or an endless
balanced draw (:func:`balanced_stream`) needs ``O(series)`` bookkeeping, not one row per window.
The table and window helpers are re-exported here for their importers.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

import numpy as np
import tensorflow as tf

from nearcast.pipelines.series_table import (
    NumpyBatch,
    SeriesTable,
    covariate_inputs,
    cut_index,
    gather_batch,
    gather_windows,
    last_windows,
    window_index,
    window_runs,
)
from nearcast.pipelines.window_runs import WindowRuns, WindowSpec

S = TypeVar("S")
PREFETCH = 2
"""Batches prepared ahead of the consumer. A gather is far cheaper than a training step, so two
are enough; ``AUTOTUNE`` would grow the buffer (measured: tens of MB on M4 Hourly)."""


class _Holder(Generic[S]):
    """A box that can be weakly referenced, whatever it holds."""

    def __init__(self, value: S) -> None:
        self.value = value


def numpy_dataset(
    batches: Callable[[S], Iterator[NumpyBatch]],
    source: S,
    history: int | None,
    horizon: int,
    batch_size: int | None = None,
    extra: dict[str, tf.TensorSpec] | None = None,
) -> tf.data.Dataset:
    """Batches made by a numpy generator, as a prefetched ``tf.data`` dataset.

    The series values stay in their one numpy array: no TensorFlow copy of the data is made,
    and a batch costs one vectorised numpy gather. Measured on M4 Hourly
    (``benchmarks/pipeline_bench.py``): about 4 MB peak against 11 MB for a ``tf.data`` map
    gathering from a TensorFlow copy, at somewhat fewer windows/s (BENCHMARKS.md).

    TensorFlow keeps the generator of a dataset made in eager mode for the life of the process,
    so the generator reaches ``source`` only by weak reference: the returned dataset (and every
    dataset and iterator made from it) holds ``source``, and dropping them frees the data.
    ``batches`` must therefore take what it needs from ``source``, not capture it.

    Args:
        batches: ``batches(source)`` is called once per pass; yields numpy batches.
        source: what the batches are cut from (e.g. the table, the index rows).
        history: history length ``T`` of every batch, or None when it varies by batch.
        horizon: target length ``H``.
        batch_size: fixed batch size, or None when the last batch may be smaller.
        extra: further inputs of each batch (a covariate model's, see
            :func:`pipelines.series_table.gather_batch`) and their specs.

    Returns:
        A dataset of ``({"history": (B, T), "mask": (B, T), ...}, target (B, H))``.
    """
    holder = _Holder(source)
    ref = weakref.ref(holder)

    def generate() -> Iterator[NumpyBatch]:
        held = ref()
        if held is None:  # only reachable by keeping a generator whose dataset is gone
            raise RuntimeError("the dataset behind this iterator was released")
        yield from batches(held.value)

    row = tf.TensorSpec((batch_size, history), tf.float32)
    inputs = {"history": row, "mask": row} | (extra or {})
    signature = (inputs, tf.TensorSpec((batch_size, horizon), tf.float32))
    ds = tf.data.Dataset.from_generator(generate, output_signature=signature).prefetch(PREFETCH)
    options = tf.data.Options()
    options.autotune.enabled = False  # nothing here is tuned: one generator, fixed prefetch
    ds = ds.with_options(options)
    ds._nearcast_source = holder  # the strong reference (see above)
    return ds


def _table_dataset(
    table: SeriesTable,
    spec: WindowSpec,
    row_batches: Callable[[WindowRuns], Iterator[np.ndarray]],
    batch_size: int | None = None,
) -> tf.data.Dataset:
    """The windows of each batch of index rows ``(B, 2)`` that ``row_batches(runs)`` yields.

    The runs of the table's windows are held with the table by the dataset (see
    :func:`numpy_dataset`).
    """

    def batches(source: tuple[SeriesTable, WindowRuns]) -> Iterator[NumpyBatch]:
        held, runs = source
        for index in row_batches(runs):
            yield gather_batch(held, index, spec)

    source = (table, window_runs(table, spec))
    return numpy_dataset(batches, source, spec.input_size, spec.horizon, batch_size,
                         feature_specs(table, spec, batch_size))


def feature_specs(
    table: SeriesTable, spec: WindowSpec, batch_size: int | None = None
) -> dict[str, tf.TensorSpec]:
    """``TensorSpec`` of each covariate input a batch of ``table`` holds (none: empty)."""
    feats = table.features
    if feats is None:
        return {}
    shapes = feats.spec.input_shapes(spec.horizon, window=spec.input_size)
    return {key: tf.TensorSpec((batch_size, *shape), dtype)
            for key, (shape, dtype) in shapes.items()}


def balanced_stream(
    table: SeriesTable, spec: WindowSpec, batch_size: int, draw_batches: int, seed: int
) -> tf.data.Dataset:
    """An endless stream of balanced batches (every series equally likely), seeded.

    Draws ``draw_batches`` batches at a time with :meth:`WindowRuns.balanced` (a uniform series,
    then a uniform window of it), so one pipeline serves a whole training run instead of one
    per epoch.

    Returns:
        A dataset of ``({"history": (B, L), "mask": (B, L)}, target (B, H))``.
    """

    def draws(runs: WindowRuns) -> Iterator[np.ndarray]:
        rng = np.random.default_rng(seed)
        while True:
            picks = runs.balanced(draw_batches * batch_size, rng)
            yield from picks.reshape(draw_batches, batch_size, 2)

    return _table_dataset(table, spec, draws, batch_size)


def window_dataset(
    table: SeriesTable,
    spec: WindowSpec,
    batch_size: int,
    *,
    shuffle_buffer: int = 0,
    seed: int | None = None,
) -> tf.data.Dataset:
    """Every valid window exactly once, decoded lazily from :class:`WindowRuns`.

    Memory is the table plus ``O(series)`` run bookkeeping, the shuffle block and the
    prefetched batches; no per-window index is ever built.

    Args:
        table: the series.
        spec: window geometry.
        batch_size: windows per batch.
        shuffle_buffer: when positive, shuffle in blocks of about this many consecutive window
            positions (rounded up to whole batches): the blocks come in a random order and each
            is permuted (deterministic for a given ``seed``); 0 keeps :func:`window_index`
            order. Only the last batch may be smaller.
        seed: shuffle seed.

    Returns:
        A dataset of ``({"history": (B, L), "mask": (B, L)}, target (B, H))``.
    """

    def row_batches(runs: WindowRuns) -> Iterator[np.ndarray]:
        for positions in _position_batches(runs.total, batch_size, shuffle_buffer, seed):
            yield runs.rows(positions)

    return _table_dataset(table, spec, row_batches)


def _position_batches(
    total: int, batch_size: int, shuffle_buffer: int, seed: int | None
) -> Iterator[np.ndarray]:
    """Window positions ``0..total-1`` in batches, in order or block-shuffled (see above)."""
    if shuffle_buffer <= 0:
        for lo in range(0, total, batch_size):
            yield np.arange(lo, min(lo + batch_size, total), dtype=np.int64)
        return
    rng = np.random.default_rng(seed)
    block = -(-shuffle_buffer // batch_size) * batch_size
    n_full = total // block
    starts = [int(b) * block for b in rng.permutation(n_full)]
    if total % block:  # the one partial block goes last, so only the last batch is short
        starts.append(n_full * block)
    for lo in starts:
        positions = lo + rng.permutation(min(block, total - lo)).astype(np.int64)
        for i in range(0, len(positions), batch_size):
            yield positions[i : i + batch_size]


__all__ = [
    "PREFETCH",
    "NumpyBatch",
    "SeriesTable",
    "WindowRuns",
    "WindowSpec",
    "balanced_stream",
    "covariate_inputs",
    "cut_index",
    "feature_specs",
    "gather_batch",
    "gather_windows",
    "last_windows",
    "numpy_dataset",
    "window_dataset",
    "window_index",
    "window_runs",
]
