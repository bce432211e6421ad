"""Helpers of the topology tests: a PostgreSQL database, a live ``mlflow server``, a client loop.

(A module, not a nested conftest.py: two conftest modules would shadow each other's imports.)
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool
from svc_helpers import wait_for

from benchmarks.tracking_server import TrackingServer  # shared with benchmarks/load_bench.py

POSTGRES_DEFAULT_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/test"


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
