from __future__ import annotations

import pandas as pd
import pytest

from nearcast.pipelines.frequency import infer_freq, naive_utc
from nearcast.pipelines.schema import DS, UNIQUE_ID, Y


def long(ids: list[str], stamps: list[str]) -> pd.DataFrame:
    return pd.DataFrame(
        {UNIQUE_ID: ids, DS: [pd.Timestamp(s, tz="UTC") for s in stamps], Y: 1.0}
    )


def test_infer_freq_from_most_common_difference() -> None:
    stamps = ["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 02:00", "2024-01-01 04:00"]
    assert infer_freq(long(["a"] * 4 + ["b"] * 2, stamps + stamps[:2])) == "h"


@pytest.mark.parametrize(
    ("freq", "expected"),
    [
        ("15min", "15min"),
        ("D", "D"),
        ("2D", "2D"),
        ("W-MON", "W-MON"),
        ("MS", "MS"),
        ("90s", "90s"),
    ],
)
def test_infer_freq_names(freq: str, expected: str) -> None:
    stamps = pd.date_range("2024-01-01", periods=12, freq=freq, tz="UTC")
    df = pd.DataFrame({UNIQUE_ID: "a", DS: stamps, Y: 1.0})
    assert infer_freq(df) == expected


def test_infer_freq_needs_three_points() -> None:
    df = long(["a", "a", "b"], ["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01"])
    with pytest.raises(ValueError) as excinfo:
        infer_freq(df)
    message = str(excinfo.value)
    assert "series 'a' has 2 timestamps" in message
    assert "series 'b' has 1 timestamp;" in message
    assert "need 3 timestamps" in message


def test_infer_freq_ambiguous_lists_candidates() -> None:
    stamps = [
        "2024-01-01 00:00",
        "2024-01-01 01:00",
        "2024-01-01 01:30",
        "2024-01-01 02:30",
        "2024-01-01 03:00",
    ]
    with pytest.raises(ValueError) as excinfo:
        infer_freq(long(["a"] * 5, stamps))
    assert "top candidates: h (50%), 30min (50%)" in str(excinfo.value)


def test_naive_utc_converts_aware_and_keeps_naive() -> None:
    aware = pd.Series(pd.to_datetime(["2024-01-01 01:30+02:00"])).dt.tz_convert("Etc/GMT-2")
    assert naive_utc(aware).tolist() == [pd.Timestamp("2023-12-31 23:30")]
    naive = pd.Series(pd.to_datetime(["2024-01-01 01:30"]))
    assert naive_utc(naive).tolist() == [pd.Timestamp("2024-01-01 01:30")]
    with pytest.raises(ValueError, match="must hold datetimes"):
        naive_utc(pd.Series(["2024-01-01"]))
