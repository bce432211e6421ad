"""Problems found in a long frame, one per series, naming rows and a few sample values."""

from __future__ import annotations

from collections.abc import Callable, Hashable

import pandas as pd

from nearcast.pipelines.errors import Problem
from nearcast.pipelines.schema import UNIQUE_ID

__all__ = ["per_series", "sample"]

_SAMPLE = 3


def per_series(
    kind: str,
    mask: pd.Series,
    uids: pd.Series,
    describe: Callable[[pd.Index], str],
    column: str | None = None,
) -> list[Problem]:
    """One problem per series for the rows flagged in ``mask`` (about ``column``, if given)."""
    hits = pd.DataFrame({UNIQUE_ID: uids[mask]})
    problems: list[Problem] = []
    for key, group in hits.groupby(UNIQUE_ID, dropna=False, sort=True):
        uid = None if pd.isna(key) else str(key)
        rows: list[Hashable] = list(group.index)
        problems.append(Problem(kind=kind, unique_id=uid, rows=rows, message=describe(group.index),
                                column=column))
    return problems


def sample(values: pd.Series) -> str:
    """Show the first few values of ``values``."""
    shown = ", ".join(repr(v) for v in values.iloc[:_SAMPLE])
    return shown + (", ..." if len(values) > _SAMPLE else "")
