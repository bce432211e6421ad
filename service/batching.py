"""Dynamic micro-batching: concurrent requests for one model share one model call.

Each served model name has a :class:`MicroBatcher`. Requests submit their fitted windows and
await a future; one collector task takes the oldest job, keeps taking jobs for the same model
version while the batch has room, waiting at most ``max_wait`` and only as long as each
event-loop turn brings new jobs, then runs one ``predict_inputs`` call in the batcher's own
worker thread (never on the event loop) and splits the result back. While that call runs, new
jobs queue up and form the next batch, so batches grow with load by themselves.

The queue is bounded in series: a submit that would push the series queued or running past
``max_queue`` fails at once with :class:`QueueFullError` (answered 503 + ``Retry-After``)
instead of adding unbounded latency. An idle batcher always accepts one request.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from nearcast.models.forecaster import Forecaster
from nearcast.service.metrics import Metrics
from nearcast.service.store import LoadedModel

log = logging.getLogger("nearcast.batching")


class QueueFullError(RuntimeError):
    """The model's queue is full; retry later."""


class BatcherClosedError(RuntimeError):
    """The server is shutting down."""


@dataclass(eq=False)
class _Job:
    served: LoadedModel
    inputs: dict[str, np.ndarray]
    future: asyncio.Future[np.ndarray]

    @property
    def n(self) -> int:
        return int(self.inputs["history"].shape[0])


def _predict(forecaster: Forecaster, inputs: dict[str, np.ndarray], chunk: int) -> np.ndarray:
    """Fitted windows (``history`` ``(B, L)``, the other inputs) -> ``(B, H, K)``, chunked.

    Chunks hold at most ``chunk`` rows.
    """
    n = len(inputs["history"])
    if n <= chunk:
        return forecaster.predict_inputs(inputs)
    parts = [forecaster.predict_inputs({k: v[i:i + chunk] for k, v in inputs.items()})
             for i in range(0, n, chunk)]
    return np.concatenate(parts)


def _fail(jobs: list[_Job], exc: BaseException) -> None:
    for job in jobs:
        if not job.future.done():
            job.future.set_exception(exc)


class MicroBatcher:
    """Coalesces forecasts of one model name into batched model calls."""

    def __init__(self, name: str, max_series: int, max_wait: float, max_queue: int,
                 metrics: Metrics | None = None) -> None:
        self.name, self.max_series, self.max_wait, self.max_queue = (
            name, max_series, max_wait, max_queue)
        self.pending = 0
        self._jobs: deque[_Job] = deque()
        self._arrivals = 0
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"nearcast-{name}")
        self._task: asyncio.Task[None] | None = None
        self._metrics = metrics
        self._closed = False

    def start(self) -> None:
        """Start the collector task on the running loop."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"batch-{self.name}")

    async def close(self) -> None:
        """Stop collecting, fail queued jobs, release the worker thread."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        _fail(list(self._jobs), BatcherClosedError("the server is shutting down"))
        self._jobs.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, served: LoadedModel, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Forecast fitted windows with ``served``; returns ``(n, H, K)``.

        ``inputs`` hold ``history`` ``(n, L)``, ``mask`` and a covariate model's other inputs.

        Raises:
            QueueFullError: the queue holds too many series already.
            BatcherClosedError: the server is shutting down.
        """
        if self._closed:
            raise BatcherClosedError("the server is shutting down")
        n = int(inputs["history"].shape[0])
        if self.pending and self.pending + n > self.max_queue:
            if self._metrics is not None:
                self._metrics.rejected.labels(self.name).inc()
            raise QueueFullError(f"model {self.name!r} has {self.pending} series queued; the "
                                 f"limit is {self.max_queue}")
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._jobs.append(_Job(served, inputs, future))
        self.pending += n
        self._arrivals += 1
        self._wake.set()
        return await future

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._jobs:
                batch = await self._collect()
                if batch:
                    await self._execute(batch)

    async def _collect(self) -> list[_Job]:
        """Take jobs for one model version, up to ``max_series``, waiting at most ``max_wait``."""
        loop = asyncio.get_running_loop()
        batch: list[_Job] = []
        size = self._take(batch, 0)
        deadline = loop.time() + self.max_wait
        while batch and size < self.max_series and loop.time() < deadline:
            seen = self._arrivals
            await asyncio.sleep(0)  # one loop turn: lets already-received requests submit
            if self._arrivals == seen:
                break
            size = self._take(batch, size)
        return batch

    def _take(self, batch: list[_Job], size: int) -> int:
        while self._jobs:
            job = self._jobs[0]
            if job.future.done():  # the client went away while queued
                self._jobs.popleft()
                self.pending -= job.n
                continue
            if batch and (job.served is not batch[0].served or size + job.n > self.max_series):
                break
            self._jobs.popleft()
            batch.append(job)
            size += job.n
        return size

    async def _execute(self, batch: list[_Job]) -> None:
        size = sum(job.n for job in batch)
        if len(batch) == 1:
            inputs = batch[0].inputs
        else:
            inputs = {k: np.concatenate([job.inputs[k] for job in batch])
                      for k in batch[0].inputs}
        started = time.perf_counter()
        try:
            out = await asyncio.get_running_loop().run_in_executor(
                self._executor, _predict, batch[0].served.forecaster, inputs, self.max_series)
        except asyncio.CancelledError:
            _fail(batch, BatcherClosedError("the server is shutting down"))
            raise
        except Exception as exc:
            log.error("model call of %s failed: %s", self.name, exc)
            _fail(batch, exc)
        else:
            offset = 0
            for job in batch:
                if not job.future.done():
                    job.future.set_result(out[offset:offset + job.n])
                offset += job.n
        finally:
            self.pending -= size
            self._observe(len(batch), size, time.perf_counter() - started)

    def _observe(self, requests: int, size: int, seconds: float) -> None:
        if self._metrics is not None:
            self._metrics.batch_series.labels(self.name).observe(size)
            self._metrics.batch_requests.labels(self.name).observe(requests)
            self._metrics.model_seconds.labels(self.name).observe(seconds)


__all__ = ["BatcherClosedError", "MicroBatcher", "QueueFullError"]
