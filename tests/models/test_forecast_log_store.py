"""The forecast log store on SQLite (a file in tmp_path) and PostgreSQL (a fresh schema on the
machine's server, dropped afterwards; skipped naming the URL tried when none answers): round
trips, idempotent writes, actuals twice change nothing, corrections, pruning, the matched join,
summaries, and two processes creating and writing one log at once."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from nearcast.models.monitoring.log_store import (
    ACTUALS,
    FORECASTS,
    ActualsWrite,
    ForecastLog,
    LoggedForecast,
)
from nearcast.models.settings import ForecastLogSettings

POSTGRES_DEFAULT_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
HOUR = 3600
T0 = 1_900_000_800  # an epoch second on the hour
REPO = Path(__file__).resolve().parents[2]


def _postgres_url() -> Iterator[str]:
    """A log URL on a fresh PostgreSQL schema (search_path), the schema dropped afterwards."""
    base = os.environ.get("NEARCAST_TEST_POSTGRES_URL") or POSTGRES_DEFAULT_URL
    engine = sa.create_engine(base, connect_args={"connect_timeout": 3})
    schema = f"nearcast_log_{uuid.uuid4().hex[:10]}"
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
        engine.dispose()
        shown = sa.make_url(base).render_as_string(hide_password=True)
        pytest.skip(f"no PostgreSQL reachable at {shown} (set NEARCAST_TEST_POSTGRES_URL): "
                    f"{str(exc.orig).strip().splitlines()[0]}")
    try:
        yield f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def log_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL of a fresh, empty log on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'sub' / 'log.db'}"  # the folder is created
        return
    yield from _postgres_url()


@pytest.fixture
def store(log_url: str) -> Iterator[ForecastLog]:
    """A fresh, empty log on each backend."""
    log = ForecastLog(log_url)
    yield log
    log.close()


def _row(forecast_id: str, series: str, origin: int = T0, *, version: int = 1,
         logged_at: float = 1e9, shift: float = 0.0, served: bool = False,
         steps: int = 3) -> LoggedForecast:
    point = [10.0 + shift + k for k in range(steps)]
    quantiles = {"0.1": [p - 1 for p in point], "0.5": point, "0.9": [p + 1 for p in point]}
    return LoggedForecast(
        forecast_id=forecast_id, request_id=f"req-{forecast_id}", model="m", version=version,
        series_id=series, source="api", origin=origin,
        timestamps=[origin + HOUR * (k + 1) for k in range(steps)], point=point,
        quantiles=quantiles,
        served={"0.1": [p - 2 for p in point], "0.5": point, "0.9": [p + 2 for p in point]}
        if served else None, logged_at=logged_at)


def _actuals(ids: list[str], stamps: list[int], y: list[float]) -> pd.DataFrame:
    return pd.DataFrame({"unique_id": ids, "ds": pd.to_datetime(stamps, unit="s", utc=True),
                         "y": y})


def _table(log: ForecastLog, table: sa.Table) -> list[tuple[Any, ...]]:
    with log._engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.select(table).order_by(*table.primary_key))]


def test_forecasts_round_trip_and_repeat_writes_change_nothing(store: ForecastLog) -> None:
    rows = [_row("f1", "a", served=True), _row("f1", "b"), _row("f2", "a", version=2,
                                                               logged_at=2e9)]
    assert store.write_forecasts(rows) == 3
    before = _table(store, FORECASTS)
    assert store.write_forecasts(rows[:2]) == 0  # the same (forecast, series): skipped
    assert _table(store, FORECASTS) == before
    assert store.count_forecasts() == store.count_forecasts("m") == 3
    assert store.count_forecasts("other") == 0
    frame = store.forecasts("m")
    assert list(frame.columns) == [
        "forecast_id", "request_id", "model", "version", "unique_id", "source", "origin",
        "step", "ds", "point", "q0.1", "q0.5", "q0.9", "served_q0.1", "served_q0.5",
        "served_q0.9", "logged_at"]
    assert len(frame) == 9
    first = frame[(frame["forecast_id"] == "f1") & (frame["unique_id"] == "a")]
    origin = pd.Timestamp(T0, unit="s", tz="UTC")
    assert first["step"].tolist() == [1, 2, 3]
    assert first["ds"].tolist() == [origin + pd.Timedelta(hours=k) for k in (1, 2, 3)]
    assert (first["origin"] == origin).all() and (first["request_id"] == "req-f1").all()
    assert first["point"].tolist() == first["q0.5"].tolist() == [10.0, 11.0, 12.0]
    assert first["q0.9"].tolist() == [11.0, 12.0, 13.0]
    assert first["served_q0.9"].tolist() == [12.0, 13.0, 14.0]
    assert frame.loc[frame["forecast_id"] == "f1"].query("unique_id == 'b'")[
        "served_q0.1"].isna().all()  # served raw: no served values
    assert store.forecasts("m", version=2)["forecast_id"].unique().tolist() == ["f2"]
    assert store.forecasts("m", since=1.5e9)["forecast_id"].unique().tolist() == ["f2"]
    assert store.forecasts("other").empty


def test_actuals_twice_change_nothing_and_corrections_update(store: ForecastLog) -> None:
    ids = [f"s{i}" for i in range(1200) for _ in range(3)]  # over the 500 ids of one query
    stamps = [T0 + HOUR * k for _ in range(1200) for k in range(3)]
    values = np.arange(len(ids), dtype=np.float64) / 7
    frame = _actuals(ids, stamps, values.tolist())
    assert store.write_actuals("m", frame) == ActualsWrite(3600, 0, 0)
    table = _table(store, ACTUALS)
    assert store.write_actuals("m", frame.sample(frac=1.0, random_state=0)) == ActualsWrite(
        0, 0, 3600)
    assert _table(store, ACTUALS) == table  # not even the received time moved
    fixed = frame.iloc[[0, 1, 2]].assign(y=[0.0, 99.0, 98.0])  # first unchanged, two corrected
    new = _actuals(["s0"], [T0 + 3 * HOUR], [5.0])
    assert store.write_actuals("m", pd.concat([fixed, new])) == ActualsWrite(1, 2, 1)
    got = store.actuals("m", unique_ids=["s0"])
    assert got["y"].tolist() == [0.0, 99.0, 98.0, 5.0]
    assert got["ds"].tolist() == list(pd.to_datetime(
        [T0 + HOUR * k for k in range(4)], unit="s", utc=True))
    assert len(store.actuals("m", unique_ids=[f"s{i}" for i in range(700)])) == 2101
    since = pd.Timestamp(T0 + 2 * HOUR, unit="s", tz="UTC")
    assert len(store.actuals("m", since=since)) == 1201
    assert store.actuals("other").empty
    assert store.write_actuals("other", frame.iloc[:1]) == ActualsWrite(1, 0, 0)  # per model


@pytest.mark.parametrize(("y", "ds", "message"), [
    ([1.0, float("nan")], [T0, T0 + HOUR], "series 'a' at 2030-03-17T19:00:00+00:00: y 'nan' "
     "is not a finite number"),
    ([1.0, float("inf")], [T0, T0 + HOUR], "is not a finite number"),
    ([1.0, 2.0], [T0, T0], "series 'a': timestamp 2030-03-17T18:00:00+00:00 given twice"),
])
def test_actuals_refuse_values_naming_series_and_time(
    tmp_path: Path, y: list[float], ds: list[int], message: str
) -> None:
    store = ForecastLog(f"sqlite:///{tmp_path / 'log.db'}")
    with pytest.raises(ValueError, match="actuals of ") as info:
        store.write_actuals("m", _actuals(["a", "a"], ds, y))
    assert message in str(info.value)
    assert store.actuals("m").empty  # nothing half-written


def test_matched_joins_actuals_and_keeps_the_latest_of_repeated_forecasts(
    store: ForecastLog
) -> None:
    store.write_forecasts([
        _row("f1", "a", logged_at=100.0),
        _row("f2", "a", logged_at=200.0, shift=5.0),  # the same origin served again, later
        _row("f3", "a", origin=T0 + HOUR, logged_at=300.0),  # the next origin
        _row("f4", "b", logged_at=100.0),
        _row("f5", "a", version=2, logged_at=150.0)])
    # Actuals for a's first two targets and b's first; none for the last steps.
    store.write_actuals("m", _actuals(["a", "a", "b"], [T0 + HOUR, T0 + 2 * HOUR, T0 + HOUR],
                                      [1.0, 2.0, 3.0]))
    matched = store.matched("m")
    key = ["version", "unique_id", "origin", "step"]
    assert not matched.duplicated(key).any()
    v1a = matched[(matched["version"] == 1) & (matched["unique_id"] == "a")]
    assert v1a["forecast_id"].tolist() == ["f2", "f2", "f3"]  # f1 replaced by the later f2
    assert v1a["point"].tolist() == [15.0, 16.0, 10.0] and v1a["y"].tolist() == [1.0, 2.0, 2.0]
    assert v1a["step"].tolist() == [1, 2, 1]
    assert matched[matched["unique_id"] == "b"]["y"].tolist() == [3.0]
    assert matched[matched["version"] == 2]["forecast_id"].tolist() == ["f5", "f5"]
    assert len(store.matched("m", version=2)) == 2
    assert store.matched("m", since=250.0)["forecast_id"].tolist() == ["f3"]
    assert store.matched("other").empty and "y" in store.matched("other").columns


def test_prune_drops_what_is_older_than_retention(store: ForecastLog) -> None:
    day = 86_400.0
    now = T0 + 100 * day
    store.write_forecasts([_row("old", "a", logged_at=now - 11 * day),
                           _row("new", "a", logged_at=now - 9 * day)])
    # Actuals count from when they were received, not from their dates.
    store.write_actuals("m", _actuals(["a"], [int(now - 50 * day)], [1.0]), now=now - 11 * day)
    store.write_actuals("m", _actuals(["a"], [int(now - 60 * day)], [2.0]), now=now - 9 * day)
    assert store.prune(10, now=now) == (1, 1)
    assert store.forecasts("m")["forecast_id"].unique().tolist() == ["new"]
    assert store.actuals("m")["y"].tolist() == [2.0]
    assert store.prune(10, now=now) == (0, 0)


def test_summaries_latest_first(store: ForecastLog) -> None:
    assert store.latest_summary("m") is None
    store.write_summary("m", {"n": 1})
    store.write_summary("m", {"n": 2, "nested": {"coverage": [0.8, None]}})
    store.write_summary("other", {"n": 3})
    assert store.latest_summary("m") == {"n": 2, "nested": {"coverage": [0.8, None]}}


def test_settings_default_to_sqlite_under_the_home_and_urls_hide_passwords(
    tmp_path: Path
) -> None:
    settings = ForecastLogSettings()
    assert settings.resolved_url(tmp_path) == f"sqlite:///{tmp_path.resolve()}/forecast_log.db"
    assert ForecastLogSettings(url="sqlite:///x.db").resolved_url(tmp_path) == "sqlite:///x.db"
    log = ForecastLog.from_settings(ForecastLogSettings(url=f"sqlite:///{tmp_path / 'a.db'}"))
    assert log.display_url == f"sqlite:///{tmp_path / 'a.db'}"
    assert ForecastLog.display("postgresql+psycopg2://me:hunter2@db/x") == (
        "postgresql+psycopg2://me:***@db/x")
    with pytest.raises(ValueError, match="only sqlite:/// and postgresql"):
        ForecastLog("mysql+pymysql://me@db/x")


_WRITER = """
import sys
from nearcast.models.monitoring.log_store import ForecastLog, LoggedForecast
log = ForecastLog(sys.argv[1])
name = sys.argv[2]
for i in range(40):
    rows = [LoggedForecast(f"{name}-{i}", None, "m", 1, f"s{j}", "api", 0, [3600], [1.0],
                           {}, None, 1.0) for j in range(5)]
    assert log.write_forecasts(rows) == 5
print("ok")
"""


def test_two_processes_create_and_write_one_log_at_once(log_url: str) -> None:
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, log_url, name], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for name in ("p1", "p2")]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    log = ForecastLog(log_url)
    assert log.count_forecasts() == 2 * 40 * 5
    if log_url.startswith("sqlite"):
        with log._engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    log.close()
