"""Tables whose values tell their series and position, for the window tests."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from nearcast.pipelines.schema import DS, UNIQUE_ID, Y
from nearcast.pipelines.series_table import SeriesTable, gather_windows
from nearcast.pipelines.window_runs import WindowSpec

START = pd.Timestamp("2024-01-01", tz="UTC")


def long_frame(series: dict[str, Sequence[float]]) -> pd.DataFrame:
    """Hourly long frame, rows shuffled so the table has to sort them."""
    frames = [
        pd.DataFrame(
            {
                UNIQUE_ID: uid,
                DS: pd.date_range(START, periods=len(values), freq="h"),
                Y: np.asarray(values, dtype="float64"),
            }
        )
        for uid, values in series.items()
    ]
    return pd.concat(frames, ignore_index=True).sample(frac=1.0, random_state=3)


def table_of(series: dict[str, Sequence[float]]) -> SeriesTable:
    return SeriesTable.from_long(long_frame(series))


def coded_table(lengths: Sequence[int]) -> SeriesTable:
    """Series ``i`` holds ``1000 * (i + 1) + t``: every value tells its series and position."""
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    values = np.concatenate([1000.0 * (i + 1) + np.arange(n) for i, n in enumerate(lengths)])
    ids = np.asarray([f"s{i}" for i in range(len(lengths))])
    return SeriesTable(ids, values.astype(np.float32), offsets)


def gather_all(table: SeriesTable, index: np.ndarray, spec: WindowSpec) -> tuple[np.ndarray, ...]:
    inputs, target = gather_windows(table.values, index, spec)
    return np.asarray(inputs["history"]), np.asarray(inputs["mask"]), np.asarray(target)
