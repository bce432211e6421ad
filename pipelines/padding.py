"""Fit one history of any length into a model's fixed input window.

The rule is the one the training windows use (:mod:`pipelines.windows`): a history longer than
the window is cut to its newest ``input_size`` points; a shorter one keeps its newest points in
whole folds and is padded at the start with zeros, flagged 0.0 in the mask.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from nearcast.pipelines.window_runs import WindowSpec


@dataclass(frozen=True)
class FitResult:
    """Histories fitted to the window.

    Attributes:
        history: values, shape ``(B, L)``, zeros where padded.
        mask: 1.0 real, 0.0 padded, shape ``(B, L)``.
        used: real points kept per series, shape ``(B,)``.
        dropped: oldest points cut per series, shape ``(B,)``.
    """

    history: np.ndarray
    mask: np.ndarray
    used: np.ndarray
    dropped: np.ndarray


class HistoryTooShortError(ValueError):
    """A history is shorter than the model's minimum; ``index`` is its position in the batch."""

    def __init__(self, index: int, length: int, spec: WindowSpec) -> None:
        super().__init__(
            f"{length} points; the model needs at least {spec.shortest_history} "
            f"(in whole multiples of {spec.fold})"
        )
        self.index = index


def usable_length(n: int, spec: WindowSpec) -> int:
    """Real points of a length-``n`` history that fit the window (whole folds when padded)."""
    if n >= spec.input_size:
        return spec.input_size
    # WindowSpec guarantees input_size % fold == 0, so whole folds keep the padding aligned.
    return n - (n % spec.fold)


def fit_histories(histories: Sequence[np.ndarray], spec: WindowSpec) -> FitResult:
    """Cut or pad each history to the window.

    Args:
        histories: one 1-D float array per series (finite values, oldest first).
        spec: window geometry of the model.

    Returns:
        The fitted batch.

    Raises:
        HistoryTooShortError: naming the first series (by position) below ``min_history``.
    """
    size = spec.input_size
    history = np.zeros((len(histories), size), dtype=np.float32)
    mask = np.zeros((len(histories), size), dtype=np.float32)
    used = np.zeros(len(histories), dtype=np.int64)
    for i, values in enumerate(histories):
        keep = usable_length(len(values), spec)
        if keep < spec.shortest_history:
            raise HistoryTooShortError(i, len(values), spec)
        history[i, size - keep :] = values[len(values) - keep :]
        mask[i, size - keep :] = 1.0
        used[i] = keep
    lengths = np.asarray([len(v) for v in histories], dtype=np.int64)
    return FitResult(history=history, mask=mask, used=used, dropped=lengths - used)


__all__ = ["FitResult", "HistoryTooShortError", "fit_histories", "usable_length"]
