"""The model's locks, across processes; a dead holder releases its lock.

Each registered model has two: the **retrain** lock, held for a whole ``nearcast retrain`` (one
retraining per model at a time), and the **alias** lock, held only around the compare-and-set
that moves an alias (``promote``, ``rollback`` and the promotion step of ``retrain``), so a
``rollback`` during a long retraining waits seconds, not for the training.

Two backends: a file lock (``flock``, released by the kernel when the holder's process ends)
for the embedded default, and a PostgreSQL session advisory lock (released by the server when
the holder's connection ends) when the store is PostgreSQL, which also works across machines.
The PostgreSQL connection uses TCP keepalives, and :meth:`HeldLock.ensure_held` checks it is
still alive (and still holds the lock) right before an alias moves. Releasing is best effort: an
unlock that fails (the connection is gone, so the server has dropped the lock already) is a
warning, never a failure of the work done under the lock.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from filelock import FileLock, Timeout

from nearcast.models.config import LockConfig
from nearcast.models.settings import MlflowSettings
from nearcast.pipelines.errors import first_line

if TYPE_CHECKING:
    import sqlalchemy as sa

_POLL_SECONDS = 0.5
ALIAS_TIMEOUT = 30.0
"""Seconds ``promote``/``rollback``/a retrain's promotion wait for the alias lock."""
KEEPALIVES = {"keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
              "keepalives_count": 3}
"""libpq TCP keepalives of the advisory lock's connection: a dead peer is noticed in ~60 s."""
_LIBPQ_DRIVERS = ("postgresql", "postgresql+psycopg2", "postgresql+psycopg")

Purpose = Literal["retrain", "alias"]
Warn = Callable[[str], None]
_log = logging.getLogger("nearcast.locks")


class LockBusyError(RuntimeError):
    """Another process holds the lock (a retraining of the model, or an alias move)."""


class LockLostError(RuntimeError):
    """The lock's connection is gone, so the lock may be held by someone else now."""


@dataclass
class HeldLock:
    """A lock being held: a description for logs and a liveness check."""

    where: str
    _check: Callable[[], None] = lambda: None
    dbapi: object | None = None
    """The PostgreSQL lock's driver connection (diagnostics: its socket, its settings)."""

    def ensure_held(self) -> None:
        """Raise :class:`LockLostError` when the lock is no longer certainly ours."""
        self._check()

    def __str__(self) -> str:
        return self.where


def lock_backend(settings: MlflowSettings, cfg: LockConfig) -> str:
    """``file`` or ``postgres``: what ``cfg.backend`` (``auto`` follows the store) resolves to."""
    if cfg.backend != "auto":
        return cfg.backend
    url = cfg.url or settings.resolved_tracking_uri()
    return "postgres" if url.startswith("postgresql") else "file"


@contextlib.contextmanager
def model_lock(settings: MlflowSettings, model: str, cfg: LockConfig, purpose: Purpose,
               warn: Warn | None = None) -> Iterator[HeldLock]:
    """Hold ``model``'s ``purpose`` lock for the ``with`` block.

    Args:
        settings: the MLflow store (its home holds the lock files; its URI may name PostgreSQL).
        model: registered model name; each name has its own locks.
        cfg: backend, URL, folder and how long to wait.
        purpose: ``retrain`` (a whole retraining) or ``alias`` (an alias move).
        warn: receives a line when releasing fails (default: the ``nearcast.locks`` log).

    Yields:
        The held lock (``str()`` describes it, for logs).

    Raises:
        LockBusyError: another process holds the lock for longer than ``cfg.timeout`` seconds.
    """
    warn = warn or _log.warning
    if lock_backend(settings, cfg) == "postgres":
        url = cfg.url or settings.resolved_tracking_uri()
        with _advisory_lock(url, model, cfg.timeout, purpose, warn) as held:
            yield held
    else:
        folder = Path(cfg.directory) if cfg.directory else settings.home / "locks"
        with _file_lock(folder, model, cfg.timeout, purpose, warn) as held:
            yield held


def retrain_lock(settings: MlflowSettings, model: str, cfg: LockConfig,
                 warn: Warn | None = None) -> contextlib.AbstractContextManager[HeldLock]:
    """The retraining lock of ``model`` (see :func:`model_lock`), waiting ``cfg.timeout`` s."""
    return model_lock(settings, model, cfg, "retrain", warn)


def alias_lock(settings: MlflowSettings, model: str, cfg: LockConfig | None = None,
               timeout: float = ALIAS_TIMEOUT, warn: Warn | None = None,
               ) -> contextlib.AbstractContextManager[HeldLock]:
    """The alias lock of ``model`` (see :func:`model_lock`), waiting up to ``timeout`` s."""
    cfg = (cfg or LockConfig()).model_copy(update={"timeout": timeout})
    return model_lock(settings, model, cfg, "alias", warn)


def _busy(model: str, holder: str, purpose: Purpose) -> LockBusyError:
    if purpose == "alias":
        return LockBusyError(f"the alias lock of model {model!r} is busy ({holder}): another "
                             "promote, rollback or retrain is moving its aliases; try again")
    return LockBusyError(f"a retraining of model {model!r} is already running ({holder}); "
                         "not starting another")


def _owner() -> dict[str, object]:
    return {"pid": os.getpid(), "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


@contextlib.contextmanager
def _file_lock(folder: Path, model: str, timeout: float, purpose: Purpose, warn: Warn
               ) -> Iterator[HeldLock]:
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(model.encode()).hexdigest()[:8]
    path = folder / f"{purpose}-{re.sub(r'[^A-Za-z0-9._-]', '_', model)}-{digest}.lock"
    owner = path.with_suffix(".owner.json")
    lock = FileLock(path, timeout=timeout)
    try:
        lock.acquire()
    except Timeout:
        raise _busy(model, f"{_describe_owner(owner)}; lock file {path}", purpose) from None
    try:
        owner.write_text(json.dumps(_owner()))
        yield HeldLock(f"{purpose} file lock {path}")
    finally:
        with contextlib.suppress(OSError):
            owner.unlink()
        try:
            lock.release()
        except Exception as exc:  # the kernel releases it when the process ends anyway
            warn(f"warning: could not release the {purpose} file lock {path}: {exc}")


def _describe_owner(owner: Path, wait: float = 1.0) -> str:
    """Who holds a file lock; waits up to ``wait`` s for a holder that is still writing it."""
    deadline = time.monotonic() + wait
    while True:
        try:
            info = json.loads(owner.read_text())
            return f"pid {info['pid']} on {info['host']} since {info['since']}"
        except (OSError, ValueError, KeyError, TypeError):
            if time.monotonic() >= deadline:  # the lock was just taken, or its holder is gone
                return "holder unknown"
            time.sleep(0.05)


def advisory_key(model: str, purpose: Purpose = "retrain") -> int:
    """The signed 64-bit PostgreSQL advisory lock key of ``model``'s ``purpose`` lock."""
    digest = hashlib.sha256(f"nearcast.{purpose}:{model}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def _advisory_lock(url: str, model: str, timeout: float, purpose: Purpose, warn: Warn
                   ) -> Iterator[HeldLock]:
    import sqlalchemy as sa  # only the PostgreSQL backend needs it (and a driver)
    from sqlalchemy.pool import NullPool

    key = advisory_key(model, purpose)
    libpq = sa.make_url(url).drivername in _LIBPQ_DRIVERS
    engine = sa.create_engine(url, poolclass=NullPool,
                              connect_args={**KEEPALIVES, "connect_timeout": 10} if libpq else {})
    # Autocommit: an idle transaction held for the whole run could be killed by the server's
    # idle_in_transaction_session_timeout, which would silently drop the lock.
    conn = engine.connect().execution_options(isolation_level="AUTOCOMMIT")
    where = f"{purpose} PostgreSQL advisory lock {key} on {engine.url.host}/{engine.url.database}"
    try:
        deadline = time.monotonic() + timeout
        try_lock = sa.text("SELECT pg_try_advisory_lock(:k)")
        while not conn.execute(try_lock, {"k": key}).scalar():
            if time.monotonic() >= deadline:
                raise _busy(model, f"{_advisory_holder(conn, key)}; advisory lock {key} on "
                                   f"{engine.url.render_as_string(hide_password=True)}", purpose)
            time.sleep(_POLL_SECONDS)
        try:
            yield HeldLock(where, lambda: _ensure_advisory(conn, key, where),
                           conn.connection.dbapi_connection)
        finally:
            try:
                conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            except Exception as exc:  # the connection is gone: so is the lock, on the server
                warn(f"warning: could not release the {where}: {type(exc).__name__}: "
                     f"{first_line(getattr(exc, 'orig', None) or exc)}")
    finally:
        with contextlib.suppress(Exception):
            conn.close()
        engine.dispose()


def _ensure_advisory(conn: sa.Connection, key: int, where: str) -> None:
    """The lock's session is alive and still holds the lock, else :class:`LockLostError`."""
    import sqlalchemy as sa

    query = sa.text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND "
        "pid = pg_backend_pid() AND ((classid::bigint << 32) | objid::bigint) = :k")
    try:
        held = conn.execute(query, {"k": key}).scalar()
    except Exception as exc:
        raise LockLostError(f"lost the connection holding the {where}: {type(exc).__name__}: "
                            f"{first_line(getattr(exc, 'orig', None) or exc)}") from exc
    if not held:
        raise LockLostError(f"the {where} is no longer held by this process")


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


__all__ = ["ALIAS_TIMEOUT", "KEEPALIVES", "HeldLock", "LockBusyError", "LockLostError",
           "Purpose", "advisory_key", "alias_lock", "lock_backend", "model_lock", "retrain_lock"]
