"""The training job behind ``nearcast train``, the quickstart and ``nearcast retrain``.

One way to train: a :class:`~nearcast.models.estimator.Nearcast` fit, then its MLflow record
(:meth:`~nearcast.models.estimator.Nearcast.log`). A fit that diverges leaves a FAILED run and
registers nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from mlflow import MlflowClient

from nearcast.models.distributed import Cluster, data_parallel, weights_digest
from nearcast.models.estimator import Nearcast
from nearcast.models.evaluation import Evaluation
from nearcast.models.fitting import FitDivergedError, Member
from nearcast.models.forecaster import Forecaster
from nearcast.models.registry import VersionRef
from nearcast.models.run_log import Logged
from nearcast.models.settings import MlflowSettings
from nearcast.models.training import TrainingDivergedError, TrainResult
from nearcast.pipelines.dataset import LoadedData


@dataclass(frozen=True)
class Trained:
    """A fitted model and where it was recorded."""

    model: Nearcast
    logged: Logged

    @property
    def run_id(self) -> str:
        """The training run."""
        return self.logged.run_id

    @property
    def model_uri(self) -> str:
        """The logged model (``models:/m-…``)."""
        return self.logged.model_uri

    @property
    def version(self) -> VersionRef | None:
        """The registered version (alias ``challenger``), None when not registered."""
        return self.logged.version

    @property
    def forecaster(self) -> Forecaster:
        """The trained forecaster."""
        return self.model.forecaster

    @property
    def evaluation(self) -> Evaluation:
        """Holdout scores of the model and the baselines."""
        assert self.model.fitted is not None
        return self.model.fitted.evaluation

    @property
    def members(self) -> list[Member]:
        """Each trained network (one for a single model)."""
        assert self.model.fitted is not None
        return self.model.fitted.members

    @property
    def training(self) -> TrainResult:
        """The (first) network's training: epochs, stop reason, seconds."""
        return self.members[0].result


def train(
    model: Nearcast, settings: MlflowSettings, data: pd.DataFrame | LoadedData | None = None, *,
    register: bool = True, strict: bool = False, warm_start: list[np.ndarray] | None = None,
    tags: Mapping[str, str] | None = None, run_name: str | None = None,
    source: str | None = None,
) -> Trained:
    """Fit ``model`` (on ``data``, default its job's ``data:``), record the run, register.

    The run is created before the fit, so it is visible while training runs; a process killed
    mid-fit leaves it RUNNING (``nearcast retrain`` later closes such runs as KILLED).

    Raises:
        TrainingDivergedError: the loss went NaN/inf; the run is FAILED, nothing registered.
        LoadCheckError: the new version does not load back in a fresh process; it stays
            without an alias and the run is FAILED.
        DataValidationError: naming series and rows of what is wrong in the data.
    """
    run_id = model.open_run(model.source_label(data, source), run_name=run_name, tags=tags,
                            settings=settings)
    try:
        model.fit(data, strict=strict, warm_start=warm_start, source=source)
    except FitDivergedError as exc:
        model.log_failure(exc, settings=settings, tags=tags, run_name=run_name, run_id=run_id)
        raise TrainingDivergedError(f"{exc} (run {run_id})") from exc
    except BaseException as exc:  # bad data, a wrong warm start (FAILED); Ctrl-C, SIGTERM
        status = "FAILED" if isinstance(exc, Exception) else "KILLED"
        MlflowClient(settings.resolved_tracking_uri()).set_terminated(run_id, status)
        raise
    logged = model.log(register=register, settings=settings, tags=tags, run_name=run_name,
                       run_id=run_id)
    return Trained(model, logged)


@dataclass(frozen=True)
class WorkerTrained:
    """One worker's part of a data-parallel fit.

    Attributes:
        trained: the chief's run and version (None on the other workers).
        weights: :func:`models.distributed.weights_digest` of the trained model, the same on
            every worker (the chief tags its run ``nearcast.weights_digest`` with it).
    """

    trained: Trained | None
    weights: str


def train_on_cluster(
    model: Nearcast, settings: MlflowSettings, data: pd.DataFrame | LoadedData | None,
    cluster: Cluster, *, register: bool = True, strict: bool = False,
) -> WorkerTrained:
    """:func:`train` as one worker of ``cluster`` (``nearcast train --distributed``).

    Every worker fits on its shard of the series (:mod:`models.distributed`); the chief also
    records the run (tags ``nearcast.workers``, ``nearcast.weights_digest``) and registers.
    The other workers write nothing to MLflow.

    Raises:
        WorkerLostError: another worker stopped; on the chief the run is FAILED and nothing is
            registered.
        ClusterConfigError: the batch size is not a multiple of the workers, or there are
            fewer series than workers.
    """
    cluster.local_batch(model.job.train.batch_size)
    with data_parallel(cluster):
        if not cluster.is_chief:
            model.fit(data, strict=strict)
            return WorkerTrained(None, weights_digest(model.forecaster.model.get_weights()))
        trained = train(model, settings, data, register=register, strict=strict,
                        tags={"nearcast.workers": str(cluster.count)})
    digest = weights_digest(trained.forecaster.model.get_weights())
    MlflowClient(settings.resolved_tracking_uri()).set_tag(trained.run_id,
                                                          "nearcast.weights_digest", digest)
    return WorkerTrained(trained, digest)


__all__ = ["Trained", "WorkerTrained", "train", "train_on_cluster"]
