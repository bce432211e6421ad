"""The command line treats a user's mistake like the API does: one line saying what and where.

Each mistake runs the real ``nearcast`` in its own process (a temporary ``NEARCAST_HOME``, the
working directory a temporary folder). The processes start together and are refused before
TensorFlow loads, so the whole module takes a few seconds. PostgreSQL cases use
``NEARCAST_TEST_POSTGRES_URL`` (else ``postgresql+psycopg2://postgres@127.0.0.1:5432/test``)
and are skipped, saying so, when it does not answer.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import sqlalchemy as sa
import typer
from mlflow import MlflowClient
from typer.testing import CliRunner

from nearcast.models.settings import MlflowSettings, get_mlflow_settings
from nearcast.service.cli import app
from nearcast.service.cli_errors import EXIT_FAILED, EXIT_INPUT, reported, set_verbose

REPO = Path(__file__).resolve().parents[2]
PG_URL = os.environ.get("NEARCAST_TEST_POSTGRES_URL",
                        "postgresql+psycopg2://postgres@127.0.0.1:5432/test")
GOOD_ROWS = "".join(f"H1,2024-01-01T{h:02d}:00:00Z,{10 + h}\n" for h in range(6))


@dataclass(frozen=True)
class Ran:
    """What one ``nearcast`` process did."""

    args: list[str]
    code: int
    stdout: str
    stderr: str

    def lines(self) -> list[str]:
        """Non-empty stderr lines."""
        return [line for line in self.stderr.splitlines() if line.strip()]


def _postgres_answers() -> bool:
    engine = sa.create_engine(PG_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            return True
    except sa.exc.SQLAlchemyError:
        return False
    finally:
        engine.dispose()


def _job(path: Path, data: str) -> str:
    path.write_text(f"data:\n{data}model: {{units: 8, input_size: 72, horizon: 24, fold: 24, "
                    "min_history: 48}\n")
    return path.name


def _write_inputs(work: Path, pg: bool) -> dict[str, list[str]]:
    """The files of every mistake, and the command line of each case."""
    (work / "empty.csv").write_text("")
    (work / "header.csv").write_text("unique_id,ds,y\n")
    (work / "bad.csv").write_text("unique_id,ds,y\n" + GOOD_ROWS + "H1,2024-01-01T06:00:00Z,"
                                  "twelve\n")  # data row 6: file line 8
    with sqlite3.connect(work / "obs.db") as db:
        db.execute("CREATE TABLE other (unique_id TEXT, ds TEXT, y REAL)")
    (work / "short.csv").write_text("unique_id,ds,y\n" + GOOD_ROWS)  # 6 points: too short
    cases = {
        "typo": ["train", "--config", _job(work / "typo.yaml", "  source: files\n  pth: x.csv\n")],
        "missing": ["train", "--config",
                    _job(work / "missing.yaml", "  source: files\n  path: data/nothere.csv\n")],
        "empty": ["train", "--config", _job(work / "empty.yaml", "  path: empty.csv\n"
                                        "  source: files\n")],
        "header": ["train", "--config", _job(work / "header.yaml", "  source: files\n"
                                         "  path: header.csv\n")],
        "bad_row": ["train", "--config", _job(work / "bad.yaml", "  source: files\n"
                                          "  path: bad.csv\n")],
        "strict_short": ["train", "--strict", "--config",
                         _job(work / "short.yaml", "  source: files\n  path: short.csv\n")],
        "verbose": ["--verbose", "train", "--config", "typo.yaml"],
        "table": ["evaluate", "--data", _job(work / "table.yaml", "  source: sql\n"
                                          "  url: sqlite:///obs.db\n  query: observations\n")],
        "plain_pg": ["evaluate", "--data", _job(
            work / "plain.yaml", "  source: sql\n  url: postgresql://nearcast:s3cret@127.0.0.1:1/x\n"
            "  query: observations\n")],
    }
    if pg:
        url = sa.make_url(PG_URL).set(database=f"nearcast_missing_{uuid.uuid4().hex[:8]}")
        cases["wrong_db"] = ["evaluate", "--data", _job(
            work / "wrongdb.yaml", f"  source: sql\n  url: {url.render_as_string(False)}\n"
            "  query: observations\n")]
    return cases


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> MlflowSettings:
    """The embedded store the commands use (``NEARCAST_HOME``)."""
    return MlflowSettings(home=tmp_path_factory.mktemp("cli-home"), experiment="cli")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory, store: MlflowSettings) -> dict[str, Ran]:
    """Every case's ``nearcast`` process, started together."""
    work = tmp_path_factory.mktemp("cli-work")
    cases = _write_inputs(work, _postgres_answers())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEARCAST_", "MLFLOW_"))}
    env |= {"NEARCAST_HOME": str(store.home), "NEARCAST_EXPERIMENT": "cli",
            "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    procs = {name: subprocess.Popen([sys.executable, "-m", "nearcast", *args], cwd=work,
                                    env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True) for name, args in cases.items()}
    out = {}
    for name, proc in procs.items():
        try:
            stdout, stderr = proc.communicate(timeout=180)
        except subprocess.TimeoutExpired:
            proc.kill()
            stdout, stderr = proc.communicate()
        out[name] = Ran(cases[name], proc.returncode, stdout, stderr)
    return out


def _refused(ran: Ran, *needles: str) -> str:
    """Assert exit code 2, no traceback and exactly one stderr line holding ``needles``."""
    assert ran.code == EXIT_INPUT, ran
    assert "Traceback" not in ran.stderr + ran.stdout, ran.stderr
    assert len(ran.lines()) == 1, ran.stderr  # refused before TensorFlow could log anything
    line = ran.lines()[0]
    assert line.startswith("error: "), line
    for needle in needles:
        assert needle in line, line
    return line


def test_config_typo_names_file_key_and_suggestion(runs: dict[str, Ran]) -> None:
    _refused(runs["typo"], "typo.yaml: data.pth: unknown key (did you mean 'path'?)")


def test_missing_empty_and_header_only_files_name_the_file(
    runs: dict[str, Ran], store: MlflowSettings
) -> None:
    _refused(runs["missing"], "no CSV or Parquet file matches 'data/nothere.csv'")
    _refused(runs["empty"], "empty.csv: the file is empty")
    _refused(runs["header"], "[empty] header.csv: no data rows")
    # Refused before anything is tracked: no FAILED run left behind (today the store is not
    # even opened; were it, every experiment in it must still have zero runs).
    if (store.home / "mlflow.db").exists():
        client = MlflowClient(store.resolved_tracking_uri())
        experiments = [e.experiment_id for e in client.search_experiments()]
        assert client.search_runs(experiments) == []


def test_bad_value_names_the_file_line(runs: dict[str, Ran]) -> None:
    # Data row 6 (0-based) is line 8 of the file: line 1 is the header.
    _refused(runs["bad_row"], "series 'H1', bad.csv line 8: y is not numeric: 'twelve'")


def test_strict_train_refuses_a_series_too_short_to_train_on(runs: dict[str, Ran]) -> None:
    # 2 x horizon 24 + shortest history 48: 96 points needed; without --strict it would be
    # left out (here it is the only series, so training would fail anyway).
    _refused(runs["strict_short"], "series 'H1': series has 6 point(s); training needs at least 96")


def test_sql_mistakes_name_the_database_and_table(runs: dict[str, Ran]) -> None:
    _refused(runs["table"], "sqlite:///obs.db: no table 'observations' (tables there: other)")
    line = _refused(runs["plain_pg"], "postgresql://nearcast:***@127.0.0.1:1/x",
                    "use postgresql+psycopg2://")
    assert "s3cret" not in line  # the password is never printed


def test_wrong_database_names_it(runs: dict[str, Ran]) -> None:
    if "wrong_db" not in runs:
        pytest.skip(f"PostgreSQL does not answer at {sa.make_url(PG_URL)!r}")
    _refused(runs["wrong_db"], "postgresql+psycopg2://", "database \"nearcast_missing_",
             "does not exist")


def test_verbose_shows_the_traceback(runs: dict[str, Ran]) -> None:
    ran = runs["verbose"]
    assert ran.code != 0
    assert "Traceback (most recent call last)" in ran.stderr
    assert ran.stderr.rstrip().endswith(
        "JobConfigError: typo.yaml: data.pth: unknown key (did you mean 'path'?)")


def test_unknown_errors_are_one_line_internal_errors(capsys: pytest.CaptureFixture[str]) -> None:
    set_verbose(False)
    with pytest.raises(typer.Exit) as exit_info, reported():
        {}["missing"]  # noqa: B018  (a bug, not a user's mistake)
    assert exit_info.value.exit_code == EXIT_FAILED
    err = capsys.readouterr().err
    assert err == ("internal error: KeyError: 'missing' (run with --verbose for the "
                   "traceback)\n")
    with pytest.raises(typer.Exit) as exit_info, reported():
        raise PermissionError(13, "Permission denied", "/data/x")
    assert exit_info.value.exit_code == EXIT_FAILED
    assert capsys.readouterr().err == "error: [Errno 13] Permission denied: '/data/x'\n"
    set_verbose(True)
    try:
        with pytest.raises(KeyError), reported():
            {}["missing"]  # noqa: B018
    finally:
        set_verbose(False)


def test_train_leaves_out_a_series_too_short_to_train_on(
    tiny_df: pd.DataFrame, tmp_path: Path
) -> None:
    h1 = tiny_df[tiny_df["unique_id"] == "H1"].sort_values("ds").head(60)
    data = tmp_path / "mixed.csv"
    pd.concat([tiny_df, h1.assign(unique_id="S1")]).to_csv(data, index=False)
    job = tmp_path / "job.yaml"
    job.write_text(f"data: {{source: files, path: '{data}'}}\n"
                   "model: {units: 4, input_size: 72, horizon: 24, fold: 24, min_history: 48}\n"
                   "train: {epochs: 1, steps_per_epoch: 2, batch_size: 16, verbose: false}\n")
    env = {"NEARCAST_HOME": str(tmp_path / "home"), "NEARCAST_EXPERIMENT": "cli"}
    uri = mlflow.get_tracking_uri()
    get_mlflow_settings.cache_clear()
    try:
        out = CliRunner().invoke(app, ["train", "--config", str(job), "--no-register"], env=env)
    finally:
        get_mlflow_settings.cache_clear()
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
    assert out.exit_code == 0, out.output
    assert "skipped series S1: 60 points, training needs at least 96" in out.output
    assert "data: 9 series in, 8 used, 1 skipped as too short" in out.output
    assert "data: 0 duplicate timestamps merged, 0 rows aggregated into buckets" in out.output
    run_id = re.search(r"run (\w+); model", out.output)
    assert run_id, out.output
    client = MlflowClient(f"sqlite:///{(tmp_path / 'home' / 'mlflow.db').resolve()}")
    run = client.get_run(run_id[1])
    assert run.data.params["data.series"] == "8"  # trained without S1
    assert run.data.tags["nearcast.series_skipped"] == "1"
    assert run.info.run_name == "train lstm-1x4 mixed.csv"
    report = json.loads(Path(client.download_artifacts(
        run_id[1], "data/series_report.json", str(tmp_path))).read_text())
    table = pd.DataFrame(report["data"], columns=report["columns"]).set_index("unique_id")
    assert len(table) == 9 and table["skipped_too_short"].tolist().count(True) == 1
    assert bool(table.loc["S1", "skipped_too_short"]) and table.loc["S1", "points_in"] == 60
