"""Every Prometheus metric of the API, defined in one place.

Each app owns a :class:`Metrics` on its own ``CollectorRegistry`` (several apps may live in one
process, e.g. in tests). Request metrics are observed by :mod:`service.middleware`, batching
metrics by :mod:`service.batching`; model and queue state is read at scrape time from the
store and the batchers, so the hot path pays nothing for it.

Several uvicorn workers (``nearcast serve --workers N``): :func:`multiprocess_dir` switches
prometheus-client to its multiprocess mode before the workers start. Each worker then writes
its request, latency and batching samples to files in ``PROMETHEUS_MULTIPROC_DIR`` and a scrape,
whichever worker answers it, returns their sums over all workers. The state read at scrape time
(served version, load time and failures, queue depth) is the answering worker's own and carries
a ``worker`` label (its pid): every worker follows the alias by itself.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

if TYPE_CHECKING:  # the CLI imports this module before TensorFlow should be loaded
    from nearcast.models.monitoring.calibration import Calibration
    from nearcast.service.store import ModelStore

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
                    2.5, 5.0, 10.0)
_SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096)


class _Queue(Protocol):
    @property
    def pending(self) -> int: ...


class Metrics:
    """The API's metrics on one registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        # Multiprocess mode is fixed when prometheus_client is imported (PROMETHEUS_MULTIPROC_DIR
        # set then): samples go to per-process files and a scrape sums the files.
        self.multiprocess = values.ValueClass is not values.MutexValue
        self.exposed = self.registry
        if self.multiprocess:
            self.exposed = CollectorRegistry()
            MultiProcessCollector(self.exposed)  # type: ignore[no-untyped-call]
        r = self.registry
        self.requests = Counter("nearcast_http_requests", "HTTP requests by route and status.",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("nearcast_http_request_duration_seconds",
                                 "HTTP request latency by route and status.",
                                 ["route", "method", "status"], buckets=_LATENCY_BUCKETS,
                                 registry=r)
        self.batch_series = Histogram("nearcast_batch_series", "Series per batched model call.",
                                      ["model"], buckets=_SIZE_BUCKETS, registry=r)
        self.batch_requests = Histogram("nearcast_batch_requests",
                                        "Requests coalesced into one model call.", ["model"],
                                        buckets=_SIZE_BUCKETS, registry=r)
        self.model_seconds = Histogram("nearcast_model_call_seconds",
                                       "Duration of one batched model call.", ["model"],
                                       buckets=_LATENCY_BUCKETS, registry=r)
        self.rejected = Counter("nearcast_queue_rejected",
                                "Requests answered 503 because the model queue was full.",
                                ["model"], registry=r)
        self.log_written = Counter("nearcast_forecast_log_written",
                                   "Served series forecasts written to the forecast log.",
                                   registry=r)
        self.log_dropped = Counter("nearcast_forecast_log_dropped",
                                   "Served series forecasts not logged: the log's queue was full.",
                                   registry=r)
        self.log_failed = Counter("nearcast_forecast_log_failed",
                                  "Served series forecasts not logged: the write failed.",
                                  registry=r)

    def watch(self, store: ModelStore, queues: Callable[[], Mapping[str, _Queue]]) -> None:
        """Report the served versions and queue depths at scrape time."""
        worker = str(os.getpid()) if self.multiprocess else None
        self.exposed.register(_StateCollector(store, queues, worker))

    def watch_monitor(self, summaries: Callable[[], Mapping[str, Mapping[str, Any] | None]]
                      ) -> None:
        """Report the monitor's latest summaries (model -> summary or None) at scrape time."""
        self.exposed.register(_MonitorCollector(summaries))

    def watch_calibration(self, current: Callable[[], Mapping[tuple[str, int], Calibration]]
                          ) -> None:
        """Report each served version's calibration factors at scrape time."""
        worker = str(os.getpid()) if self.multiprocess else None
        self.exposed.register(_CalibrationCollector(current, worker))

    def watch_log(self, queued: Callable[[], int]) -> None:
        """Report the forecast log's queue depth (series) at scrape time."""
        worker = str(os.getpid()) if self.multiprocess else None
        self.exposed.register(_LogQueueCollector(queued, worker))

    def render(self) -> tuple[bytes, str]:
        """The exposition text (summed over workers in multiprocess mode) and its content type."""
        return generate_latest(self.exposed), CONTENT_TYPE_LATEST


class _StateCollector(Collector):
    def __init__(self, store: ModelStore, queues: Callable[[], Mapping[str, _Queue]],
                 worker: str | None) -> None:
        self.store, self.queues = store, queues
        self.extra = {"worker": worker} if worker else {}  # multiprocess: whose state this is

    def collect(self) -> Iterator[Metric]:
        keys, extra = list(self.extra), list(self.extra.values())
        version = GaugeMetricFamily("nearcast_model_version", "Served registered version.",
                                    labels=["model", "alias", *keys])
        loaded = GaugeMetricFamily("nearcast_model_loaded_timestamp_seconds",
                                   "When the served version was loaded.", labels=["model", *keys])
        failures = CounterMetricFamily("nearcast_model_load_failures",
                                       "Versions that failed to load or warm up.",
                                       labels=["model", *keys])
        compiles = CounterMetricFamily("nearcast_model_compiles", "Traces of the served "
                                       "version's model function (XLA: one compile per batch "
                                       "size); flat after warm-up.",
                                       labels=["model", "version", *keys])
        warmup = GaugeMetricFamily("nearcast_model_warmup_seconds", "Warm-up (XLA: compiling "
                                   "every batch size) of the served version before it served.",
                                   labels=["model", "version", *keys])
        for name, served in list(self.store.models.items()):
            version.add_metric([name, served.alias, *extra], served.ref.version)
            loaded.add_metric([name, *extra], served.loaded_at)
            labels = [name, str(served.ref.version), *extra]
            compiles.add_metric(labels, served.forecaster.compiles)
            warmup.add_metric(labels, served.warmup_seconds)
        for name, status in list(self.store.status.items()):
            failures.add_metric([name, *extra], status.failures)
        depth = GaugeMetricFamily("nearcast_queue_series", "Series queued or running.",
                                  labels=["model", *keys])
        for name, queue in self.queues().items():
            depth.add_metric([name, *extra], queue.pending)
        yield from (version, loaded, failures, depth, compiles, warmup)


class _CalibrationCollector(Collector):
    def __init__(self, current: Callable[[], Mapping[tuple[str, int], Calibration]],
                 worker: str | None) -> None:
        self.current = current
        self.extra = {"worker": worker} if worker else {}

    def collect(self) -> Iterator[Metric]:
        keys, extra = list(self.extra), list(self.extra.values())
        factor = GaugeMetricFamily("nearcast_calibration_factor", "Interval calibration factor "
                                   "of a served version, averaged over the horizon steps (1: "
                                   "raw).", labels=["model", "version", "interval", *keys])
        stamp = GaugeMetricFamily("nearcast_calibration_computed_timestamp_seconds",
                                  "When the version's calibration factors were computed.",
                                  labels=["model", "version", *keys])
        for (name, version), cal in self.current().items():
            stamp.add_metric([name, str(version), *extra], cal.computed_at)
            for interval, value in cal.mean_factors().items():
                factor.add_metric([name, str(version), interval, *extra], value)
        yield from (factor, stamp)


class _LogQueueCollector(Collector):
    def __init__(self, queued: Callable[[], int], worker: str | None) -> None:
        self.queued = queued
        self.extra = {"worker": worker} if worker else {}

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily("nearcast_forecast_log_queue_series",
                                  "Served series forecasts queued for the forecast log.",
                                  labels=list(self.extra))
        depth.add_metric(list(self.extra.values()), self.queued())
        yield depth


class _MonitorCollector(Collector):
    """Gauges from ``nearcast monitor``'s summaries (see :mod:`models.monitoring.summary`)."""

    def __init__(self, summaries: Callable[[], Mapping[str, Mapping[str, Any] | None]]) -> None:
        self.summaries = summaries

    def collect(self) -> Iterator[Metric]:
        mv = ["model", "version"]
        metric = GaugeMetricFamily("nearcast_monitor_metric", "Live accuracy of a version over "
                                   "the monitor's window.", labels=[*mv, "metric"])
        naive = GaugeMetricFamily("nearcast_monitor_seasonal_naive_metric", "Seasonal naive's "
                                  "accuracy on the same points.", labels=[*mv, "metric"])
        ratio = GaugeMetricFamily("nearcast_monitor_holdout_ratio", "Live metric / the "
                                  "version's holdout metric.", labels=mv)
        coverage = GaugeMetricFamily("nearcast_monitor_coverage", "Coverage of the checked "
                                     "interval, as served or raw.", labels=[*mv, "kind"])
        alarm = GaugeMetricFamily("nearcast_monitor_alarm", "1 while an alarm is raised on a "
                                  "version that serves.", labels=mv)
        degraded = GaugeMetricFamily("nearcast_monitor_degraded_days", "Degraded days in a row "
                                     "up to the version's newest day.", labels=mv)
        last = GaugeMetricFamily("nearcast_monitor_last_run_timestamp_seconds",
                                 "When nearcast monitor last summarised the model.",
                                 labels=["model"])
        for name, body in self.summaries().items():
            if not body:
                continue
            last.add_metric([name], float(body["computed_at"]))
            key = body["config"]["metric"]
            for entry in body["versions"]:
                labels = [name, str(entry["version"])]
                for family, scores in ((metric, entry["metrics"]),
                                       (naive, entry["seasonal_naive"])):
                    for m, value in scores.items():
                        if m not in ("points", "excluded") and value is not None:
                            family.add_metric([*labels, m], float(value))
                if entry["ratios"].get(key) is not None:
                    ratio.add_metric(labels, float(entry["ratios"][key]))
                for kind in ("served", "raw"):
                    if entry["coverage"][kind] is not None:
                        coverage.add_metric([*labels, kind], float(entry["coverage"][kind]))
                alarm.add_metric(labels, float(entry["alarm"]["raised"]))
                degraded.add_metric(labels, float(entry["alarm"]["degraded_days"]))
        yield from (metric, naive, ratio, coverage, alarm, degraded, last)


@contextlib.contextmanager
def multiprocess_dir(workers: int) -> Iterator[Path | None]:
    """Prometheus multiprocess mode for the uvicorn workers started inside the ``with`` block.

    With ``workers > 1`` (or ``PROMETHEUS_MULTIPROC_DIR`` already set) the folder named by
    ``PROMETHEUS_MULTIPROC_DIR``, else a new temporary one, is emptied of earlier samples (counts
    start with the server) and exported, so every worker (uvicorn spawns them; they inherit the
    environment) writes its samples there. A temporary folder is removed afterwards.

    Yields:
        The folder, or None for a single worker (plain in-process metrics).
    """
    configured = os.environ.get(MULTIPROC_ENV)
    if workers <= 1 and not configured:
        yield None
        return
    folder = Path(configured) if configured else Path(tempfile.mkdtemp(prefix="nearcast-metrics-"))
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()
    os.environ[MULTIPROC_ENV] = str(folder)
    try:
        yield folder
    finally:
        if not configured:
            os.environ.pop(MULTIPROC_ENV, None)
            shutil.rmtree(folder, ignore_errors=True)


__all__ = ["MULTIPROC_ENV", "Metrics", "multiprocess_dir"]
