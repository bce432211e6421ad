"""``promote``, ``rollback`` and ``evaluate --config job.yaml`` act on the job's own model.

The job names a model that is not the default (``NEARCAST_MODEL_NAME`` is unset in the
commands' environment) and reads a CSV whose columns have the job's own names. The three
commands run in sequence as real ``nearcast`` processes on the session champion's store;
the in-process cases (an explicit ``--name`` wins, a job file mistake) are refused before
TensorFlow or the model load.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import mlflow
import pandas as pd
import pytest
import yaml
from retrain_helpers import MODEL, REPO, champion_version, cli_env
from typer.testing import CliRunner

from conftest import DATA, Champion
from nearcast.models import registry
from nearcast.models.evaluate_job import evaluate_model
from nearcast.models.settings import MlflowSettings, get_mlflow_settings
from nearcast.service.cli import app
from nearcast.service.job_target import NoDataError, evaluation_data, read_job

NAME = "job-own-model"
COLUMNS = {"unique_id": "store", "ds": "when", "y": "sales"}


def _nearcast(args: list[str], settings: MlflowSettings) -> subprocess.CompletedProcess[str]:
    env = cli_env(settings) | {"NEARCAST_LOAD_CHECK": "inprocess"}
    assert "NEARCAST_MODEL_NAME" not in env  # the default name has no versions in this store
    return subprocess.run([sys.executable, "-m", "nearcast", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def _job(tmp_path: Path, tiny_df: pd.DataFrame) -> tuple[Path, Path]:
    """A job for model ``NAME`` on a CSV with the user's own column names (and that CSV)."""
    data = tmp_path / "sales.csv"
    tiny_df.rename(columns=COLUMNS).to_csv(data, index=False)
    job = {"model_name": NAME, "model": MODEL,
           "data": {"source": "files", "path": str(data), "freq": "h", "columns": COLUMNS}}
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path, data


@pytest.fixture(scope="module")
def job_model(champion: Champion) -> MlflowSettings:
    """Two registered copies of the champion as ``NAME`` v1 (champion) and v2."""
    settings = champion.settings.model_copy(update={"model_name": NAME})
    client = settings.connect()
    for _ in range(2):
        registry.register(client, NAME, champion.job.model_uri, champion.job.run_id)
    registry.promote(client, NAME, 1, "tests")
    return settings


def test_promote_rollback_and_evaluate_act_on_the_jobs_model(
    job_model: MlflowSettings, tiny_df: pd.DataFrame, tmp_path: Path
) -> None:
    job, data = _job(tmp_path, tiny_df)

    promoted = _nearcast(["promote", "--config", str(job), "--version", "2"], job_model)
    assert promoted.returncode == 0, promoted.stderr
    assert f"champion -> {NAME} v2 (was v1)" in promoted.stdout
    assert champion_version(job_model, NAME) == 2

    rolled = _nearcast(["rollback", "--config", str(job)], job_model)
    assert rolled.returncode == 0, rolled.stderr
    assert f"champion -> {NAME} v1 (was v2)" in rolled.stdout
    assert champion_version(job_model, NAME) == 1

    evaluated = _nearcast(["evaluate", "--config", str(job), "--data", str(data),
                           "--folds", "1"], job_model)
    assert evaluated.returncode == 0, evaluated.stderr
    lines = evaluated.stdout.splitlines()
    assert lines[0] == f"models:/{NAME}@champion (v1) on files:{data}"
    assert "8 series scored, 0 skipped" in lines[1]
    smape = re.search(r"^model\s+([\d.]+)\s", evaluated.stdout, re.MULTILINE)
    assert smape, evaluated.stdout
    # The same scores as the model on the original file with the standard column names.
    reference = evaluate_model(f"models:/{NAME}/1", str(DATA / "m4_tiny_long.csv"), job_model,
                               1).backtest.aggregate["model"]["smape"]
    assert float(smape[1]) == pytest.approx(reference, abs=1e-3)


def _invoke(args: list[str], settings: MlflowSettings) -> tuple[int, str]:
    """``nearcast ARGS`` in this process (no TensorFlow needed); exit code and stderr."""
    env = {"NEARCAST_HOME": str(settings.home), "NEARCAST_EXPERIMENT": settings.experiment}
    uri = mlflow.get_tracking_uri()
    get_mlflow_settings.cache_clear()
    try:
        out = CliRunner().invoke(app, args, env=env)
    finally:
        get_mlflow_settings.cache_clear()
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
    return out.exit_code, out.stderr


def test_an_explicit_name_wins_and_job_mistakes_are_one_line(
    job_model: MlflowSettings, tiny_df: pd.DataFrame, tmp_path: Path
) -> None:
    job, _ = _job(tmp_path, tiny_df)
    code, err = _invoke(["rollback", "--config", str(job), "--name", "not-the-jobs"], job_model)
    assert (code, err) == (1, "error: model 'not-the-jobs' has no champion to roll back\n")
    assert champion_version(job_model, NAME) == 1

    typo = tmp_path / "typo.yaml"
    typo.write_text(f"model_nme: {NAME}\n")
    for command in (["promote", "--version", "2"], ["rollback"], ["evaluate"]):
        code, err = _invoke([*command, "--config", str(typo)], job_model)
        assert code == 2, (command, err)
        assert err == (f"error: {typo}: model_nme: unknown key (did you mean 'model_name'?)\n")
    assert champion_version(job_model, NAME) == 1

    code, err = _invoke(["evaluate", "--folds", "1"], job_model)
    assert (code, err) == (2, "error: give --data (or --config job.yaml to use the job's data)\n")


def test_evaluation_data_comes_from_the_job(tiny_df: pd.DataFrame, tmp_path: Path) -> None:
    job_path, data = _job(tmp_path, tiny_df)
    job = read_job(job_path)
    assert job is not None and job.model_name == NAME
    own = evaluation_data(None, job, job_path)  # no --data: the job's own data section
    assert (own.spec, own.config) == (str(job_path), job.data)
    mapped = evaluation_data(str(data), job, job_path)  # a CSV: read with the job's columns
    assert mapped.config.columns == COLUMNS
    for read in (own, mapped):
        assert list(read.raw.frame.columns[:3]) == ["unique_id", "ds", "y"]
        assert len(read.raw.frame) == len(tiny_df)
    plain = evaluation_data(str(DATA / "m4_tiny_long.csv"), None, None)
    assert plain.config.columns == {}
    with pytest.raises(NoDataError):
        evaluation_data(None, None, None)
