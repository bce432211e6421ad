"""Rolling-origin backtests of a fixed model, checked against direct computations."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from conftest import DATA, Champion, with_short_series
from nearcast.models.backtest import backtest
from nearcast.pipelines.errors import DataValidationError
from nearcast.service.cli import app

H = 24


def _matrix(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Values ``(S, n)`` and timestamps ``(S, n)`` of equally long series, sorted by id."""
    frame = df.sort_values(["unique_id", "ds"])
    n_series = frame["unique_id"].nunique()
    y = frame["y"].to_numpy(float).reshape(n_series, -1)
    return y, frame["ds"].to_numpy().reshape(n_series, -1)


def _smape(actual: np.ndarray, forecast: np.ndarray) -> float:
    return float(np.mean(200 * np.abs(actual - forecast) / (np.abs(actual) + np.abs(forecast))))


def test_one_fold_equals_the_training_holdout(champion: Champion, tiny_df: pd.DataFrame) -> None:
    result = backtest(champion.job.forecaster, tiny_df, n_folds=1)
    holdout = champion.job.evaluation.scores
    assert result.methods == ["model", "naive", "seasonal_naive", "naive2"]
    for method, scores in holdout.items():
        for metric in ("smape", "mase", "owa", "mae", "rmse"):
            assert result.aggregate[method][metric] == pytest.approx(scores[metric], rel=1e-9)


def test_folds_match_direct_computation(champion: Champion, tiny_df: pd.DataFrame) -> None:
    forecaster = champion.job.forecaster
    result = backtest(forecaster, tiny_df, n_folds=3, step=12)
    y, ds = _matrix(tiny_df)
    assert (result.horizon, result.step, len(result.folds)) == (H, 12, 3)
    errors = []
    for k, ev in enumerate(result.folds):
        cut = y.shape[1] - (2 - k) * 12 - H  # history length of fold k (oldest first)
        history, actual = y[:, :cut], y[:, cut : cut + H]
        assert result.cutoffs[k]["H3"] == pd.Timestamp(ds[2, cut - 1])
        np.testing.assert_array_equal(ev.actual, actual)
        # The fixed model sees only the history up to the cutoff.
        expected = forecaster.forecast(list(history.astype(np.float32))).values[:, :H, 0]
        np.testing.assert_allclose(ev.forecasts["model"], expected, rtol=1e-6)
        snaive = history[:, -H:]  # season 24 = horizon: the last day repeated once
        np.testing.assert_array_equal(ev.forecasts["seasonal_naive"], snaive)
        assert ev.scores["seasonal_naive"]["smape"] == pytest.approx(_smape(actual, snaive))
        errors.append(ev.forecasts["model"] - actual)
    agg = result.aggregate["model"]
    assert agg["smape"] == pytest.approx(np.mean([ev.scores["model"]["smape"]
                                                  for ev in result.folds]))
    assert agg["rmse"] == pytest.approx(np.sqrt(np.mean(np.square(errors))))
    assert agg["mae"] == pytest.approx(np.mean(np.abs(errors)))
    assert result.aggregate["naive2"]["owa"] == pytest.approx(1.0)
    table = result.table()
    assert len(table) == 4 * 4 and set(table["fold"]) == {"1", "2", "3", "all"}


def test_short_first_fold_is_padded_or_named(champion: Champion, tiny_df: pd.DataFrame) -> None:
    forecaster = champion.job.forecaster
    # 264 points - 24 - 8 * 24 = 48 points before the first cutoff: padded to the window.
    result = backtest(forecaster, tiny_df, n_folds=9)
    y, _ = _matrix(tiny_df)
    expected = forecaster.forecast(list(y[:, :48].astype(np.float32))).values[:, :H, 0]
    np.testing.assert_allclose(result.folds[0].forecasts["model"], expected, rtol=1e-6)
    # One fold more leaves 24 points, under the model's minimum of 48: no series is left.
    with pytest.raises(DataValidationError, match=r"series 'H1': 264 points, 24 up to the first "
                       r"cutoff 2024-01-01T23:00:00\+00:00 of 10 folds; the model needs at least "
                       r"48 .*no series is long enough; use fewer folds") as info:
        backtest(forecaster, tiny_df, n_folds=10)
    assert [p.unique_id for p in info.value.problems] == [f"H{i}" for i in range(1, 9)]
    with pytest.raises(ValueError, match=r"horizon 25 is outside 1..24"):
        backtest(forecaster, tiny_df, n_folds=1, horizon=25)


def test_a_short_series_is_skipped_and_the_others_scored_as_alone(
    champion: Champion, tiny_df: pd.DataFrame
) -> None:
    forecaster = champion.job.forecaster
    # 3 folds of 24 need 72 points after the first cutoff and 48 of history before it: 120.
    mixed = backtest(forecaster, with_short_series(tiny_df), n_folds=3)
    alone = backtest(forecaster, tiny_df, n_folds=3)
    assert list(mixed.skipped) == ["S1"] and (mixed.n_scored, alone.n_scored) == (8, 8)
    assert mixed.skipped["S1"] == (
        "100 points, 28 up to the first cutoff 2024-01-02T03:00:00+00:00 of 3 folds; the model "
        "needs at least 48 (in multiples of 24)")
    assert mixed.aggregate == alone.aggregate  # identical, not approximately
    assert mixed.cutoffs == alone.cutoffs
    for ours, theirs in zip(mixed.folds, alone.folds, strict=True):
        np.testing.assert_array_equal(ours.ids, theirs.ids)
        np.testing.assert_array_equal(ours.forecasts["model"], theirs.forecasts["model"])
        assert ours.scores == theirs.scores
    assert "(step 24, 8 series scored, 1 skipped)" in mixed.summary()
    assert "skipped S1: 100 points" in mixed.summary()
    # strict: the short series fails the backtest, named.
    with pytest.raises(DataValidationError, match=r"series 'S1': 100 points.*or leave out "
                                                  r"--strict"):
        backtest(forecaster, with_short_series(tiny_df), n_folds=3, strict=True)
    # Shorter than the folds themselves: no history at all before the first cutoff.
    tiny = backtest(forecaster, with_short_series(tiny_df, 60), n_folds=3)
    assert tiny.skipped == {"S1": "60 points, no history left before the first of 3 folds"}


def test_evaluate_cli_prints_and_logs_backtest(
    champion: Champion, tiny_df: pd.DataFrame, champion_cli_env: dict[str, str]
) -> None:
    args = ["evaluate", "--data", str(DATA / "m4_tiny_long.csv"), "--folds", "2", "--log"]
    out = CliRunner().invoke(app, args, env=champion_cli_env)
    assert out.exit_code == 0, out.output
    expected = backtest(champion.job.forecaster, tiny_df, n_folds=2)
    model = expected.aggregate["model"]
    assert "models:/tiny@champion (v1) on files:" in out.output
    row = next(line for line in out.output.splitlines() if line.startswith("model "))
    assert row.split()[1:3] == [f"{model['smape']:.3f}", f"{model['mase']:.3f}"]
    assert "seasonal_naive" in out.output and "2   2024-01-10T23:00:00+00:00" \
        in out.output

    run_id = out.output.strip().splitlines()[-1].removeprefix("logged run ")
    client = MlflowClient(champion.settings.resolved_tracking_uri())
    run = client.get_run(run_id)
    assert run.data.tags["nearcast.kind"] == "backtest"
    assert run.data.tags["nearcast.model_version"] == "1"
    assert run.data.params["backtest.folds"] == "2" and run.data.params["model.horizon"] == "24"
    for key, value in expected.flat_metrics().items():
        assert run.data.metrics[key] == pytest.approx(value, rel=1e-6), key
    fold_smape = client.get_metric_history(run_id, "fold_model_smape")
    assert sorted(m.step for m in fold_smape) == [1, 2]
    (inp,) = run.inputs.dataset_inputs
    assert inp.dataset.digest and {t.key: t.value for t in inp.tags}[
        "mlflow.data.context"] == "evaluation"
    names = {a.path for a in client.list_artifacts(run_id, "plots")}
    assert "plots/backtest_by_fold.png" in names
    assert [a.path for a in client.list_artifacts(run_id, "evaluation")] == [
        "evaluation/backtest.json"]


def test_evaluate_cli_skips_a_short_series_and_strict_fails(
    champion: Champion, tiny_df: pd.DataFrame, champion_cli_env: dict[str, str], tmp_path: Path
) -> None:
    data = tmp_path / "mixed.csv"
    with_short_series(tiny_df).to_csv(data, index=False)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEARCAST_", "MLFLOW_"))}
    env |= champion_cli_env | {"PYTHONPATH": str(Path(__file__).resolve().parents[2]),
                      "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-m", "nearcast", "evaluate", "--data", str(data),
                          "--folds", "3"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300, check=False)  # the real CLI, its own process
    assert out.returncode == 0, out.stderr
    assert "all 3 folds x 24 points (step 24, 8 series scored, 1 skipped)" in out.stdout
    assert "skipped S1: 100 points, 28 up to the first cutoff" in out.stdout
    model = backtest(champion.job.forecaster, tiny_df, n_folds=3).aggregate["model"]
    row = next(line for line in out.stdout.splitlines() if line.startswith("model "))
    assert row.split()[1:3] == [f"{model['smape']:.3f}", f"{model['mase']:.3f}"]
    strict = CliRunner().invoke(app, ["evaluate", "--data", str(data), "--folds", "3",
                                      "--strict"], env=champion_cli_env)
    assert strict.exit_code == 2
    assert "error: data problem [too_short] series 'S1': 100 points" in strict.output


def test_evaluate_cli_names_bad_inputs(champion_cli_env: dict[str, str], tmp_path: Path) -> None:
    runner = CliRunner()
    out = runner.invoke(app, ["evaluate", "--data", "m4_hourly", "--model",
                              "models:/tiny@nope"], env=champion_cli_env)
    assert out.exit_code == 2 and "no version of 'tiny' has alias 'nope'" in out.output
    missing = tmp_path / "missing.csv"
    out = runner.invoke(app, ["evaluate", "--data", str(missing)], env=champion_cli_env)
    assert out.exit_code == 2 and "missing.csv" in out.output
    job = tmp_path / "job.yaml"
    job.write_text(f"data:\n  source: files\n  path: {DATA / 'm4_tiny_long.csv'}\n  freq: D\n")
    out = runner.invoke(app, ["evaluate", "--data", str(job)], env=champion_cli_env)
    assert out.exit_code == 2 and "data freq 'D' differs from the model's 'h'" in out.output
