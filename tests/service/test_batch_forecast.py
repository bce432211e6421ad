"""``nearcast forecast``: every series of a source, written with provenance, equal to the API."""

from __future__ import annotations

import os
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from conftest import DATA, Champion, LiveServer, start_server, stop_server
from nearcast.service.app import create_app
from nearcast.service.cli import app
from nearcast.service.settings import ApiSettings

REPO = Path(__file__).resolve().parents[2]


def _source(tmp_path: Path) -> Path:
    """The tests' 8 series, plus one too short and one with a text value."""
    df = pd.read_csv(DATA / "m4_tiny_long.csv")
    short = df[df["unique_id"] == "H1"].head(30).assign(unique_id="SHORT")
    broken = df[df["unique_id"] == "H2"].assign(unique_id="BROKEN").astype({"y": object})
    broken.iloc[5, broken.columns.get_loc("y")] = "abc"
    path = tmp_path / "source.csv"
    pd.concat([df, short, broken]).to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def server(champion: Champion) -> Iterator[LiveServer]:
    live = start_server(create_app(ApiSettings(models=[champion.settings.model_name],
                                               poll_seconds=60), champion.settings))
    yield live
    stop_server(live)


def _api(server: LiveServer, source: pd.DataFrame) -> pd.DataFrame:
    """The API's forecasts of each series of ``source`` (one request)."""
    series = [{"id": uid, "start": pd.Timestamp(g["ds"].iloc[0]).isoformat(),
               "values": g["y"].astype(float).tolist()} for uid, g in source.groupby("unique_id")]
    resp = httpx.post(f"{server.url}/v1/forecast", json={"series": series}, timeout=60)
    assert resp.status_code == 200, resp.text
    rows = [{"unique_id": s["id"], "ds": pd.Timestamp(t), "forecast": f}
            for s in resp.json()["series"] for t, f in zip(s["timestamps"], s["forecast"],
                                                            strict=True)]
    return pd.DataFrame(rows)


def test_forecast_writes_parquet_equal_to_the_api_and_reports_the_bad_series(
    champion: Champion, server: LiveServer, tmp_path: Path
) -> None:
    source = _source(tmp_path)
    out = tmp_path / "forecasts.parquet"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEARCAST_", "MLFLOW_"))}
    env |= {"NEARCAST_HOME": str(champion.settings.home), "TF_CPP_MIN_LOG_LEVEL": "3",
            "NEARCAST_MODEL_NAME": champion.settings.model_name}
    done = subprocess.run([sys.executable, "-m", "nearcast", "forecast", "--data", str(source),
                           "--out", str(out)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=300, check=False)  # the real CLI, its own process
    assert done.returncode == 0, done.stderr[-2000:]
    assert "10 series read, 8 forecast (192 rows), 2 skipped" in done.stdout
    assert "skipped SHORT: [too_short] 30 points on the model's grid; the model needs at least 48" \
        in done.stdout
    assert "skipped BROKEN: [non_numeric]" in done.stdout
    written = pd.read_parquet(out)
    assert list(written.columns[:7]) == ["unique_id", "ds", "model", "model_name",
                                         "model_version", "run_id", "origin"]
    assert set(written["model_version"]) == {champion.job.version.version}  # type: ignore[union-attr]
    assert set(written["run_id"]) == {champion.job.run_id}
    assert set(written["model"]) == {f"models:/{champion.settings.model_name}@champion"}
    first = written.groupby("unique_id")["ds"].min()
    origin = written.groupby("unique_id")["origin"].first()
    assert ((first - origin) == pd.Timedelta(hours=1)).all()

    good = pd.read_csv(DATA / "m4_tiny_long.csv")
    api = _api(server, good).sort_values(["unique_id", "ds"], ignore_index=True)
    ours = written.sort_values(["unique_id", "ds"], ignore_index=True)
    assert ours["unique_id"].tolist() == api["unique_id"].tolist()
    assert (pd.to_datetime(ours["ds"], utc=True) == pd.to_datetime(api["ds"], utc=True)).all()
    np.testing.assert_allclose(ours["forecast"], api["forecast"], atol=1e-5)


def test_forecast_writes_a_sqlite_table_refuses_to_overwrite_and_strict_fails(
    champion: Champion, champion_cli_env: dict[str, str], tmp_path: Path
) -> None:
    source = _source(tmp_path)
    db = tmp_path / "out.db"
    args = ["forecast", "--data", str(source), "--out", f"sqlite:///{db}", "--table", "fc"]
    runner = CliRunner()
    first = runner.invoke(app, args, env=champion_cli_env)
    assert first.exit_code == 0, first.output
    with sqlite3.connect(db) as conn:
        rows = pd.read_sql("SELECT unique_id, forecast FROM fc", conn)
    assert len(rows) == 8 * 24 and rows["unique_id"].nunique() == 8
    # the same output again: refused, the table untouched
    again = runner.invoke(app, args, env=champion_cli_env)
    assert again.exit_code == 2 and "the table exists; give --append" in again.output
    appended = runner.invoke(app, [*args, "--append"], env=champion_cli_env)
    assert appended.exit_code == 0, appended.output
    with sqlite3.connect(db) as conn:
        both = pd.read_sql("SELECT unique_id, forecast FROM fc", conn)
    assert len(both) == 2 * 8 * 24
    np.testing.assert_array_equal(both["forecast"].to_numpy()[:192], rows["forecast"])
    # --strict: the first bad series fails the job and nothing is written
    out = tmp_path / "strict.parquet"
    strict = runner.invoke(app, ["forecast", "--data", str(source), "--out", str(out),
                                 "--strict"], env=champion_cli_env)
    assert strict.exit_code == 2, strict.output
    assert "series 'SHORT'" in strict.output or "series 'BROKEN'" in strict.output
    assert not out.exists() and not list(tmp_path.glob(".strict.parquet.*"))


def _need_java() -> None:
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("no Java found (Spark's local mode needs Java 17): the Spark engine is "
                    "not tested on this machine")


def test_the_spark_engine_writes_what_the_one_process_job_writes(
    champion: Champion, champion_cli_env: dict[str, str], tmp_path: Path
) -> None:
    _need_java()
    source = _source(tmp_path)
    runner = CliRunner()
    local = runner.invoke(app, ["forecast", "--data", str(source), "--out",
                                str(tmp_path / "local.parquet")], env=champion_cli_env)
    assert local.exit_code == 0, local.output
    spark = runner.invoke(app, ["forecast", "--data", str(source), "--out",
                                str(tmp_path / "spark"), "--engine", "spark",
                                "--master", "local[2]"], env=champion_cli_env)
    assert spark.exit_code == 0, spark.output
    assert "10 series read, 8 forecast (192 rows), 2 skipped" in spark.output
    assert "skipped SHORT: [too_short] 30 points" in spark.output
    ours = pd.read_parquet(tmp_path / "local.parquet")
    theirs = pd.read_parquet(tmp_path / "spark")
    key = ["unique_id", "ds"]
    ours, theirs = (f.sort_values(key, ignore_index=True) for f in (ours, theirs))
    assert list(theirs.columns) == list(ours.columns)
    pd.testing.assert_frame_equal(theirs.drop(columns=["forecast"]),
                                  ours.drop(columns=["forecast"]), check_dtype=False)
    np.testing.assert_allclose(theirs["forecast"], ours["forecast"], atol=1e-5)


def test_the_spark_engine_reads_and_writes_parquet_itself(
    champion: Champion, champion_cli_env: dict[str, str], tmp_path: Path
) -> None:
    _need_java()
    good = pd.read_csv(DATA / "m4_tiny_long.csv", parse_dates=["ds"])
    short = good[good["unique_id"] == "H1"].head(30).assign(unique_id="SHORT")
    (tmp_path / "in").mkdir()
    pd.concat([good, short]).to_parquet(tmp_path / "in" / "part-0.parquet")
    runner = CliRunner()
    local = runner.invoke(app, ["forecast", "--data", str(tmp_path / "in"), "--out",
                                str(tmp_path / "local.parquet")], env=champion_cli_env)
    assert local.exit_code == 0, local.output
    args = ["forecast", "--data", str(tmp_path / "in"), "--out", str(tmp_path / "spark"),
            "--engine", "spark", "--master", "local[2]"]
    spark = runner.invoke(app, args, env=champion_cli_env)
    assert spark.exit_code == 0, spark.output
    assert "9 series read, 8 forecast (192 rows), 1 skipped" in spark.output
    assert "skipped SHORT: [too_short] 30 points" in spark.output
    written = [p.name for p in (tmp_path / "spark").iterdir()]  # no staging left behind
    assert written and all(re.fullmatch(r"part-\d{5}\.parquet", name) for name in written)
    key = ["unique_id", "ds"]
    ours = pd.read_parquet(tmp_path / "local.parquet").sort_values(key, ignore_index=True)
    theirs = pd.read_parquet(tmp_path / "spark").sort_values(key, ignore_index=True)
    pd.testing.assert_frame_equal(theirs.drop(columns=["forecast"]),
                                  ours.drop(columns=["forecast"]), check_dtype=False)
    np.testing.assert_allclose(theirs["forecast"], ours["forecast"], atol=1e-5)
    again = runner.invoke(app, args, env=champion_cli_env)  # the parts are there: refused
    assert again.exit_code == 2 and "the folder holds part files; give --replace" in again.output
