"""Model windows cut from regular series with tf.data, without materialising them.

All series are concatenated into one float32 vector; a window is just the index of the end of
its history (exclusive) plus the start of its series. Batches gather their values on the fly
(one numpy gather per batch, handed to ``tf.data`` by a generator: the values are never copied
into TensorFlow), so memory grows with the data, not with ``window x windows``. The windows of
one series form at most two arithmetic runs of history ends (:class:`WindowRuns`), so a full
pass over every window (:func:`window_dataset`) or a balanced draw needs ``O(series)``
bookkeeping, not one row per window. Histories shorter than ``input_size`` are padded at the
start with zeros, in whole folds, and flagged by a mask (1.0 real, 0.0 padding): the same rule
:mod:`pipelines.padding` applies to serving requests.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import pandas as pd
import tensorflow as tf

from nearcast.pipelines.schema import DS, UNIQUE_ID, Y
from nearcast.pipelines.window_runs import WindowRuns, WindowSpec, balanced_positions

NumpyBatch = tuple[dict[str, np.ndarray], np.ndarray]
"""``({"history": (B, T), "mask": (B, T)}, target (B, H))`` as numpy arrays."""
S = TypeVar("S")
R = TypeVar("R")
PREFETCH = 2
"""Batches prepared ahead of the consumer. A gather is far cheaper than a training step, so two
are enough; ``AUTOTUNE`` would grow the buffer (measured: tens of MB on M4 Hourly)."""


@dataclass(frozen=True)
class SeriesTable:
    """Regular series concatenated end to end.

    Attributes:
        ids: series keys, shape ``(S,)``.
        values: all values, float32, shape ``(N,)``.
        offsets: start of each series in ``values`` plus the total, shape ``(S + 1,)``.
        last_ds: last timestamp of each series, shape ``(S,)``.
        covariates: optional covariate values aligned with ``values``, float32, shape
            ``(N, C)``; windows then also carry them (see :func:`gather_windows`).
        covariate_names: the ``C`` covariate column names.
    """

    ids: np.ndarray
    values: np.ndarray
    offsets: np.ndarray
    last_ds: np.ndarray
    covariates: np.ndarray | None = None
    covariate_names: tuple[str, ...] = ()

    @classmethod
    def from_long(cls, df: pd.DataFrame, covariates: Sequence[str] = ()) -> SeriesTable:
        """Build from a long frame of regular, gap-free series (any row order).

        Args:
            df: long frame ``(unique_id, ds, y, ...)``.
            covariates: numeric columns to carry alongside ``y`` (default: none; other
                columns are ignored).

        Raises:
            ValueError: if ``y`` or a covariate holds NaN or inf (naming the column, the series
                and timestamps), or a covariate column is missing.
        """
        missing = [c for c in covariates if c not in df.columns]
        if missing:
            raise ValueError(f"covariate column(s) {missing} missing; present: {list(df.columns)}")
        frame = df.sort_values([UNIQUE_ID, DS], kind="stable")
        values = _finite_column(frame, Y)
        extra = [_finite_column(frame, c) for c in covariates]
        ids, counts = np.unique(frame[UNIQUE_ID].to_numpy(dtype=str), return_counts=True)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        last_ds = frame[DS].to_numpy()[offsets[1:] - 1]
        cov = np.stack(extra, axis=1) if extra else None
        return cls(ids, values, offsets, last_ds, cov, tuple(covariates))

    @property
    def lengths(self) -> np.ndarray:
        """Points per series, shape ``(S,)``."""
        return np.asarray(np.diff(self.offsets))

    def series(self, i: int) -> np.ndarray:
        """Values of series ``i``, shape ``(n_i,)``."""
        return self.values[self.offsets[i] : self.offsets[i + 1]]


def _finite_column(frame: pd.DataFrame, column: str) -> np.ndarray:
    """One column as float32, shape ``(N,)``; non-finite values are named and rejected."""
    values = frame[column].to_numpy(dtype=np.float32)
    bad = ~np.isfinite(values)
    if bad.any():
        rows = frame.loc[bad, [UNIQUE_ID, DS]].head(5).to_records(index=False).tolist()
        raise ValueError(
            f"{int(bad.sum())} non-finite {column} values reach windowing (fill gaps first); "
            f"first (series, ds): {rows}"
        )
    return values


def window_runs(table: SeriesTable, spec: WindowSpec) -> WindowRuns:
    """Describe every valid window of every series as runs (see :class:`WindowRuns`)."""
    return WindowRuns.from_offsets(table.offsets, spec)


def window_index(table: SeriesTable, spec: WindowSpec) -> tuple[np.ndarray, np.ndarray]:
    """Index every valid window of every series.

    Returns:
        ``(index, counts)``: ``index`` has shape ``(n_windows, 2)`` holding the global history
        end and the global series start of each window, grouped by series, oldest first;
        ``counts`` has shape ``(S,)`` with the number of windows per series (0 for too-short
        series).
    """
    runs = window_runs(table, spec)
    return runs.rows(np.arange(runs.total, dtype=np.int64)), runs.counts


def balanced_sample(
    index: np.ndarray, counts: np.ndarray, n: int, rng: np.random.Generator
) -> np.ndarray:
    """Draw ``n`` windows so every series is equally likely, whatever its length.

    Args:
        index: output of :func:`window_index`, shape ``(n_windows, 2)``.
        counts: windows per series, shape ``(S,)``.
        n: windows to draw.
        rng: source of randomness (seeded by the caller for determinism).

    Returns:
        Selected rows of ``index``, shape ``(n, 2)``.
    """
    return np.asarray(index[balanced_positions(counts, n, rng)])


def gather_windows(
    values: np.ndarray, index: np.ndarray, spec: WindowSpec, covariates: np.ndarray | None = None
) -> NumpyBatch:
    """Materialise one batch of windows (numpy; the one gather every dataset here uses).

    Args:
        values: all series values, float32, shape ``(N,)``.
        index: rows of :func:`window_index`, shape ``(B, 2)``.
        spec: window geometry.
        covariates: optional covariates aligned with ``values``, shape ``(N, C)``.

    Returns:
        ``({"history": (B, L), "mask": (B, L)}, target (B, H))``, float32; padded history
        positions hold 0.0 and mask 0.0. With covariates the inputs also hold ``"covariates"``,
        shape ``(B, L + H, C)``: the rows of the history then of the target period (for
        covariates known in advance; zeros where the history is padded).
    """
    values, index = np.asarray(values), np.asarray(index, dtype=np.int64)
    end, start = index[:, :1], index[:, 1:]
    hist_idx = end - spec.input_size + np.arange(spec.input_size, dtype=np.int64)
    padding = hist_idx < start
    history = values[np.maximum(hist_idx, start, out=hist_idx)].astype(np.float32, copy=False)
    history[padding] = 0.0
    target = values[end + np.arange(spec.horizon, dtype=np.int64)].astype(np.float32, copy=False)
    inputs = {"history": history, "mask": (~padding).astype(np.float32)}
    if covariates is not None:
        rows = end - spec.input_size + np.arange(spec.input_size + spec.horizon, dtype=np.int64)
        unknown = rows < start
        cov = np.asarray(covariates)[np.maximum(rows, start, out=rows)]
        cov[unknown] = 0.0
        inputs["covariates"] = cov.astype(np.float32, copy=False)
    return inputs, target


class _Holder(Generic[S]):
    """A box that can be weakly referenced, whatever it holds."""

    def __init__(self, value: S) -> None:
        self.value = value


def numpy_dataset(
    batches: Callable[[S], Iterator[NumpyBatch]],
    source: S,
    history: int | None,
    horizon: int,
    n_covariates: int = 0,
    batch_size: int | None = None,
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
        n_covariates: ``C`` when the batches carry ``"covariates"``.
        batch_size: fixed batch size, or None when the last batch may be smaller.

    Returns:
        A dataset of ``({"history": (B, T), "mask": (B, T)[, "covariates"]}, target (B, H))``.
    """
    holder = _Holder(source)
    ref = weakref.ref(holder)

    def generate() -> Iterator[NumpyBatch]:
        held = ref()
        if held is None:  # only reachable by keeping a generator whose dataset is gone
            raise RuntimeError("the dataset behind this iterator was released")
        yield from batches(held.value)

    row = tf.TensorSpec((batch_size, history), tf.float32)
    inputs = {"history": row, "mask": row}
    if n_covariates:
        span = None if history is None else history + horizon
        inputs["covariates"] = tf.TensorSpec((batch_size, span, n_covariates), tf.float32)
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
    rows: R,
    row_batches: Callable[[R], Iterator[np.ndarray]],
    batch_size: int | None = None,
) -> tf.data.Dataset:
    """The windows of each batch of index rows ``(B, 2)`` that ``row_batches(rows)`` yields.

    ``rows`` is whatever the index rows come from (an index array, :class:`WindowRuns`); it is
    held with the table by the dataset (see :func:`numpy_dataset`).
    """

    def batches(source: tuple[SeriesTable, R]) -> Iterator[NumpyBatch]:
        held, where = source
        for index in row_batches(where):
            yield gather_windows(held.values, index, spec, held.covariates)

    n_cov = 0 if table.covariates is None else table.covariates.shape[1]
    return numpy_dataset(batches, (table, rows), spec.input_size, spec.horizon, n_cov, batch_size)


def make_dataset(
    table: SeriesTable,
    index: np.ndarray,
    spec: WindowSpec,
    batch_size: int,
) -> tf.data.Dataset:
    """Batched, prefetched windows for the given index rows (in the given order).

    Args:
        table: the series.
        index: window rows, shape ``(n, 2)`` (e.g. from :func:`balanced_sample`).
        spec: window geometry.
        batch_size: windows per batch.

    Returns:
        A dataset of ``({"history": (B, L), "mask": (B, L)}, target (B, H))`` (plus
        ``"covariates"`` when the table has them).
    """

    def slices(rows: np.ndarray) -> Iterator[np.ndarray]:
        return (rows[i : i + batch_size] for i in range(0, len(rows), batch_size))

    return _table_dataset(table, spec, np.asarray(index, dtype=np.int64), slices)


def balanced_stream(
    table: SeriesTable, spec: WindowSpec, batch_size: int, draw_batches: int, seed: int
) -> tf.data.Dataset:
    """An endless stream of balanced batches (every series equally likely), seeded.

    Draws ``draw_batches`` batches at a time with :meth:`WindowRuns.balanced` (the same draws
    as :func:`balanced_sample`, without the per-window index), so one pipeline serves a whole
    training run instead of one per epoch.

    Returns:
        A dataset of ``({"history": (B, L), "mask": (B, L)}, target (B, H))``.
    """

    def draws(runs: WindowRuns) -> Iterator[np.ndarray]:
        rng = np.random.default_rng(seed)
        while True:
            picks = runs.balanced(draw_batches * batch_size, rng)
            yield from picks.reshape(draw_batches, batch_size, 2)

    return _table_dataset(table, spec, window_runs(table, spec), draws, batch_size)


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

    return _table_dataset(table, spec, window_runs(table, spec), row_batches)


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


def last_windows(table: SeriesTable, spec: WindowSpec) -> np.ndarray:
    """Index of the newest window of each series whose target is the series' last ``H`` points.

    Returns:
        Shape ``(S', 2)`` for the ``S'`` series long enough for one window.
    """
    runs = window_runs(table, spec)
    counts = runs.counts
    return runs.rows(np.cumsum(counts)[counts > 0] - 1)


__all__ = [
    "NumpyBatch",
    "PREFETCH",
    "SeriesTable",
    "WindowRuns",
    "WindowSpec",
    "numpy_dataset",
    "balanced_sample",
    "balanced_stream",
    "gather_windows",
    "last_windows",
    "make_dataset",
    "window_dataset",
    "window_index",
    "window_runs",
]
