"""Helpers of the service tests: a quantile model, registered copies, broken versions, requests.

Everything lives in the session champion's temporary store (one SQLite file: creating a new
MLflow database costs seconds); each test that moves an alias uses its own model name. (A
module, not a nested conftest.py: two conftest modules would shadow each other's imports.)
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import httpx
import keras
import mlflow
import numpy as np
import pandas as pd
from prometheus_client.parser import text_string_to_metric_families

from conftest import TINY_MODEL, TINY_TRAIN, Champion, LiveServer, train_tiny
from nearcast.models import registry
from nearcast.models.artifact import log_forecaster
from nearcast.models.forecaster import Forecaster
from nearcast.models.settings import MlflowSettings
from nearcast.models.train import Trained

QUANTILES = [0.1, 0.9]
USER_KEY, ADMIN_KEY = "user-key-123", "admin-key-456"
AUTH = {"Authorization": f"Bearer {USER_KEY}"}


@dataclass(frozen=True)
class QuantileModel:
    """A tiny quantile model registered as ``tinyq@champion`` in the champion's store."""

    settings: MlflowSettings
    job: Trained


def train_quantile_model(champion: Champion, tiny_df: pd.DataFrame, name: str = "tinyq"
                         ) -> QuantileModel:
    """Train a tiny 0.1/0.5/0.9 model (1 epoch) next to the champion, champion of ``name``."""
    settings = champion.settings.model_copy(update={"model_name": name})
    config = TINY_MODEL.model_copy(update={"quantiles": QUANTILES})
    config = type(config).model_validate(config.model_dump())  # re-run the validator (adds 0.5)
    train = TINY_TRAIN.model_copy(update={"epochs": 1, "loss": "pinball"})
    job = train_tiny(tiny_df, config, train, settings, "tests:m4_tiny")
    assert job.version is not None
    registry.promote(settings.connect(), name, job.version.version, "tests")
    return QuantileModel(settings, job)


def register_copy(settings: MlflowSettings, name: str, forecaster: Forecaster
                  ) -> registry.VersionRef:
    """Log ``forecaster`` in a new run and register it as a new version of ``name``."""
    client = settings.connect()
    with mlflow.start_run(experiment_id=settings.ensure_experiment(client)) as run:
        info = log_forecaster(forecaster)
    return registry.register(client, name, info.model_uri, run.info.run_id)


def nan_copy(forecaster: Forecaster) -> Forecaster:
    """The same network with NaN weights: it loads, but its warm-up forecast is not finite."""
    model = keras.models.clone_model(forecaster.model)
    model.set_weights([np.full_like(w, np.nan) for w in forecaster.model.get_weights()])
    return Forecaster(model, forecaster.meta)


def delete_artifacts(settings: MlflowSettings, ref: registry.VersionRef) -> Path:
    """Delete the artifact folder behind a registered version (a broken version)."""
    client = settings.connect()
    model_id = ref.source.removeprefix("models:/")
    folder = Path(urlparse(client.get_logged_model(model_id).artifact_location).path)
    shutil.rmtree(folder)
    return folder


def wait_for(check: Callable[[], bool], timeout: float = 30.0, every: float = 0.1) -> bool:
    """Poll ``check`` until it is true or ``timeout`` passes (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(every)
    return check()


def series_body(df: pd.DataFrame, uid: str, n: int, **extra: object) -> dict[str, object]:
    """A regular ``start`` series: the last ``n`` points of ``uid``."""
    tail = df[df["unique_id"] == uid].tail(n)
    return {"id": uid, "start": tail["ds"].iloc[0].isoformat(), "values": tail["y"].tolist(),
            **extra}


def metric(text: str, sample: str, **labels: str) -> float:
    """Sum of the ``sample`` values whose labels include ``labels`` (0.0 when absent)."""
    total = 0.0
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == sample and all(s.labels.get(k) == v for k, v in labels.items()):
                total += s.value
    return total


def scrape(server: LiveServer) -> str:
    """The /metrics text."""
    resp = httpx.get(f"{server.url}/metrics", timeout=10)
    assert resp.status_code == 200
    return resp.text


def post(server: LiveServer, body: object, headers: dict[str, str] | None = None
         ) -> httpx.Response:
    """POST /v1/forecast with the user key."""
    return httpx.post(f"{server.url}/v1/forecast", json=body, headers=headers or AUTH,
                      timeout=30)
