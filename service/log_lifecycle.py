"""The forecast log over an API process's life: open, write, prune, drain, close.

Opening the log (SQLite under ``NEARCAST_HOME`` or PostgreSQL) happens before the server turns
ready, so the first forecast it serves is logged. A log that cannot be opened does not stop
the API: it serves without logging, says so in its log, and ``/v1/actuals`` answers 503 with
the reason. Every worker process prunes by retention at start-up and then about hourly; on
shutdown, after the last request, the writer drains its queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from nearcast.models.monitoring.log_store import ForecastLog
from nearcast.models.settings import ForecastLogSettings
from nearcast.service.forecast_log import LogWriter

if TYPE_CHECKING:
    from nearcast.service.state import AppState

log = logging.getLogger("nearcast.forecast_log")

PRUNE_SECONDS = 3600.0
DRAIN_SECONDS = 30.0


async def _prune_forever(store: ForecastLog, retention_days: float, every: float) -> None:
    """Prune now, then every ``every`` seconds (in a worker thread; errors logged)."""
    while True:
        try:
            removed = await anyio.to_thread.run_sync(store.prune, retention_days)
            if any(removed):
                log.info("forecast log pruned", extra={"forecasts_removed": removed[0],
                                                       "actuals_removed": removed[1],
                                                       "retention_days": retention_days})
        except Exception:  # never let the pruner die
            log.exception("forecast log prune failed")
        await asyncio.sleep(every)


@contextlib.asynccontextmanager
async def forecast_logging(state: AppState, settings: ForecastLogSettings, home: Path,
                           prune_every: float = PRUNE_SECONDS) -> AsyncIterator[None]:
    """Open the log onto ``state`` for the ``with`` block; drain and close it afterwards.

    Args:
        state: the app's state (gets ``forecast_log`` and ``log_writer``).
        settings: the log's settings.
        home: the MLflow store's home, where the default SQLite log lives.
        prune_every: seconds between prunes.
    """
    if not settings.enabled:
        yield
        return
    url = settings.resolved_url(home)
    try:
        store = await anyio.to_thread.run_sync(ForecastLog, url)
    except Exception as exc:  # serve without the log rather than not at all
        shown = ForecastLog.display(url)
        state.forecast_log_problem = (f"the forecast log {shown} could not be opened: "
                                      f"{type(exc).__name__}: {str(exc).splitlines()[0]}")
        log.exception("serving without the forecast log", extra={"log_url": shown})
        yield
        return
    writer = LogWriter.from_settings(store, settings, state.metrics)
    writer.start()
    state.metrics.watch_log(lambda: writer.queued)
    state.forecast_log, state.log_writer = store, writer
    pruner = asyncio.create_task(_prune_forever(store, settings.retention_days, prune_every))
    try:
        yield
    finally:
        pruner.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pruner
        drained = await anyio.to_thread.run_sync(writer.close, DRAIN_SECONDS)
        log.log(logging.INFO if drained else logging.WARNING, "forecast log closed",
                extra={"written": writer.written, "dropped": writer.dropped,
                       "failed": writer.failed, "drained": drained,
                       "left_queued": writer.queued})
        state.log_writer = state.forecast_log = None
        store.close()


__all__ = ["forecast_logging"]
