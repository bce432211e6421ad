"""`nearcast train` end to end: what the MLflow UI shows, asserted through the MLflow client."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from typer.testing import CliRunner

from conftest import DATA
from nearcast.models.settings import get_mlflow_settings
from nearcast.service.cli import app

CSV = DATA / "m4_tiny_long.csv"
JOB = f"""
data: {{source: files, path: "{CSV}", freq: h}}
model: {{cell: gru, units: 8, input_size: 72, horizon: 24, fold: 24, season: 24, min_history: 48}}
train: {{epochs: 3, steps_per_epoch: 3, batch_size: 32, patience: 10, learning_rate: 0.003,
         verbose: false}}
model_name: cli-tiny
"""
EPOCHS = 3


@pytest.fixture
def trained(tmp_path: Path) -> Iterator[tuple[MlflowClient, str, str]]:
    """Run the real `nearcast train --config` into a store under tmp_path."""
    uri = mlflow.get_tracking_uri()
    config = tmp_path / "job.yaml"
    config.write_text(JOB)
    env = {"NEARCAST_HOME": str(tmp_path / "home"), "NEARCAST_EXPERIMENT": "cli"}
    get_mlflow_settings.cache_clear()
    try:
        out = CliRunner().invoke(app, ["train", "--config", str(config)], env=env)
        assert out.exit_code == 0, out.output
        match = re.search(r"run (\w+); model cli-tiny v1 \(alias challenger\)", out.output)
        assert match, out.output
        db = (tmp_path / "home" / "mlflow.db").resolve()
        yield MlflowClient(f"sqlite:///{db}"), match[1], out.output
    finally:
        get_mlflow_settings.cache_clear()
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)


def _seasonal_naive_smape() -> float:
    """sMAPE of seasonal naive on the last 24 points of each series, computed directly."""
    y = pd.read_csv(CSV).sort_values(["unique_id", "ds"])["y"].to_numpy(float).reshape(8, -1)
    actual, forecast = y[:, -24:], y[:, -48:-24]
    return float(np.mean(200 * np.abs(actual - forecast) / (actual + forecast)))


def test_train_run_records_everything(trained: tuple[MlflowClient, str, str]) -> None:
    client, run_id, output = trained
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["model.cell"] == "gru" and params["model.units"] == "8"
    assert params["train.learning_rate"] == "0.003" and params["data.series"] == "8"

    # Curves: one point per epoch.
    for key in ("train_loss", "val_loss", "grad_norm", "learning_rate", "epoch_seconds"):
        history = client.get_metric_history(run_id, key)
        assert [m.step for m in sorted(history, key=lambda m: m.step)] == [1, 2, 3], key
        assert all(math.isfinite(m.value) and m.value > 0 for m in history), key
    by_step = client.get_metric_history(run_id, "model_smape_by_step")
    assert sorted(m.step for m in by_step) == list(range(1, 25))

    # Metrics next to the baselines, consistent with each other and with a direct computation.
    m = run.data.metrics
    for method in ("model", "naive", "seasonal_naive", "naive2"):
        assert {f"{method}_{k}" for k in ("smape", "mase", "owa", "mae", "rmse")} <= set(m)
    assert m["seasonal_naive_smape"] == pytest.approx(_seasonal_naive_smape(), rel=1e-6)
    assert m["naive2_owa"] == pytest.approx(1.0)
    assert m["model_owa"] == pytest.approx(
        0.5 * (m["model_smape"] / m["naive2_smape"] + m["model_mase"] / m["naive2_mase"]))
    assert f"{m['model_smape']:6.2f}" in output  # the CLI prints the logged numbers

    # Plots and evaluation artifacts.
    plots = {a.path: a.file_size for a in client.list_artifacts(run_id, "plots")}
    for name in ("loss_curves.png", "error_by_horizon_step.png", "forecast_vs_actual.png"):
        assert plots.get(f"plots/{name}", 0) > 1000, plots
    local = Path(client.download_artifacts(run_id, "plots/loss_curves.png"))
    assert local.read_bytes()[:4] == b"\x89PNG"
    assert client.list_artifacts(run_id, "config")[0].path == "config/resolved.json"

    # The dataset input, with its digest, and the tags.
    (inp,) = run.inputs.dataset_inputs
    assert inp.dataset.name == "m4_tiny_long.csv" and len(inp.dataset.digest) >= 8
    assert {t.key: t.value for t in inp.tags}["mlflow.data.context"] == "training"
    tags = run.data.tags
    assert tags["nearcast.data_source"] == f"files:{CSV}"
    assert tags["nearcast.kind"] == "training" and tags["nearcast.version"]
    assert tags["nearcast.stop_reason"] == "epochs" and tags["nearcast.best_epoch"] in "123"

    # The registry: version 1 with alias challenger, pointing at this run's model.
    version = client.get_model_version_by_alias("cli-tiny", "challenger")
    assert str(version.version) == "1" and version.run_id == run_id
    assert version.source.startswith("models:/m-")
    assert version.tags["data_digest"] == inp.dataset.digest
    aliases = client.get_registered_model("cli-tiny").aliases
    assert {k: str(v) for k, v in aliases.items()} == {"challenger": "1"}


def test_a_training_job_that_fails_before_the_fit_leaves_a_failed_run(
    tmp_path: Path, tiny_df: pd.DataFrame
) -> None:
    from conftest import make_settings
    from nearcast.models.estimator import Nearcast
    from nearcast.models.train import train
    from nearcast.pipelines.errors import DataValidationError

    settings = make_settings(tmp_path)
    short = pd.concat([tiny_df, tiny_df[tiny_df["unique_id"] == "H1"].head(30)
                       .assign(unique_id="S1")])
    model = Nearcast(horizon=24, input_size=72, min_history=48, verbose=False)
    with pytest.raises(DataValidationError, match="S1"):
        train(model, settings, short, strict=True)
    client = MlflowClient(settings.resolved_tracking_uri())
    (run,) = client.search_runs([settings.ensure_experiment(client)])
    assert run.info.status == "FAILED" and run.info.run_name == "train lstm-1x64 DataFrame"
    assert client.search_registered_models() == []
