from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from nearcast.pipelines.covariates import (
    Covariate,
    future_names,
    past_names,
    static_names,
    time_varying,
)
from nearcast.pipelines.dataset import DataConfig, load_dataset
from nearcast.pipelines.errors import DataValidationError
from nearcast.pipelines.grid import GridRule
from nearcast.pipelines.prepare import regularize
from nearcast.pipelines.schema import DS, UNIQUE_ID, Y
from nearcast.pipelines.sources import ColumnMap, from_dataframe

EPF = Path(__file__).resolve().parents[2] / "benchmarks" / "data" / "epf"

EPF_HEADER = ", Price, Grid load forecast, Wind power forecast\n"
EPF_ROWS = [
    "2013-01-01 00:00:00,31.05,42497.0,2798.0",
    "2013-01-01 01:00:00,30.47,41463.0,2417.0",
    "2013-01-01 02:00:00,28.92,40812.0,2036.0",
    "2013-01-01 03:00:00,27.88,40246.0,1706.0",
]
EPF_COVARIATES: dict[str, Any] = {
    "load": {"column": " Grid load forecast", "role": "future"},
    "wind": {"column": " Wind power forecast", "role": "future"},
}


def epf_config(path: Path, **changes: Any) -> DataConfig:
    data = {"source": "files", "path": str(path), "series_id": "NP", "freq": "h",
            "columns": {"ds": "", "y": " Price"}, "covariates": EPF_COVARIATES} | changes
    return DataConfig.model_validate(data)


def write_epf(tmp_path: Path, rows: list[str] = EPF_ROWS, header: str = EPF_HEADER) -> Path:
    path = tmp_path / "NP.csv"
    path.write_text(header + "\n".join(rows) + "\n")
    return path


def hours(n: int, start: str = "2024-01-01", freq: str = "h") -> list[pd.Timestamp]:
    return list(pd.date_range(start, periods=n, freq=freq, tz="UTC"))


def test_epf_layout_loads_with_covariates_renamed(tmp_path: Path) -> None:
    data = load_dataset(epf_config(write_epf(tmp_path)))
    frame = data.frame
    assert list(frame.columns) == [UNIQUE_ID, DS, Y, "load", "wind"]
    assert frame[UNIQUE_ID].tolist() == ["NP"] * 4
    assert frame[DS].tolist() == hours(4, "2013-01-01")
    assert frame[Y].tolist() == [31.05, 30.47, 28.92, 27.88]
    assert frame["load"].tolist() == [42497.0, 41463.0, 40812.0, 40246.0]
    assert frame["wind"].dtype == np.float64
    assert data.prepared.validation.columns_dropped == []
    assert data.prepared.as_dict()["covariates"]["policies"] == {"load": "ffill", "wind": "ffill"}


def test_bad_covariate_value_names_series_line_and_column(tmp_path: Path) -> None:
    rows = list(EPF_ROWS)
    rows[2] = "2013-01-01 02:00:00,28.92,oops,2036.0"
    with pytest.raises(DataValidationError) as excinfo:
        load_dataset(epf_config(write_epf(tmp_path, rows)))
    (problem,) = excinfo.value.problems
    assert (problem.kind, problem.unique_id, problem.rows, problem.column) == (
        "non_numeric", "NP", [4], "load")
    message = str(excinfo.value)
    assert "series 'NP'" in message and "NP.csv line 4" in message
    assert "column 'load'" in message and "' Grid load forecast'" in message
    assert "'oops'" in message


def test_missing_covariate_column_is_named(tmp_path: Path) -> None:
    covariates = EPF_COVARIATES | {"solar": {"column": " Solar", "role": "past"}}
    with pytest.raises(DataValidationError) as excinfo:
        load_dataset(epf_config(write_epf(tmp_path), covariates=covariates))
    (problem,) = excinfo.value.problems
    assert problem.kind == "missing_column" and problem.column == "solar"
    message = str(excinfo.value)
    assert "covariate 'solar'" in message and "' Solar'" in message
    assert "' Grid load forecast'" in message  # the columns present
    assert "NP.csv" in message


def test_half_hourly_covariates_bucket_with_their_own_aggregation() -> None:
    df = pd.DataFrame({
        UNIQUE_ID: "a", DS: hours(4, freq="30min"), Y: [1.0, 3.0, 5.0, 7.0],
        "energy": [1.0, 2.0, 3.0, 4.0], "temp": [10.0, 20.0, 30.0, 50.0],
        "peak": [1.0, 9.0, 2.0, 3.0],
    })
    covs = {"energy": Covariate(role="past", agg="sum"), "temp": Covariate(role="future"),
            "peak": Covariate(role="future", agg="max")}
    out = regularize(df, GridRule(freq="h", agg="mean"), covariates=covs).frame
    assert out[DS].tolist() == hours(2)
    assert out[Y].tolist() == [2.0, 6.0]
    assert out["energy"].tolist() == [3.0, 7.0]
    assert out["temp"].tolist() == [15.0, 40.0]
    assert out["peak"].tolist() == [9.0, 3.0]


def test_covariate_gaps_are_filled_by_their_policy_and_counted() -> None:
    stamps = hours(6)
    df = pd.DataFrame({
        UNIQUE_ID: "a", DS: stamps[:3] + stamps[4:], Y: [1.0, 2.0, 3.0, 5.0, 6.0],
        "load": [np.nan, 10.0, 20.0, 40.0, 50.0], "wind": [1.0, 2.0, 3.0, 5.0, np.nan],
    })
    covs = {"load": Covariate(role="future", gap_policy="linear"),
            "wind": Covariate(role="past")}
    prepared = regularize(df, GridRule(freq="h", gap_policy="linear"), covariates=covs)
    out = prepared.frame
    assert out["load"].tolist() == [10.0, 10.0, 20.0, 30.0, 40.0, 50.0]  # leading: backward
    assert out["wind"].tolist() == [1.0, 2.0, 3.0, 3.0, 5.0, 5.0]  # ffill
    assert not out[["load", "wind"]].isna().any().any()
    per_series = prepared.covariates.per_series["a"]
    assert (per_series["load"].missing, per_series["load"].filled,
            per_series["load"].backfilled) == (2, 1, 1)
    assert (per_series["wind"].missing, per_series["wind"].filled,
            per_series["wind"].backfilled) == (2, 2, 0)
    table = prepared.series_report()
    assert table["covariate_values_filled"].tolist() == [4]
    assert table["values_imputed"].tolist() == [1]  # the target's own count is unchanged
    lines = "\n".join(prepared.summary_lines())
    assert "covariate 'load': 2 values missing on the grid; 1 filled (linear), 1 filled " \
           "backward" in lines
    totals = prepared.as_dict()["covariates"]["totals"]
    assert totals["wind"] == {"missing": 2, "filled": 2, "backfilled": 0}


def test_covariate_without_any_value_in_a_series_is_an_error() -> None:
    df = pd.DataFrame({UNIQUE_ID: ["a", "a", "b"], DS: hours(2) + hours(1), Y: 1.0,
                       "load": [1.0, 2.0, np.nan]})
    with pytest.raises(DataValidationError) as excinfo:
        regularize(df, GridRule(), covariates={"load": Covariate(role="future")})
    (problem,) = excinfo.value.problems
    assert (problem.kind, problem.unique_id, problem.column) == ("missing_covariate", "b", "load")


def test_static_covariate_varying_within_a_series_is_named(tmp_path: Path) -> None:
    path = tmp_path / "obs.csv"
    pd.DataFrame({UNIQUE_ID: ["a", "a", "b", "b"], DS: hours(2) * 2, Y: 1.0,
                  "size": [3.0, 3.0, 5.0, 6.0]}).to_csv(path, index=False)
    cfg = DataConfig(source="files", path=str(path),
                     covariates={"size": Covariate(role="static")})
    with pytest.raises(DataValidationError) as excinfo:
        load_dataset(cfg)
    (problem,) = excinfo.value.problems
    assert (problem.kind, problem.unique_id, problem.column, problem.rows) == (
        "static_varies", "b", "size", [5])
    assert "series 'b'" in str(excinfo.value) and "static covariate 'size'" in str(excinfo.value)


def test_static_covariate_missing_is_named() -> None:
    df = pd.DataFrame({UNIQUE_ID: "a", DS: hours(2), Y: 1.0, "size": [3.0, None]})
    with pytest.raises(DataValidationError) as excinfo:
        regularize(df, GridRule(), covariates={"size": Covariate(role="static")})
    (problem,) = excinfo.value.problems
    assert (problem.kind, problem.unique_id, problem.column, problem.rows) == (
        "missing_static", "a", "size", [1])


def test_categorical_static_is_kept_as_str(tmp_path: Path) -> None:
    path = tmp_path / "obs.csv"
    stamps = hours(3)
    pd.DataFrame({"store": ["s1", "s1", "s2", "s2"], DS: [stamps[0], stamps[2]] * 2,
                  Y: [1.0, 3.0, 2.0, 4.0], "Region": ["007", "007", "12", "12"],
                  "size": [1, 1, 2, 2]}).to_csv(path, index=False)
    cfg = DataConfig(source="files", path=str(path), columns={"unique_id": "store"},
                     covariates={"region": Covariate(role="static", kind="categorical",
                                                     column="Region"),
                                 "size": Covariate(role="static")})
    frame = load_dataset(cfg).frame
    assert list(frame.columns) == [UNIQUE_ID, DS, Y, "region", "size"]
    assert frame["region"].tolist() == ["007"] * 3 + ["12"] * 3  # the empty bucket too
    assert pd.api.types.is_string_dtype(frame["region"])
    assert frame["size"].tolist() == [1.0] * 3 + [2.0] * 3


def test_output_order_time_varying_then_static_and_from_dataframe_by_key_or_column() -> None:
    user = pd.DataFrame({"id": "a", "when": hours(2), "value": [1.0, 2.0], "kind": "x",
                         "Temp": [5.0, 6.0], "load": [7.0, 8.0]})
    covs = {"kind": Covariate(role="static", kind="categorical"),
            "temp": Covariate(role="future", column="Temp"), "load": Covariate(role="past")}
    long = from_dataframe(user, ColumnMap(unique_id="id", ds="when", y="value"),
                          covariates=covs)
    assert list(long.columns) == [UNIQUE_ID, DS, Y, "kind", "temp", "load"]
    out = regularize(long, GridRule(), covariates=covs).frame
    assert list(out.columns) == [UNIQUE_ID, DS, Y, "temp", "load", "kind"]
    assert out["temp"].tolist() == [5.0, 6.0]
    kept = from_dataframe(user.rename(columns={"id": UNIQUE_ID, "when": DS, "value": Y}),
                          covariates=covs)  # no mapping: every column kept, covariates renamed
    assert list(kept.columns) == [UNIQUE_ID, DS, Y, "kind", "temp", "load"]
    assert time_varying(covs) == ["temp", "load"]
    assert (future_names(covs), past_names(covs), static_names(covs)) == (
        ["temp"], ["load"], ["kind"])


def test_duplicates_merge_each_covariate_with_its_aggregation() -> None:
    stamps = hours(1) * 2
    df = pd.DataFrame({UNIQUE_ID: "a", DS: stamps, Y: [1.0, 3.0], "rain": [1.0, 2.0],
                       "temp": [10.0, 20.0]})
    covs = {"rain": Covariate(role="past", agg="sum"), "temp": Covariate(role="future")}
    out = regularize(df, GridRule(), covariates=covs).frame
    assert out[[Y, "rain", "temp"]].to_numpy().tolist() == [[2.0, 3.0, 15.0]]


def test_sql_source_keeps_covariates(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'obs.db'}"
    engine = sa.create_engine(url)
    pd.DataFrame({"when": [str(t) for t in hours(3)], "price": [1.0, 2.0, 3.0],
                  " Load": [4.0, 5.0, 6.0]}).to_sql("obs", engine, index=False)
    engine.dispose()
    cfg = DataConfig(source="sql", url=url, query="obs", series_id="m1",
                     columns={"ds": "when", "y": "price"},
                     covariates={"load": Covariate(role="future", column=" Load")})
    frame = load_dataset(cfg).frame
    assert list(frame.columns) == [UNIQUE_ID, DS, Y, "load"]
    assert frame[UNIQUE_ID].tolist() == ["m1"] * 3 and frame["load"].tolist() == [4.0, 5.0, 6.0]


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"covariates": {"y": {"role": "past"}}}, "collide"),
        ({"columns": {"unique_id": "market", "ds": "", "y": " Price"}}, "not both"),
        ({"covariates": {"zone": {"role": "future", "kind": "categorical"}}}, "static"),
        ({"covariates": {"load": {"role": "future", "lag": 1}}}, "lag"),
    ],
)
def test_config_refuses_bad_covariate_declarations(
    tmp_path: Path, changes: dict[str, Any], match: str
) -> None:
    with pytest.raises(ValidationError, match=match):
        epf_config(tmp_path / "x.csv", **changes)


def test_series_id_refuses_a_frame_with_an_id_column() -> None:
    df = pd.DataFrame({UNIQUE_ID: ["a"], DS: hours(1), Y: [1.0]})
    with pytest.raises(DataValidationError, match="series_id 'NP'"):
        from_dataframe(df, series_id="NP")


def test_univariate_path_unchanged(tmp_path: Path) -> None:
    stamps = hours(4)
    df = pd.DataFrame({UNIQUE_ID: ["a", "a", "a", "b"], DS: [stamps[0], stamps[0], stamps[3],
                                                            stamps[1]],
                       Y: [1.0, 3.0, np.nan, 5.0], "note": "x"})
    rule = GridRule(freq="h", gap_policy="linear")
    plain = regularize(df, rule)
    empty = regularize(df, rule, covariates={})
    pd.testing.assert_frame_equal(plain.frame, empty.frame)
    assert list(plain.frame.columns) == [UNIQUE_ID, DS, Y]
    assert plain.as_dict() == empty.as_dict() and "covariates" not in plain.as_dict()
    assert list(plain.series_report().columns) == [
        "unique_id", "points_in", "duplicates_merged", "rows_aggregated", "nan_in",
        "empty_buckets", "values_imputed", "left_missing", "rows_out", "skipped_too_short"]
    assert len(plain.summary_lines()) == 4
    assert plain.validation.columns_dropped == ["note"]
    path = tmp_path / "obs.csv"
    df.to_csv(path, index=False)
    loaded = load_dataset(DataConfig(source="files", path=str(path), gap_policy="linear"))
    pd.testing.assert_frame_equal(loaded.frame, plain.frame)


def test_real_de_file_loads_with_both_covariates() -> None:
    cfg = DataConfig(source="files", path=str(EPF / "DE.csv"), series_id="DE", freq="h",
                     columns={"ds": "", "y": "Price"},
                     covariates={"load": Covariate(role="future", column="Ampirion Load Forecast"),
                                 "renewables": Covariate(role="future",
                                                         column="PV+Wind Forecast")})
    data = load_dataset(cfg)
    frame = data.frame
    assert len(frame) == 34_944
    assert list(frame.columns) == [UNIQUE_ID, DS, Y, "load", "renewables"]
    assert int((frame[Y] <= 0).sum()) == 303
    assert data.prepared.buckets.totals.empty_buckets == 0
    assert not frame[["load", "renewables"]].isna().any().any()
