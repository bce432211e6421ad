"""Retraining with a champion/challenger gate, end to end on temporary MLflow stores.

Real parts throughout: TensorFlow training on tiny data, the SQLite store, the FastAPI app over
HTTP, ``nearcast`` subprocesses (lock contention, SIGKILL).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pandas as pd
import pytest
from click.testing import Result
from mlflow import MlflowClient
from mlflow.entities import Run
from retrain_helpers import (
    GOOD_TRAIN,
    MODEL,
    REPO,
    WORSE_MODEL,
    WORSE_TRAIN,
    champion_version,
    cli_env,
    reachable_postgres_url,
    start_cli,
    tiny_frame,
    with_trend,
    write_job,
)
from typer.testing import CliRunner

from conftest import LiveServer, make_settings, start_server, train_tiny
from nearcast.models import registry
from nearcast.models.config import LockConfig, ModelConfig, TrainConfig
from nearcast.models.settings import MlflowSettings, get_mlflow_settings
from nearcast.models.train import Trained
from nearcast.service.app import create_app
from nearcast.service.cli import app as cli_app
from nearcast.service.retraining.job import EXIT_BUSY, RetrainError, run_retrain
from nearcast.service.retraining.lock import (
    LockBusyError,
    advisory_key,
    lock_backend,
    retrain_lock,
)
from nearcast.service.settings import ApiSettings

NAME = "tiny-rt"
TAG = "nearcast.retrain."


@dataclass(frozen=True)
class Store:
    """A temporary store whose champion is v1, trained on the tiny data."""

    root: Path
    settings: MlflowSettings
    data: Path
    champion: int
    model_uri: str
    run_id: str

    @property
    def client(self) -> MlflowClient:
        uri = self.settings.resolved_tracking_uri()
        return MlflowClient(uri, uri)

    def versions(self) -> list[int]:
        return sorted(int(v.version) for v in
                      self.client.search_model_versions(f"name = '{NAME}'"))

    def lock_is_free(self) -> bool:
        try:
            with retrain_lock(self.settings, NAME, LockConfig()):
                return True
        except LockBusyError:
            return False


def _champion(root: Path, df: pd.DataFrame) -> tuple[MlflowSettings, Trained]:
    settings = make_settings(root, NAME)
    job = train_tiny(df, ModelConfig(**MODEL),
                             TrainConfig(**GOOD_TRAIN | {"verbose": False}), settings, "tests")
    assert job.version is not None
    registry.promote(settings.connect(), NAME, job.version.version, "tests")
    return settings, job


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    with pytest.MonkeyPatch.context() as mp:
        # One SQLite connection per registry call, so a test can take the file away mid-run.
        mp.setenv("MLFLOW_SQLALCHEMYSTORE_POOLCLASS", "NullPool")
        root = tmp_path_factory.mktemp("retrain")
        df = tiny_frame()
        data = root / "data.csv"
        df.to_csv(data, index=False)
        settings, job = _champion(root, df)
        assert job.version is not None
        yield Store(root, settings, data, job.version.version, job.model_uri, job.run_id)


def _lines() -> tuple[list[str], Callable[[str], None]]:
    out: list[str] = []
    return out, out.append


# ----------------------------------------------------------------------------- locks


def test_file_lock_is_exclusive_and_names_the_holder(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    cfg = LockConfig()
    assert lock_backend(settings, cfg) == "file"
    with retrain_lock(settings, "m/1", cfg) as held:
        where = str(held)
        assert where.startswith("retrain file lock ") and str(settings.home / "locks") in where
        with pytest.raises(LockBusyError, match=rf"model 'm/1' is already running \(pid "
                                                rf"{os.getpid()} on "):
            with retrain_lock(settings, "m/1", cfg):
                pass
        with retrain_lock(settings, "m/2", cfg):  # another model has its own lock
            pass
    with retrain_lock(settings, "m/1", cfg):  # released on exit
        pass


def test_lock_backend_follows_the_store() -> None:
    pg = MlflowSettings(tracking_uri="postgresql://u@db/mlflow")
    assert lock_backend(pg, LockConfig()) == "postgres"
    assert lock_backend(pg, LockConfig(backend="file")) == "file"
    http = MlflowSettings(tracking_uri="http://mlflow:5000")
    assert lock_backend(http, LockConfig()) == "file"
    assert lock_backend(http, LockConfig(url="postgresql+psycopg2://u@db/locks")) == "postgres"
    assert advisory_key("a") == advisory_key("a") != advisory_key("b")
    assert -(2**63) <= advisory_key("a") < 2**63


@pytest.fixture
def postgres_url() -> str:
    """NEARCAST_TEST_POSTGRES_URL if set, else the local default; skip if neither answers."""
    return reachable_postgres_url()


@pytest.mark.postgres
def test_advisory_lock_on_postgres(tmp_path: Path, postgres_url: str) -> None:
    url = postgres_url
    settings = MlflowSettings(home=tmp_path, tracking_uri=url)
    cfg = LockConfig()
    with retrain_lock(settings, "pg-model", cfg) as held:
        assert str(held).startswith("retrain PostgreSQL advisory lock")
        with pytest.raises(LockBusyError, match=r"'pg-model' is already running \(server "
                                                r"backend pid \d+"):
            with retrain_lock(settings, "pg-model", cfg.model_copy(update={"timeout": 0.6})):
                pass
    # A holder that dies without unlocking: the server drops its session and the lock with it.
    code = (
        "import time\n"
        "from nearcast.models.config import LockConfig\n"
        "from nearcast.models.settings import MlflowSettings\n"
        "from nearcast.service.retraining.lock import retrain_lock\n"
        f"s = MlflowSettings(tracking_uri={url!r})\n"
        "with retrain_lock(s, 'pg-dead', LockConfig()):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                            cwd=REPO)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(LockBusyError):
            with retrain_lock(settings, "pg-dead", cfg):
                pass
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    with retrain_lock(settings, "pg-dead", cfg.model_copy(update={"timeout": 10})):
        pass


# ----------------------------------------------------------------------------- acceptance 1


@pytest.mark.slow
def test_better_challenger_promoted_and_served_worse_one_kept(
    tmp_path: Path, live: list[LiveServer]
) -> None:
    full = tiny_frame()
    old = full.groupby("unique_id", sort=False).head(216)  # v1 knows only the first 9 days
    settings, first = _champion(tmp_path, old)
    assert first.version is not None
    v1 = first.version.version
    server = start_server(create_app(ApiSettings(models=[NAME], poll_seconds=0.5), settings))
    live.append(server)
    assert _served_version(server) == v1

    fresh = tmp_path / "fresh.csv"
    with_trend(full).to_csv(fresh, index=False)  # two newer days, and the pattern changes
    job = write_job(tmp_path / "better.yaml", fresh, NAME, retrain={"margin": 0.05})
    lines, echo = _lines()
    better = run_retrain(job, settings, echo)
    d = better.decision
    assert d.promote, better.summary()
    assert better.champion_before is not None and better.champion_before.version == v1
    assert better.challenger.version == better.champion_after.version == v1 + 1
    champ, chal = better.scores["champion"]["mase"], better.scores["challenger"]["mase"]
    assert chal < champ * 0.95 and d.challenger == chal and d.reference == champ
    assert champion_version(settings) == v1 + 1
    assert "decision: promoted: tiny-rt v2 is champion (was v1)" in better.summary()
    _assert_recorded(settings, better.run_id, v1 + 1, "promoted", champ, chal)
    client = MlflowClient(settings.resolved_tracking_uri(), settings.resolved_tracking_uri())
    assert client.get_model_version(NAME, str(v1 + 1)).tags[registry.TAG_PREVIOUS] == str(v1)
    training = client.get_run(better.training_run_id)
    assert training.data.tags["mlflow.parentRunId"] == better.run_id

    # The running API follows the alias: the new champion is served without a restart.
    assert _wait_served(server, v1 + 1, timeout=60) == v1 + 1

    worse = write_job(tmp_path / "worse.yaml", fresh, NAME, model=WORSE_MODEL, train=WORSE_TRAIN)
    kept = run_retrain(worse, settings, echo)
    assert not kept.decision.promote and kept.challenger.version == v1 + 2
    assert kept.champion_after == kept.champion_before and champion_version(settings) == v1 + 1
    chal, champ = kept.scores["challenger"]["mase"], kept.scores["champion"]["mase"]
    assert chal > champ
    assert "decision: kept: champion stays v2; v3 stays challenger" in kept.summary()
    _assert_recorded(settings, kept.run_id, v1 + 2, "kept", champ, chal)
    assert registry.version_for_alias(client, NAME, "challenger").version == v1 + 2
    last = client.get_model_version(NAME, str(v1 + 1)).tags[f"{TAG}last_challenge"]
    assert last.startswith("v3 kept out: challenger MASE")
    assert _served_version(server) == v1 + 1

    # Rollback (CLI): back to the champion before v2, and the API follows again.
    result = _cli(["rollback", "--name", NAME], settings)
    assert result.exit_code == 0 and f"champion -> {NAME} v{v1}" in result.output
    assert _wait_served(server, v1, timeout=60) == v1


def _assert_recorded(settings: MlflowSettings, run_id: str, version: int, decision: str,
                     champion: float, challenger: float) -> None:
    uri = settings.resolved_tracking_uri()
    client = MlflowClient(uri, uri)
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.tags["nearcast.kind"] == "retrain"
    assert run.data.tags[f"{TAG}decision"] == decision
    assert run.data.tags[f"{TAG}challenger_version"] == f"v{version}"
    assert run.data.tags[f"{TAG}reason"].startswith("challenger MASE")
    assert run.data.metrics["champion_mase"] == pytest.approx(champion)
    assert run.data.metrics["challenger_mase"] == pytest.approx(challenger)
    assert run.data.metrics["promoted"] == float(decision == "promoted")
    assert run.data.metrics["seasonal_naive_mase"] > 0
    tags = client.get_model_version(NAME, str(version)).tags
    assert tags[f"{TAG}decision"] == decision and tags[f"{TAG}run_id"] == run_id
    assert float(tags[f"{TAG}challenger_score"]) == pytest.approx(challenger, rel=1e-5)
    assert float(tags[f"{TAG}reference_score"]) == pytest.approx(champion, rel=1e-5)


def _served_version(server: LiveServer) -> int | None:
    (entry,) = httpx.get(f"{server.url}/v1/models", timeout=10).json()
    return entry["version"]


def _wait_served(server: LiveServer, version: int, timeout: float) -> int | None:
    deadline, seen = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        seen = _served_version(server)
        if seen == version:
            break
        time.sleep(0.2)
    return seen


def _cli(args: list[str], settings: MlflowSettings) -> Result:
    get_mlflow_settings.cache_clear()
    try:
        return CliRunner().invoke(cli_app, args, env={
            "NEARCAST_HOME": str(settings.home), "NEARCAST_EXPERIMENT": settings.experiment,
            "NEARCAST_TRACKING_URI": settings.resolved_tracking_uri()})
    finally:
        get_mlflow_settings.cache_clear()


def test_promote_and_rollback_walk_back_with_clear_errors(store: Store) -> None:
    client, name = store.client, "chain"
    versions = [registry.register(client, name, store.model_uri, store.run_id).version
                for _ in range(3)]
    for v in versions:
        registry.promote(client, name, v, f"step {v}")
    assert registry.rollback(client, name).version == versions[1]
    assert registry.rollback(client, name).version == versions[0]  # further back, no toggling
    with pytest.raises(ValueError, match=r"chain v1 records no previous champion"):
        registry.rollback(client, name)
    with pytest.raises(ValueError, match=r"model 'chain' has no version 7; versions: \[1, 2, 3\]"):
        registry.promote(client, name, 7, "typo")
    result = _cli(["promote", "--version", "7", "--name", name], store.settings)
    assert result.exit_code == 1
    assert "error: model 'chain' has no version 7; versions: [1, 2, 3]" in result.output
    result = _cli(["rollback", "--name", "nothing"], store.settings)
    assert result.exit_code == 1 and "error: model 'nothing' has no champion" in result.output
    result = _cli(["promote", "--version", "2", "--name", name], store.settings)
    assert result.exit_code == 0 and "champion -> chain v2" in result.output
    assert client.get_model_version(name, "2").tags[registry.TAG_PREVIOUS] == "1"


# ----------------------------------------------------------------------------- acceptance 2


def test_corrupt_data_fails_clearly_and_keeps_champion(store: Store, tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.csv"
    bad.write_text("unique_id,ds,y\nH1,2024-01-01T00:00:00Z,12\nH1,2024-01-01T01:00:00Z,"
                   "twelve\nH1,yesterday,13\n")
    job = write_job(tmp_path / "job.yaml", bad, NAME)
    before = store.versions()
    lines, echo = _lines()
    expected = (rf"(?s)retraining tiny-rt failed at 'reading files:{bad}': DataValidationError: "
                r"2 data problems found:.*series 'H1', \S*corrupt\.csv line 3: "
                r"y is not numeric: 'twelve'.*"
                r"champion unchanged \(v1\)")
    with pytest.raises(RetrainError, match=expected):
        run_retrain(job, store.settings, echo)
    assert champion_version(store.settings) == store.champion and store.versions() == before
    assert store.lock_is_free()
    run = _last_retrain_run(store)
    assert run.info.status == "FAILED" and run.data.tags[f"{TAG}decision"] == "failed"
    assert "DataValidationError" in run.data.tags[f"{TAG}error"]

    # The command line says the same on stderr, with exit code 1.
    result = _cli(["retrain", "--config", str(job)], store.settings)
    assert result.exit_code == 1
    assert "retrain failed: retraining tiny-rt failed at 'reading files:" in result.output
    assert "DataValidationError: 2 data problems found" in result.output


def test_nan_training_never_registers_and_keeps_champion(store: Store, tmp_path: Path) -> None:
    absurd = GOOD_TRAIN | {"learning_rate": 1e30, "clipnorm": None, "epochs": 1}
    job = write_job(tmp_path / "nan.yaml", store.data, NAME, model=MODEL | {"units": 16},
                    train=absurd, retrain={"warm_start": True})
    before = store.versions()
    lines, echo = _lines()
    with pytest.raises(RetrainError, match=r"failed at 'training the challenger': "
                                           r"TrainingDivergedError: training diverged.*"
                                           r"champion unchanged \(v1\)"):
        run_retrain(job, store.settings, echo)
    assert store.versions() == before and champion_version(store.settings) == store.champion
    assert store.lock_is_free()
    note = "from scratch: the champion's model config differs in ['units']"
    assert f"warm start: {note}" in lines
    run = _last_retrain_run(store)
    assert run.info.status == "FAILED" and run.data.tags[f"{TAG}warm_start"] == note
    (child,) = store.client.search_runs(
        [run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'")
    assert child.info.status == "FAILED" and child.data.tags["nearcast.stop_reason"] == "diverged"


def test_registry_lost_at_promotion_keeps_champion_then_retrain_succeeds(
    store: Store, tmp_path: Path
) -> None:
    fresh = tmp_path / "fresh.csv"
    with_trend(tiny_frame()).to_csv(fresh, index=False)
    job = write_job(tmp_path / "job.yaml", fresh, NAME, retrain={"margin": 0.05})
    db = store.settings.home / "mlflow.db"
    away = db.with_name("away.db")
    lines: list[str] = []

    def echo(line: str) -> None:
        lines.append(line)
        if line.startswith("promoting"):  # the registry goes away right before the alias moves
            db.rename(away)

    try:
        with pytest.raises(RetrainError, match=r"champion unchanged \(v1\)"):
            run_retrain(job, store.settings, echo)
    finally:
        if away.exists():
            db.unlink(missing_ok=True)
            away.rename(db)
    assert any(line.startswith("promoting tiny-rt v") for line in lines), lines
    assert any(line.startswith("warning: could not record the failure") for line in lines)
    assert champion_version(store.settings) == store.champion
    assert store.lock_is_free()
    stuck = _last_retrain_run(store)
    assert stuck.info.status == "RUNNING"  # the failure could not be written

    # The next retrain takes the lock, closes the unfinished run and promotes.
    lines.clear()
    outcome = run_retrain(job, store.settings, lines.append)
    assert outcome.decision.promote
    assert champion_version(store.settings) == outcome.challenger.version
    assert f"marked the unfinished retrain run {stuck.info.run_id} KILLED" in lines
    assert store.client.get_run(stuck.info.run_id).info.status == "KILLED"
    registry.promote(store.client, NAME, store.champion, "restore the module's champion")


@pytest.mark.slow
def test_sigkilled_retrain_keeps_champion_and_releases_lock(
    store: Store, tmp_path: Path
) -> None:
    long = GOOD_TRAIN | {"epochs": 500, "max_seconds": 300, "patience": 500}
    job = write_job(tmp_path / "long.yaml", store.data, NAME, train=long)
    proc = start_cli(["retrain", "--config", str(job)], cli_env(store.settings))
    try:
        epoch = proc.wait_for(lambda line: line.startswith("epoch "), timeout=180)
        assert epoch is not None, proc.text
        assert not store.lock_is_free()  # the running retrain holds it
        proc.popen.send_signal(signal.SIGKILL)
    finally:
        code = proc.finish(30)
    assert code == -signal.SIGKILL
    assert champion_version(store.settings) == store.champion
    assert store.lock_is_free()  # the kernel released the dead process's lock
    killed = _last_retrain_run(store)
    assert killed.info.status == "RUNNING"

    # Warm-started from the champion with a learning rate of ~0, the challenger is the champion.
    frozen = GOOD_TRAIN | {"learning_rate": 1e-12, "epochs": 1, "steps_per_epoch": 2}
    quick = write_job(tmp_path / "quick.yaml", store.data, NAME, train=frozen,
                      retrain={"warm_start": True})
    lines: list[str] = []
    outcome = run_retrain(quick, store.settings, lines.append)
    assert "warm start: from the champion's weights" in lines
    chal, champ = outcome.scores["challenger"], outcome.scores["champion"]
    assert chal["mase"] == pytest.approx(champ["mase"], rel=1e-4)
    assert chal["smape"] == pytest.approx(champ["smape"], rel=1e-4)
    assert not outcome.decision.promote  # not strictly better: the champion stays
    assert champion_version(store.settings) == store.champion
    assert f"marked the unfinished retrain run {killed.info.run_id} KILLED" in lines
    assert store.client.get_run(killed.info.run_id).info.status == "KILLED"
    children = store.client.search_runs(
        [killed.info.experiment_id], f"tags.`mlflow.parentRunId` = '{killed.info.run_id}'")
    assert [c.info.status for c in children] == ["KILLED"]


def _last_retrain_run(store: Store) -> Run:
    client = store.client
    exp = client.get_experiment_by_name(store.settings.experiment)
    assert exp is not None
    (run,) = client.search_runs([exp.experiment_id], "tags.`nearcast.kind` = 'retrain'",
                                order_by=["attributes.start_time DESC"], max_results=1)
    return run


# ----------------------------------------------------------------------------- acceptance 3


@pytest.mark.slow
def test_two_retrains_at_once_one_runs_the_other_says_already_running(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, NAME)
    data = tmp_path / "data.csv"
    tiny_frame().to_csv(data, index=False)
    job = write_job(tmp_path / "job.yaml", data, NAME)
    env = cli_env(settings)
    procs = [start_cli(["retrain", "--config", str(job)], env) for _ in range(2)]
    codes = sorted((p.finish(300), p.text) for p in procs)
    (ok, ok_text), (busy, busy_text) = codes
    assert ok == 0, ok_text
    assert busy == EXIT_BUSY, busy_text
    assert "already running: a retraining of model 'tiny-rt' is already running (pid " in busy_text
    assert "training the challenger" not in busy_text
    # First run, no champion: promoted because it beats seasonal naive on the newest day.
    assert "decision: promoted: tiny-rt v1 is champion (was none) — no champion yet; " \
           "challenger MASE" in ok_text
    assert champion_version(settings) == 1
