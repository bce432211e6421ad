from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nearcast.pipelines.bucketing import AGGREGATIONS, BucketReport, SeriesBuckets, bucket
from nearcast.pipelines.schema import DS, UNIQUE_ID, Y
from nearcast.pipelines.validation import validate_long


def utc(*stamps: str) -> list[pd.Timestamp]:
    return [pd.Timestamp(s, tz="UTC") for s in stamps]


def long(ids: list[str], stamps: list[str], y: list[float]) -> pd.DataFrame:
    return pd.DataFrame({UNIQUE_ID: ids, DS: utc(*stamps), Y: y})


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


def test_unknown_aggregation_lists_the_options() -> None:
    with pytest.raises(ValueError, match="choose one of " + ", ".join(AGGREGATIONS)):
        bucket(IRREGULAR, "h", agg="median")


def test_other_columns_are_left_out() -> None:
    out, _ = bucket(IRREGULAR.assign(qty=1.0), "h")
    assert list(out.columns) == [UNIQUE_ID, DS, Y]


def test_point_on_boundary_opens_the_next_bucket() -> None:
    # [00:00, 01:00) labelled 00:00 holds 00:30; 01:00 opens the next bucket.
    out, _ = bucket(long(["a", "a"], ["2024-01-01 00:30", "2024-01-01 01:00"], [1.0, 2.0]), "h")
    assert out[DS].tolist() == utc("2024-01-01 00:00", "2024-01-01 01:00")
    assert out[Y].tolist() == [1.0, 2.0]


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


@pytest.mark.parametrize("freq", ["h", "15min", "D", "7D", "W-MON", "MS", "ME"])
def test_matches_pandas_resample_on_one_series(freq: str) -> None:
    rng = np.random.default_rng(7)
    seconds = np.sort(rng.integers(0, 90 * 86_400, size=40))
    jittered = pd.Timestamp("2024-01-29") + pd.to_timedelta(seconds, unit="s")
    stamps = pd.DatetimeIndex(jittered.append(pd.DatetimeIndex(["2024-02-05", "2024-03-31"])))
    # (the last two stamps lie exactly on boundaries)
    df = pd.DataFrame({UNIQUE_ID: "a", DS: stamps.tz_localize("UTC"), Y: rng.normal(size=42)})
    out, _ = bucket(df, freq, agg="sum")
    origin = {"origin": "epoch"} if freq in ("h", "15min", "D", "7D") else {}
    expected = (
        pd.Series(df[Y].to_numpy(), index=stamps)
        .resample(freq, closed="left", label="left", **origin)  # type: ignore[arg-type]
        .sum(min_count=1)
    )
    assert out[DS].dt.tz_localize(None).tolist() == expected.index.tolist()
    np.testing.assert_allclose(out[Y].to_numpy(), expected.to_numpy())
    assert not np.isnan(out[Y].iloc[0]) and not np.isnan(out[Y].iloc[-1])


def test_series_keep_their_own_span_on_a_shared_grid() -> None:
    # "a": Jan 1 and Jan 4 (two empty days between); "b": only Jan 3; "c" (one row): Jan 9.
    df = long(
        ["a", "b", "a", "c"],
        ["2024-01-01 10:00", "2024-01-03 23:59", "2024-01-04 00:00", "2024-01-09"],
        [1.0, 2.0, 3.0, 4.0],
    )
    out, report = bucket(df, "D")
    assert out[UNIQUE_ID].tolist() == ["a"] * 4 + ["b", "c"]
    assert out[DS].tolist() == utc(
        "2024-01-01", "2024-01-02", "2024-01-03", "2024-01-04", "2024-01-03", "2024-01-09"
    )
    np.testing.assert_array_equal(out[Y].to_numpy(), [1.0, np.nan, np.nan, 3.0, 2.0, 4.0])
    assert report.per_series["a"] == SeriesBuckets(2, 4, 2, 0)


def test_bucketing_via_infer_freq() -> None:
    stamps = ["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 02:00", "2024-01-01 04:00"]
    df = long(["a"] * 4 + ["b"] * 2, stamps + stamps[:2], [1.0] * 6)
    out, report = bucket(df, None)
    assert report.freq == "h"
    assert len(out) == 5 + 2


def test_empty_frame() -> None:
    out, report = bucket(IRREGULAR.iloc[0:0], "h")
    assert out.empty and list(out.columns) == [UNIQUE_ID, DS, Y]
    assert report == BucketReport(freq="h")
