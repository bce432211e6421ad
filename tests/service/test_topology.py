"""The production topology without containers: PostgreSQL, a live ``mlflow server``, the API.

A fresh PostgreSQL database per run (``NEARCAST_TEST_POSTGRES_URL``, else the local default;
skipped with the reason when no server answers) backs a real ``mlflow server`` process on
127.0.0.1 that proxies artifacts to a temporary folder. Everything nearcast does goes through
that server by its ``http://`` URI: training and registering, the API loading the model (the
artifacts come through the server's proxy), forecasting, retraining and promoting. Then the
server is frozen, stopped, killed and restarted while the API answers forecasts.

Also here: ``nearcast serve --workers 2`` (embedded store) and its summed Prometheus metrics.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pandas as pd
import pytest
from retrain_helpers import MODEL, WORSE_MODEL, WORSE_TRAIN, cli_env, start_cli, write_job
from svc_helpers import metric, post, register_copy, series_body, wait_for
from topology_helpers import (
    ForecastLoop,
    TrackingServer,
    champion_in_postgres,
    fresh_database,
    postgres_base,
)

from conftest import Champion, LiveServer, free_port, start_server, train_tiny
from nearcast.models import registry
from nearcast.models.config import ModelConfig, TrainConfig
from nearcast.models.settings import MlflowSettings
from nearcast.models.train import Trained
from nearcast.service.app import create_app
from nearcast.service.retraining.job import run_retrain
from nearcast.service.settings import ApiSettings

NAME = "it-tiny"
# The challenger of the retraining step: a little training, far better than the weak v1.
CHALLENGER_TRAIN = {"epochs": 2, "steps_per_epoch": 8, "batch_size": 32, "learning_rate": 3e-3,
                    "verbose": False}


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def backend_uri() -> Iterator[str]:
    """A new PostgreSQL database for this module (skipped, saying why, without a server)."""
    with fresh_database(postgres_base()) as uri:
        yield uri


@dataclass(frozen=True)
class Topology:
    """The running tracking server, nearcast's settings for it and the trained v1."""

    server: TrackingServer
    backend: str
    settings: MlflowSettings
    data: Path
    first: Trained

    def champion_in_postgres(self) -> int | None:
        """The champion's version read straight from MLflow's tables in PostgreSQL."""
        return champion_in_postgres(self.backend, NAME)


@pytest.fixture(scope="module")
def topology(backend_uri: str, tmp_path_factory: pytest.TempPathFactory,
             tiny_df: pd.DataFrame) -> Iterator[Topology]:
    """Start the server, train a weak v1 through it and make it champion."""
    root = tmp_path_factory.mktemp("topology")
    server = TrackingServer(backend_uri, root / "artifacts", root / "mlflow-server.log")
    before = mlflow.get_tracking_uri(), mlflow.get_registry_uri()
    keys = ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES",
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR")
    saved = {k: os.environ.get(k) for k in keys}
    server.start()
    try:
        # Fail fast while the server is away: 2 attempts of at most 3 s, no backoff.
        settings = MlflowSettings(home=root / "client", tracking_uri=server.url, experiment="it",
                                  model_name=NAME, registry_timeout=3, registry_retries=1,
                                  registry_backoff=0)
        data = root / "data.csv"
        tiny_df.to_csv(data, index=False)
        first = train_tiny(tiny_df, ModelConfig(**WORSE_MODEL),
                                   TrainConfig(**WORSE_TRAIN | {"verbose": False}), settings,
                                   "tests:m4_tiny")
        assert first.version is not None and first.version.version == 1
        registry.promote(settings.connect(), NAME, 1, "topology test")
        yield Topology(server, backend_uri, settings, data, first)
    finally:
        server.stop(signal.SIGKILL)
        mlflow.set_tracking_uri(before[0])  # later tests' stores must not point at it
        mlflow.set_registry_uri(before[1])
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# ----------------------------------------------------------------------------- API helpers


def _api(topology: Topology, live: list[LiveServer]) -> LiveServer:
    server = start_server(create_app(ApiSettings(models=[NAME], poll_seconds=0.5),
                                     topology.settings), timeout=90)
    live.append(server)
    return server


def _get(server: LiveServer, path: str) -> Any:
    resp = httpx.get(f"{server.url}{path}", timeout=10)
    assert resp.status_code == 200, resp.text
    return resp.json()


def _served(server: LiveServer) -> int | None:
    (entry,) = _get(server, "/v1/models")
    return entry["version"]  # type: ignore[no-any-return]


def _reachable(server: LiveServer) -> bool:
    return bool(_get(server, "/readyz")["registry_reachable"])


def _body(tiny_df: pd.DataFrame) -> dict[str, object]:
    return {"series": [series_body(tiny_df, "H1", 72)], "horizon": 24}


# ----------------------------------------------------------------------------- acceptance 1


@pytest.mark.slow
@pytest.mark.postgres
def test_train_register_serve_retrain_promote_through_the_tracking_server(
    topology: Topology, tiny_df: pd.DataFrame, tmp_path: Path, live: list[LiveServer]
) -> None:
    if not topology.server.running:
        topology.server.start()
    settings, client = topology.settings, topology.settings.connect()
    # Registered through the server: the model's files went through its artifact proxy into
    # the artifacts destination; the registry lives in PostgreSQL; nothing was stored locally.
    champion = registry.version_for_alias(client, NAME, registry.CHAMPION)
    assert champion is not None
    logged = client.get_logged_model(champion.source.removeprefix("models:/"))
    assert logged.artifact_location.startswith("mlflow-artifacts:/")
    assert [p.name for p in topology.server.artifacts.rglob("MLmodel")]
    assert topology.champion_in_postgres() == champion.version
    assert not (settings.home / "mlflow.db").exists()
    assert not (settings.home / "artifacts").exists()

    # Serve: the API downloads the champion through the proxy and forecasts with it.
    server = _api(topology, live)
    before = champion.version
    resp = post(server, _body(tiny_df))
    assert resp.status_code == 200, resp.text
    assert resp.json()["model"]["version"] == before
    assert len(resp.json()["series"][0]["forecast"]) == 24
    details = _get(server, "/readyz")["details"][NAME]
    assert details["registry_reachable"] is True and details["version"] == before

    # Retrain through the server: the challenger beats the weak champion and is promoted.
    job = write_job(tmp_path / "retrain.yaml", topology.data, NAME, model=MODEL,
                    train=CHALLENGER_TRAIN, retrain={"margin": 0.05})
    lines: list[str] = []
    outcome = run_retrain(job, settings, lines.append)
    assert outcome.decision.promote, outcome.summary()
    new = outcome.challenger.version
    assert outcome.champion_before is not None and outcome.champion_before.version == before
    assert outcome.champion_after is not None and outcome.champion_after.version == new > before
    assert topology.champion_in_postgres() == new
    assert client.get_run(outcome.run_id).info.status == "FINISHED"
    assert wait_for(lambda: _served(server) == new, timeout=60), _get(server, "/v1/models")
    resp = post(server, _body(tiny_df))
    assert resp.status_code == 200 and resp.json()["model"]["version"] == new

    # Stop the tracking server: the API keeps serving the loaded model, still ready, and
    # says the registry is unreachable.
    topology.server.stop(signal.SIGTERM)
    assert wait_for(lambda: not _reachable(server), timeout=30), _get(server, "/readyz")
    ready = httpx.get(f"{server.url}/readyz", timeout=10)
    assert ready.status_code == 200
    body = ready.json()
    assert body["ready"] is True and body["models"] == [NAME]
    assert body["registry_reachable"] is False
    detail = body["details"][NAME]
    assert detail["registry_reachable"] is False and detail["version"] == new
    assert "registry unreachable" in detail["last_error"]
    assert detail["last_contact"] is not None and detail["last_contact"] < detail["last_check"]
    (info,) = _get(server, "/v1/models")
    assert info["registry_reachable"] is False and info["version"] == new
    assert "registry unreachable" in info["last_error"]
    for _ in range(3):
        resp = post(server, _body(tiny_df))
        assert resp.status_code == 200 and resp.json()["model"]["version"] == new


# ----------------------------------------------------------------------------- acceptance 3


def _other_version(topology: Topology, served: int) -> int:
    """A registered version that is not ``served`` (registering a copy of v1 if needed)."""
    client = topology.settings.connect()
    versions = sorted(int(v.version) for v in client.search_model_versions(f"name = '{NAME}'"))
    others = [v for v in versions if v != served]
    if others:
        return others[-1]
    return register_copy(topology.settings, NAME, topology.first.forecaster).version


@pytest.mark.slow
@pytest.mark.postgres
def test_tracking_server_frozen_killed_restarted_while_serving(
    topology: Topology, tiny_df: pd.DataFrame, live: list[LiveServer]
) -> None:
    if not topology.server.running:
        topology.server.start()
    server = _api(topology, live)
    served = _served(server)
    assert served is not None
    target = _other_version(topology, served)
    loop = ForecastLoop(server.url, _body(tiny_df))
    loop.start()
    try:
        assert loop.wait_count(5)

        # Frozen (SIGSTOP: connections hang): the registry timeout ends each poll.
        topology.server.send(signal.SIGSTOP)
        assert wait_for(lambda: not _reachable(server), timeout=45), _get(server, "/readyz")
        topology.server.send(signal.SIGCONT)
        assert wait_for(lambda: _reachable(server), timeout=45), _get(server, "/readyz")

        # Killed (SIGKILL, whole group) while requests keep coming, then restarted.
        topology.server.stop(signal.SIGKILL)
        killed_at = len(loop.statuses)
        assert wait_for(lambda: not _reachable(server), timeout=30), _get(server, "/readyz")
        assert loop.wait_count(killed_at + 20)
        topology.server.start()  # same port, same database
        restarted_at = len(loop.statuses)
        assert wait_for(lambda: _reachable(server), timeout=60), _get(server, "/readyz")

        # The alias moves: the API follows again within a bounded wait.
        registry.promote(topology.settings.connect(), NAME, target, "topology test: restart")
        assert wait_for(lambda: _served(server) == target, timeout=60), _get(server, "/v1/models")
        done = len(loop.statuses)
        assert loop.wait_count(done + 5)
    finally:
        loop.stop()
    assert loop.errors == []
    assert set(loop.statuses) == {200}, {s: loop.statuses.count(s) for s in set(loop.statuses)}
    assert restarted_at - killed_at >= 20  # answered while the server was down
    assert loop.versions[0] == served and loop.versions[-1] == target
    assert set(loop.versions) == {served, target}


# ----------------------------------------------------------------------------- workers


@pytest.mark.slow
def test_serve_with_two_workers_sums_metrics_over_workers(
    champion: Champion, tiny_df: pd.DataFrame, tmp_path: Path
) -> None:
    port = free_port()
    env = cli_env(champion.settings) | {"NEARCAST_MODELS": champion.settings.model_name,
                                        "TMPDIR": str(tmp_path)}
    proc = start_cli(["serve", "--workers", "2", "--port", str(port)], env)
    url = f"http://127.0.0.1:{port}"
    try:
        assert wait_for(lambda: _ready(url), timeout=120, every=0.25), proc.text
        (folder,) = tmp_path.glob("nearcast-metrics-*")  # multiprocess mode, a fresh folder
        body = {"series": [series_body(tiny_df, "H1", 72)], "horizon": 24}
        sent = 12
        for _ in range(sent):
            resp = httpx.post(f"{url}/v1/forecast", json=body, timeout=30)
            assert resp.status_code == 200, resp.text
        # Every scrape, whichever worker answers it, counts all forecasts of both workers.
        seen: dict[str, set[float]] = {}
        for _ in range(200):  # fresh connections: the kernel hands them to either worker
            text = httpx.get(f"{url}/metrics", timeout=10).text
            (worker,) = _workers(text)
            seen.setdefault(worker, set()).add(
                metric(text, "nearcast_http_requests_total", route="/v1/forecast", status="200"))
            if len(seen) == 2:
                break
        assert len(seen) == 2, f"only worker(s) {sorted(seen)} answered 200 scrapes"
        assert all(counts == {float(sent)} for counts in seen.values()), seen
        assert len(list(folder.glob("counter_*.db"))) == 2  # one sample file per worker
    finally:
        proc.popen.send_signal(signal.SIGTERM)
        code = proc.finish(60)
    assert code == 0, proc.text
    assert not list(tmp_path.glob("nearcast-metrics-*"))  # removed on shutdown


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _workers(text: str) -> set[str]:
    from prometheus_client.parser import text_string_to_metric_families

    return {s.labels["worker"] for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "nearcast_model_version"}
