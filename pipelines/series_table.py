"""Regular series concatenated end to end, and the windows cut from them (numpy only).

All series are concatenated into one float32 vector; a window is just the index of the end of
its history (exclusive) plus the start of its series. The windows of one series form at most
two arithmetic runs of history ends (:class:`~pipelines.window_runs.WindowRuns`), so they are
counted, enumerated and sampled with ``O(series)`` bookkeeping, and a batch of them is one numpy
gather (:func:`gather_windows`). Histories shorter than ``input_size`` are padded at the start
with zeros, in whole folds, and flagged by a mask (1.0 real, 0.0 padding): the same rule
:mod:`pipelines.padding` applies to serving requests. :mod:`pipelines.windows` feeds the
batches to ``tf.data``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from nearcast.pipelines.features import FeatureSpec
from nearcast.pipelines.padding import usable_length
from nearcast.pipelines.schema import DS, UNIQUE_ID, Y
from nearcast.pipelines.window_runs import WindowRuns, WindowSpec

__all__ = ["FeatureArrays", "NumpyBatch", "SeriesTable", "covariate_inputs", "cut_index",
           "gather_batch", "gather_inputs", "gather_windows", "last_windows", "window_index",
           "window_runs"]

NumpyBatch = tuple[dict[str, np.ndarray], np.ndarray]
"""``({"history": (B, T), "mask": (B, T)}, target (B, H))`` as numpy arrays; a covariate
model's batches also hold ``past``, ``future``, ``series`` and ``static`` (see
:func:`gather_batch`)."""


@dataclass(frozen=True)
class FeatureArrays:
    """A table's covariate inputs (see :class:`pipelines.features.FeatureSpec`).

    Attributes:
        time: time matrix aligned with the values, shape ``(N, C)``.
        future: positions of the columns known over the horizon.
        static: static matrix per series, shape ``(S, D)``.
        codes: series embedding codes, shape ``(S,)`` int32 (0 = the shared vector).
        spec: the feature spec they were made by.
    """

    time: np.ndarray
    future: np.ndarray
    static: np.ndarray
    codes: np.ndarray
    spec: FeatureSpec

    @cached_property
    def keys(self) -> tuple[str, ...]:
        """The model inputs a batch holds (:meth:`FeatureSpec.input_widths`)."""
        return tuple(self.spec.input_widths())


@dataclass(frozen=True)
class SeriesTable:
    """Regular series concatenated end to end.

    Attributes:
        ids: series keys, shape ``(S,)``.
        values: all values, float32, shape ``(N,)``.
        offsets: start of each series in ``values`` plus the total, shape ``(S + 1,)``.
    """

    ids: np.ndarray
    values: np.ndarray
    offsets: np.ndarray
    features: FeatureArrays | None = None

    @classmethod
    def from_long(cls, df: pd.DataFrame, features: FeatureSpec | None = None) -> SeriesTable:
        """Build from a long frame ``(unique_id, ds, y, ...)`` of regular, gap-free series.

        Rows may come in any order; columns other than ``unique_id``, ``ds`` and ``y`` are
        ignored unless ``features`` (an active spec) says how to read them.

        Raises:
            ValueError: if ``y`` holds NaN or inf (naming the series and timestamps).
        """
        frame = df.sort_values([UNIQUE_ID, DS], kind="stable")
        values = frame[Y].to_numpy(dtype=np.float32)
        bad = ~np.isfinite(values)
        if bad.any():
            rows = frame.loc[bad, [UNIQUE_ID, DS]].head(5).to_records(index=False).tolist()
            raise ValueError(
                f"{int(bad.sum())} non-finite {Y} values reach windowing (fill gaps first); "
                f"first (series, ds): {rows}"
            )
        ids, counts = np.unique(frame[UNIQUE_ID].to_numpy(dtype=str), return_counts=True)
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        if features is None or not features.active:
            return cls(ids, values, offsets)
        arrays = FeatureArrays(features.time_matrix(frame),
                               np.asarray(features.future_columns(), np.int64),
                               features.statics_of(frame, list(ids)),
                               features.series_codes(list(ids))[0], features)
        return cls(ids, values, offsets, arrays)

    @property
    def lengths(self) -> np.ndarray:
        """Points per series, shape ``(S,)``."""
        return np.asarray(np.diff(self.offsets))

    def series(self, i: int) -> np.ndarray:
        """Values of series ``i``, shape ``(n_i,)``."""
        return self.values[self.offsets[i] : self.offsets[i + 1]]


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


def gather_windows(values: np.ndarray, index: np.ndarray, spec: WindowSpec) -> NumpyBatch:
    """Materialise one batch of windows (numpy; the one gather every dataset here uses).

    Args:
        values: all series values, float32, shape ``(N,)``.
        index: rows of :func:`window_index`, shape ``(B, 2)``.
        spec: window geometry.

    Returns:
        ``({"history": (B, L), "mask": (B, L)}, target (B, H))``, float32; padded history
        positions hold 0.0 and mask 0.0.
    """
    values, index = np.asarray(values), np.asarray(index, dtype=np.int64)
    target = values[index[:, :1] + np.arange(spec.horizon, dtype=np.int64)]
    return _histories(values, index, spec), target.astype(np.float32, copy=False)


def _histories(values: np.ndarray, index: np.ndarray, spec: WindowSpec) -> dict[str, np.ndarray]:
    """The ``history`` and ``mask`` inputs of :func:`gather_windows`, without the target."""
    values, index = np.asarray(values), np.asarray(index, dtype=np.int64)
    end, start = index[:, :1], index[:, 1:]
    hist_idx = end - spec.input_size + np.arange(spec.input_size, dtype=np.int64)
    padding = hist_idx < start
    history = values[np.maximum(hist_idx, start, out=hist_idx)].astype(np.float32, copy=False)
    history[padding] = 0.0
    return {"history": history, "mask": (~padding).astype(np.float32)}


def gather_batch(table: SeriesTable, index: np.ndarray, spec: WindowSpec) -> NumpyBatch:
    """:func:`gather_windows` plus the table's covariate inputs, if it has any.

    ``past`` ``(B, L, C)`` is the time matrix over each input window (zeros where padded),
    ``future`` ``(B, H, F)`` its future-known columns over the horizon, ``series`` ``(B,)``
    the embedding codes and ``static`` ``(B, D)`` the static inputs. Nothing after a window's
    end enters except the future-known columns.
    """
    inputs, target = gather_windows(table.values, index, spec)
    return inputs | covariate_inputs(table, index, spec), target


def gather_inputs(table: SeriesTable, index: np.ndarray, spec: WindowSpec
                  ) -> dict[str, np.ndarray]:
    """The model inputs of :func:`gather_batch` without the target.

    A window may then end less than a horizon before its series' end (a backtest's last folds).
    """
    return _histories(table.values, index, spec) | covariate_inputs(table, index, spec)


def covariate_inputs(table: SeriesTable, index: np.ndarray, spec: WindowSpec
                     ) -> dict[str, np.ndarray]:
    """The covariate inputs of the windows ``index`` (rows ``(end, start)``) of ``table``.

    Future rows past a series' last row repeat its last row (a backtest fold at the end of
    the data with fewer steps than the model's horizon).
    """
    feats = table.features
    if feats is None:
        return {}
    index = np.asarray(index, dtype=np.int64)
    end, start = index[:, :1], index[:, 1:]
    hist_idx = end - spec.input_size + np.arange(spec.input_size, dtype=np.int64)
    past = feats.time[np.maximum(hist_idx, start)]
    past[hist_idx < start] = 0.0
    series = np.searchsorted(table.offsets, index[:, 1], side="right") - 1
    last = table.offsets[series + 1][:, None] - 1
    horizon_idx = np.minimum(end + np.arange(spec.horizon, dtype=np.int64), last)
    out = {"past": past, "static": feats.static[series], "series": feats.codes[series]}
    if "future" in feats.keys:
        out["future"] = feats.time[horizon_idx][:, :, feats.future]
    return {key: out[key] for key in feats.keys}


def cut_index(table: SeriesTable, ends: np.ndarray, spec: WindowSpec) -> np.ndarray:
    """Index rows of windows ending at the global positions ``ends``, one per series.

    The history is cut or padded as :func:`pipelines.padding.fit_histories` does (the newest
    usable points, whole folds when padded), so these windows are the served ones.
    """
    starts = table.offsets[:-1]
    keep = np.asarray([usable_length(int(n), spec) for n in np.asarray(ends) - starts])
    return np.stack([ends, np.asarray(ends) - keep], axis=1).astype(np.int64)


def last_windows(table: SeriesTable, spec: WindowSpec, count: int = 1) -> np.ndarray:
    """Index of the newest ``count`` windows of each series, one horizon apart.

    The newest window's target is the series' last ``H`` points; each earlier one ends ``H``
    rows (rounded down to whole strides) before the next. A series with fewer full-history
    windows gets fewer.

    Returns:
        Shape ``(n, 2)``, grouped by series, newest first within a series (``n = S'`` for
        ``count=1``: the ``S'`` series long enough for one window).
    """
    runs = window_runs(table, spec)
    counts = runs.counts
    newest = np.cumsum(counts) - 1
    gap = max(1, spec.horizon // spec.stride)
    positions = newest[:, None] - gap * np.arange(count, dtype=np.int64)[None, :]
    full_first, n_full = runs.run_offsets[1::2], runs.count[1::2]
    ok = (n_full[:, None] > 0) & (positions >= full_first[:, None])
    ok[:, 0] = counts > 0
    return runs.rows(positions[ok])
