"""Alias moves: the load check before any alias, the model's locks and compare-and-set.

Acceptance: a tiny ensemble trained by ``nearcast train`` forecasts the same when served by
``nearcast serve`` and when loaded by ``mlflow.pyfunc.load_model`` (three processes); no alias
moves to a version that does not load; a ``rollback`` during a ``retrain`` is not undone by the
retrain's promotion; promoting the current champion changes nothing; the PostgreSQL lock's
connection has keepalives and losing it fails a retrain before its promotion.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa
import yaml
from mlflow import MlflowClient
from retrain_helpers import (
    GOOD_TRAIN,
    MODEL,
    REPO,
    champion_version,
    cli_env,
    corrupt_keras_file,
    reachable_postgres_url,
    start_cli,
    tiny_frame,
    with_trend,
    write_job,
)
from svc_helpers import wait_for

from conftest import DATA, Champion, free_port, make_settings
from nearcast.models import load_check, registry
from nearcast.models.config import LockConfig
from nearcast.models.settings import MlflowSettings
from nearcast.service.retraining.job import RetrainError, run_retrain
from nearcast.service.retraining.lock import (
    KEEPALIVES,
    LockBusyError,
    LockLostError,
    alias_lock,
    retrain_lock,
)

TAG = "nearcast.retrain."
QUICK_TRAIN = GOOD_TRAIN | {"steps_per_epoch": 20, "verbose": False}


def _run_cli(args: list[str], settings: MlflowSettings, mode: str = "inprocess"
             ) -> subprocess.CompletedProcess[str]:
    """``nearcast ARGS`` in its own process on ``settings``' store."""
    env = cli_env(settings) | {load_check.ENV: mode}
    return subprocess.run([sys.executable, "-m", "nearcast", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def _client(settings: MlflowSettings) -> MlflowClient:
    uri = settings.resolved_tracking_uri()
    return MlflowClient(uri, uri)


def _copies(champion: Champion, name: str, count: int) -> MlflowSettings:
    """``count`` registered copies of the session champion as ``name`` v1..vN (unchecked)."""
    settings = champion.settings.model_copy(update={"model_name": name})
    client = settings.connect()
    for _ in range(count):
        registry.register(client, name, champion.job.model_uri, champion.job.run_id)
    return settings


def _trend_job(tmp_path: Path, name: str, retrain: dict[str, object] | None = None) -> Path:
    """A retrain job on data whose newest days ramp up: its challenger beats the champion."""
    data = tmp_path / "trend.csv"
    with_trend(tiny_frame()).to_csv(data, index=False)
    return write_job(tmp_path / f"{name}.yaml", data, name, train=QUICK_TRAIN, retrain=retrain)


def _on(prefix: str, action: Callable[[str], None], lines: list[str]) -> Callable[[str], None]:
    """An echo that records lines and runs ``action`` on the first line starting ``prefix``."""

    def echo(line: str) -> None:
        lines.append(line)
        if line.startswith(prefix) and not any(x.startswith(prefix) for x in lines[:-1]):
            action(line)

    return echo


# ----------------------------------------------------------------------------- acceptance 1

_ENSEMBLE_JOB = {
    "model_name": "ens-cli",
    "data": {"source": "files", "path": str(DATA / "m4_tiny_long.csv"), "freq": "h"},
    "model": MODEL | {"quantiles": [0.1, 0.9]},
    "train": {"epochs": 1, "steps_per_epoch": 3, "batch_size": 32, "loss": "pinball",
              "verbose": False},
    "ensemble": {"combine": "median", "interval_coverage": 0.8,
                 "members": [{"seed": 1}, {"seed": 2, "cell": "gru", "input_size": 48}]},
}

_PYFUNC = textwrap.dedent("""
    import json, sys
    import mlflow
    import pandas as pd
    frame = pd.DataFrame(json.loads(sys.argv[1]))
    frame["ds"] = pd.to_datetime(frame["ds"])
    out = mlflow.pyfunc.load_model(sys.argv[2]).predict(frame)
    print("RESULT " + json.dumps({k: out[k].tolist() for k in ("forecast", "q0.1", "q0.9")}))
""")


@pytest.mark.slow
def test_cli_trained_ensemble_is_served_and_loaded_equal_in_three_processes(
    tmp_path: Path, tiny_df: pd.DataFrame
) -> None:
    settings = make_settings(tmp_path, "ens-cli")
    job = tmp_path / "ensemble.yaml"
    job.write_text(yaml.safe_dump(_ENSEMBLE_JOB))
    trained = _run_cli(["train", "--config", str(job)], settings, mode="subprocess")
    assert trained.returncode == 0, trained.stdout + trained.stderr
    assert "model ens-cli v1 (alias challenger)" in trained.stdout
    tags = _client(settings).get_model_version("ens-cli", "1").tags
    assert tags[load_check.TAG] == "passed", tags
    assert tags[load_check.TAG_REASON].startswith("subprocess: loaded, warmed, forecast equal")
    assert load_check.recorded_forecast(_client(settings), "ens-cli", 1) is not None

    promoted = _run_cli(["promote", "--version", "1", "--name", "ens-cli"], settings,
                        mode="subprocess")
    assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    assert ("load check passed (subprocess): loaded, warmed, forecast equal to the reference"
            in promoted.stdout)  # the forecast recorded at registration
    assert "champion -> ens-cli v1 (was none)" in promoted.stdout

    series = tiny_df[tiny_df["unique_id"] == "H2"].tail(72)
    port = free_port()
    env = cli_env(settings) | {"NEARCAST_MODEL_NAME": "ens-cli", "NEARCAST_PORT": str(port)}
    server = start_cli(["serve"], env)
    naive = series.assign(ds=series["ds"].dt.tz_localize(None).astype(str))
    frame = json.dumps(naive[["unique_id", "ds", "y"]].to_dict(orient="list"))
    third = subprocess.Popen(  # loads while the server starts: a third fresh process
        [sys.executable, "-c", _PYFUNC, frame, "models:/ens-cli@champion"], cwd=tmp_path,
        env=cli_env(settings) | {"MLFLOW_TRACKING_URI": settings.resolved_tracking_uri()},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        url = f"http://127.0.0.1:{port}"
        ready = wait_for(lambda: _ready(url), timeout=180, every=0.5)
        assert ready, server.text
        body = {"series": [{"id": "H2", "start": series["ds"].iloc[0].isoformat(),
                            "values": series["y"].tolist()}], "quantiles": [0.1, 0.9]}
        resp = httpx.post(f"{url}/v1/forecast", json=body, timeout=60)
        assert resp.status_code == 200, resp.text
        (served,) = resp.json()["series"]
        out, err = third.communicate(timeout=300)
    finally:
        server.popen.terminate()
        server.finish(30)
        if third.poll() is None:
            third.kill()
    lines = [x for x in out.splitlines() if x.startswith("RESULT ")]
    assert third.returncode == 0 and lines, err[-3000:]
    loaded = json.loads(lines[-1].removeprefix("RESULT "))
    np.testing.assert_allclose(served["forecast"], loaded["forecast"], rtol=1e-5)
    np.testing.assert_allclose(served["quantiles"]["0.1"], loaded["q0.1"], rtol=1e-5)
    np.testing.assert_allclose(served["quantiles"]["0.9"], loaded["q0.9"], rtol=1e-5)
    assert np.all(np.asarray(loaded["q0.1"]) <= np.asarray(loaded["q0.9"]))


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_no_alias_moves_to_an_unloadable_version_through_retrain_or_promote(
    champion: Champion, tmp_path: Path
) -> None:
    name = "rt-broken"
    settings = _copies(champion, name, 1)
    client = settings.connect()
    registry.promote(client, name, 1, "tests")
    broken: list[int] = []

    def corrupt(line: str) -> None:  # the artifact store loses the file after registration
        version = int(line.split(f"{name} v", 1)[1].split()[0])
        corrupt_keras_file(settings, registry.existing_version(client, name, version))
        broken.append(version)

    lines: list[str] = []
    job = _trend_job(tmp_path, name)
    with pytest.raises(RetrainError) as caught:
        run_retrain(job, settings, _on("challenger registered:", corrupt, lines))
    (v2,) = broken
    assert str(caught.value).startswith(
        f"retraining {name} failed at 'checking that {name} v{v2} loads back from the "
        f"registry': "
        f"LoadCheckError: {name} v{v2} failed its load check (inprocess): it does not load: ")
    assert str(caught.value).endswith("no alias moved; champion unchanged (v1)")
    assert champion_version(settings) == 1
    assert client.get_model_version(name, str(v2)).tags[load_check.TAG] == "failed"

    # `nearcast promote` refuses it too, checking in a fresh process; champion stays v1.
    refused = _run_cli(["promote", "--version", str(v2), "--name", name], settings,
                       mode="subprocess")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert (f"error: {name} v{v2} failed its load check (subprocess): it does not load: "
            in refused.stderr), refused.stderr
    assert "Traceback" not in refused.stderr
    assert champion_version(settings) == 1


# ----------------------------------------------------------------------------- acceptance 5


def test_a_rollback_during_a_retrain_is_not_undone_by_its_promotion(
    champion: Champion, tmp_path: Path
) -> None:
    name = "rt-rollback"
    settings = _copies(champion, name, 2)
    client = settings.connect()
    registry.promote(client, name, 1, "tests")
    registry.promote(client, name, 2, "tests")  # v2 records v1 as its predecessor
    rolled: list[subprocess.CompletedProcess[str]] = []

    def rollback(_: str) -> None:  # an operator rolls back while the challenger trains
        rolled.append(_run_cli(["rollback", "--name", name], settings))

    lines: list[str] = []
    outcome = run_retrain(_trend_job(tmp_path, name), settings,
                          _on("training the challenger", rollback, lines))
    (done,) = rolled
    assert done.returncode == 0 and f"champion -> {name} v1 (was v2)" in done.stdout, done.stderr
    assert outcome.decision.promote, outcome.summary()  # it won against v2, read at the start
    assert outcome.champion_before is not None and outcome.champion_before.version == 2
    assert champion_version(settings) == 1  # the rollback stands
    v3 = outcome.challenger.version
    assert outcome.superseded == (
        "champion moved from v2 to v1 during this retraining (compared against the old one)")
    assert outcome.champion_after is not None and outcome.champion_after.version == 1
    assert (f"decision: not promoted: champion moved from v2 to v1 during this retraining "
            f"(compared against the old one); v{v3} stays challenger, champion is v1"
            in outcome.summary())
    run = client.get_run(outcome.run_id)
    assert run.info.status == "FINISHED" and run.data.metrics["promoted"] == 0.0
    assert run.data.tags[f"{TAG}decision"] == "superseded"
    assert run.data.tags[f"{TAG}champion_after"] == "v1"
    tags = client.get_model_version(name, str(v3)).tags
    assert tags[f"{TAG}decision"] == "superseded" and registry.TAG_PREVIOUS not in tags


def test_promoting_the_current_champion_changes_nothing(champion: Champion) -> None:
    name = "rt-noop"
    settings = _copies(champion, name, 2)
    client = settings.connect()
    registry.promote(client, name, 1, "tests")
    before = client.get_model_version(name, "1").tags
    done = _run_cli(["promote", "--version", "1", "--name", name, "--reason", "again"], settings)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{name} v1 is already champion; nothing changed"
    assert client.get_model_version(name, "1").tags == before
    assert before[registry.TAG_PREVIOUS] == ""  # never itself
    move = registry.move_champion(client, name, 1, "again", expected=1)
    assert not move.moved and move.previous is not None and move.previous.version == 1
    assert client.get_model_version(name, "1").tags == before

    # Compare-and-set: a stale expectation moves nothing and writes no tag.
    with pytest.raises(registry.AliasMovedError, match=rf"champion of {name} moved from v2 to "
                                                       r"v1 since it was read; not moving it"):
        registry.move_champion(client, name, 2, "stale", expected=2)
    assert champion_version(settings) == 1
    assert "nearcast.promoted_reason" not in client.get_model_version(name, "2").tags


def test_the_alias_lock_is_separate_from_the_retrain_lock(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    with retrain_lock(settings, "m", LockConfig()):  # a long retraining does not block moves
        with alias_lock(settings, "m", timeout=0.1) as held:
            assert str(held).startswith("alias file lock ")
            with pytest.raises(LockBusyError, match=r"the alias lock of model 'm' is busy \(pid "
                                                    rf"{os.getpid()} .*another promote, rollback "
                                                    "or retrain is moving its aliases"):
                with alias_lock(settings, "m", timeout=0.2):
                    pass


# ----------------------------------------------------------------------------- PostgreSQL


@pytest.fixture
def postgres_url() -> str:
    """NEARCAST_TEST_POSTGRES_URL if set, else the local default; skip if neither answers."""
    return reachable_postgres_url()


def _terminate(url: str, pid: int) -> None:
    """Kill a server backend from another connection (the server drops its locks)."""
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
    finally:
        engine.dispose()


def _backend_pid(url: str, key: int) -> int:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
                "((classid::bigint << 32) | objid::bigint) = :k"), {"k": key}).scalar_one())
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_postgres_lock_has_keepalives_and_notices_a_lost_connection(
    tmp_path: Path, postgres_url: str
) -> None:
    settings = MlflowSettings(home=tmp_path, tracking_uri=postgres_url)
    warnings: list[str] = []
    with retrain_lock(settings, "pg-ka", LockConfig(), warn=warnings.append) as held:
        raw = held.dbapi
        assert raw is not None
        with socket.socket(fileno=os.dup(raw.fileno())) as sock:  # type: ignore[attr-defined]
            assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE) == 1
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE) == \
                KEEPALIVES["keepalives_idle"]
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL) == \
                KEEPALIVES["keepalives_interval"]
            assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT) == \
                KEEPALIVES["keepalives_count"]
        held.ensure_held()
        _terminate(postgres_url, raw.get_backend_pid())  # type: ignore[attr-defined]
        with pytest.raises(LockLostError, match="lost the connection holding the retrain "
                                                "PostgreSQL advisory lock"):
            held.ensure_held()
    # Leaving the block did not raise: the failed unlock is a warning; the lock is free again.
    (warning,) = warnings
    assert warning.startswith("warning: could not release the retrain PostgreSQL advisory lock")
    with retrain_lock(settings, "pg-ka", LockConfig()):
        pass


@pytest.mark.postgres
def test_lost_lock_connection_fails_the_retrain_before_promotion(
    champion: Champion, tmp_path: Path, postgres_url: str
) -> None:
    from nearcast.service.retraining.lock import advisory_key

    name = "rt-pg"
    settings = _copies(champion, name, 1)
    registry.promote(settings.connect(), name, 1, "tests")
    job = _trend_job(tmp_path, name, {"lock": {"backend": "postgres", "url": postgres_url}})
    key = advisory_key(name, "retrain")

    def kill(_: str) -> None:
        _terminate(postgres_url, _backend_pid(postgres_url, key))

    lines: list[str] = []
    with pytest.raises(RetrainError, match=r"failed at 'promoting rt-pg v2: .*LockLostError: "
                                           r"lost the connection holding the retrain PostgreSQL "
                                           r"advisory lock.*champion unchanged \(v1\)"):
        run_retrain(job, settings, _on("promoting ", kill, lines))
    assert champion_version(settings) == 1
    assert any(x.startswith("warning: could not release the retrain PostgreSQL") for x in lines)

    # The lock lost after the promotion: a warning, and the promotion stands (no failure).
    lines.clear()
    outcome = run_retrain(job, settings, _on("champion -> ", kill, lines))
    assert outcome.decision.promote and outcome.superseded is None, outcome.summary()
    assert champion_version(settings) == outcome.challenger.version == 3
    assert any(x.startswith("warning: could not release the retrain PostgreSQL") for x in lines)
