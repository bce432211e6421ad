"""One retraining per model at a time, across processes; a dead holder releases its lock.

Two backends: a file lock (``flock``, released by the kernel when the holder's process ends)
for the embedded default, and a PostgreSQL session advisory lock (released by the server when
the holder's connection ends) when the store is PostgreSQL, which also works across machines.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock, Timeout

from models.retraining import LockConfig
from models.settings import MlflowSettings

if TYPE_CHECKING:
    import sqlalchemy as sa

_POLL_SECONDS = 0.5


class LockBusyError(RuntimeError):
    """Another retraining of the same model holds the lock."""


def lock_backend(settings: MlflowSettings, cfg: LockConfig) -> str:
    """``file`` or ``postgres``: what ``cfg.backend`` (``auto`` follows the store) resolves to."""
    if cfg.backend != "auto":
        return cfg.backend
    url = cfg.url or settings.resolved_tracking_uri()
    return "postgres" if url.startswith("postgresql") else "file"


@contextlib.contextmanager
def retrain_lock(settings: MlflowSettings, model: str, cfg: LockConfig) -> Iterator[str]:
    """Hold the retraining lock of ``model`` for the ``with`` block.

    Args:
        settings: the MLflow store (its home holds the lock files; its URI may name PostgreSQL).
        model: registered model name; each name has its own lock.
        cfg: backend, URL, folder and how long to wait.

    Yields:
        A description of the lock held, for logs.

    Raises:
        LockBusyError: another process holds the lock for longer than ``cfg.timeout`` seconds.
    """
    if lock_backend(settings, cfg) == "postgres":
        url = cfg.url or settings.resolved_tracking_uri()
        with _advisory_lock(url, model, cfg.timeout) as where:
            yield where
    else:
        folder = Path(cfg.directory) if cfg.directory else settings.home / "locks"
        with _file_lock(folder, model, cfg.timeout) as where:
            yield where


def _busy(model: str, holder: str) -> LockBusyError:
    return LockBusyError(f"a retraining of model {model!r} is already running ({holder}); "
                         "not starting another")


def _owner() -> dict[str, object]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


@contextlib.contextmanager
def _file_lock(folder: Path, model: str, timeout: float) -> Iterator[str]:
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(model.encode()).hexdigest()[:8]
    path = folder / f"retrain-{re.sub(r'[^A-Za-z0-9._-]', '_', model)}-{digest}.lock"
    owner = path.with_suffix(".owner.json")
    lock = FileLock(path, timeout=timeout)
    try:
        lock.acquire()
    except Timeout:
        raise _busy(model, f"{_describe_owner(owner)}; lock file {path}") from None
    try:
        owner.write_text(json.dumps(_owner()))
        yield f"file lock {path}"
    finally:
        with contextlib.suppress(OSError):
            owner.unlink()
        lock.release()


def _describe_owner(owner: Path) -> str:
    try:
        info = json.loads(owner.read_text())
        return f"pid {info['pid']} on {info['host']} since {info['since']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "holder unknown"


def advisory_key(model: str) -> int:
    """The signed 64-bit PostgreSQL advisory lock key of ``model``'s retraining."""
    digest = hashlib.sha256(f"nearcast.retrain:{model}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def _advisory_lock(url: str, model: str, timeout: float) -> Iterator[str]:
    import sqlalchemy as sa  # only the PostgreSQL backend needs it (and a driver)
    from sqlalchemy.pool import NullPool

    key, engine = advisory_key(model), sa.create_engine(url, poolclass=NullPool)
    # Autocommit: an idle transaction held for the whole run could be killed by the server's
    # idle_in_transaction_session_timeout, which would silently drop the lock.
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    try:
        deadline = time.monotonic() + timeout
        try_lock = sa.text("SELECT pg_try_advisory_lock(:k)")
        while not conn.execute(try_lock, {"k": key}).scalar():
            if time.monotonic() >= deadline:
                raise _busy(model, f"{_advisory_holder(conn, key)}; advisory lock {key} on "
                                   f"{engine.url.render_as_string(hide_password=True)}")
            time.sleep(_POLL_SECONDS)
        try:
            yield f"PostgreSQL advisory lock {key} on {engine.url.host}/{engine.url.database}"
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
    finally:
        conn.close()
        engine.dispose()


def _advisory_holder(conn: sa.Connection, key: int) -> str:
    import sqlalchemy as sa

    query = sa.text(
        "SELECT a.pid, a.client_addr, a.backend_start FROM pg_locks l "
        "JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted "
        "AND ((l.classid::bigint << 32) | l.objid::bigint) = :k"
    )
    try:
        row = conn.execute(query, {"k": key}).first()
    except Exception:  # the description is a courtesy; the lock answer stands
        return "holder unknown"
    if row is None:
        return "holder unknown"
    return f"server backend pid {row[0]} from {row[1] or 'local socket'} since {row[2]}"


__all__ = ["LockBusyError", "advisory_key", "lock_backend", "retrain_lock"]
