"""Model windows cut from regular series with tf.data, without materialising them.

All series are concatenated into one float32 vector; a window is just the index of the end of
its history (exclusive) plus the start of its series. Batches gather their values on the fly,
so memory grows with the data (one int64 pair per window index), not with ``window x windows``.
Histories shorter than ``input_size`` are padded at the start with zeros, in whole folds, and
flagged by a mask (1.0 real, 0.0 padding): the same rule :mod:`pipelines.padding` applies to
serving requests.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import tensorflow as tf

from pipelines.schema import DS, UNIQUE_ID, Y


@dataclass(frozen=True)
class WindowSpec:
    """Geometry of model windows.

    Attributes:
        input_size: history points fed to the model (``L``).
        horizon: target points after the history (``H``).
        stride: distance between consecutive window ends of one series.
        fold: padding is added in multiples of this many points (the model folds
            ``fold`` consecutive points into one timestep).
        min_history: shortest real history a window may have (multiple of ``fold``).
    """

    input_size: int
    horizon: int
    stride: int = 1
    fold: int = 1
    min_history: int | None = None

    def __post_init__(self) -> None:
        """Reject inconsistent geometry early, naming the field."""
        if self.input_size <= 0 or self.horizon <= 0 or self.stride <= 0 or self.fold <= 0:
            raise ValueError(f"window sizes must be positive, got {self}")
        if self.input_size % self.fold:
            raise ValueError(f"input_size {self.input_size} is not a multiple of fold {self.fold}")
        shortest = self.shortest_history
        if shortest % self.fold or not 0 < shortest <= self.input_size:
            raise ValueError(
                f"min_history {shortest} must be a multiple of fold {self.fold} "
                f"in (0, {self.input_size}]"
            )

    @property
    def shortest_history(self) -> int:
        """Shortest allowed real history (defaults to the full input window)."""
        return self.input_size if self.min_history is None else self.min_history


@dataclass(frozen=True)
class SeriesTable:
    """Regular series concatenated end to end.

    Attributes:
        ids: series keys, shape ``(S,)``.
        values: all values, float32, shape ``(N,)``.
        offsets: start of each series in ``values`` plus the total, shape ``(S + 1,)``.
        last_ds: last timestamp of each series, shape ``(S,)``.
    """

    ids: np.ndarray
    values: np.ndarray
    offsets: np.ndarray
    last_ds: np.ndarray

    @classmethod
    def from_long(cls, df: pd.DataFrame) -> SeriesTable:
        """Build from a long frame of regular, gap-free series sorted by id and time.

        Raises:
            ValueError: if ``y`` holds NaN or inf, naming the series and timestamps.
        """
        frame = df.sort_values([UNIQUE_ID, DS], kind="stable")
        values = frame[Y].to_numpy(dtype=np.float32)
        bad = ~np.isfinite(values)
        if bad.any():
            rows = frame.loc[bad, [UNIQUE_ID, DS]].head(5).to_records(index=False).tolist()
            raise ValueError(
                f"{int(bad.sum())} non-finite y values reach windowing (fill gaps first); "
                f"first (series, ds): {rows}"
            )
        ids, counts = np.unique(frame[UNIQUE_ID].to_numpy(dtype=str), return_counts=True)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        last_ds = frame[DS].to_numpy()[offsets[1:] - 1]
        return cls(ids=ids, values=values, offsets=offsets, last_ds=last_ds)

    @property
    def lengths(self) -> np.ndarray:
        """Points per series, shape ``(S,)``."""
        return np.asarray(np.diff(self.offsets))

    def series(self, i: int) -> np.ndarray:
        """Values of series ``i``, shape ``(n_i,)``."""
        return self.values[self.offsets[i] : self.offsets[i + 1]]


def _series_ends(length: int, spec: WindowSpec) -> np.ndarray:
    """Valid local history ends of one series, newest last, shape ``(n_windows,)``."""
    newest = length - spec.horizon
    ends = np.arange(newest, spec.shortest_history - 1, -spec.stride, dtype=np.int64)[::-1]
    short = ends < spec.input_size
    keep = ~short | ((spec.input_size - ends) % spec.fold == 0)
    return np.asarray(ends[keep])


def window_index(table: SeriesTable, spec: WindowSpec) -> tuple[np.ndarray, np.ndarray]:
    """Index every valid window of every series.

    Returns:
        ``(index, counts)``: ``index`` has shape ``(n_windows, 2)`` holding the global history
        end and the global series start of each window, grouped by series; ``counts`` has
        shape ``(S,)`` with the number of windows per series (0 for too-short series).
    """
    parts, counts = [], []
    for i, length in enumerate(table.lengths):
        ends = _series_ends(int(length), spec)
        start = table.offsets[i]
        parts.append(np.stack([ends + start, np.full_like(ends, start)], axis=1))
        counts.append(len(ends))
    index = np.concatenate(parts) if parts else np.zeros((0, 2), np.int64)
    return index, np.asarray(counts, dtype=np.int64)


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
    usable = np.flatnonzero(counts)
    if usable.size == 0:
        raise ValueError("no series is long enough for one window")
    first = np.concatenate([[0], np.cumsum(counts)])[:-1]
    series = rng.choice(usable, size=n)
    pick = first[series] + (rng.random(n) * counts[series]).astype(np.int64)
    return np.asarray(index[pick])


def gather_windows(
    values: tf.Tensor, index: tf.Tensor, spec: WindowSpec
) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
    """Materialise one batch of windows.

    Args:
        values: all series values, shape ``(N,)``.
        index: rows of :func:`window_index`, shape ``(B, 2)``.
        spec: window geometry.

    Returns:
        ``({"history": (B, L), "mask": (B, L)}, target (B, H))``; padded history positions
        hold 0.0 and mask 0.0.
    """
    end, start = index[:, :1], index[:, 1:]
    hist_idx = end - spec.input_size + tf.range(spec.input_size, dtype=tf.int64)[None, :]
    real = hist_idx >= start
    history = tf.where(real, tf.gather(values, tf.maximum(hist_idx, start)), 0.0)
    target = tf.gather(values, end + tf.range(spec.horizon, dtype=tf.int64)[None, :])
    return {"history": history, "mask": tf.cast(real, tf.float32)}, target


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
        A dataset of ``({"history": (B, L), "mask": (B, L)}, target (B, H))``.
    """
    values = tf.constant(table.values)
    ds = tf.data.Dataset.from_tensor_slices(index.astype(np.int64)).batch(batch_size)
    ds = ds.map(lambda ix: gather_windows(values, ix, spec), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)


def last_windows(table: SeriesTable, spec: WindowSpec) -> np.ndarray:
    """Index of the newest window of each series whose target is the series' last ``H`` points.

    Returns:
        Shape ``(S', 2)`` for the ``S'`` series long enough for one window.
    """
    index, counts = window_index(table, spec)
    lasts = np.cumsum(counts)[counts > 0] - 1
    return np.asarray(index[lasts])


__all__ = [
    "SeriesTable",
    "WindowSpec",
    "balanced_sample",
    "gather_windows",
    "last_windows",
    "make_dataset",
    "window_index",
]
