"""The forecast log's tables and its database connection (SQLite or PostgreSQL).

Several API worker processes write the same SQLite file: it runs in WAL mode (readers never
wait for writers) with a busy timeout, and every write transaction starts with
``BEGIN IMMEDIATE``, so two writers queue for the lock instead of failing on a read-then-write
upgrade. On PostgreSQL a write may hold a transaction advisory lock: creating the tables (two
processes starting at once) and writing one model's actuals.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.pool import StaticPool

BUSY_TIMEOUT_MS = 30_000

METADATA = sa.MetaData()
FORECASTS = sa.Table(
    "forecasts", METADATA,
    sa.Column("forecast_id", sa.String(64), primary_key=True),
    sa.Column("series_id", sa.Text, primary_key=True),
    sa.Column("request_id", sa.Text),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("origin", sa.BigInteger, nullable=False),
    sa.Column("timestamps", sa.Text, nullable=False),
    sa.Column("point", sa.Text, nullable=False),
    sa.Column("quantiles", sa.Text, nullable=False),
    sa.Column("served", sa.Text),
    sa.Column("logged_at", sa.Double, nullable=False),
    sa.Index("forecasts_model_logged", "model", "logged_at"),
)
ACTUALS = sa.Table(
    "actuals", METADATA,
    sa.Column("model", sa.Text, primary_key=True),
    sa.Column("unique_id", sa.Text, primary_key=True),
    sa.Column("ds", sa.BigInteger, primary_key=True),
    sa.Column("y", sa.Double, nullable=False),
    sa.Column("received_at", sa.Double, nullable=False),
)
SUMMARY = sa.Table(
    "monitor_summary", METADATA,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("model", sa.Text, nullable=False),
    sa.Column("computed_at", sa.Double, nullable=False),
    sa.Column("body", sa.Text, nullable=False),
    sa.Index("monitor_summary_model", "model", "computed_at"),
)


def _lock_key(name: str) -> int:
    """A signed 64-bit PostgreSQL advisory lock key for ``name``."""
    return int.from_bytes(hashlib.sha256(f"nearcast.forecast_log:{name}".encode()).digest()[:8],
                          "big", signed=True)


def open_engine(url: str) -> sa.Engine:
    """An engine on the log's database, its tables created if missing.

    Raises:
        ValueError: a URL of another database than SQLite or PostgreSQL.
    """
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        engine = _sqlite_engine(parsed)
    elif backend == "postgresql":
        libpq = parsed.get_driver_name() == "psycopg2"
        engine = sa.create_engine(parsed, pool_pre_ping=True,
                                  connect_args={"connect_timeout": 10} if libpq else {})
    else:
        shown = parsed.render_as_string(hide_password=True)
        raise ValueError(f"forecast log {shown}: only sqlite:/// and postgresql+psycopg2:// "
                         "URLs are supported")
    with write_transaction(engine, lock="ddl") as conn:
        METADATA.create_all(conn, checkfirst=True)
    return engine


def _sqlite_engine(parsed: sa.URL) -> sa.Engine:
    database = parsed.database or ""
    memory = database in ("", ":memory:")
    if not memory:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(parsed, poolclass=StaticPool if memory else None,
                              connect_args={"check_same_thread": False,
                                            "timeout": BUSY_TIMEOUT_MS / 1000})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi: Any, _record: Any) -> None:
        dbapi.isolation_level = None  # transactions begun by _on_begin, not the driver
        cursor = dbapi.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        write = conn.get_execution_options().get("nearcast_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


@contextlib.contextmanager
def write_transaction(engine: sa.Engine, lock: str | None = None) -> Iterator[sa.Connection]:
    """A write transaction (SQLite: the write lock first; PostgreSQL: advisory ``lock`` held)."""
    with engine.connect() as conn:
        conn.execution_options(nearcast_write=True)
        with conn.begin():
            if lock is not None and engine.dialect.name == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _lock_key(lock)})
            yield conn


def insert_ignoring(engine: sa.Engine, table: sa.Table) -> Any:
    """``INSERT .. ON CONFLICT DO NOTHING`` into ``table`` in the engine's dialect."""
    dialect = postgresql if engine.dialect.name == "postgresql" else sqlite
    return dialect.insert(table).on_conflict_do_nothing()


__all__ = ["ACTUALS", "BUSY_TIMEOUT_MS", "FORECASTS", "METADATA", "SUMMARY", "insert_ignoring",
           "open_engine", "write_transaction"]
