"""A long frame cut into chunks of whole series (each series' rows in one chunk only)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd

from nearcast.pipelines.schema import UNIQUE_ID

__all__ = ["series_chunks"]


def series_chunks(df: pd.DataFrame, max_series: int) -> Iterator[pd.DataFrame]:
    """Chunks of at most ``max_series`` whole series, in order of first appearance.

    Rows keep their order within a series; one sort of the keys, no copy of the whole frame
    beyond one chunk at a time.
    """
    if max_series < 1:
        raise ValueError(f"max_series must be >= 1, got {max_series}")
    keys = df[UNIQUE_ID].astype(str).to_numpy()
    codes, uniques = pd.factorize(keys, sort=False)
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(0, len(uniques) + max_series, max_series))
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=False):
        if hi > lo:
            yield df.iloc[order[lo:hi]]
