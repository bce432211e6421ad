"""Problems in data read from files name the file and its line; unreadable sources say why."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from nearcast.pipelines.dataset import DataConfig, load_dataset, read_raw
from nearcast.pipelines.errors import DataSourceError, DataValidationError, InputError
from nearcast.pipelines.sources import read_sql
from nearcast.pipelines.validation import drop_short_series, validate_long

HEADER = "unique_id,ds,y\n"


def _rows(uid: str, values: list[str], start: int = 0) -> str:
    return "".join(f"{uid},2024-01-01T{start + i:02d}:00:00Z,{v}\n" for i, v in enumerate(values))


def test_rows_become_file_lines_across_files(tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text(HEADER + _rows("A", ["1", "2", "x"]))  # x: line 4 of a.csv
    (tmp_path / "b.csv").write_text(HEADER + _rows("B", ["1", "2", "3", "y", "z"]))  # lines 5, 6
    cfg = DataConfig(source="files", path=str(tmp_path / "*.csv"))
    with pytest.raises(DataValidationError) as info:
        load_dataset(cfg)
    described = [p.describe() for p in info.value.problems]
    assert described == [
        f"[non_numeric] series 'A', {tmp_path / 'a.csv'} line 4: y is not numeric: 'x'",
        f"[non_numeric] series 'B', {tmp_path / 'b.csv'} lines [5, 6]: y is not numeric: 'y', "
        "'z'",
    ]
    assert isinstance(info.value, InputError) and isinstance(info.value, ValueError)


def test_parquet_rows_are_numbered_from_zero_and_columns_name_the_file(tmp_path: Path) -> None:
    frame = pd.DataFrame({"unique_id": ["A"] * 3, "ds": ["2024-01-01T00:00Z", "soon",
                                                         "2024-01-01T02:00Z"], "y": [1.0] * 3})
    frame.to_parquet(tmp_path / "obs.parquet")
    with pytest.raises(DataValidationError, match=r"obs\.parquet row 1: cannot parse ds"):
        load_dataset(DataConfig(source="files", path=str(tmp_path / "obs.parquet")))
    (tmp_path / "cols.csv").write_text("id,when,value\nA,2024-01-01,1\n")
    missing = r"^data problem \[missing_column\] \S*cols\.csv: missing column\(s\) \['unique_id'"
    with pytest.raises(DataValidationError, match=missing):
        load_dataset(DataConfig(source="files", path=str(tmp_path / "cols.csv")))


def test_empty_and_header_only_files_are_refused_when_read(tmp_path: Path) -> None:
    (tmp_path / "empty.csv").write_text("")
    (tmp_path / "header.csv").write_text(HEADER)
    with pytest.raises(DataSourceError, match=r"empty\.csv: the file is empty"):
        read_raw(DataConfig(source="files", path=str(tmp_path / "empty.csv")))
    with pytest.raises(DataValidationError, match=r"\[empty\] \S*header\.csv: no data rows$"):
        read_raw(DataConfig(source="files", path=str(tmp_path / "header.csv")))
    with pytest.raises(DataValidationError, match=r"\[empty\] no data rows"):
        validate_long(pd.DataFrame({"unique_id": [], "ds": [], "y": []}))


def test_sql_sources_name_database_and_table_without_the_password(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'obs.db'}"
    engine = sa.create_engine(url)
    pd.DataFrame({"unique_id": ["A"], "ds": ["2024-01-01"], "y": [1.0]}).to_sql("obs", engine)
    engine.dispose()
    with pytest.raises(DataSourceError, match=r"obs\.db: no table 'nothere' \(tables there: obs\)"):
        read_sql(url, "nothere")
    with pytest.raises(DataSourceError, match=r"obs\.db: .*no such table: nothere"):
        read_sql(url, "SELECT * FROM nothere")
    with pytest.raises(DataSourceError, match=r"^not a database URL: 'obs\.db'"):
        read_sql("obs.db", "obs")
    with pytest.raises(DataSourceError) as info:
        read_sql("postgresql://me:hunter2@127.0.0.1:1/x", "obs")
    assert "postgresql://me:***@127.0.0.1:1/x" in str(info.value)
    assert "use postgresql+psycopg2://" in str(info.value) and "hunter2" not in str(info.value)
    cfg = DataConfig(source="sql", url=url, query="SELECT * FROM obs WHERE y > 5")
    with pytest.raises(DataValidationError, match=r"\[empty\] sqlite:///\S*obs\.db SELECT .*: "
                                                  r"no data rows"):
        read_raw(cfg)


def test_data_config_names_the_key() -> None:
    with pytest.raises(ValueError, match=r"unknown frequency 'hourly'"):
        DataConfig(freq="hourly")
    with pytest.raises(ValueError, match=r"agg\n  Input should be 'mean', 'sum', 'last'"):
        DataConfig(agg="median")
    with pytest.raises(ValueError, match=r"'path' is required when source is 'files'"):
        DataConfig(source="files")
    with pytest.raises(ValueError, match=r"'url' and 'query' are required"):
        DataConfig(source="sql", url="sqlite://")


def test_drop_short_series_leaves_out_and_names() -> None:
    df = pd.DataFrame({"unique_id": ["a"] * 5 + ["b"] * 2 + ["c"] * 4, "y": range(11)})
    kept, skipped = drop_short_series(df, 4)
    assert skipped == {"b": 2} and kept["unique_id"].tolist() == ["a"] * 5 + ["c"] * 4
    assert kept["y"].tolist() == [0, 1, 2, 3, 4, 7, 8, 9, 10]
    assert drop_short_series(df, 2)[1] == {}
    with pytest.raises(DataValidationError, match=r"series 'b': series has 2 point\(s\); why"):
        drop_short_series(df, 4, strict=True, why="why")
    with pytest.raises(DataValidationError, match=r"3 data problems"):
        drop_short_series(df, 6)  # none is long enough
