"""Shared fixtures: tiny real data, a temporary MLflow store, one tiny trained champion."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# The load check in this process (~0.2 s) instead of a fresh one (~6 s) per registration;
# tests/service/test_load_check.py and test_alias_moves.py run the real subprocess check.
os.environ.setdefault("NEARCAST_LOAD_CHECK", "inprocess")
# Served models skip the XLA ladder (compiling 9 batch sizes costs seconds per model load);
# tests/service/test_xla_serving.py and tests/models/test_compiled.py run it explicitly.
os.environ.setdefault("NEARCAST_XLA", "false")

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pandas as pd
import pytest
import uvicorn

from nearcast.models import registry
from nearcast.models.config import EnsembleConfig, ModelConfig, TrainConfig
from nearcast.models.estimator import Nearcast
from nearcast.models.jobconfig import JobConfig
from nearcast.models.settings import MlflowSettings, get_mlflow_settings
from nearcast.models.train import Trained, train
from nearcast.pipelines.dataset import DataConfig
from nearcast.pipelines.grid import GridRule
from nearcast.pipelines.schema import DS

DATA = Path(__file__).parent / "data"

TINY_MODEL = ModelConfig(cell="lstm", units=8, input_size=72, horizon=24, fold=24, season=24,
                         min_history=48)
TINY_TRAIN = TrainConfig(epochs=2, steps_per_epoch=4, batch_size=32, verbose=False)


@pytest.fixture(scope="session")
def tiny_df() -> pd.DataFrame:
    """8 real M4 Hourly series x 264 points, long format, UTC timestamps."""
    df = pd.read_csv(DATA / "m4_tiny_long.csv")
    df[DS] = pd.to_datetime(df[DS], utc=True)
    df["y"] = df["y"].astype("float64")
    return df


def with_short_series(df: pd.DataFrame, n: int = 100) -> pd.DataFrame:
    """``df`` plus series ``S1``: H1's first ``n`` points (too short for many folds)."""
    h1 = df[df["unique_id"] == "H1"].sort_values("ds").head(n)
    return pd.concat([df, h1.assign(unique_id="S1")], ignore_index=True)


def make_settings(root: Path, name: str = "tiny") -> MlflowSettings:
    """An embedded MLflow store inside ``root``."""
    return MlflowSettings(home=root / ".nearcast", model_name=name, experiment="tests")


def train_tiny(df: pd.DataFrame, model: ModelConfig, train_cfg: TrainConfig,
               settings: MlflowSettings, source: str = "tests:m4_tiny", *,
               grid: GridRule | None = None, ensemble: EnsembleConfig | None = None,
               **options: Any) -> Trained:
    """Train ``df`` as `nearcast train` does (a Nearcast fit, logged and registered)."""
    data = DataConfig(**(grid or GridRule(freq=model.freq)).model_dump())
    job = JobConfig(data=data, model=model, train=train_cfg, ensemble=ensemble)
    return train(Nearcast.from_job(job), settings, df, source=source, **options)


@dataclass(frozen=True)
class Champion:
    """A trained, registered champion in a temporary store."""

    settings: MlflowSettings
    job: Trained


@pytest.fixture(scope="session")
def champion(tmp_path_factory: pytest.TempPathFactory, tiny_df: pd.DataFrame) -> Champion:
    """Train the tiny model once per session, register it and make it champion."""
    settings = make_settings(tmp_path_factory.mktemp("store"))
    job = train_tiny(tiny_df, TINY_MODEL, TINY_TRAIN, settings)
    assert job.version is not None
    registry.promote(settings.connect(), settings.model_name, job.version.version, "tests")
    return Champion(settings, job)


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LiveServer:
    """A uvicorn server running an app in a thread on 127.0.0.1."""

    server: uvicorn.Server
    thread: threading.Thread
    url: str


def start_server(app: object, timeout: float = 60.0) -> LiveServer:
    """Run ``app`` on a free loopback port and wait until /readyz answers 200."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return LiveServer(server, thread, url)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.should_exit = True
    raise RuntimeError("server did not become ready")


def stop_server(live: LiveServer) -> None:
    """Ask the server to exit and wait for its thread."""
    live.server.should_exit = True
    live.thread.join(15)


@contextmanager
def in_process_cli(settings: MlflowSettings) -> Iterator[dict[str, str]]:
    """Environment for ``CliRunner`` on ``settings``' store; MLflow's global URIs restored."""
    uri = mlflow.get_tracking_uri()
    get_mlflow_settings.cache_clear()
    try:
        yield {"NEARCAST_HOME": str(settings.home), "NEARCAST_EXPERIMENT": settings.experiment,
               "NEARCAST_MODEL_NAME": settings.model_name}
    finally:
        get_mlflow_settings.cache_clear()
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)


@pytest.fixture
def champion_cli_env(champion: Champion) -> Iterator[dict[str, str]]:
    """:func:`in_process_cli` on the session champion's store."""
    with in_process_cli(champion.settings) as env:
        yield env


@pytest.fixture
def live() -> Iterator[list[LiveServer]]:
    """Collects servers a test starts and stops them afterwards."""
    servers: list[LiveServer] = []
    yield servers
    for s in servers:
        stop_server(s)
