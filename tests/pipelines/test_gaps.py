from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nearcast.pipelines.gaps import GapReport, SeriesGaps, fill_gaps
from nearcast.pipelines.schema import DS, UNIQUE_ID, Y

nan = np.nan

# Series "a" (9 hourly points): leading gap of 1, interior gaps of 2 and 3.
# Series "b" (5 hourly points): leading gap of 2, trailing gap of 1.
A = [nan, 1.0, nan, nan, 4.0, nan, nan, nan, 8.0]
B = [nan, nan, 20.0, 30.0, nan]


def grid() -> pd.DataFrame:
    hours = pd.date_range("2024-01-01", periods=9, freq="h", tz="UTC")
    return pd.DataFrame(
        {
            UNIQUE_ID: ["a"] * 9 + ["b"] * 5,
            DS: list(hours) + list(hours[:5]),
            Y: A + B,
        }
    )


def values(out: pd.DataFrame, uid: str) -> list[float]:
    return out.loc[out[UNIQUE_ID] == uid, Y].tolist()


def assert_same(actual: list[float], expected: list[float]) -> None:
    np.testing.assert_allclose(np.array(actual), np.array(expected), equal_nan=True)


@pytest.mark.parametrize(
    ("policy", "max_gap", "expected_a", "expected_b", "gaps_a", "gaps_b"),
    [
        (
            "ffill",
            None,
            [nan, 1, 1, 1, 4, 4, 4, 4, 8],
            [nan, nan, 20, 30, 30],
            SeriesGaps(missing=6, filled=5, unfilled=1, longest_gap=3, leading=1),
            SeriesGaps(missing=3, filled=1, unfilled=2, longest_gap=2, leading=2),
        ),
        (
            "linear",
            None,
            [nan, 1, 2, 3, 4, 5, 6, 7, 8],
            [nan, nan, 20, 30, 30],
            SeriesGaps(missing=6, filled=5, unfilled=1, longest_gap=3, leading=1),
            SeriesGaps(missing=3, filled=1, unfilled=2, longest_gap=2, leading=2),
        ),
        (
            "zero",
            None,
            [0, 1, 0, 0, 4, 0, 0, 0, 8],
            [0, 0, 20, 30, 0],
            SeriesGaps(missing=6, filled=6, unfilled=0, longest_gap=3, leading=1),
            SeriesGaps(missing=3, filled=3, unfilled=0, longest_gap=2, leading=2),
        ),
        (
            "ffill",
            2,
            [nan, 1, 1, 1, 4, nan, nan, nan, 8],
            [nan, nan, 20, 30, 30],
            SeriesGaps(missing=6, filled=2, unfilled=4, longest_gap=3, leading=1),
            SeriesGaps(missing=3, filled=1, unfilled=2, longest_gap=2, leading=2),
        ),
        (
            "linear",
            2,
            [nan, 1, 2, 3, 4, nan, nan, nan, 8],
            [nan, nan, 20, 30, 30],
            SeriesGaps(missing=6, filled=2, unfilled=4, longest_gap=3, leading=1),
            SeriesGaps(missing=3, filled=1, unfilled=2, longest_gap=2, leading=2),
        ),
        (
            "zero",
            1,
            [0, 1, nan, nan, 4, nan, nan, nan, 8],
            [nan, nan, 20, 30, 0],
            SeriesGaps(missing=6, filled=1, unfilled=5, longest_gap=3, leading=1),
            SeriesGaps(missing=3, filled=1, unfilled=2, longest_gap=2, leading=2),
        ),
        (
            "linear",
            0,
            A,
            B,
            SeriesGaps(missing=6, filled=0, unfilled=6, longest_gap=3, leading=1),
            SeriesGaps(missing=3, filled=0, unfilled=3, longest_gap=2, leading=2),
        ),
    ],
)
def test_policies_fill_and_count(
    policy: str,
    max_gap: int | None,
    expected_a: list[float],
    expected_b: list[float],
    gaps_a: SeriesGaps,
    gaps_b: SeriesGaps,
) -> None:
    out, report = fill_gaps(grid(), policy, max_gap=max_gap)  # type: ignore[arg-type]
    assert_same(values(out, "a"), expected_a)
    assert_same(values(out, "b"), expected_b)
    observed = ~np.isnan(np.array(A + B, dtype=float))  # observed values are never changed
    assert out[Y].to_numpy()[observed].tolist() == np.array(A + B, dtype=float)[observed].tolist()
    assert report.per_series == {"a": gaps_a, "b": gaps_b}
    assert report.policy == policy and report.max_gap == max_gap
    totals = report.totals
    assert totals.missing == 9 == totals.filled + totals.unfilled
    assert totals.unfilled == int(out[Y].isna().sum())
    assert totals.longest_gap == 3


def test_never_fills_across_series_boundaries() -> None:
    # "a" ends observed at 8.0; "b" starts missing: ffill and linear must not carry 8.0 into "b".
    for policy in ("ffill", "linear"):
        out, _ = fill_gaps(grid(), policy)
        assert np.isnan(values(out, "b")[:2]).all()


def test_output_is_sorted_and_keeps_other_columns() -> None:
    df = grid().assign(price=np.arange(14.0)).iloc[::-1]
    out, _ = fill_gaps(df, "linear")
    assert list(out.columns) == [UNIQUE_ID, DS, Y, "price"]
    assert out["price"].tolist() == list(np.arange(14.0))
    assert out.index.tolist() == list(range(14))


def test_linear_interpolates_by_position_with_fractions() -> None:
    df = pd.DataFrame(
        {
            UNIQUE_ID: "a",
            DS: pd.date_range("2024-01-01", periods=4, freq="D", tz="UTC"),
            Y: [0.0, nan, nan, 1.0],
        }
    )
    out, _ = fill_gaps(df, "linear")
    assert_same(out[Y].tolist(), [0.0, 1 / 3, 2 / 3, 1.0])


def test_report_as_dict() -> None:
    _, report = fill_gaps(grid(), "zero", max_gap=2)
    data = report.as_dict()
    assert data["policy"] == "zero" and data["max_gap"] == 2
    assert data["totals"] == {
        "missing": 9,
        "filled": 6,
        "unfilled": 3,
        "longest_gap": 3,
        "leading": 3,
    }
    assert data["per_series"]["b"]["filled"] == 3
    assert isinstance(report, GapReport)


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="unknown gap policy 'mean'"):
        fill_gaps(grid(), "mean")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_gap"):
        fill_gaps(grid(), "zero", max_gap=-1)
    with pytest.raises(ValueError, match="missing column"):
        fill_gaps(grid().drop(columns=[Y]), "zero")
