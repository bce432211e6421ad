"""A covariate model over real HTTP: same forecast as the pyfunc and the fast path; every bad
covariate input is a 422 naming the series and the covariate; the listing shows the roles."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
from covariate_data import COVARIATES, driven_frame
from svc_helpers import AUTH, post
from typer.testing import CliRunner

from conftest import LiveServer, in_process_cli, make_settings, start_server, stop_server
from nearcast.models import registry
from nearcast.models.backtest import backtest
from nearcast.models.config import ModelConfig, TrainConfig
from nearcast.models.estimator import Nearcast
from nearcast.models.jobconfig import JobConfig
from nearcast.models.settings import MlflowSettings
from nearcast.models.train import Trained, train
from nearcast.pipelines.calendar import CalendarRule
from nearcast.pipelines.dataset import DataConfig
from nearcast.pipelines.feature_windows import covariate_batch, future_frame
from nearcast.service.app import create_app
from nearcast.service.cli import app
from nearcast.service.settings import ApiSettings

MODEL = ModelConfig(units=8, input_size=48, horizon=24, fold=24, season=24, min_history=24,
                    scaling="level_mad", seasonal_skip=False, embedding=4,
                    calendar=CalendarRule(features=["hour", "weekday", "holiday"], country="DE",
                                          timezone="Europe/Berlin"))
TRAIN = TrainConfig(epochs=2, steps_per_epoch=10, batch_size=32, verbose=False)
NAME = "cov"


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return driven_frame()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, frame: pd.DataFrame
            ) -> tuple[MlflowSettings, Trained]:
    settings = make_settings(Path(tmp_path_factory.mktemp("covstore")), NAME)
    job = JobConfig(data=DataConfig(freq="h", covariates=COVARIATES), model=MODEL, train=TRAIN)
    done = train(Nearcast.from_job(job), settings, frame, source="tests:driven")
    assert done.version is not None
    registry.promote(settings.connect(), NAME, done.version.version, "tests")
    return settings, done


@pytest.fixture(scope="module")
def server(trained: tuple[MlflowSettings, Trained]) -> Iterator[LiveServer]:
    live = start_server(create_app(ApiSettings(models=[NAME], poll_seconds=60), trained[0]))
    yield live
    stop_server(live)


def _series(frame: pd.DataFrame, uid: str, n: int = 96) -> dict[str, object]:
    g = frame[frame["unique_id"] == uid]
    hist, fut = g.iloc[200 - n : 200], g.iloc[200:224]
    return {"id": uid, "start": hist["ds"].iloc[0].isoformat(), "values": hist["y"].tolist(),
            "covariates": {"x": hist["x"].tolist(), "p": hist["p"].tolist()},
            "future": {"x": fut["x"].tolist()}, "static": {"region": str(g["region"].iloc[0])}}


def test_http_equals_the_pyfunc_and_the_fast_path(
    server: LiveServer, trained: tuple[MlflowSettings, Trained], frame: pd.DataFrame
) -> None:
    body = {"series": [_series(frame, "S0"), _series(frame, "S1", 72)]}
    resp = post(server, body)
    assert resp.status_code == 200, resp.text
    out = resp.json()["series"]
    assert all(s["warnings"] == [] for s in out)
    settings, done = trained
    settings.connect()
    pyfunc = mlflow.pyfunc.load_model(f"models:/{NAME}@champion")
    rows = []
    for uid, n in (("S0", 96), ("S1", 72)):
        g = frame[frame["unique_id"] == uid]
        rows += [g.iloc[200 - n : 200], g.iloc[200:224].assign(y=np.nan)]
    rows_in = pd.concat(rows)
    rows_in["ds"] = rows_in["ds"].dt.tz_localize(None)  # the pyfunc's signature: naive UTC
    want = pyfunc.predict(rows_in).sort_values(["unique_id", "ds"])
    got = np.concatenate([s["forecast"] for s in out])
    np.testing.assert_allclose(got, want["forecast"].to_numpy(), atol=1e-5)
    fc = done.forecaster
    assert fc is not None
    history = frame[frame["unique_id"] == "S0"].iloc[104:200]
    steps = pd.DatetimeIndex(frame[frame["unique_id"] == "S0"]["ds"].iloc[200:224])
    fut = future_frame(steps, {"x": frame[frame["unique_id"] == "S0"]["x"].iloc[200:224]
                               .to_numpy()}, fc.meta.features, 0)
    batch = covariate_batch(fc.meta.features, MODEL.window_spec(), [history], [fut], ["S0"])
    fast = fc.forecast([history["y"].to_numpy(np.float32)], batch).values[0, :, 0]
    np.testing.assert_allclose(out[0]["forecast"], fast, atol=1e-5)


def test_an_unseen_series_uses_the_shared_vector_and_the_response_says_so(
    server: LiveServer, frame: pd.DataFrame
) -> None:
    item = _series(frame, "S0") | {"id": "NEW"}
    resp = post(server, {"series": [item]})
    assert resp.status_code == 200, resp.text
    assert "not seen in training" in resp.json()["series"][0]["warnings"][0]


@pytest.mark.parametrize(("change", "field", "words"), [
    (lambda s: s["future"].pop("x"), "series[0] (id 'S0').future.x", "missing"),
    (lambda s: s["covariates"].pop("p"), "series[0] (id 'S0').covariates.p", "missing"),
    (lambda s: s["covariates"].update(q=[1.0] * 96), "series[0] (id 'S0').covariates.q",
     "not a past or future-known covariate"),
    (lambda s: s["future"].update(x=[1.0] * 5), "series[0] (id 'S0').future.x", "5 values"),
    (lambda s: s["covariates"].update(x=[1.0] * 5), "series[0] (id 'S0')", "covariates.x has 5"),
    (lambda s: s["static"].update(region=3.0), "series[0] (id 'S0').static.region",
     "categorical"),
    (lambda s: s["static"].update(region="west"), "series[0] (id 'S0').static.region",
     "'west' was not seen"),
    (lambda s: s.pop("static"), "series[0] (id 'S0').static.region", "missing"),
])
def test_each_bad_covariate_input_is_a_422_naming_it(
    server: LiveServer, frame: pd.DataFrame, change: object, field: str, words: str
) -> None:
    item = _series(frame, "S0")
    change(item)  # type: ignore[operator]
    resp = post(server, {"series": [item]})
    assert resp.status_code == 422, resp.text
    body = resp.json()
    assert body["detail"][0]["field"].startswith(field), body
    assert words in body["error"], body


def test_nan_in_a_future_covariate_is_a_422(server: LiveServer, frame: pd.DataFrame) -> None:
    item = _series(frame, "S0")
    item["future"] = {"x": "@NAN@"}
    raw = json.dumps({"series": [item]}).replace('"@NAN@"', "[" + ", ".join(["NaN"] * 24) + "]")
    resp = httpx.post(f"{server.url}/v1/forecast", content=raw.encode(), timeout=30,
                      headers=AUTH | {"content-type": "application/json"})
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"][0]["field"].startswith("series[0] (id 'S0').future.x")


def test_the_listing_shows_the_covariates_and_their_roles(server: LiveServer) -> None:
    info = httpx.get(f"{server.url}/v1/models", headers=AUTH, timeout=10).json()[0]
    roles = {c["name"]: (c["role"], c["kind"]) for c in info["covariates"]}
    assert roles == {"x": ("future", "numeric"), "p": ("past", "numeric"),
                     "region": ("static", "categorical")}
    assert info["series_embedding"] is True
    assert info["calendar"]["features"] == ["hour", "weekday", "holiday"]


@pytest.fixture
def cli_home(trained: tuple[MlflowSettings, Trained]) -> Iterator[dict[str, str]]:
    """The in-process CLI on the covariate model's store."""
    with in_process_cli(trained[0]) as env:
        yield env


def test_evaluate_backtests_daily_origins_with_the_drivers_from_a_mapped_file(
    trained: tuple[MlflowSettings, Trained], frame: pd.DataFrame, tmp_path: Path,
    cli_home: dict[str, str]
) -> None:
    done = trained[1]
    # The file names its columns otherwise; the job file maps them (as for the EPF files).
    renamed = {"unique_id": "market", "ds": "when", "y": "price", "x": " driver",
               "p": "observed", "region": "area"}
    frame.rename(columns=renamed).to_csv(tmp_path / "driven.csv", index=False)
    job = tmp_path / "job.yaml"
    job.write_text(
        f"data:\n  source: files\n  path: {tmp_path / 'driven.csv'}\n  freq: h\n"
        "  columns: {unique_id: market, ds: when, y: price}\n"
        "  covariates:\n    x: {column: ' driver', role: future}\n"
        "    p: {column: observed, role: past}\n"
        "    region: {column: area, role: static, kind: categorical}\n")
    runner, model = CliRunner(), ["evaluate", "--model", f"models:/{NAME}@champion"]
    out = runner.invoke(app, [*model, "--data", str(job), "--folds", "10", "--step", "24",
                              "--horizon", "24"], env=cli_home)
    assert out.exit_code == 0, out.output
    assert "all 10 folds x 24 points (step 24, 3 series scored, 0 skipped)" in out.output
    fc = done.model.forecaster
    expected = backtest(fc, fc.regularize(frame).frame, n_folds=10, step=24).aggregate
    row = next(line for line in out.output.splitlines() if line.startswith("model "))
    assert row.split()[1:3] == [f"{expected['model']['smape']:.3f}",
                                f"{expected['model']['mase']:.3f}"]
    # A job file may name the columns but not change a covariate's role.
    job.write_text(job.read_text().replace("role: future", "role: past"))
    bad = runner.invoke(app, [*model, "--data", str(job), "--folds", "2"], env=cli_home)
    assert bad.exit_code == 2, bad.output
    assert "covariate 'x' role 'past' differs from the model's 'future'" in bad.output
