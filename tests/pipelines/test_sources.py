from __future__ import annotations

import gzip
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from nearcast.pipelines.bucketing import bucket
from nearcast.pipelines.errors import DataSourceError, DataValidationError
from nearcast.pipelines.gaps import fill_gaps
from nearcast.pipelines.schema import DS, UNIQUE_ID, Y
from nearcast.pipelines.sources import (
    ColumnMap,
    from_dataframe,
    load_m4_hourly,
    read_files_located,
    read_m4_wide,
    read_sql,
)
from nearcast.pipelines.sql_source import read_rows
from nearcast.pipelines.validation import validate_long

USER_COLUMNS = ColumnMap(unique_id="store", ds="when", y="sales")


def read_files(path: str | os.PathLike[str], columns: ColumnMap | None = None) -> pd.DataFrame:
    return read_files_located(path, columns=columns)[0]


def user_frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "store": ["007", "007", "12"],
            "when": [
                "2024-01-01 00:00:00+00:00",
                "2024-01-01 01:00:00+00:00",
                "2024-01-01 00:00:00+00:00",
            ],
            "sales": [1.5, 2.5, 3.0],
            "temp": [10.0, 11.0, 12.0],
            "ignored": ["x", "y", "z"],
        }
    )


def test_from_dataframe_renames_and_selects() -> None:
    out = from_dataframe(user_frame(), USER_COLUMNS)
    assert list(out.columns) == [UNIQUE_ID, DS, Y]
    assert out[UNIQUE_ID].tolist() == ["007", "007", "12"]
    untouched = from_dataframe(user_frame())
    assert list(untouched.columns) == list(user_frame().columns)


def test_from_dataframe_names_missing_columns() -> None:
    with pytest.raises(DataValidationError) as excinfo:
        from_dataframe(user_frame().drop(columns=["sales"]), USER_COLUMNS)
    assert "missing column(s) ['sales']" in str(excinfo.value)
    assert "'store', 'when', 'temp', 'ignored'" in str(excinfo.value)


def test_column_map_rejects_clashes() -> None:
    with pytest.raises(ValueError, match="twice"):
        ColumnMap(unique_id="a", ds="a", y="b")
    assert USER_COLUMNS.renames() == {"store": UNIQUE_ID, "when": DS, "sales": Y}


def test_csv_file_keeps_ids_as_strings(tmp_path: Path) -> None:
    path = tmp_path / "obs.csv"
    user_frame().to_csv(path, index=False)
    out = read_files(path, columns=USER_COLUMNS)
    assert out[UNIQUE_ID].tolist() == ["007", "007", "12"]
    assert out[Y].tolist() == [1.5, 2.5, 3.0]


def test_gzipped_csv_and_unknown_suffix(tmp_path: Path) -> None:
    gz = tmp_path / "obs.csv.gz"
    from_dataframe(user_frame(), USER_COLUMNS).to_csv(gz, index=False)
    assert len(read_files(gz)) == 3
    odd = tmp_path / "obs.data"
    odd.write_bytes(gzip.decompress(gz.read_bytes()))
    with pytest.raises(DataSourceError, match=r"cannot tell the format .* from its suffix"):
        read_files(odd)


def test_parquet_file(tmp_path: Path) -> None:
    path = tmp_path / "obs.parquet"
    user_frame().to_parquet(path)
    out = read_files(path, columns=USER_COLUMNS)
    pd.testing.assert_frame_equal(out, from_dataframe(user_frame(), USER_COLUMNS))


def test_glob_and_folder(tmp_path: Path) -> None:
    frame = from_dataframe(user_frame(), USER_COLUMNS)
    frame.iloc[:2].to_csv(tmp_path / "part-1.csv", index=False)
    frame.iloc[2:].to_parquet(tmp_path / "part-2.parquet")
    (tmp_path / "README.txt").write_text("not data")
    by_glob = read_files(str(tmp_path / "part-*"))
    assert by_glob[Y].tolist() == [1.5, 2.5, 3.0]
    by_folder = read_files(tmp_path)
    assert by_folder[UNIQUE_ID].tolist() == ["007", "007", "12"]
    nested = tmp_path / "deep" / "er"
    nested.mkdir(parents=True)
    frame.to_csv(nested / "all.csv", index=False)
    assert len(read_files(str(tmp_path / "**" / "*.csv"))) == 2 + 3


def test_nothing_matching_names_the_pattern(tmp_path: Path) -> None:
    pattern = str(tmp_path / "missing-*.csv")
    with pytest.raises(FileNotFoundError, match="missing-\\*.csv"):
        read_files(pattern)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(FileNotFoundError, match="empty"):
        read_files(empty)


def sqlite_file(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'obs.db'}"
    engine = sa.create_engine(url)
    user_frame().to_sql("observations", engine, index=False)
    engine.dispose()
    return url


def test_sql_table_from_sqlite_file(tmp_path: Path) -> None:
    out = read_sql(sqlite_file(tmp_path), "observations", columns=USER_COLUMNS)
    assert out[UNIQUE_ID].tolist() == ["007", "007", "12"]
    assert out[Y].tolist() == [1.5, 2.5, 3.0]
    clean, _ = validate_long(out)
    assert clean[DS].iloc[1] == pd.Timestamp("2024-01-01 01:00", tz="UTC")


def test_sql_query_and_engine(tmp_path: Path) -> None:
    engine = sa.create_engine(sqlite_file(tmp_path))
    query = 'SELECT store, "when", sales, temp FROM observations WHERE store = \'007\''
    out = read_sql(engine, query, columns=USER_COLUMNS)
    assert out[Y].tolist() == [1.5, 2.5]
    with engine.connect() as connection:  # the caller's engine is still usable
        assert connection.execute(sa.text("SELECT count(*) FROM observations")).scalar() == 3
    rows = read_rows(engine, query)
    assert rows["sales"].tolist() == [1.5, 2.5]  # the columns as the database names them
    assert list(rows.columns) == ["store", "when", "sales", "temp"]
    engine.dispose()


POSTGRES_DEFAULT_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


@pytest.fixture
def postgres() -> Iterator[sa.Engine]:
    """An engine on NEARCAST_TEST_POSTGRES_URL if set, else the local default; skip if neither
    answers (the reason names what was tried)."""
    urls = [u for u in (os.environ.get("NEARCAST_TEST_POSTGRES_URL"), POSTGRES_DEFAULT_URL) if u]
    tried = []
    for url in urls:
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            engine.dispose()
            shown = sa.make_url(url).render_as_string(hide_password=True)
            tried.append(f"{shown}: {str(exc.orig).strip().splitlines()[0]}")
            continue
        yield engine
        engine.dispose()
        return
    pytest.skip("no PostgreSQL reachable; tried " + "; ".join(tried))


@pytest.fixture
def postgres_table(postgres: sa.Engine) -> Iterator[str]:
    """The user frame in a fresh table (timestamptz column), dropped afterwards."""
    table = f"nearcast_test_{uuid.uuid4().hex[:12]}"
    frame = user_frame().assign(when=pd.to_datetime(user_frame()["when"], utc=True))
    frame.to_sql(table, postgres, index=False)
    try:
        yield table
    finally:
        with postgres.begin() as connection:
            connection.execute(sa.text(f'DROP TABLE IF EXISTS "{table}"'))


@pytest.mark.postgres
def test_sql_postgres_table(postgres: sa.Engine, postgres_table: str) -> None:
    out = read_sql(postgres, f"public.{postgres_table}", columns=USER_COLUMNS)
    assert list(out.columns) == [UNIQUE_ID, DS, Y]
    clean, report = validate_long(out)
    hour = pd.Timedelta("1h")
    start = pd.Timestamp("2024-01-01", tz="UTC")
    assert clean[UNIQUE_ID].tolist() == ["007", "007", "12"]  # text ids keep leading zeros
    assert clean[DS].tolist() == [start, start + hour, start]
    assert clean[Y].tolist() == [1.5, 2.5, 3.0]
    assert report.rows_in == report.rows_out == 3


@pytest.mark.postgres
def test_sql_postgres_query_by_url(postgres: sa.Engine, postgres_table: str) -> None:
    url = postgres.url.render_as_string(hide_password=False)
    query = (
        f'SELECT store, "when", sales FROM "{postgres_table}" '
        "WHERE store = '007' AND \"when\" >= '2024-01-01 01:00:00+00' ORDER BY \"when\""
    )
    out = from_dataframe(read_rows(url, query), ColumnMap("store", "when", "sales"))
    assert out[Y].tolist() == [2.5]
    grid, _ = bucket(validate_long(out)[0], "h")
    assert grid[DS].tolist() == [pd.Timestamp("2024-01-01 01:00", tz="UTC")]


def test_m4_wide_tiny_file(tmp_path: Path) -> None:
    text = '"V1","V2","V3","V4","V5"\n"H1",605,586,,\n"H2",1,2,3,4\n"X3",5,,7,\n'
    path = tmp_path / "tiny.csv.gz"
    path.write_bytes(gzip.compress(text.encode()))
    out = read_m4_wide(path, start="2020-06-01 12:00", freq="h")
    assert out[UNIQUE_ID].tolist() == ["H1", "H1", "H2", "H2", "H2", "H2", "X3", "X3", "X3"]
    np.testing.assert_array_equal(out[Y].to_numpy(), [605, 586, 1, 2, 3, 4, 5, np.nan, 7])
    start = pd.Timestamp("2020-06-01 12:00", tz="UTC")
    assert out[DS].iloc[:2].tolist() == [start, start + pd.Timedelta("1h")]
    assert out.loc[out[UNIQUE_ID] == "X3", DS].iloc[-1] == start + pd.Timedelta("2h")
    assert str(out[DS].dtype) == "datetime64[ns, UTC]"
    two = read_m4_wide(path, n_series=2, freq="D", start="2020-01-01T00:00+02:00")
    assert set(two[UNIQUE_ID]) == {"H1", "H2"}
    assert two[DS].iloc[1] == pd.Timestamp("2019-12-31 22:00", tz="UTC") + pd.Timedelta("1D")


def test_bundled_m4_hourly() -> None:
    df = load_m4_hourly()
    lengths = df.groupby(UNIQUE_ID).size()
    assert len(lengths) == 414
    assert lengths.min() == 700 and lengths.max() == 960
    h1 = df[df[UNIQUE_ID] == "H1"]
    assert h1[Y].iloc[0] == 605.0
    assert h1[DS].iloc[0] == pd.Timestamp("2000-01-01", tz="UTC")
    assert not df[Y].isna().any()
    assert load_m4_hourly(n_series=3)[UNIQUE_ID].unique().tolist() == ["H1", "H2", "H3"]


def test_end_to_end_from_file_to_filled_grid(tmp_path: Path) -> None:
    raw = pd.DataFrame(
        {
            "store": ["a", "a", "a", "b"],
            "when": [
                "2024-01-01 02:10+02:00",
                "2024-01-01 00:20Z",
                "2024-01-01 03:40Z",
                "2024-01-01 00:00Z",
            ],
            "sales": [1.0, 3.0, 5.0, 9.0],
        }
    )
    raw.to_csv(tmp_path / "raw.csv", index=False)
    long = read_files(tmp_path / "raw.csv", columns=ColumnMap("store", "when", "sales"))
    clean, report = validate_long(long)
    assert report.rows_out == 4
    grid, _ = bucket(clean, "h")
    # a: 00:10Z and 00:20Z -> 00:00 bucket mean 2.0; 01:00, 02:00 empty; 03:40Z -> 03:00
    filled, gaps = fill_gaps(grid, "linear")
    assert filled.loc[filled[UNIQUE_ID] == "a", Y].tolist() == pytest.approx([2.0, 3.0, 4.0, 5.0])
    assert gaps.per_series["a"].filled == 2
