"""Split long frames by time, per series, without leaking the future into training data.

All splits count *rows* (points) per series from its end: the frame should be on a regular
grid (see :mod:`pipelines.bucketing`), so the last ``h`` rows are the last ``h`` steps. Within a
series, every training timestamp is earlier than every test timestamp.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from nearcast.pipelines.errors import DataValidationError, Problem
from nearcast.pipelines.schema import DS, UNIQUE_ID

__all__ = ["Fold", "backtest_folds", "train_test_split", "train_val_test_split"]


@dataclass(frozen=True)
class Fold:
    """One rolling-origin backtest fold.

    Attributes:
        cutoffs: For each series, its last training timestamp.
        train: Every row of each series up to and including its cutoff.
        test: The ``h`` rows of each series right after its cutoff.
    """

    cutoffs: dict[str, pd.Timestamp]
    train: pd.DataFrame
    test: pd.DataFrame


def train_test_split(df: pd.DataFrame, h: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split each series into its last ``h`` rows (test) and everything before (train).

    Args:
        df: Long frame with ``unique_id`` and ``ds``.
        h: Number of test rows per series (>= 1).

    Returns:
        ``(train, test)``, both sorted by ``unique_id``, ``ds`` with a fresh index.

    Raises:
        DataValidationError: Naming every series with ``h`` rows or fewer, or with duplicate
            timestamps.
        ValueError: If ``h < 1``.
    """
    _check_positive(h=h)
    work, remaining = _positions(df, need=h)
    return _take(work, remaining > h), _take(work, remaining <= h)


def train_val_test_split(
    df: pd.DataFrame, val_h: int, test_h: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Split each series into train, then ``val_h`` validation rows, then ``test_h`` test rows.

    Args:
        df: Long frame with ``unique_id`` and ``ds``.
        val_h: Validation rows per series (>= 1).
        test_h: Test rows per series (>= 1), the last ones.

    Returns:
        ``(train, val, test)``, each sorted by ``unique_id``, ``ds`` with a fresh index.

    Raises:
        DataValidationError: Naming every series with ``val_h + test_h`` rows or fewer.
        ValueError: If ``val_h`` or ``test_h`` is below 1.
    """
    _check_positive(val_h=val_h, test_h=test_h)
    work, remaining = _positions(df, need=val_h + test_h)
    train = _take(work, remaining > val_h + test_h)
    val = _take(work, (remaining > test_h) & (remaining <= val_h + test_h))
    return train, val, _take(work, remaining <= test_h)


def backtest_folds(df: pd.DataFrame, h: int, n_windows: int, step: int | None = None) -> list[Fold]:
    """Rolling-origin folds: fold ``k`` trains on every row up to its cutoff, tests on the next h.

    Folds are ordered oldest first. The last fold's test window ends at each series' end; each
    earlier fold's window ends ``step`` rows before the next one's. Training windows expand:
    they always start at the series' first row.

    Args:
        df: Long frame with ``unique_id`` and ``ds``.
        h: Test rows per fold and series (>= 1).
        n_windows: Number of folds (>= 1).
        step: Rows between consecutive cutoffs (>= 1); defaults to ``h`` (adjacent windows).

    Returns:
        The folds, oldest first.

    Raises:
        DataValidationError: Naming every series too short to keep at least one training row
            in the first fold (``h + (n_windows - 1) * step`` rows or fewer).
        ValueError: On non-positive arguments.
    """
    step = h if step is None else step
    _check_positive(h=h, n_windows=n_windows, step=step)
    work, remaining = _positions(df, need=h + (n_windows - 1) * step)
    folds: list[Fold] = []
    for k in range(n_windows):
        # Rows after the test window of fold k, counted from the series' end.
        after = (n_windows - 1 - k) * step
        train = _take(work, remaining > after + h)
        test = _take(work, (remaining > after) & (remaining <= after + h))
        last = train.groupby(UNIQUE_ID, sort=True)[DS].max()
        cutoffs = {str(uid): pd.Timestamp(ds) for uid, ds in last.items()}
        folds.append(Fold(cutoffs=cutoffs, train=train, test=test))
    return folds


def _check_positive(**values: int) -> None:
    """Raise ValueError naming any argument below 1."""
    bad = {name: value for name, value in values.items() if value < 1}
    if bad:
        raise ValueError(f"arguments must be >= 1: {bad}")


def _positions(df: pd.DataFrame, need: int) -> tuple[pd.DataFrame, pd.Series]:
    """Sort by series and time; return the frame and, per row, the rows remaining to the end.

    ``remaining`` is 1 for the last row of a series, 2 for the one before, and so on.

    Raises:
        DataValidationError: If a series has ``need`` rows or fewer, or duplicate timestamps.
    """
    missing = [c for c in (UNIQUE_ID, DS) if c not in df.columns]
    if missing:
        raise ValueError(f"missing column(s) {missing}; columns: {list(df.columns)}")
    work = df.sort_values([UNIQUE_ID, DS], kind="stable").reset_index(drop=True)
    _reject_duplicates(work)
    groups = work.groupby(UNIQUE_ID, sort=False)
    position = groups.cumcount()
    sizes = groups[DS].transform("size")
    lengths = groups.size()
    short = lengths[lengths <= need]
    if not short.empty:
        raise DataValidationError(
            Problem(
                kind="too_short",
                unique_id=str(uid),
                message=f"series has {n} point(s); need more than {need} to keep a training row",
            )
            for uid, n in short.items()
        )
    return work, sizes - position


def _reject_duplicates(work: pd.DataFrame) -> None:
    """Raise DataValidationError if a series repeats a timestamp (it could leak into train)."""
    dup = work.duplicated([UNIQUE_ID, DS], keep=False)
    if dup.any():
        raise DataValidationError(
            Problem(
                kind="duplicate",
                unique_id=str(uid),
                rows=list(group[DS].unique()),
                message="timestamps appear more than once; run validate_long first",
            )
            for uid, group in work[dup].groupby(UNIQUE_ID, sort=True)
        )


def _take(work: pd.DataFrame, mask: pd.Series) -> pd.DataFrame:
    """Return the rows of ``work`` selected by ``mask`` with a fresh index."""
    return work[mask.to_numpy()].reset_index(drop=True)
