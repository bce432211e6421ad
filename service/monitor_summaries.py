"""The monitor's latest summaries as the API reads them (``GET /v1/monitor``, the gauges).

:class:`SummaryCache` reads :meth:`ForecastLog.latest_summary` of every served model at most
once per ``ttl`` seconds, so a Prometheus scrape costs no database query most of the time. A
log that cannot be read leaves the previous summaries in place (and is logged).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from nearcast.models.monitoring.log_store import ForecastLog

log = logging.getLogger("nearcast.monitor")

Summaries = dict[str, dict[str, Any] | None]
"""Model name -> its latest summary (None: the monitor never ran for it)."""


def read_summaries(store: ForecastLog, names: Sequence[str]) -> Summaries:
    """The latest summary of each model (blocking: a database query per model)."""
    return {name: store.latest_summary(name) for name in names}


class SummaryCache:
    """The latest summaries of ``names``, re-read when older than ``ttl`` seconds.

    The first read waits for the database; later ones answer at once with what was read last
    and, when that is stale, re-read in a background thread, so a scrape (on the event loop)
    never waits for a slow database.
    """

    def __init__(self, store: Callable[[], ForecastLog | None], names: Sequence[str],
                 ttl: float = 10.0) -> None:
        self.store, self.names, self.ttl = store, list(names), ttl
        self._lock = threading.Lock()
        self._read_at: float | None = None
        self._reading = False
        self._summaries: Summaries = {}

    def get(self) -> Summaries:
        """The summaries (none while no log is open)."""
        with self._lock:
            first = self._read_at is None
            stale = first or time.monotonic() - (self._read_at or 0.0) >= self.ttl
            if not stale or self._reading:
                return self._summaries
            self._reading = True
        if first:
            self._refresh()
        else:
            threading.Thread(target=self._refresh, name="monitor-summaries", daemon=True).start()
        return self._summaries

    def _refresh(self) -> None:
        store = self.store()
        found = None
        try:
            found = read_summaries(store, self.names) if store is not None else {}
        except Exception:  # a scrape must not fail: keep the previous values
            log.exception("reading the monitor summaries failed")
        with self._lock:
            if found is not None:
                self._summaries = found
            self._read_at, self._reading = time.monotonic(), False


__all__ = ["SummaryCache", "Summaries", "read_summaries"]
