"""``nearcast evaluate --engine spark``: the backtest with each series' folds on an executor."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from conftest import Champion, with_short_series
from nearcast.service.cli import app


def _cutoffs(output: str) -> list[str]:
    """The cutoff column of the summary's per-fold lines."""
    lines = output.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("fold, cutoff")) + 1
    return [line.split()[1] for line in lines[first:] if line[:1].isdigit()]


def test_the_spark_engine_scores_what_the_one_process_backtest_scores(
    champion: Champion, champion_cli_env: dict[str, str], tiny_df: pd.DataFrame, tmp_path: Path
) -> None:
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        pytest.skip("no Java found (Spark's local mode needs Java 17): the Spark engine is "
                    "not tested on this machine")
    data = tmp_path / "mixed.csv"
    with_short_series(tiny_df, 80).to_csv(data, index=False)  # S1: too short for the folds
    runner = CliRunner()
    args = ["evaluate", "--data", str(data), "--folds", "3", "--step", "12", "--log"]
    bad = runner.invoke(app, [*args, "--engine", "dask"], env=champion_cli_env)
    assert bad.exit_code == 2 and "--engine must be 'local' or 'spark', not 'dask'" in bad.output
    local = runner.invoke(app, args, env=champion_cli_env)
    assert local.exit_code == 0, local.output
    spark = runner.invoke(app, [*args, "--engine", "spark", "--master", "local[2]"],
                          env=champion_cli_env)
    assert spark.exit_code == 0, spark.output
    for out in (local, spark):
        assert "all 3 folds x 24 points (step 12, 8 series scored, 1 skipped)" in out.output
        assert "skipped S1: 80 points, 32 up to the first cutoff 2024-01-02T07:00:00+00:00 " \
            "of 3 folds; the model needs at least 48" in out.output
    assert _cutoffs(spark.output) == _cutoffs(local.output) == [
        "2024-01-09T23:00:00+00:00", "2024-01-10T11:00:00+00:00", "2024-01-10T23:00:00+00:00"]

    client = MlflowClient(champion.settings.resolved_tracking_uri())
    ours, theirs = (client.get_run(out.output.strip().splitlines()[-1].removeprefix(
        "logged run ")) for out in (local, spark))
    assert (ours.data.tags["nearcast.engine"], theirs.data.tags["nearcast.engine"]) == (
        "local", "spark")
    assert ours.data.metrics.keys() == theirs.data.metrics.keys()
    assert "model_smape" in ours.data.metrics and "naive2_owa" in ours.data.metrics
    for key, value in ours.data.metrics.items():  # aggregate scores and the series counts
        assert theirs.data.metrics[key] == pytest.approx(value, rel=1e-6, abs=1e-9), key
    for method in ("model", "naive2"):
        for metric in ("smape", "mase", "mae", "rmse", "owa"):
            key = f"fold_{method}_{metric}"  # each fold's score, at step k
            folds = [sorted((m.step, m.value) for m in client.get_metric_history(r.info.run_id,
                                                                                 key))
                     for r in (ours, theirs)]
            assert [s for s, _ in folds[0]] == [s for s, _ in folds[1]] == [1, 2, 3], key
            assert [v for _, v in folds[1]] == pytest.approx([v for _, v in folds[0]],
                                                             rel=1e-6, abs=1e-9), key
