"""Data-parallel training across processes: TensorFlow's multi-worker strategy, nearcast's step.

``nearcast train --distributed`` runs the same program on every worker of a cluster described
by ``TF_CONFIG`` (the variable every launcher that runs TensorFlow jobs sets: a Kubernetes
indexed Job, a StatefulSet, Slurm, or a shell loop). Each worker trains on its own shard of the
series (:meth:`Cluster.shard`: every ``N``-th series by sorted id, not TensorFlow's auto-
sharding) with ``batch_size / N`` windows per step; gradients are summed across workers (one
all-reduce per step), clipped by their global norm and applied on every worker, so all of them
hold the same weights. Validation losses and the time budget are agreed on by all workers at
each epoch's end, so they stop together. Only the chief (worker 0) records the MLflow run and
registers the model; the others write nothing to the store. A worker that dies or stops
answering fails the collective on the others (:class:`WorkerLostError`); the chief's run is then
FAILED and no version is registered, so ``champion`` is untouched.

Keras's ``model.fit`` does not run under this strategy (keras-team/keras#20585); nearcast's own
step (:mod:`models.training`) does.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from nearcast.pipelines.errors import InputError
from nearcast.pipelines.schema import UNIQUE_ID

COLLECTIVE_TIMEOUT_S = 600.0
"""Seconds a step's all-reduce waits for the other workers before the run fails (a worker
that hangs instead of dying); a worker that dies fails the others at once."""


class ClusterConfigError(InputError, ValueError):
    """``TF_CONFIG`` is missing or does not describe a worker of a multi-worker cluster."""


class WorkerLostError(RuntimeError):
    """Another worker stopped or did not answer during training (the message says which)."""


@dataclass(frozen=True)
class Cluster:
    """The workers of one training job and which one this process is.

    Attributes:
        workers: ``host:port`` of every worker, the chief first.
        rank: this worker's position in ``workers`` (0: the chief).
    """

    workers: tuple[str, ...]
    rank: int

    @property
    def count(self) -> int:
        """Workers in the cluster."""
        return len(self.workers)

    @property
    def is_chief(self) -> bool:
        """The worker that records the run and registers the model."""
        return self.rank == 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Cluster:
        """Read ``TF_CONFIG``: ``{"cluster": {["chief": [..],] "worker": [..]}, "task": ..}``.

        Raises:
            ClusterConfigError: naming what is missing or wrong.
        """
        text = (os.environ if env is None else env).get("TF_CONFIG", "")
        if not text.strip():
            raise ClusterConfigError(
                "--distributed needs TF_CONFIG, e.g. {\"cluster\": {\"worker\": [\"host0:2222\", "
                "\"host1:2222\"]}, \"task\": {\"type\": \"worker\", \"index\": 0}}")
        try:
            conf = json.loads(text)
            cluster, task = conf["cluster"], conf["task"]
            chief, workers = list(cluster.get("chief", [])), list(cluster.get("worker", []))
            kind, index = str(task["type"]), int(task["index"])
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ClusterConfigError(f"TF_CONFIG is not a cluster and task: {exc!r} in "
                                     f"{text[:200]!r}") from None
        other = sorted(set(cluster) - {"chief", "worker"})
        if other:
            raise ClusterConfigError(f"TF_CONFIG has {other} jobs; data-parallel training "
                                     "uses only 'chief' and 'worker'")
        if len(chief) > 1:
            raise ClusterConfigError(f"TF_CONFIG lists {len(chief)} chiefs; at most one")
        members = tuple(chief + workers)
        rank = index + len(chief) if kind == "worker" else index
        if kind not in ("chief", "worker") or not 0 <= rank < len(members) or (
                kind == "chief" and index != 0):
            raise ClusterConfigError(f"TF_CONFIG task {kind} {index} is not in its cluster "
                                     f"({len(chief)} chief, {len(workers)} workers)")
        return cls(members, rank)

    def local_batch(self, batch_size: int) -> int:
        """Windows per worker and step for a global ``batch_size``.

        Raises:
            ClusterConfigError: ``batch_size`` is not a multiple of the workers.
        """
        if batch_size % self.count:
            raise ClusterConfigError(f"train.batch_size {batch_size} is not a multiple of the "
                                     f"{self.count} workers")
        return batch_size // self.count

    def check_series(self, n_series: int) -> None:
        """Raises ClusterConfigError when a worker would get no series."""
        if n_series < self.count:
            raise ClusterConfigError(f"{self.count} workers but only {n_series} series to "
                                     "train on; use at most one worker per series")

    def shard(self, frame: pd.DataFrame) -> pd.DataFrame:
        """This worker's series: every ``count``-th series id in sorted order, from ``rank``.

        Raises:
            ClusterConfigError: fewer series than workers (a worker would have none).
        """
        ids = np.sort(frame[UNIQUE_ID].astype(str).unique())
        self.check_series(len(ids))
        mine = ids[self.rank::self.count]
        return frame[frame[UNIQUE_ID].astype(str).isin(mine)]


@dataclass(frozen=True)
class DataParallel:
    """A cluster and its ``MultiWorkerMirroredStrategy`` (one per process)."""

    cluster: Cluster
    strategy: Any  # tf.distribute.MultiWorkerMirroredStrategy

    def all_sum(self, values: list[float]) -> np.ndarray:
        """The element-wise sum of ``values`` over all workers (every worker calls it)."""
        import tensorflow as tf

        local = tf.constant(values, tf.float64)
        per_replica = self.strategy.run(lambda: tf.identity(local))
        return np.asarray(self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica,
                                               axis=None))


_CURRENT: ContextVar[DataParallel | None] = ContextVar("nearcast_data_parallel", default=None)
_STRATEGIES: dict[Cluster, Any] = {}  # TensorFlow allows one cluster set-up per process


def current() -> DataParallel | None:
    """The data-parallel set-up training runs under, None for one process."""
    return _CURRENT.get()


@contextmanager
def data_parallel(cluster: Cluster) -> Iterator[DataParallel]:
    """Train under ``cluster`` within the block (creates the strategy on first use).

    Creating the strategy blocks until every worker of the cluster has started.
    """
    import tensorflow as tf

    if cluster not in _STRATEGIES:
        os.environ["TF_CONFIG"] = json.dumps(_tf_config(cluster))
        options = tf.distribute.experimental.CommunicationOptions(
            implementation=tf.distribute.experimental.CommunicationImplementation.RING,
            timeout_seconds=COLLECTIVE_TIMEOUT_S)
        _STRATEGIES[cluster] = tf.distribute.MultiWorkerMirroredStrategy(
            communication_options=options)
    token = _CURRENT.set(DataParallel(cluster, _STRATEGIES[cluster]))
    try:
        yield _CURRENT.get()  # type: ignore[misc]
    finally:
        _CURRENT.reset(token)


def weights_digest(weights: list[np.ndarray]) -> str:
    """A short hash of a model's weights: the same on every worker after a data-parallel fit."""
    digest = hashlib.sha256()
    for w in weights:
        digest.update(np.ascontiguousarray(w, dtype=np.float32).tobytes())
    return digest.hexdigest()[:16]


def _tf_config(cluster: Cluster) -> dict[str, object]:
    """The cluster as TensorFlow reads it (all members as workers, the chief first)."""
    return {"cluster": {"worker": list(cluster.workers)},
            "task": {"type": "worker", "index": cluster.rank}}


__all__ = ["COLLECTIVE_TIMEOUT_S", "Cluster", "ClusterConfigError", "DataParallel",
           "WorkerLostError", "current", "data_parallel", "weights_digest"]
