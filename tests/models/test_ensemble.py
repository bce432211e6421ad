"""Ensembles as one model: the combiner, interval widening, and a run registered as ONE model."""

from __future__ import annotations

from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from conftest import LiveServer, make_settings, start_server, train_tiny
from nearcast.models import registry
from nearcast.models.architectures.combine import Combine, WidenIntervals
from nearcast.models.config import EnsembleConfig, ModelConfig, TrainConfig
from nearcast.models.ensemble import ensemble_config, interval_factor
from nearcast.service.app import create_app
from nearcast.service.settings import ApiSettings


def test_median_and_mean_combiners_on_hand_made_members() -> None:
    a = np.array([[[1.0], [10.0]]], np.float32)
    b = np.array([[[3.0], [20.0]]], np.float32)
    c = np.array([[[2.0], [90.0]]], np.float32)
    d = np.array([[[8.0], [30.0]]], np.float32)
    # Odd count: the middle value; even count: mean of the two middle values (numpy's rule).
    np.testing.assert_allclose(Combine("median")([a, b, c]), [[[2.0], [20.0]]])
    np.testing.assert_allclose(Combine("median")([a, b, c, d]), [[[2.5], [25.0]]])
    np.testing.assert_allclose(Combine("mean")([a, b, c]), [[[2.0], [40.0]]])
    with pytest.raises(ValueError, match="unknown combiner"):
        Combine("max")


def test_widen_intervals_keeps_point_and_scales_distances() -> None:
    x = np.array([[[8.0, 10.0, 13.0]]], np.float32)  # q0.1, q0.5 (point), q0.9
    np.testing.assert_allclose(WidenIntervals(2.0, 1)(x), [[[6.0, 10.0, 16.0]]])


def test_interval_factor_reaches_target_coverage() -> None:
    cfg = ModelConfig(input_size=72, horizon=2, fold=24, quantiles=[0.1, 0.9])
    point = np.zeros((100, 2))
    # Intervals of half-width 1 around 0; actuals spread uniformly on (-2, 2).
    forecasts = np.stack([point - 1, point, point + 1], axis=-1)
    actual = np.tile(np.linspace(-1.98, 1.98, 100)[:, None], (1, 2))
    factor = interval_factor(forecasts, actual, cfg, 0.8)
    # Actuals are -1.98 + 0.04k; the n = 200 scores are |y| = 0.02, 0.06, .., 1.98, each 4
    # times (+-, 2 steps). Split conformal takes the ceil(201 * 0.8) = 161st smallest: the 41st
    # distinct |y|, 1.62, so 82 of the 100 actuals (k = 9..90) lie within the widened interval.
    assert factor == pytest.approx(1.62)


def test_members_must_share_horizon() -> None:
    a = ModelConfig(input_size=72, horizon=24, fold=24)
    b = ModelConfig(input_size=72, horizon=48, fold=24)
    with pytest.raises(ValueError, match="horizon"):
        ensemble_config([a, b])
    with pytest.raises(ValueError, match=r"members\[0\].*nonsense"):
        EnsembleConfig(members=[{"nonsense": 1}]).member_configs(a, TrainConfig())


def test_ensemble_trains_logs_members_and_registers_one_model(
    tiny_df: pd.DataFrame, tmp_path: Path, live: list[LiveServer]
) -> None:
    settings = make_settings(tmp_path, "ens")
    base = ModelConfig(cell="gru", units=8, input_size=72, horizon=24, fold=24, min_history=48,
                       quantiles=[0.1, 0.9])
    ens = EnsembleConfig(members=[{"seed": 1}, {"seed": 2, "input_size": 48},
                                  {"seed": 3, "cell": "lstm"}])
    train = TrainConfig(epochs=2, steps_per_epoch=3, batch_size=32, verbose=False)
    job = train_tiny(tiny_df, base, train, settings, "tests:m4_tiny", ensemble=ens)
    client = MlflowClient(settings.resolved_tracking_uri())
    children = client.search_runs(
        [client.get_run(job.run_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{job.run_id}'")
    assert len(children) == 3
    assert all("model_mase" in r.data.metrics for r in children)
    parent = client.get_run(job.run_id).data.metrics
    assert {"member0_mase", "member1_mase", "member2_mase", "interval_factor"} <= set(parent)
    assert job.version is not None and job.version.version == 1  # ONE registered model
    # pyfunc and fast path agree; the joined model is the median of its members.
    series = tiny_df[tiny_df["unique_id"] == "H2"].tail(72)
    fast = job.forecaster.forecast([series["y"].to_numpy(np.float32)]).values[0, :, 1]
    model = mlflow.pyfunc.load_model(f"models:/{settings.model_name}/1")
    naive = series.assign(ds=series["ds"].dt.tz_localize(None))
    frame = model.predict(naive[["unique_id", "ds", "y"]])
    np.testing.assert_allclose(frame["forecast"].to_numpy(), fast, rtol=1e-5)
    assert np.all(frame["q0.1"] <= frame["forecast"]) and np.all(frame["forecast"] <= frame["q0.9"])

    # The same registered ensemble through the HTTP API: identical forecasts and quantiles.
    registry.promote(settings.connect(), settings.model_name, 1, "test")
    server = start_server(create_app(ApiSettings(models=[settings.model_name]), settings))
    live.append(server)
    body = {"series": [{"id": "H2", "start": series["ds"].iloc[0].isoformat(),
                        "values": series["y"].tolist()}], "quantiles": [0.1, 0.9]}
    resp = httpx.post(f"{server.url}/v1/forecast", json=body, timeout=30)
    assert resp.status_code == 200, resp.text
    (out,) = resp.json()["series"]
    np.testing.assert_allclose(out["forecast"], frame["forecast"].to_numpy(), rtol=1e-5)
    np.testing.assert_allclose(out["quantiles"]["0.1"], frame["q0.1"].to_numpy(), rtol=1e-5)
