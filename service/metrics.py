"""Every Prometheus metric of the API, defined in one place.

Each app owns a :class:`Metrics` on its own ``CollectorRegistry`` (several apps may live in one
process, e.g. in tests). Request metrics are observed by :mod:`service.middleware`, batching
metrics by :mod:`service.batching`; model and queue state is read at scrape time from the
store and the batchers, so the hot path pays nothing for it. A multi-worker deployment would
switch the registry to ``prometheus_client.multiprocess`` here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Protocol

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from service.store import ModelStore

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

    def watch(self, store: ModelStore, queues: Callable[[], Mapping[str, _Queue]]) -> None:
        """Report the served versions and queue depths at scrape time."""
        self.registry.register(_StateCollector(store, queues))

    def render(self) -> tuple[bytes, str]:
        """The exposition text and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class _StateCollector(Collector):
    def __init__(self, store: ModelStore, queues: Callable[[], Mapping[str, _Queue]]) -> None:
        self.store, self.queues = store, queues

    def collect(self) -> Iterator[Metric]:
        version = GaugeMetricFamily("nearcast_model_version", "Served registered version.",
                                    labels=["model", "alias"])
        loaded = GaugeMetricFamily("nearcast_model_loaded_timestamp_seconds",
                                   "When the served version was loaded.", labels=["model"])
        failures = CounterMetricFamily("nearcast_model_load_failures",
                                       "Versions that failed to load or warm up.",
                                       labels=["model"])
        for name, served in list(self.store.models.items()):
            version.add_metric([name, served.alias], served.ref.version)
            loaded.add_metric([name], served.loaded_at)
        for name, status in list(self.store.status.items()):
            failures.add_metric([name], status.failures)
        depth = GaugeMetricFamily("nearcast_queue_series", "Series queued or running.",
                                  labels=["model"])
        for name, queue in self.queues().items():
            depth.add_metric([name], queue.pending)
        yield from (version, loaded, failures, depth)


__all__ = ["Metrics"]
