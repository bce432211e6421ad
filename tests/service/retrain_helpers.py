"""Shared by the retraining and scheduler tests: tiny data files, job files, subprocesses."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd
import yaml
from mlflow import MlflowClient

from conftest import DATA
from nearcast.models import registry
from nearcast.models.settings import MlflowSettings
from nearcast.pipelines.schema import DS, UNIQUE_ID, Y

REPO = Path(__file__).resolve().parents[2]
MODEL = {"cell": "lstm", "units": 8, "input_size": 72, "horizon": 24, "fold": 24, "season": 24,
         "min_history": 48}
GOOD_TRAIN = {"epochs": 2, "steps_per_epoch": 40, "batch_size": 32, "learning_rate": 3e-3,
              "verbose": True}
# No seasonal skip, no scaling, two steps: far worse than any trained champion.
WORSE_MODEL = MODEL | {"seasonal_skip": False, "scaling": "none"}
WORSE_TRAIN = GOOD_TRAIN | {"epochs": 1, "steps_per_epoch": 2}


def tiny_frame() -> pd.DataFrame:
    """The 8 x 264 real M4 points of tests/data (UTC, float)."""
    df = pd.read_csv(DATA / "m4_tiny_long.csv")
    return df.assign(**{DS: pd.to_datetime(df[DS], utc=True), Y: df[Y].astype("float64")})


def with_trend(df: pd.DataFrame, last: int = 72) -> pd.DataFrame:
    """The pattern changes: the newest ``last`` points of each series ramp up to twice as high."""
    pos = df.groupby(UNIQUE_ID, sort=False).cumcount()
    length = df.groupby(UNIQUE_ID, sort=False)[Y].transform("size")
    start = length - last
    factor = (1.0 + (pos - start).clip(lower=0) / last).where(pos >= start, 1.0)
    return df.assign(**{Y: df[Y] * factor})


def write_job(
    path: Path, data: Path, name: str, model: dict[str, Any] | None = None,
    train: dict[str, Any] | None = None, retrain: dict[str, Any] | None = None,
) -> Path:
    """A job YAML reading ``data`` (a long CSV) for registered model ``name``."""
    job = {"model_name": name, "data": {"source": "files", "path": str(data), "freq": "h"},
           "model": model or MODEL, "train": train or GOOD_TRAIN, "retrain": retrain or {}}
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def champion_version(settings: MlflowSettings, name: str | None = None) -> int | None:
    """The version behind ``champion`` right now (a fresh client: no caches)."""
    uri = settings.resolved_tracking_uri()
    ref = registry.version_for_alias(MlflowClient(uri, uri), name or settings.model_name,
                                     registry.CHAMPION)
    return ref.version if ref else None


def cli_env(settings: MlflowSettings) -> dict[str, str]:
    """Environment for a ``nearcast`` subprocess on ``settings``' embedded store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEARCAST_", "MLFLOW_"))}
    env |= {"NEARCAST_LOAD_CHECK": os.environ.get("NEARCAST_LOAD_CHECK", "subprocess")}
    env |= {"NEARCAST_HOME": str(settings.home), "NEARCAST_EXPERIMENT": settings.experiment,
            "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    return env


@dataclass
class Proc:
    """A ``nearcast`` subprocess whose merged output is collected line by line."""

    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    eof: bool = False
    _queue: queue.Queue[str | None] = field(default_factory=queue.Queue)

    def wait_for(self, predicate: Any, timeout: float) -> str | None:
        """The first new line matching ``predicate`` within ``timeout`` s (None on EOF/time)."""
        deadline = time.monotonic() + timeout
        while not self.eof and (left := deadline - time.monotonic()) > 0:
            try:
                line = self._queue.get(timeout=left)
            except queue.Empty:
                return None
            if line is None:
                self.eof = True
                return None
            if predicate(line):
                return line
        return None

    def finish(self, timeout: float) -> int:
        """Wait for exit (killing it after ``timeout`` s) and for the end of its output."""
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            code = self.popen.wait(10)
        self.wait_for(lambda _: False, 10)
        return code

    @property
    def text(self) -> str:
        """Everything printed so far."""
        return "\n".join(self.lines)


def start_cli(args: list[str], env: dict[str, str]) -> Proc:
    """Start ``python -m service.cli ARGS`` (stdout and stderr merged) in the repo."""
    popen = subprocess.Popen([sys.executable, "-m", "nearcast", *args], cwd=REPO, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proc = Proc(popen)

    def pump() -> None:
        assert popen.stdout is not None
        for raw in popen.stdout:
            proc.lines.append(raw.rstrip("\n"))
            proc._queue.put(raw.rstrip("\n"))
        proc._queue.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return proc


def artifact_folder(settings: MlflowSettings, ref: registry.VersionRef) -> Path:
    """The artifact folder of the logged model behind a registered version."""
    client = settings.connect()
    model_id = ref.source.removeprefix("models:/")
    return Path(urlparse(client.get_logged_model(model_id).artifact_location).path)


def corrupt_keras_file(settings: MlflowSettings, ref: registry.VersionRef) -> Path:
    """Overwrite the saved Keras file behind a registered version with garbage."""
    path = artifact_folder(settings, ref) / "artifacts" / "forecaster" / "model.keras"
    assert path.exists(), path
    path.write_bytes(b"not a keras file")
    return path


POSTGRES_DEFAULT_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


def reachable_postgres_url() -> str:
    """NEARCAST_TEST_POSTGRES_URL if set, else the local default; skip if neither answers."""
    import pytest
    import sqlalchemy as sa

    tried = []
    for url in filter(None, (os.environ.get("NEARCAST_TEST_POSTGRES_URL"), POSTGRES_DEFAULT_URL)):
        engine = sa.create_engine(url, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
            return url
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            tried.append(f"{sa.make_url(url).render_as_string(hide_password=True)}: "
                         f"{str(exc.orig).strip().splitlines()[0]}")
        finally:
            engine.dispose()
    pytest.skip("no PostgreSQL reachable; tried " + "; ".join(tried))
