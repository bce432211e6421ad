"""Window geometry and where every window lies, as ``O(series)`` arithmetic runs (numpy only).

A window of a series is the end of its history (exclusive); its target is the ``horizon``
points from there. The valid ends of one series form at most two arithmetic runs (histories
padded in whole folds, then full histories), so the windows of any number of series are
described, counted, enumerated and sampled without one row per window.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


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
class WindowRuns:
    """Every valid window as arithmetic runs of global history ends, ``O(series)`` memory.

    Series ``s`` owns runs ``2s`` (padded histories, ends below ``input_size``) and ``2s + 1``
    (full histories). Run ``r`` holds ``count[r]`` windows with ends ``first[r] + step[r] * j``,
    ``j < count[r]``, in the series starting at ``start[r]``. Position ``k`` over all runs is
    row ``k`` of :func:`pipelines.series_table.window_index`.

    Attributes:
        first: global end of each run's oldest window, shape ``(2S,)``.
        step: distance between ends within a run, shape ``(2S,)``.
        count: windows per run, shape ``(2S,)``.
        start: global start of each run's series, shape ``(2S,)``.
    """

    first: np.ndarray
    step: np.ndarray
    count: np.ndarray
    start: np.ndarray

    @classmethod
    def from_offsets(cls, offsets: np.ndarray, spec: WindowSpec) -> WindowRuns:
        """Describe every valid window of every series as runs.

        Args:
            offsets: start of each series in the concatenated values plus the total,
                shape ``(S + 1,)``.
            spec: window geometry.
        """
        newest = np.diff(offsets).astype(np.int64) - spec.horizon
        size, stride = spec.input_size, spec.stride
        n_full = np.where(newest >= size, (newest - size) // stride + 1, 0)
        first_full = newest - (np.maximum(n_full, 1) - 1) * stride
        first_short, n_short, step_short = _short_runs(newest, spec)
        starts = np.repeat(np.asarray(offsets[:-1], dtype=np.int64), 2)
        first = np.stack([first_short, first_full], axis=1).ravel() + starts
        count = np.stack([n_short, n_full], axis=1).ravel()
        step = np.tile(np.asarray([step_short, spec.stride], dtype=np.int64), len(newest))
        return cls(first, step, count.astype(np.int64), starts)

    @property
    def counts(self) -> np.ndarray:
        """Windows per series, shape ``(S,)``."""
        return np.asarray(self.count.reshape(-1, 2).sum(axis=1))

    @property
    def total(self) -> int:
        """Number of windows."""
        return int(self.count.sum())

    @property
    def run_offsets(self) -> np.ndarray:
        """Position of each run's first window, shape ``(2S,)``."""
        return np.concatenate([[0], np.cumsum(self.count)[:-1]]).astype(np.int64)

    def rows(self, positions: np.ndarray) -> np.ndarray:
        """Index rows ``(end, start)`` of window positions, shape ``(n,)`` -> ``(n, 2)``."""
        offsets = self.run_offsets
        run = np.searchsorted(offsets, positions, side="right") - 1
        end = self.first[run] + self.step[run] * (positions - offsets[run])
        return np.stack([end, self.start[run]], axis=1).astype(np.int64)

    def balanced(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """Draw ``n`` windows so every series is equally likely, whatever its length.

        A uniform series, then a uniform window of it (:func:`balanced_positions`), without
        building the index.

        Returns:
            Shape ``(n, 2)`` index rows.
        """
        return self.rows(balanced_positions(self.counts, n, rng))


def _short_runs(newest: np.ndarray, spec: WindowSpec) -> tuple[np.ndarray, np.ndarray, int]:
    """Padded windows of each series, as one arithmetic run of step ``lcm(stride, fold)``.

    Their ends lie in ``[shortest, input_size)`` on the stride grid through ``newest`` and
    leave whole folds of padding (``end % fold == 0``, as ``input_size % fold == 0``).

    Returns:
        ``(first, count, step)``: local first end and count per series, shape ``(S,)``.
    """
    step = math.lcm(spec.stride, spec.fold)
    top = np.minimum(newest, spec.input_size - 1)
    highest = top - (top - newest) % spec.stride  # newest end <= top on the stride grid
    best, found = np.zeros_like(newest), np.zeros(newest.shape, dtype=bool)
    for t in range(step // spec.stride):  # one candidate per residue modulo ``step``
        cand = highest - t * spec.stride
        hit = ~found & (cand % spec.fold == 0)
        best, found = np.where(hit, cand, best), found | hit
    ok = found & (best >= spec.shortest_history)
    count = np.where(ok, (best - spec.shortest_history) // step + 1, 0)
    return best - (np.maximum(count, 1) - 1) * step, count, step


def balanced_positions(counts: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` window positions: a uniform series, then a uniform window of it, shape ``(n,)``."""
    usable = np.flatnonzero(counts)
    if usable.size == 0:
        raise ValueError("no series is long enough for one window")
    first = np.concatenate([[0], np.cumsum(counts)])[:-1]
    series = rng.choice(usable, size=n)
    return np.asarray(first[series] + (rng.random(n) * counts[series]).astype(np.int64))


__all__ = ["WindowRuns", "WindowSpec", "balanced_positions"]
