from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from nearcast.pipelines.errors import DataValidationError, Problem
from nearcast.pipelines.schema import DS, UNIQUE_ID, Y
from nearcast.pipelines.validation import ValidationReport, validate_long


def frame(
    ids: Sequence[object], ds: Sequence[object], y: Sequence[object], **extra: Sequence[object]
) -> pd.DataFrame:
    return pd.DataFrame({UNIQUE_ID: ids, DS: ds, Y: y, **extra})


def problems_of(excinfo: pytest.ExceptionInfo[DataValidationError], kind: str) -> list[Problem]:
    return [p for p in excinfo.value.problems if p.kind == kind]


def test_clean_frame_comes_out_canonical() -> None:
    df = frame(
        [2, 1, 2],
        ["2024-01-01 01:00", "2024-01-01 00:00", "2024-01-01 00:00"],
        [3, 1, "2.5"],
    )
    out, report = validate_long(df)
    assert list(out.columns) == [UNIQUE_ID, DS, Y]
    assert out[UNIQUE_ID].tolist() == ["1", "2", "2"]
    assert pd.api.types.is_string_dtype(out[UNIQUE_ID])
    assert str(out[DS].dtype) == "datetime64[ns, UTC]"
    assert out[Y].dtype == np.float64
    assert out[Y].tolist() == [1.0, 2.5, 3.0]
    assert out[DS].tolist() == [
        pd.Timestamp("2024-01-01 00:00", tz="UTC"),
        pd.Timestamp("2024-01-01 00:00", tz="UTC"),
        pd.Timestamp("2024-01-01 01:00", tz="UTC"),
    ]
    assert (report.rows_in, report.rows_out, report.rows_aggregated_away) == (3, 3, 0)
    assert report.n_series == 2
    assert report.balanced


def test_missing_columns_are_named_with_the_columns_present() -> None:
    df = pd.DataFrame({"series": ["a"], DS: ["2024-01-01"], "value": [1.0]})
    with pytest.raises(DataValidationError) as excinfo:
        validate_long(df)
    message = str(excinfo.value)
    assert "missing column(s) ['unique_id', 'y']" in message
    assert "columns present: ['series', 'ds', 'value']" in message


def test_non_numeric_y_names_series_row_and_value() -> None:
    df = frame(["a", "a", "b"], ["2024-01-01", "2024-01-02", "2024-01-01"], [1.0, "oops", 2.0])
    with pytest.raises(DataValidationError) as excinfo:
        validate_long(df)
    (problem,) = problems_of(excinfo, "non_numeric")
    assert problem.unique_id == "a"
    assert problem.rows == [1]
    assert "series 'a', rows [1]: y is not numeric: 'oops'" in str(excinfo.value)


def test_infinite_y_is_rejected() -> None:
    df = frame(["a", "b", "b"], ["2024-01-01"] * 3, [1.0, np.inf, -np.inf])
    with pytest.raises(DataValidationError) as excinfo:
        validate_long(df)
    (problem,) = problems_of(excinfo, "infinite")
    assert (problem.unique_id, problem.rows) == ("b", [1, 2])
    assert "series 'b', rows [1, 2]: y is infinite" in str(excinfo.value)


def test_unparseable_and_missing_timestamps_are_named() -> None:
    df = frame(["a", "a", "b"], ["2024-01-01", "not a date", None], [1.0, 2.0, 3.0])
    with pytest.raises(DataValidationError) as excinfo:
        validate_long(df)
    (bad,) = problems_of(excinfo, "unparseable_timestamp")
    assert (bad.unique_id, bad.rows) == ("a", [1])
    assert "'not a date'" in bad.message
    (missing,) = problems_of(excinfo, "missing_timestamp")
    assert (missing.unique_id, missing.rows) == ("b", [2])


def test_numeric_timestamp_column_is_rejected() -> None:
    df = frame(["a"], [1_700_000_000], [1.0])
    with pytest.raises(DataValidationError, match="numeric dtype"):
        validate_long(df)


def test_missing_series_id_is_rejected() -> None:
    df = frame(["a", None], ["2024-01-01", "2024-01-02"], [1.0, 2.0])
    with pytest.raises(DataValidationError) as excinfo:
        validate_long(df)
    (problem,) = problems_of(excinfo, "missing_id")
    assert problem.rows == [1]


def test_duplicates_rejected_name_series_and_timestamps() -> None:
    df = frame(
        ["a", "a", "b", "a"],
        ["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01 00:00", "2024-01-01 00:00"],
        [1.0, 2.0, 3.0, 4.0],
    )
    with pytest.raises(DataValidationError) as excinfo:
        validate_long(df)
    (problem,) = problems_of(excinfo, "duplicate")
    assert problem.unique_id == "a"
    assert problem.rows == [pd.Timestamp("2024-01-01 00:00", tz="UTC")]
    message = str(excinfo.value)
    assert "series 'a', rows [2024-01-01T00:00:00+00:00]" in message
    assert "input rows 0, 3" in message


def test_duplicates_after_utc_conversion_are_detected() -> None:
    # 01:00+01:00 and 00:00Z are the same instant.
    df = frame(["a", "a"], ["2024-01-01T01:00+01:00", "2024-01-01T00:00Z"], [1.0, 2.0])
    with pytest.raises(DataValidationError, match="appear more than once"):
        validate_long(df)


@pytest.mark.parametrize(
    ("agg", "expected"),
    [("mean", 2.0), ("sum", 6.0), ("first", 1.0), ("last", 2.0), ("min", 1.0), ("max", 3.0)],
)
def test_duplicates_aggregated_and_counted(agg: str, expected: float) -> None:
    df = frame(
        ["a", "a", "b", "a"],
        ["2024-01-01", "2024-01-02", "2024-01-01", "2024-01-01"],
        [1.0, 10.0, 5.0, 3.0],
    )
    # series a at 2024-01-01 has y = 1.0, 3.0 and then (last in input order) 2.0
    df = pd.concat([df, frame(["a"], ["2024-01-01"], [2.0])], ignore_index=True)
    out, report = validate_long(df, duplicates="aggregate", agg=agg)
    assert out[Y].tolist() == [expected, 10.0, 5.0]
    assert (report.rows_in, report.rows_out, report.rows_aggregated_away) == (5, 3, 2)
    assert report.counts["duplicate_rows_aggregated"] == 2
    assert report.per_series["a"]["duplicate_rows_aggregated"] == 2
    assert "duplicate_rows_aggregated" not in report.per_series["b"]
    assert report.balanced


def test_sum_of_only_missing_duplicates_stays_missing() -> None:
    df = frame(["a", "a"], ["2024-01-01", "2024-01-01"], [np.nan, np.nan])
    out, _ = validate_long(df, duplicates="aggregate", agg="sum")
    assert np.isnan(out[Y].iloc[0])


def test_mixed_naive_and_aware_timestamps_name_the_rows() -> None:
    df = frame(
        ["a", "a", "b"],
        ["2024-01-01 00:00+02:00", "2024-01-01 01:00", "2024-01-01 00:00+00:00"],
        [1.0, 2.0, 3.0],
    )
    with pytest.raises(DataValidationError) as excinfo:
        validate_long(df)
    (problem,) = problems_of(excinfo, "mixed_timezones")
    assert (problem.unique_id, problem.rows) == ("a", [1])
    assert "'2024-01-01 01:00'" in problem.message


def test_different_offsets_are_converted_to_utc() -> None:
    df = frame(
        ["a", "a", "a"],
        ["2024-01-01 02:00+02:00", "2024-01-01T01:00Z", "2024-01-01 00:00-05:00"],
        [1.0, 2.0, 3.0],
    )
    out, report = validate_long(df)
    assert out[DS].tolist() == [
        pd.Timestamp("2024-01-01 00:00", tz="UTC"),
        pd.Timestamp("2024-01-01 01:00", tz="UTC"),
        pd.Timestamp("2024-01-01 05:00", tz="UTC"),
    ]
    assert out[Y].tolist() == [1.0, 2.0, 3.0]
    assert report.counts["naive_timestamp"] == 0


def test_tz_aware_datetime_column_is_converted() -> None:
    ds = pd.to_datetime(["2024-07-01 02:00", "2024-07-01 03:00"]).tz_localize("Europe/Paris")
    out, _ = validate_long(frame(["a", "a"], list(ds), [1.0, 2.0]))
    assert out[DS].tolist() == [
        pd.Timestamp("2024-07-01 00:00", tz="UTC"),
        pd.Timestamp("2024-07-01 01:00", tz="UTC"),
    ]


def test_naive_timestamps_are_taken_as_utc_and_counted() -> None:
    df = frame(["a", "a", "b"], ["2024-01-01 00:00", "2024-01-01 01:00", "2024-01-01"], [1, 2, 3])
    out, report = validate_long(df)
    assert out[DS].iloc[0] == pd.Timestamp("2024-01-01 00:00", tz="UTC")
    assert report.counts["naive_timestamp"] == 3
    assert report.per_series["a"]["naive_timestamp"] == 2
    naive_column = pd.to_datetime(pd.Series(["2024-01-01", "2024-01-02"]))
    out, report = validate_long(frame(["a", "a"], list(naive_column), [1.0, 2.0]))
    assert report.counts["naive_timestamp"] == 2
    assert str(out[DS].dtype) == "datetime64[ns, UTC]"


def test_missing_y_is_allowed_and_counted() -> None:
    stamps = ["2024-01-01T00:00Z", "2024-01-02T00:00Z", "2024-01-01T00:00Z"]
    out, report = validate_long(frame(["a", "a", "b"], stamps, [np.nan, 1.0, None]))
    assert out[Y].isna().tolist() == [True, False, True]
    assert report.counts["missing_y"] == 2
    assert report.per_series["a"]["missing_y"] == 1
    assert report.per_series["b"] == {"rows_in": 1, "rows_out": 1, "missing_y": 1}


def test_every_problem_is_reported_in_one_error() -> None:
    df = frame(
        ["a", "b", "c", "d"],
        ["2024-01-01", "2024-01-01", "never", "2024-01-01"],
        ["x", np.inf, 1.0, 2.0],
    )
    with pytest.raises(DataValidationError) as excinfo:
        validate_long(df)
    assert excinfo.value.kinds() == {"non_numeric", "infinite", "unparseable_timestamp"}
    assert [p.unique_id for p in excinfo.value.problems] == ["a", "b", "c"]


def test_other_columns_are_dropped_and_reported() -> None:
    df = frame(["a"], ["2024-01-01"], [1.0], price=[9.5], note=["hello"])
    out, report = validate_long(df)
    assert list(out.columns) == [UNIQUE_ID, DS, Y]
    assert report.columns_dropped == ["price", "note"]


def test_report_as_dict_is_plain_data() -> None:
    _, report = validate_long(frame(["a"], ["2024-01-01T00:00+00:00"], [1.0]))
    data = report.as_dict()
    assert data["rows_in"] == 1
    assert data["per_series"] == {"a": {"rows_in": 1, "rows_out": 1}}
    assert isinstance(report, ValidationReport)


def test_invalid_arguments_raise_value_error() -> None:
    df = frame(["a"], ["2024-01-01"], [1.0])
    with pytest.raises(ValueError, match="duplicates must be"):
        validate_long(df, duplicates="drop")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="choose one of mean, sum, last, first, min, max"):
        validate_long(df, agg="median")


def test_error_message_shows_ten_problems_and_counts_the_rest() -> None:
    problems = [Problem("too_short", f"s{i}", [], f"problem {i}") for i in range(13)]
    message = str(DataValidationError(problems))
    assert message.startswith("13 data problems found:")
    assert "series 's9': problem 9" in message
    assert "s10" not in message
    assert message.endswith("... and 3 more problems")
    assert isinstance(DataValidationError(problems), ValueError)


def test_problem_lists_only_a_few_rows() -> None:
    problem = Problem("non_numeric", "a", list(range(8)), "bad")
    assert (
        problem.describe() == "[non_numeric] series 'a', rows [0, 1, 2, 3, 4, ... and 3 more]: bad"
    )
    assert Problem("x", None, [], "whole column").describe() == "[x] whole column"
