"""One grid rule, given in the job file and kept by the model: the API over HTTP, `evaluate`
and the MLflow pyfunc all read raw observations by the rule the model was trained with.

Two jobs are trained in the session champion's store (1 epoch each): ``gridsum`` on irregular
sub-hourly observations summed into hours (``agg: sum``), ``griddaily`` on daily data
(``data.freq: D``, no ``model.freq``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from conftest import (
    TINY_MODEL,
    TINY_TRAIN,
    Champion,
    LiveServer,
    start_server,
    stop_server,
    train_tiny,
)
from nearcast.models import registry
from nearcast.models.backtest import backtest
from nearcast.models.estimator import Nearcast
from nearcast.models.evaluate_job import evaluate_model
from nearcast.models.jobconfig import JobConfig
from nearcast.models.settings import MlflowSettings
from nearcast.models.train import Trained as TrainedModel
from nearcast.models.train import train
from nearcast.pipelines.dataset import load_dataset
from nearcast.pipelines.grid import GridRule
from nearcast.service.app import create_app
from nearcast.service.cli import app as cli
from nearcast.service.settings import ApiSettings

HOUR, DAY = pd.Timedelta(hours=1), pd.Timedelta(days=1)
TRAIN = {"epochs": 1, "steps_per_epoch": 4, "batch_size": 32, "verbose": False}
DAILY_MODEL = {"cell": "lstm", "units": 8, "input_size": 28, "horizon": 7, "fold": 7,
               "season": 7, "min_history": 14}
#: Each hour's value split into 1, 2 or 3 observations at irregular minutes: (minutes, shares).
SPLITS = (((7,), (1.0,)), ((0, 31), (0.4, 0.6)), ((3, 22, 49), (0.2, 0.3, 0.5)))


@dataclass(frozen=True)
class Trained:
    """A job file, the model trained from it (alias champion) and its store."""

    job_file: Path
    data_file: Path
    settings: MlflowSettings
    job: TrainedModel

    @property
    def uri(self) -> str:
        return f"models:/{self.settings.model_name}@champion"


def _sub_hourly(hourly: pd.DataFrame) -> pd.DataFrame:
    """Irregular observations whose hourly sums are ``hourly``'s values."""
    rows = []
    for i, (uid, ds, y) in enumerate(hourly[["unique_id", "ds", "y"]].itertuples(index=False)):
        minutes, shares = SPLITS[i % len(SPLITS)]
        rows += [(uid, ds + pd.Timedelta(minutes=m), y * s)
                 for m, s in zip(minutes, shares, strict=True)]
    return pd.DataFrame(rows, columns=["unique_id", "ds", "y"])


def _daily(n_series: int = 6, days: int = 120) -> pd.DataFrame:
    """Positive daily series with a weekly season."""
    rng = np.random.default_rng(7)
    t = np.arange(days)
    frames = [pd.DataFrame({
        "unique_id": f"D{i}", "ds": pd.date_range("2023-01-02", periods=days, freq="D", tz="UTC"),
        "y": (50 + 10 * i) * (1 + 0.3 * np.sin(2 * np.pi * t / 7)) + rng.normal(0, 1, days)})
        for i in range(n_series)]
    return pd.concat(frames, ignore_index=True)


def _train_job(champion: Champion, folder: Path, name: str, data: pd.DataFrame,
               data_keys: dict[str, object], model: dict[str, object]) -> Trained:
    """Write the data and a job file, then train it as `nearcast train` does, and promote."""
    folder.mkdir(parents=True, exist_ok=True)
    data_file, job_file = folder / f"{name}.csv", folder / f"{name}.yaml"
    data.assign(ds=data["ds"].map(lambda t: t.isoformat())).to_csv(data_file, index=False)
    job_file.write_text(yaml.safe_dump({
        "model_name": name, "data": {"source": "files", "path": str(data_file), **data_keys},
        "model": model, "train": TRAIN}))
    job = JobConfig.from_yaml(job_file)
    loaded = load_dataset(job.data)
    settings = champion.settings.model_copy(update={"model_name": name})
    result = train(Nearcast.from_job(job), settings, loaded)
    assert result.version is not None
    registry.promote(settings.connect(), name, result.version.version, "tests")
    return Trained(job_file, data_file, settings, result)


@pytest.fixture(scope="module")
def summed(champion: Champion, tiny_df: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
           ) -> Trained:
    model = TINY_MODEL.model_dump(exclude={"freq", "quantiles"})
    return _train_job(champion, tmp_path_factory.mktemp("gridsum"), "gridsum",
                      _sub_hourly(tiny_df), {"freq": "h", "agg": "sum"}, model)


@pytest.fixture(scope="module")
def daily(champion: Champion, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    return _train_job(champion, tmp_path_factory.mktemp("griddaily"), "griddaily", _daily(),
                      {"freq": "D"}, DAILY_MODEL)


@pytest.fixture(scope="module")
def server(champion: Champion, summed: Trained, daily: Trained) -> Iterator[LiveServer]:
    live = start_server(create_app(ApiSettings(models=["gridsum", "griddaily"], poll_seconds=60),
                                   champion.settings))
    yield live
    stop_server(live)


def _forecast(server: LiveServer, model: str, series: dict[str, object]) -> dict[str, object]:
    resp = httpx.post(f"{server.url}/v1/forecast", json={"model": model, "series": [series]},
                      timeout=30)
    assert resp.status_code == 200, resp.text
    (out,) = resp.json()["series"]
    return dict(out)


def _pyfunc(trained: Trained, frame: pd.DataFrame) -> pd.DataFrame:
    trained.settings.connect()
    model = mlflow.pyfunc.load_model(trained.uri)
    naive = frame.assign(ds=frame["ds"].dt.tz_convert("UTC").dt.tz_localize(None))
    return pd.DataFrame(model.predict(naive[["unique_id", "ds", "y"]]))


def test_agg_sum_job_is_served_evaluated_and_loaded_as_trained(
    summed: Trained, server: LiveServer, tiny_df: pd.DataFrame
) -> None:
    fc = summed.job.forecaster
    assert fc.meta.grid.model_dump() == {"freq": "h", "agg": "sum", "gap_policy": "linear",
                                         "max_gap": None, "timezone": "UTC"}
    run = mlflow.get_run(summed.job.run_id)
    assert (run.data.params["data.agg"], run.data.params["data.freq"]) == ("sum", "h")
    # What training saw: the hourly sums of the irregular observations = the hourly series.
    hours = tiny_df[tiny_df["unique_id"] == "H3"].tail(72).reset_index(drop=True)
    expected = fc.forecast([hours["y"].to_numpy(np.float32)]).values[0, :, 0]
    after = [hours["ds"].iloc[-1] + HOUR * k for k in range(1, 25)]

    raw = pd.read_csv(summed.data_file)  # the observations the job was trained on
    raw["ds"] = pd.to_datetime(raw["ds"], utc=True)
    obs = raw[(raw["unique_id"] == "H3") & (raw["ds"] >= hours["ds"].iloc[0])]
    assert len(obs) == 144  # 72 hours as 1, 2 or 3 observations each: not an hourly series
    irregular = _forecast(server, "gridsum", {
        "id": "H3", "values": obs["y"].tolist(),
        "timestamps": [t.isoformat() for t in obs["ds"]]})
    regular = _forecast(server, "gridsum", {"id": "H3", "start": hours["ds"].iloc[0].isoformat(),
                                            "values": hours["y"].tolist()})
    for out in (irregular, regular):
        np.testing.assert_allclose(out["forecast"], expected, rtol=1e-5)
        assert [pd.Timestamp(t) for t in out["timestamps"]] == after  # type: ignore[union-attr]
    assert irregular["pipeline"]["points_aggregated"] == 72  # type: ignore[index]

    frame = _pyfunc(summed, obs)
    np.testing.assert_allclose(frame["forecast"], expected, rtol=1e-5)
    assert list(pd.to_datetime(frame["ds"])) == [t.tz_localize(None) for t in after]

    oracle = backtest(fc, tiny_df, n_folds=2).aggregate
    for spec in (summed.job_file, summed.data_file):  # the job file, and the raw CSV alone
        result = evaluate_model(summed.uri, str(spec), summed.settings, n_folds=2).backtest
        for method, scores in oracle.items():
            assert result.aggregate[method] == pytest.approx(scores, rel=1e-9), (spec, method)

    listing = {m["name"]: m for m in httpx.get(f"{server.url}/v1/models").json()}
    assert {k: listing["gridsum"][k] for k in ("freq", "agg", "gap_policy", "max_gap",
                                                "timezone")} == fc.meta.grid.model_dump()


def test_daily_job_gives_a_daily_model_timestamped_by_day(
    daily: Trained, server: LiveServer
) -> None:
    fc = daily.job.forecaster
    assert (fc.config.freq, fc.meta.grid.freq) == ("D", "D")
    frame = pd.read_csv(daily.data_file)
    frame["ds"] = pd.to_datetime(frame["ds"], utc=True)
    tail = frame[frame["unique_id"] == "D2"].tail(28).reset_index(drop=True)
    days = [tail["ds"].iloc[-1] + DAY * k for k in range(1, 8)]
    expected = fc.forecast([tail["y"].to_numpy(np.float32)]).values[0, :, 0]

    for series in ({"id": "D2", "start": tail["ds"].iloc[0].isoformat(),
                    "values": tail["y"].tolist()},
                   {"id": "D2", "timestamps": [t.isoformat() for t in tail["ds"]],
                    "values": tail["y"].tolist()}):
        out = _forecast(server, "griddaily", series)
        assert [pd.Timestamp(t) for t in out["timestamps"]] == days  # type: ignore[union-attr]
        np.testing.assert_allclose(out["forecast"], expected, rtol=1e-5)
    listing = {m["name"]: m for m in httpx.get(f"{server.url}/v1/models").json()}
    assert (listing["griddaily"]["freq"], listing["griddaily"]["horizon"]) == ("D", 7)

    predicted = _pyfunc(daily, tail)
    assert list(pd.to_datetime(predicted["ds"])) == [t.tz_localize(None) for t in days]
    np.testing.assert_allclose(predicted["forecast"], expected, rtol=1e-5)

    result = evaluate_model(daily.uri, str(daily.job_file), daily.settings, n_folds=2).backtest
    for method, scores in backtest(fc, frame, n_folds=2).aggregate.items():
        assert result.aggregate[method] == pytest.approx(scores, rel=1e-9), method
    last = frame[frame["unique_id"] == "D2"]["ds"].iloc[-1]
    assert [c["D2"] for c in result.cutoffs] == [last - DAY * 14, last - DAY * 7]


def test_data_and_model_frequency_disagree_before_training(
    champion: Champion, tmp_path: Path
) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({
        "data": {"source": "files", "path": str(tmp_path / "nowhere.csv"), "freq": "D"},
        "model": TINY_MODEL.model_dump(exclude={"quantiles"}), "train": TRAIN}))
    home = tmp_path / "store"
    out = CliRunner().invoke(cli, ["train", "--config", str(job)],
                             env={"NEARCAST_HOME": str(home), "NEARCAST_EXPERIMENT": "tests"})
    assert out.exit_code == 2, out.output
    assert (f"{job}: model.freq 'h' differs from data.freq 'D': give the grid frequency once, "
            "as data.freq") in out.output
    assert not home.exists()  # no MLflow store opened, so no run created

    client = champion.settings.connect()  # the same rule for a Python caller
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = len(client.search_runs(experiments))
    frame = pd.DataFrame({"unique_id": "a", "y": 1.0,
                          "ds": pd.date_range("2024-01-01", periods=200, freq="D", tz="UTC")})
    explicit = TINY_MODEL.model_copy(update={"freq": "h"})
    with pytest.raises(ValueError, match=r"model.freq 'h' differs from data.freq 'D'"):
        train_tiny(frame, explicit, TINY_TRAIN, champion.settings, "tests",
                           grid=GridRule(freq="D"))
    assert len(client.search_runs(experiments)) == runs
