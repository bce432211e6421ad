"""Model windows cut from regular series with tf.data, without materialising them.

All series are concatenated into one float32 vector; a window is just the index of the end of
its history (exclusive) plus the start of its series. Batches gather their values on the fly,
so memory grows with the data, not with ``window x windows``. The windows of one series form at
most two arithmetic runs of history ends (:class:`WindowRuns`), so a full pass over every window
(:func:`window_dataset`) or a balanced draw needs ``O(series)`` bookkeeping, not one row per
window. Histories shorter than ``input_size`` are padded at the start with zeros, in whole
folds, and flagged by a mask (1.0 real, 0.0 padding): the same rule :mod:`pipelines.padding`
applies to serving requests.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import tensorflow as tf

from pipelines.schema import DS, UNIQUE_ID, Y
from pipelines.window_runs import WindowRuns, WindowSpec, balanced_positions

Batch = tuple[dict[str, tf.Tensor], tf.Tensor]
"""``({"history": (B, T), "mask": (B, T)}, target (B, H))``."""
PREFETCH = 2
"""Batches prepared ahead of the consumer. A gather is far cheaper than a training step, so two
are enough; ``AUTOTUNE`` would grow the buffer (measured: tens of MB on M4 Hourly)."""
_CHUNK = 1 << 18


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
    values: tf.Tensor, index: tf.Tensor, spec: WindowSpec, covariates: tf.Tensor | None = None
) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
    """Materialise one batch of windows.

    Args:
        values: all series values, shape ``(N,)``.
        index: rows of :func:`window_index`, shape ``(B, 2)``.
        spec: window geometry.
        covariates: optional covariates aligned with ``values``, shape ``(N, C)``.

    Returns:
        ``({"history": (B, L), "mask": (B, L)}, target (B, H))``; padded history positions
        hold 0.0 and mask 0.0. With covariates the inputs also hold ``"covariates"``,
        shape ``(B, L + H, C)``: the rows of the history then of the target period (for
        covariates known in advance; zeros where the history is padded).
    """
    end, start = index[:, :1], index[:, 1:]
    hist_idx = end - spec.input_size + tf.range(spec.input_size, dtype=tf.int64)[None, :]
    real = hist_idx >= start
    history = tf.where(real, tf.gather(values, tf.maximum(hist_idx, start)), 0.0)
    target = tf.gather(values, end + tf.range(spec.horizon, dtype=tf.int64)[None, :])
    inputs = {"history": history, "mask": tf.cast(real, tf.float32)}
    if covariates is not None:
        span = spec.input_size + spec.horizon
        rows = end - spec.input_size + tf.range(span, dtype=tf.int64)[None, :]
        known = (rows >= start)[:, :, None]
        inputs["covariates"] = tf.where(known, tf.gather(covariates, tf.maximum(rows, start)), 0.0)
    return inputs, target


def as_tensor(values: np.ndarray) -> tf.Variable:
    """One TensorFlow copy of ``values`` for dataset functions (never written after), in chunks.

    ``tf.constant`` of a numpy array holds two copies of it, and a ``tf.data`` iterator copies
    a captured constant once more when it starts; a variable filled chunk by chunk holds one
    copy and reaches dataset functions by reference (measured on 40 MB of float32: 1.1x the
    array at peak instead of 3x). Call it outside ``tf.function`` and distribution scopes.

    Args:
        values: array of shape ``(N, ...)``.

    Returns:
        A non-trainable variable of the same shape and dtype.
    """
    var = tf.Variable(tf.zeros(values.shape, values.dtype), trainable=False)
    for i in range(0, len(values), _CHUNK):
        part = values[i : i + _CHUNK]
        var.scatter_update(tf.IndexedSlices(part, tf.range(i, i + len(part))))
    return var


def _gather_fn(table: SeriesTable, spec: WindowSpec) -> Callable[[tf.Tensor], Batch]:
    """``index (B, 2) -> batch`` over the table's values (and covariates), for ``map``."""
    values = as_tensor(table.values)
    cov = None if table.covariates is None else as_tensor(table.covariates)
    return lambda ix: gather_windows(values, ix, spec, cov)


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
    gather = _gather_fn(table, spec)
    ds = tf.data.Dataset.from_tensor_slices(index.astype(np.int64)).batch(batch_size)
    return ds.map(gather, num_parallel_calls=tf.data.AUTOTUNE).prefetch(PREFETCH)


def balanced_stream(
    table: SeriesTable, spec: WindowSpec, batch_size: int, draw_batches: int, seed: int
) -> tf.data.Dataset:
    """An endless stream of balanced batches (every series equally likely), seeded.

    Draws ``draw_batches`` batches at a time with :func:`balanced_sample`, so one pipeline (and
    one copy of the values) serves a whole training run instead of one per epoch.

    Returns:
        A dataset of ``({"history": (B, L), "mask": (B, L)}, target (B, H))``.
    """
    index, counts = window_index(table, spec)

    def draws() -> Iterator[np.ndarray]:
        rng = np.random.default_rng(seed)
        while True:
            picks = balanced_sample(index, counts, draw_batches * batch_size, rng)
            yield from picks.reshape(draw_batches, batch_size, 2)

    signature = tf.TensorSpec((batch_size, 2), tf.int64)
    ds = tf.data.Dataset.from_generator(draws, output_signature=signature)
    return ds.map(_gather_fn(table, spec)).prefetch(PREFETCH)


def window_dataset(
    table: SeriesTable,
    spec: WindowSpec,
    batch_size: int,
    *,
    shuffle_buffer: int = 0,
    seed: int | None = None,
) -> tf.data.Dataset:
    """Every valid window exactly once, decoded lazily from :class:`WindowRuns`.

    Memory is the table plus ``O(series)`` run bookkeeping and the prefetched batches; no
    per-window index is ever built.

    Args:
        table: the series.
        spec: window geometry.
        batch_size: windows per batch.
        shuffle_buffer: when positive, shuffle window positions through a buffer this large
            (deterministic for a given ``seed``); 0 keeps :func:`window_index` order.
        seed: shuffle seed.

    Returns:
        A dataset of ``({"history": (B, L), "mask": (B, L)}, target (B, H))``.
    """
    runs = window_runs(table, spec)
    offsets, first, step, start = (
        tf.constant(a, tf.int64) for a in (runs.run_offsets, runs.first, runs.step, runs.start)
    )
    gather = _gather_fn(table, spec)

    def batch(positions: tf.Tensor) -> Batch:
        run = tf.searchsorted(offsets, positions, side="right", out_type=tf.int64) - 1
        end = tf.gather(first, run) + tf.gather(step, run) * (positions - tf.gather(offsets, run))
        return gather(tf.stack([end, tf.gather(start, run)], axis=1))

    ds = tf.data.Dataset.range(runs.total)
    if shuffle_buffer > 0:
        ds = ds.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=False)
    ds = ds.batch(batch_size).map(batch, num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(PREFETCH)


def last_windows(table: SeriesTable, spec: WindowSpec) -> np.ndarray:
    """Index of the newest window of each series whose target is the series' last ``H`` points.

    Returns:
        Shape ``(S', 2)`` for the ``S'`` series long enough for one window.
    """
    runs = window_runs(table, spec)
    counts = runs.counts
    return runs.rows(np.cumsum(counts)[counts > 0] - 1)


__all__ = [
    "Batch",
    "PREFETCH",
    "SeriesTable",
    "WindowRuns",
    "WindowSpec",
    "as_tensor",
    "balanced_sample",
    "balanced_stream",
    "gather_windows",
    "last_windows",
    "make_dataset",
    "window_dataset",
    "window_index",
    "window_runs",
]
