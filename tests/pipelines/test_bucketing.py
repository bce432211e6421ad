from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nearcast.pipelines.bucketing import (
    AGGREGATIONS,
    BucketReport,
    SeriesBuckets,
    bucket,
    infer_freq,
)
from nearcast.pipelines.schema import DS, UNIQUE_ID, Y
from nearcast.pipelines.validation import validate_long


def utc(*stamps: str) -> list[pd.Timestamp]:
    return [pd.Timestamp(s, tz="UTC") for s in stamps]


def long(ids: list[str], stamps: list[str], y: list[float], **extra: list[float]) -> pd.DataFrame:
    return pd.DataFrame({UNIQUE_ID: ids, DS: utc(*stamps), Y: y, **extra})


# Series "a": 00:10 -> 1, 00:20 -> 4, 00:50 -> 2 (bucket 00:00), nothing at 01:00, 02:30 -> 5.
# Series "b": 00:00 -> 7 and 00:59 -> NaN (bucket 00:00).
IRREGULAR = long(
    ["a", "a", "a", "a", "b", "b"],
    [
        "2024-01-01 00:10",
        "2024-01-01 00:20",
        "2024-01-01 00:50",
        "2024-01-01 02:30",
        "2024-01-01 00:00",
        "2024-01-01 00:59",
    ],
    [1.0, 4.0, 2.0, 5.0, 7.0, np.nan],
)


@pytest.mark.parametrize(
    ("agg", "first_bucket_of_a"),
    [
        ("mean", (1.0 + 4.0 + 2.0) / 3),
        ("sum", 7.0),
        ("first", 1.0),
        ("last", 2.0),
        ("min", 1.0),
        ("max", 4.0),
    ],
)
def test_each_aggregation(agg: str, first_bucket_of_a: float) -> None:
    out, _ = bucket(IRREGULAR, "h", agg=agg)
    assert out[UNIQUE_ID].tolist() == ["a", "a", "a", "b"]
    assert out[DS].tolist() == utc(
        "2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 02:00", "2024-01-01 00:00"
    )
    values = out[Y].tolist()
    assert values[0] == pytest.approx(first_bucket_of_a)
    assert np.isnan(values[1])  # empty bucket
    assert values[2] == 5.0
    assert values[3] == 7.0  # NaN is skipped by every aggregation


def test_sum_of_an_empty_or_all_missing_bucket_is_missing_not_zero() -> None:
    df = long(
        ["a", "a", "a"],
        ["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 02:00"],
        [1.0, np.nan, 3.0],
    )
    out, _ = bucket(df.drop(index=1), "h", agg="sum")
    assert np.isnan(out[Y].iloc[1])
    out, _ = bucket(df, "h", agg="sum")
    assert np.isnan(out[Y].iloc[1])


def test_report_counts_rows_buckets_and_empty_buckets() -> None:
    out, report = bucket(IRREGULAR, "h")
    assert report.freq == "h"
    assert report.per_series == {
        "a": SeriesBuckets(rows_in=4, buckets=3, empty_buckets=1, rows_aggregated=2),
        "b": SeriesBuckets(rows_in=2, buckets=1, empty_buckets=0, rows_aggregated=1),
    }
    assert report.totals == SeriesBuckets(rows_in=6, buckets=4, empty_buckets=1, rows_aggregated=3)
    assert report.as_dict()["totals"]["rows_in"] == len(IRREGULAR)
    assert len(out) == report.totals.buckets


def test_output_dtypes_and_order() -> None:
    shuffled = IRREGULAR.sample(frac=1.0, random_state=0)
    out, _ = bucket(shuffled, "h")
    assert str(out[DS].dtype) == "datetime64[ns, UTC]"
    assert out[Y].dtype == np.float64
    assert out.index.tolist() == list(range(len(out)))
    pd.testing.assert_frame_equal(out, bucket(IRREGULAR, "h")[0])


@pytest.mark.parametrize(("agg", "expected"), [("first", 1.0), ("last", 2.0)])
def test_first_and_last_follow_time_not_row_order(agg: str, expected: float) -> None:
    shuffled = IRREGULAR.iloc[[2, 0, 1, 3, 4, 5]]
    out, _ = bucket(shuffled, "h", agg=agg)
    assert out[Y].iloc[0] == expected


def test_aggregation_per_column() -> None:
    df = long(
        ["a", "a"],
        ["2024-01-01 00:00", "2024-01-01 00:30"],
        [1.0, 3.0],
        qty=[2.0, 5.0],
        price=[10.0, 20.0],
    )
    out, _ = bucket(df, "h", agg={Y: "sum", "qty": "max"})
    assert out[[Y, "qty", "price"]].iloc[0].tolist() == [4.0, 5.0, 15.0]  # price: default mean


def test_unknown_aggregation_lists_the_options() -> None:
    with pytest.raises(ValueError, match="choose one of " + ", ".join(AGGREGATIONS)):
        bucket(IRREGULAR, "h", agg="median")
    with pytest.raises(ValueError, match="unknown column"):
        bucket(IRREGULAR, "h", agg={"nope": "sum"})
    with pytest.raises(ValueError, match="closed and label"):
        bucket(IRREGULAR, "h", closed="middle")  # type: ignore[arg-type]


ON_BOUNDARY = long(["a", "a"], ["2024-01-01 00:30", "2024-01-01 01:00"], [1.0, 2.0])


def test_point_on_boundary_closed_left_label_left() -> None:
    # [00:00, 01:00) labelled 00:00 holds 00:30; 01:00 opens the next bucket.
    out, _ = bucket(ON_BOUNDARY, "h", closed="left", label="left")
    assert out[DS].tolist() == utc("2024-01-01 00:00", "2024-01-01 01:00")
    assert out[Y].tolist() == [1.0, 2.0]


def test_point_on_boundary_closed_left_label_right() -> None:
    out, _ = bucket(ON_BOUNDARY, "h", closed="left", label="right")
    assert out[DS].tolist() == utc("2024-01-01 01:00", "2024-01-01 02:00")
    assert out[Y].tolist() == [1.0, 2.0]


def test_point_on_boundary_closed_right_label_right() -> None:
    # (00:00, 01:00] labelled 01:00 holds both 00:30 and 01:00.
    out, _ = bucket(ON_BOUNDARY, "h", closed="right", label="right")
    assert out[DS].tolist() == utc("2024-01-01 01:00")
    assert out[Y].tolist() == [1.5]


def test_point_on_boundary_closed_right_label_left() -> None:
    out, _ = bucket(ON_BOUNDARY, "h", closed="right", label="left")
    assert out[DS].tolist() == utc("2024-01-01 00:00")
    assert out[Y].tolist() == [1.5]


def test_plus_two_hours_input_lands_in_the_right_utc_bucket() -> None:
    # 01:30+02:00 is 23:30 UTC the day before: hourly bucket 23:00 UTC, daily bucket Dec 31.
    raw = pd.DataFrame(
        {
            UNIQUE_ID: ["a", "a"],
            DS: ["2024-01-01 01:30+02:00", "2024-01-01 02:10+02:00"],
            Y: [1.0, 3.0],
        }
    )
    clean, _ = validate_long(raw)
    hourly, _ = bucket(clean, "h")
    assert hourly[DS].tolist() == utc("2023-12-31 23:00", "2024-01-01 00:00")
    daily, _ = bucket(clean, "D")
    assert daily[DS].tolist() == utc("2023-12-31", "2024-01-01")
    # A tz-aware column in another zone is converted the same way by bucket itself.
    paris = raw.assign(**{DS: pd.to_datetime(raw[DS]).dt.tz_convert("Etc/GMT-2")})
    pd.testing.assert_frame_equal(bucket(paris, "h")[0], hourly)


def test_fixed_buckets_share_the_epoch_grid_across_series() -> None:
    df = long(["a", "b"], ["2024-01-01 05:00", "2024-01-01 09:59"], [1.0, 2.0])
    out, _ = bucket(df, "7h")
    # 2024-01-01 00:00 is 473352 h = 67621 * 7h + 5h after the epoch, so 7-hour buckets start
    # at 19:00 the day before, then 02:00, 09:00, ... whatever each series' first timestamp.
    assert out[DS].tolist() == utc("2024-01-01 02:00", "2024-01-01 09:00")


def test_calendar_frequency_month_start() -> None:
    df = long(["a", "a", "a"], ["2024-01-15", "2024-01-20", "2024-03-02"], [1.0, 3.0, 5.0])
    out, _ = bucket(df, "MS")
    assert out[DS].tolist() == utc("2024-01-01", "2024-02-01", "2024-03-01")
    assert out[Y].tolist()[::2] == [2.0, 5.0]
    assert np.isnan(out[Y].iloc[1])


@pytest.mark.parametrize("freq", ["h", "15min", "D", "W-MON", "MS", "ME"])
@pytest.mark.parametrize(
    ("closed", "label"),
    [("left", "left"), ("right", "right"), ("left", "right"), ("right", "left")],
)
def test_matches_pandas_resample_on_one_series(freq: str, closed: str, label: str) -> None:
    rng = np.random.default_rng(7)
    seconds = np.sort(rng.integers(0, 90 * 86_400, size=40))
    jittered = pd.Timestamp("2024-01-29") + pd.to_timedelta(seconds, unit="s")
    stamps = pd.DatetimeIndex(jittered.append(pd.DatetimeIndex(["2024-02-05", "2024-03-31"])))
    # (the last two stamps lie exactly on boundaries)
    df = pd.DataFrame({UNIQUE_ID: "a", DS: stamps.tz_localize("UTC"), Y: rng.normal(size=42)})
    out, _ = bucket(df, freq, agg="sum", closed=closed, label=label)  # type: ignore[arg-type]
    origin = {"origin": "epoch"} if freq in ("h", "15min", "D") else {}
    expected = (
        pd.Series(df[Y].to_numpy(), index=stamps)
        .resample(freq, closed=closed, label=label, **origin)  # type: ignore[arg-type]
        .sum(min_count=1)
        .dropna()
    )
    observed = out.dropna(subset=[Y])
    assert observed[DS].dt.tz_localize(None).tolist() == expected.index.tolist()
    np.testing.assert_allclose(observed[Y].to_numpy(), expected.to_numpy())
    assert not np.isnan(out[Y].iloc[0]) and not np.isnan(out[Y].iloc[-1])


def test_infer_freq_from_most_common_difference() -> None:
    stamps = ["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 02:00", "2024-01-01 04:00"]
    df = long(["a"] * 4 + ["b"] * 2, stamps + stamps[:2], [1.0] * 6)
    assert infer_freq(df) == "h"
    out, report = bucket(df, None)
    assert report.freq == "h"
    assert len(out) == 5 + 2


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
    df = long(["a", "a", "b"], ["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01"], [1.0] * 3)
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
        infer_freq(long(["a"] * 5, stamps, [1.0] * 5))
    assert "top candidates: h (50%), 30min (50%)" in str(excinfo.value)


def test_empty_frame() -> None:
    out, report = bucket(IRREGULAR.iloc[0:0], "h")
    assert out.empty and list(out.columns) == [UNIQUE_ID, DS, Y]
    assert report == BucketReport(freq="h")
