"""``nearcast evaluate``: a stored model backtested on data read by its own pipeline rules."""

from __future__ import annotations

import re
from dataclasses import dataclass

import mlflow
from mlflow import MlflowClient

from models import registry, tracking
from models.artifact import load_forecaster
from models.backtest import Backtest, backtest
from models.jobconfig import data_config_for
from models.settings import MlflowSettings
from pipelines.dataset import load_dataset


@dataclass(frozen=True)
class EvaluationResult:
    """What ``nearcast evaluate`` produced."""

    model_uri: str
    version: registry.VersionRef | None
    source: str
    backtest: Backtest
    run_id: str | None


_REGISTERED = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


def _version_of(client: MlflowClient, model_uri: str) -> registry.VersionRef | None:
    """The registered version behind ``models:/name@alias`` or ``models:/name/N``."""
    match = _REGISTERED.match(model_uri)
    if match is None or match["name"].startswith("m-"):
        return None  # a run or logged-model URI: no registry entry to name
    if match["alias"]:
        ref = registry.version_for_alias(client, match["name"], match["alias"])
        if ref is None:
            raise ValueError(f"{model_uri}: no version of {match['name']!r} has alias "
                             f"{match['alias']!r}")
        return ref
    return registry.VersionRef(match["name"], int(match["version"]), "", model_uri)


def evaluate_model(
    model_uri: str, data: str, settings: MlflowSettings, n_folds: int, step: int | None = None,
    horizon: int | None = None, log: bool = False,
) -> EvaluationResult:
    """Backtest a stored model on data read by its own pipeline rules; optionally log a run.

    Args:
        model_uri: e.g. ``models:/name@champion``, ``models:/name/3`` or ``runs:/<id>/model``.
        data: ``m4_hourly``, a data/job YAML file or a data file (see
            :func:`models.jobconfig.data_config_for`).
        settings: the MLflow store.
        n_folds: rolling-origin folds.
        step: rows between cutoffs (default ``horizon``).
        horizon: points per fold (default and maximum: the model's horizon).
        log: record a ``backtest`` run in the configured experiment.
    """
    client = settings.connect()
    version = _version_of(client, model_uri)
    forecaster = load_forecaster(model_uri)
    loaded = load_dataset(data_config_for(data, forecaster.meta))
    result = backtest(forecaster, loaded.frame, n_folds, step, horizon)
    run_id = None
    if log:
        tags = tracking.run_tags(loaded.source, kind="backtest") | {"nearcast.model_uri": model_uri}
        if version is not None:
            tags |= {"nearcast.model_name": version.name,
                     "nearcast.model_version": str(version.version)}
        with mlflow.start_run(experiment_id=settings.ensure_experiment(client), tags=tags) as run:
            tracking.log_backtest(result, forecaster.config, model_uri, loaded.frame,
                                  loaded.source)
            run_id = run.info.run_id
    return EvaluationResult(model_uri, version, loaded.source, result, run_id)


__all__ = ["EvaluationResult", "evaluate_model"]
