from __future__ import annotations

import time
from collections.abc import Callable

import holidays
import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from nearcast.pipelines import calendar
from nearcast.pipelines.calendar import CalendarRule, calendar_features

BERLIN = CalendarRule(timezone="Europe/Berlin")
ALL = ["hour", "weekday", "yearday", "holiday"]


def hours(features: np.ndarray) -> np.ndarray:
    """Local hour of day (with minutes as a fraction) recovered from hour_sin/hour_cos."""
    hour: np.ndarray = np.round(
        np.arctan2(features[:, 0], features[:, 1]) * 24 / (2 * np.pi) % 24, 4
    )
    return hour


def column(features: np.ndarray, rule: CalendarRule, name: str) -> np.ndarray:
    return features[:, rule.names().index(name)]


def test_names_width_and_dtype() -> None:
    rule = CalendarRule(features=ALL, country="DE")
    assert rule.names() == [
        "hour_sin", "hour_cos",
        *[f"weekday_{day}" for day in range(7)],
        "yearday_sin", "yearday_cos", "holiday",
    ]  # fmt: skip
    assert rule.width == 12
    assert CalendarRule().width == 11
    assert CalendarRule(features=["yearday", "hour"]).names() == [
        "yearday_sin", "yearday_cos", "hour_sin", "hour_cos",
    ]  # fmt: skip
    out = calendar_features(pd.date_range("2024-01-01", periods=5, freq="h", tz="UTC"), rule)
    assert out.dtype == np.float32
    assert out.shape == (5, 12)


def test_empty_features_mean_off() -> None:
    rule = CalendarRule(features=[])
    assert rule.names() == [] and rule.width == 0
    out = calendar_features(pd.date_range("2024-01-01", periods=3, freq="h", tz="UTC"), rule)
    assert out.shape == (3, 0) and out.dtype == np.float32


def test_hour_values_in_utc() -> None:
    ds = pd.DatetimeIndex(["2024-01-01T00:00Z", "2024-01-01T06:00Z", "2024-01-01T18:30Z"])
    out = calendar_features(ds, CalendarRule(features=["hour"]))
    np.testing.assert_allclose(out[0], [0.0, 1.0], atol=1e-7)
    np.testing.assert_allclose(out[1], [1.0, 0.0], atol=1e-7)
    angle = 2 * np.pi * 18.5 / 24
    np.testing.assert_allclose(out[2], [np.sin(angle), np.cos(angle)], atol=1e-6)


def test_spring_daylight_saving_skips_a_local_hour() -> None:
    ds = pd.date_range("2024-03-31 00:00", periods=4, freq="h", tz="UTC")
    out = calendar_features(ds, BERLIN)
    np.testing.assert_array_equal(hours(out), [1, 3, 4, 5])  # 02:00 local never happens
    angle = 2 * np.pi * 3 / 24
    np.testing.assert_allclose(out[1, :2], [np.sin(angle), np.cos(angle)], atol=1e-6)
    # In UTC the same instants are plain consecutive hours.
    np.testing.assert_array_equal(hours(calendar_features(ds, CalendarRule())), [0, 1, 2, 3])


def test_autumn_daylight_saving_repeats_a_local_hour() -> None:
    ds = pd.date_range("2024-10-27 00:00", periods=4, freq="h", tz="UTC")
    out = calendar_features(ds, BERLIN)
    np.testing.assert_array_equal(hours(out), [2, 2, 3, 4])  # 02:00 CEST, then 02:00 CET
    np.testing.assert_array_equal(out[0], out[1])


def test_offset_input_equals_utc_and_reads_local_hour() -> None:
    offset = pd.DatetimeIndex(["2024-06-01T10:00+02:00"])
    utc = pd.DatetimeIndex(["2024-06-01T08:00Z"])
    for rule in (CalendarRule(), BERLIN, CalendarRule(features=ALL, country="DE")):
        np.testing.assert_array_equal(calendar_features(offset, rule), calendar_features(utc, rule))
    np.testing.assert_array_equal(hours(calendar_features(offset, BERLIN)), [10])
    np.testing.assert_array_equal(hours(calendar_features(offset, CalendarRule())), [8])
    # The same instant as a string, a string Series with mixed offsets and a numpy array.
    as_string = calendar_features(np.array(["2024-06-01T10:00+02:00"], dtype=object), BERLIN)
    np.testing.assert_array_equal(as_string, calendar_features(utc, BERLIN))
    mixed = pd.Series(["2024-06-01T10:00+02:00", "2024-06-01T03:00-05:00"])
    np.testing.assert_array_equal(hours(calendar_features(mixed, BERLIN)), [10, 10])


def test_naive_timestamps_are_read_as_utc() -> None:
    naive = pd.date_range("2024-03-30 22:00", periods=8, freq="h")
    aware = naive.tz_localize("UTC")
    rule = CalendarRule(features=ALL, country="DE", timezone="Europe/Berlin")
    expected = calendar_features(aware, rule)
    np.testing.assert_array_equal(calendar_features(naive, rule), expected)
    np.testing.assert_array_equal(calendar_features(naive.to_numpy(), rule), expected)
    np.testing.assert_array_equal(calendar_features(pd.Series(naive), rule), expected)
    strings = np.array([str(stamp) for stamp in naive], dtype=object)
    np.testing.assert_array_equal(calendar_features(strings, rule), expected)
    np.testing.assert_array_equal(hours(expected), [23, 0, 1, 3, 4, 5, 6, 7])


def test_weekday_one_hot() -> None:
    # 2024-01-01 was a Monday, 2024-06-01 a Saturday.
    ds = pd.DatetimeIndex(["2024-01-01T12:00Z", "2024-06-01T12:00Z", "1969-12-28T05:00Z"])
    out = calendar_features(ds, CalendarRule(features=["weekday"]))
    expected = np.zeros((3, 7), dtype=np.float32)
    expected[0, 0] = expected[1, 5] = expected[2, 6] = 1.0  # 1969-12-28 was a Sunday
    np.testing.assert_array_equal(out, expected)
    # Saturday 23:30 UTC is already Sunday in Berlin.
    late = calendar_features(pd.DatetimeIndex(["2024-06-01T23:30Z"]), BERLIN)
    assert column(late, BERLIN, "weekday_6")[0] == 1.0
    assert late[0, 2:9].sum() == 1.0


def test_yearday_values_and_continuity_around_new_year() -> None:
    rule = CalendarRule(features=["yearday"])
    for year in (2023, 2024):  # a common and a leap year ending
        ds = pd.date_range(f"{year}-12-25", f"{year + 1}-01-07", freq="D", tz="UTC")
        out = calendar_features(ds, rule).astype(np.float64)
        jan1 = out[ds.get_loc(pd.Timestamp(f"{year + 1}-01-01", tz="UTC"))]
        np.testing.assert_allclose(jan1, [0.0, 1.0], atol=1e-7)
        day_of_year = ds.dayofyear.to_numpy() - 1
        angle = 2 * np.pi * day_of_year / 365.25
        np.testing.assert_allclose(out, np.stack([np.sin(angle), np.cos(angle)], 1), atol=1e-6)
        steps = np.linalg.norm(np.diff(out, axis=0), axis=1)
        one_day = 2 * np.sin(np.pi / 365.25)  # chord of one day's angle
        # No jump across the new year: one step is at most 1.25 days' worth, never zero.
        assert steps.max() <= 1.25 * one_day + 1e-6
        assert steps.min() > 0.2 * one_day


def test_holidays_germany() -> None:
    rule = CalendarRule(features=["holiday"], country="DE")
    ds = pd.DatetimeIndex(
        ["2015-12-23T12:00Z", "2015-12-24T12:00Z", "2015-12-25T00:00Z", "2015-12-25T23:00Z",
         "2015-12-26T12:00Z", "2016-01-01T12:00Z", "2016-01-04T12:00Z"]
    )  # fmt: skip
    out = calendar_features(ds, rule)
    np.testing.assert_array_equal(out[:, 0], [0, 0, 1, 1, 1, 1, 0])


def test_holiday_follows_the_local_date() -> None:
    late = pd.DatetimeIndex(["2015-12-24T23:30Z"])  # already Christmas Day in Berlin
    utc_rule = CalendarRule(features=["holiday"], country="DE")
    berlin_rule = CalendarRule(features=["holiday"], country="DE", timezone="Europe/Berlin")
    assert calendar_features(late, utc_rule)[0, 0] == 0.0
    assert calendar_features(late, berlin_rule)[0, 0] == 1.0


def test_holidays_us_subdivision() -> None:
    federal = CalendarRule(features=["holiday"], country="US")
    illinois = CalendarRule(features=["holiday"], country="US", subdivision="IL")
    # Casimir Pulaski Day (first Monday of March) and Lincoln's Birthday are Illinois holidays.
    ds = pd.DatetimeIndex(
        ["2024-03-04T12:00", "2024-02-12T12:00", "2024-07-04T12:00", "2024-07-05T12:00"]
    )
    np.testing.assert_array_equal(calendar_features(ds, federal)[:, 0], [0, 0, 1, 0])
    np.testing.assert_array_equal(calendar_features(ds, illinois)[:, 0], [1, 1, 1, 0])


def test_holidays_over_many_years_and_repeated_dates() -> None:
    rule = CalendarRule(features=["hour", "holiday"], country="NO", timezone="Europe/Oslo")
    ds = pd.date_range("2019-12-31 23:00", "2024-12-31 22:00", freq="h", tz="UTC")
    out = calendar_features(ds, rule)
    local = ds.tz_convert("Europe/Oslo")
    flags = pd.Series(out[:, 2], index=local).groupby(local.date).agg(["min", "max"])
    assert (flags["min"] == flags["max"]).all()  # one value per local date
    national_day = [pd.Timestamp(f"{year}-05-17").date() for year in range(2020, 2025)]
    assert (flags["max"][flags.index.isin(national_day)] == 1.0).sum() == 5
    norway = holidays.country_holidays("NO", years=range(2020, 2025))
    assert flags["max"].sum() == len(norway) > 5 * 10  # every public holiday, nothing else
    assert set(flags.index[flags["max"] == 1.0]) == set(norway)


def test_holiday_calendar_is_built_once_per_country_subdivision_and_years() -> None:
    rule = CalendarRule(features=["holiday"], country="US", subdivision="NY")
    ds = pd.date_range("1991-01-01", "1992-12-31", freq="6h", tz="UTC")
    calendar_features(ds, rule)
    before = calendar._calendar.cache_info()
    calendar_features(ds[::-1], rule)
    after = calendar._calendar.cache_info()
    assert (after.hits, after.misses) == (before.hits + 1, before.misses)
    calendar_features(ds[:10], rule)  # other years: a new calendar
    assert calendar._calendar.cache_info().misses == before.misses + 1


def test_vectorised_speed() -> None:
    ds = pd.date_range("2000-01-01", periods=100_000, freq="h", tz="UTC")
    rule = CalendarRule(timezone="Europe/Berlin")
    calendar_features(ds, rule)
    best = min(_timed(lambda: calendar_features(ds, rule)) for _ in range(3))
    assert best < 0.1
    with_holidays = CalendarRule(features=ALL, country="DE", timezone="Europe/Berlin")
    calendar_features(ds, with_holidays)
    assert min(_timed(lambda: calendar_features(ds, with_holidays)) for _ in range(3)) < 0.5


def _timed(call: Callable[[], object]) -> float:
    start = time.perf_counter()
    call()
    return time.perf_counter() - start


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"features": ["holiday"], "country": "XX"}, "unknown holidays country 'XX'"),
        ({"features": ["holiday"], "country": "de"}, "did you mean 'DE'"),
        ({"timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"timezone": "+02:00"}, "IANA time zone"),
        ({"features": ["holiday"]}, "'holiday' needs a country"),
        ({"features": ["hour", "weekday", "hour"]}, "more than once: ['hour']"),
        ({"country": "US", "subdivision": "ZZ"}, "unknown subdivision 'ZZ'"),
        ({"country": "US", "subdivision": "Illinois"}, "'Illinois' is spelled 'IL'"),
        ({"subdivision": "IL"}, "subdivision 'IL' needs a country"),
        ({"features": ["minute"]}, "features.0"),
        ({"freq": "h"}, "Extra inputs are not permitted"),
    ],
)
def test_validation_errors(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError) as raised:
        CalendarRule.model_validate(fields)
    assert message in str(raised.value)


def test_bad_timestamps_are_refused() -> None:
    with pytest.raises(TypeError, match="numeric dtype"):
        calendar_features(np.arange(3), CalendarRule())
    with pytest.raises(ValueError, match="1 timestamp.*missing.*position 1"):
        calendar_features(pd.DatetimeIndex(["2024-01-01", None, "2024-01-02"]), CalendarRule())
    with pytest.raises(ValueError, match="one-dimensional"):
        calendar_features(np.array([["2024-01-01"]], dtype="datetime64[s]"), CalendarRule())
    with pytest.raises(ValueError, match="cannot parse"):
        calendar_features(pd.Series(["not a time"]), CalendarRule())


@pytest.mark.parametrize(
    "rule",
    [
        CalendarRule(),
        CalendarRule(features=[]),
        CalendarRule(features=ALL, country="US", subdivision="IL", timezone="America/Chicago"),
    ],
)
def test_rule_round_trips_through_json(rule: CalendarRule) -> None:
    text = rule.model_dump_json()
    again = CalendarRule.model_validate_json(text)
    assert again == rule
    assert again.names() == rule.names()
    assert "width" not in rule.model_dump()
