"""``nearcast evaluate``: a stored model backtested on data read by its own pipeline rules.

The data is read first (:func:`read_evaluation_data`), and MLflow, the model and TensorFlow
are loaded only then, so that a missing file, table or database is reported within a second or
two.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nearcast.models.jobconfig import data_config_from_spec, with_model_rules
from nearcast.pipelines.dataset import DataConfig, RawData, prepare, read_raw
from nearcast.pipelines.errors import InputError

if TYPE_CHECKING:  # MLflow and TensorFlow load only once the data is read
    from mlflow import MlflowClient

    from nearcast.models.backtest import Backtest, BacktestEngine
    from nearcast.models.forecaster import ModelMeta
    from nearcast.models.registry import VersionRef
    from nearcast.models.settings import MlflowSettings


@dataclass(frozen=True)
class EvaluationResult:
    """What ``nearcast evaluate`` produced."""

    model_uri: str
    version: VersionRef | None
    source: str
    backtest: Backtest
    run_id: str | None


@dataclass(frozen=True)
class EvaluationData:
    """The data named by ``--data``, read but not yet put on the model's grid."""

    spec: str
    config: DataConfig
    raw: RawData


class ModelNotFoundError(InputError, ValueError):
    """The model URI names no registered version."""


_REGISTERED = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


def version_of(client: MlflowClient, model_uri: str) -> VersionRef | None:
    """The registered version behind ``models:/name@alias`` or ``models:/name/N``.

    None for a run or logged-model URI.

    Raises:
        ModelNotFoundError: the alias names no version.
    """
    from nearcast.models import registry

    match = _REGISTERED.match(model_uri)
    if match is None or match["name"].startswith("m-"):
        return None  # a run or logged-model URI: no registry entry to name
    if match["alias"]:
        ref = registry.version_for_alias(client, match["name"], match["alias"])
        if ref is None:
            raise ModelNotFoundError(f"{model_uri}: no version of {match['name']!r} has alias "
                                     f"{match['alias']!r}")
        return ref
    try:
        return registry.existing_version(client, match["name"], int(match["version"]))
    except ValueError as exc:
        raise ModelNotFoundError(f"{model_uri}: {exc}") from None


def read_evaluation_data(spec: str) -> EvaluationData:
    """Read the data named by ``spec`` (see :func:`models.jobconfig.data_config_from_spec`).

    Raises:
        InputError: the YAML file, the data file, table or database cannot be used, or there is
            no row (the message names which and where).
    """
    cfg = data_config_from_spec(spec)
    return EvaluationData(spec, cfg, read_raw(cfg))


def on_model_rules(read: EvaluationData, meta: ModelMeta) -> tuple[DataConfig, RawData]:
    """The data config on the model's rules, and the rows read by it.

    The source is read again only when the model reads covariates the first read did not
    declare (a plain data file given to a covariate model).
    """
    cfg = with_model_rules(read.config, read.spec, meta)
    if cfg.covariates.keys() - read.config.covariates.keys():
        return cfg, read_raw(cfg)
    return cfg, read.raw



def evaluate_model(
    model_uri: str, data: str | EvaluationData, settings: MlflowSettings, n_folds: int,
    step: int | None = None, horizon: int | None = None, log: bool = False,
    strict: bool = False, engine: BacktestEngine | None = None,
) -> EvaluationResult:
    """Backtest a stored model on data read by its own pipeline rules; optionally log a run.

    Args:
        model_uri: e.g. ``models:/name@champion``, ``models:/name/3`` or ``runs:/<id>/model``.
        data: ``m4_hourly``, a data/job YAML file or a data file (see
            :func:`models.jobconfig.data_config_from_spec`), or what
            :func:`read_evaluation_data` read from one.
        settings: the MLflow store.
        n_folds: rolling-origin folds.
        step: rows between cutoffs (default ``horizon``).
        horizon: points per fold (default and maximum: the model's horizon).
        log: record a ``backtest`` run in the configured experiment.
        strict: fail on a series too short for the folds instead of leaving it out.
        engine: where the model runs over the folds (default: this process); the scores are
            the same either way, and a logged run is tagged ``nearcast.engine``.

    Raises:
        InputError: the data, its file, table or database, or the model cannot be used (the
            message names which and where).
    """
    read = read_evaluation_data(data) if isinstance(data, str) else data
    client = settings.connect()
    version = version_of(client, model_uri)
    import mlflow

    from nearcast.models import tracking
    from nearcast.models.artifact import load_forecaster
    from nearcast.models.backtest import backtest

    forecaster = load_forecaster(model_uri)
    loaded = prepare(*on_model_rules(read, forecaster.meta))
    result = backtest(forecaster, loaded.frame, n_folds, step, horizon, strict,
                      engine.outputs if engine else None)
    run_id = None
    if log:
        tags = tracking.run_tags(loaded.source, kind="backtest") | {
            "nearcast.model_uri": model_uri, "nearcast.engine": engine.name if engine else "local"}
        if version is not None:
            tags |= {"nearcast.model_name": version.name,
                     "nearcast.model_version": str(version.version)}
        what = f"{version.name} v{version.version}" if version else model_uri
        name = f"backtest {what} {tracking.data_label(loaded.source)}"
        with mlflow.start_run(experiment_id=settings.ensure_experiment(client), tags=tags,
                              run_name=name) as run:
            tracking.log_backtest(result, forecaster.config, model_uri, loaded.frame,
                                  loaded.source)
            mlflow.set_tag(tracking.NOTE, f"**{name}** (`{model_uri}` on `{loaded.source}`): "
                           f"{len(result.folds)} folds, step {result.step}, horizon "
                           f"{result.horizon}.\n\n### Scores over all folds\n\n"
                           f"{tracking.score_table(result.aggregate)}")
            mlflow.log_metrics({"series_scored": result.n_scored,
                                "series_skipped": len(result.skipped)})
            if result.skipped:
                mlflow.log_dict(result.skipped, "evaluation/skipped_series.json")
            run_id = run.info.run_id
    return EvaluationResult(model_uri, version, loaded.source, result, run_id)


__all__ = [
    "EvaluationData",
    "EvaluationResult",
    "ModelNotFoundError",
    "evaluate_model",
    "on_model_rules",
    "read_evaluation_data",
    "version_of",
]
