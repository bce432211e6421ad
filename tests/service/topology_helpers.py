"""Helpers of the topology tests: a PostgreSQL database, a live ``mlflow server``, a client loop.

(A module, not a nested conftest.py: two conftest modules would shadow each other's imports.)
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool
from svc_helpers import wait_for

from conftest import free_port

POSTGRES_DEFAULT_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"
BIN = Path(sys.executable).parent


def postgres_base() -> str:
    """A reachable PostgreSQL URL (psycopg2 driver), or skip naming every URL tried."""
    tried = []
    for url in filter(None, (os.environ.get("NEARCAST_TEST_POSTGRES_URL"), POSTGRES_DEFAULT_URL)):
        parsed = sa.make_url(url)
        if parsed.drivername == "postgresql":  # SQLAlchemy 2.1 would pick psycopg 3
            parsed = parsed.set(drivername="postgresql+psycopg2")
        engine = sa.create_engine(parsed, poolclass=NullPool, connect_args={"connect_timeout": 3})
        try:
            with engine.connect() as connection:
                connection.execute(sa.text("SELECT 1"))
            return parsed.render_as_string(hide_password=False)
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            tried.append(f"{parsed.render_as_string(hide_password=True)}: "
                         f"{str(exc.orig).strip().splitlines()[0]}")
        finally:
            engine.dispose()
    pytest.skip("no PostgreSQL reachable for the tracking-server topology; tried "
                + "; ".join(tried) + " (set NEARCAST_TEST_POSTGRES_URL)")


@contextlib.contextmanager
def fresh_database(base: str) -> Iterator[str]:
    """A new database ``nearcast_it_<random>`` on ``base``'s server, dropped afterwards."""
    name = f"nearcast_it_{secrets.token_hex(4)}"
    admin = sa.create_engine(base, poolclass=NullPool, isolation_level="AUTOCOMMIT",
                             connect_args={"connect_timeout": 5})
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield sa.make_url(base).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                       "WHERE datname = :n AND pid <> pg_backend_pid()"),
                               {"n": name})
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
        admin.dispose()


def champion_in_postgres(backend: str, name: str) -> int | None:
    """The champion's version read straight from MLflow's tables in PostgreSQL."""
    engine = sa.create_engine(backend, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            row = connection.execute(sa.text(
                "SELECT version FROM registered_model_aliases WHERE name = :n AND "
                "alias = 'champion'"), {"n": name}).first()
    finally:
        engine.dispose()
    return int(row[0]) if row else None


@dataclass
class TrackingServer:
    """A real ``mlflow server`` process group on 127.0.0.1 (restartable on the same port)."""

    backend: str
    artifacts: Path
    log: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 120.0) -> None:
        """Start and wait (bounded) for /health; the first start creates the tables."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NEARCAST_", "MLFLOW_"))}
        # `mlflow server` execs uvicorn from the environment's bin/; the GenAI job runner is
        # not needed (8 more processes).
        env |= {"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri", self.backend,
               "--serve-artifacts", "--artifacts-destination", str(self.artifacts),
               "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        self.starts += 1
        with self.log.open("ab") as log:
            log.write(f"--- start {self.starts}\n".encode())
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.25)
        tail = self.log.read_text(errors="replace")[-3000:]
        self.stop(signal.SIGKILL)
        raise RuntimeError(f"mlflow server did not answer /health within {timeout} s:\n{tail}")

    def send(self, sig: int) -> None:
        """Send ``sig`` to the whole process group (server, uvicorn workers)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        """Stop the process group (SIGKILL after ``timeout`` seconds); idempotent."""
        if self.proc is None:
            return
        try:
            self.send(signal.SIGCONT)  # a frozen group must run to handle SIGTERM
            self.send(sig)
            self.proc.wait(timeout)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            self.send(signal.SIGKILL)
            self.proc.wait(10)
        finally:
            try:  # leftovers of the group (workers whose parent died first)
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc = None


@dataclass
class ForecastLoop:
    """Forecasts one after another from a thread until stopped (bounded in count and time)."""

    url: str
    body: dict[str, object]
    max_requests: int = 3000
    max_seconds: float = 240.0
    statuses: list[int] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_seconds
        with httpx.Client(timeout=30) as client:
            while (not self._stop.is_set() and len(self.statuses) < self.max_requests
                   and time.monotonic() < deadline):
                try:
                    resp = client.post(f"{self.url}/v1/forecast", json=self.body)
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                    continue
                self.statuses.append(resp.status_code)
                if resp.status_code == 200:
                    self.versions.append(resp.json()["model"]["version"])
                time.sleep(0.02)  # leave the 2 cores to the server and the API

    def wait_count(self, n: int, timeout: float = 60.0) -> bool:
        return wait_for(lambda: len(self.statuses) >= n, timeout=timeout)

    def stop(self) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(60)


__all__ = ["POSTGRES_DEFAULT_URL", "ForecastLoop", "TrackingServer", "champion_in_postgres",
           "fresh_database", "postgres_base"]
