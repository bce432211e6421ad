"""Record a fit in MLflow: one run (with a child run per ensemble member), then the registry.

:func:`log_fit` writes what :func:`nearcast.models.fitting.fit_forecaster` produced: the
config and grid rule as params, the dataset, the curves (stamped with the times they happened),
the holdout scores next to the baselines, the plots, each series' training MASE scale (for the
monitor), the per-series data report, a markdown description and the pyfunc model; it
registers the model (alias ``challenger``) only once the new version loads back in a fresh
process. :func:`log_failed_fit` records a diverged fit as a FAILED run, and nothing is
registered.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
import pandas as pd
from mlflow import MlflowClient

from nearcast.models import load_check, registry, tracking
from nearcast.models.artifact import log_forecaster
from nearcast.models.config import EnsembleConfig, ModelConfig, TrainConfig
from nearcast.models.fitting import FitDivergedError, Fitted, Member
from nearcast.models.monitoring.training_scales import SCALES_ARTIFACT, scales_record
from nearcast.models.settings import MlflowSettings
from nearcast.pipelines.grid import GridRule
from nearcast.pipelines.schema import UNIQUE_ID


@dataclass(frozen=True)
class Logged:
    """Where a fit was recorded: its run, its logged model and (when registered) the version."""

    run_id: str
    model_uri: str
    version: registry.VersionRef | None


@dataclass(frozen=True)
class RunSpec:
    """What a run says about its fit beyond the fit itself."""

    source: str
    frame: pd.DataFrame
    grid: GridRule
    config: ModelConfig
    train: TrainConfig
    ensemble: EnsembleConfig | None = None
    run_name: str | None = None
    tags: dict[str, str] | None = None
    data_report: pd.DataFrame | None = None

    def name(self) -> str:
        """``train <architecture> <data>`` unless a name was given."""
        return self.run_name or run_name(self.config, self.ensemble, self.source)


def run_name(config: ModelConfig, ensemble: EnsembleConfig | None, source: str) -> str:
    """A training run's name: ``train <architecture> <data>``."""
    members = len(ensemble.members) if ensemble else 0
    return f"train {tracking.model_label(config, members)} {tracking.data_label(source)}"


def _create_run(client: MlflowClient, experiment_id: str, source: str, name: str,
                tags: dict[str, str] | None, started: float | None = None) -> str:
    """A new training run (its tags may make it a child run), begun at ``started`` or now."""
    run = client.create_run(experiment_id, run_name=name,
                            start_time=None if started is None else int(started * 1000),
                            tags=tracking.run_tags(source) | (tags or {}))
    return str(run.info.run_id)


def _log_params(spec: RunSpec) -> None:
    shape = {"source": spec.source, "series": int(spec.frame[UNIQUE_ID].nunique()),
             "points": len(spec.frame)}
    tracking.log_config(spec.config, spec.train, shape | spec.grid.model_dump())
    if spec.ensemble is not None:
        mlflow.log_dict(spec.ensemble.model_dump(), "config/ensemble.json")


def _log_members(client: MlflowClient, experiment_id: str, parent: str, members: list[Member],
                 started: float, failed: bool = False, joint: bool = False) -> None:
    """One child run per ensemble member: its config, curves, stop reason and own scores.

    Members trained in turn start when the one before ended; ``joint`` members all start
    when the fit did.
    """
    t0 = started
    for i, m in enumerate(members):
        child = client.create_run(experiment_id, start_time=int(t0 * 1000),
                                  tags={"mlflow.parentRunId": parent}, run_name=f"member-{i}")
        with mlflow.start_run(run_id=child.info.run_id, nested=True):
            tracking.log_config(m.config, m.train, {"member": i})
            _log_training(m, t0)
            mlflow.log_metrics({f"model_{k}": v for k, v in m.scores.items()})
            status = "FAILED" if failed and i == len(members) - 1 else "FINISHED"
        client.set_terminated(child.info.run_id, status)
        mlflow.log_metrics({f"member{i}_{k}": v for k, v in m.scores.items()})
        t0 += 0.0 if joint else m.result.seconds


def _log_training(member: Member, started: float) -> None:
    tracking.log_curves(member.result.epochs, started)
    mlflow.set_tags({"nearcast.stop_reason": member.result.stop_reason,
                     "nearcast.best_epoch": str(member.result.best_epoch)})


def _log_refit(fitted: Fitted) -> None:
    """Say how the served model was made: selected as scored, or refitted on all the data.

    The holdout metrics (``model_*``) are the selected model's in both cases.
    """
    refit = fitted.refit
    mlflow.set_tags({"nearcast.joint_training": str(fitted.joint).lower(),
                     "nearcast.served_model": "selected" if refit is None else "refitted",
                     "nearcast.holdout_scores": "selected model (before the refit)"
                     if refit is not None else "served model"})
    if refit is not None:
        mlflow.set_tag("nearcast.refit_steps", ",".join(str(n) for n in refit.steps))
        mlflow.log_metrics({"refit_seconds": refit.seconds, "refit_steps": float(max(refit.steps))})


def open_run(settings: MlflowSettings, source: str, name: str,
             tags: dict[str, str] | None = None) -> str:
    """Create a training run now (RUNNING), for a fit that :func:`log_fit` records later.

    A run that exists while the fit runs shows up in the UI at once, and a process killed
    mid-fit leaves it behind to be closed as KILLED (``nearcast retrain`` does that).
    """
    client = settings.connect()
    return _create_run(client, settings.ensure_experiment(client), source, name, tags)


def log_fit(fitted: Fitted, spec: RunSpec, settings: MlflowSettings, register: bool = True,
            run_id: str | None = None) -> Logged:
    """Record ``fitted`` as a training run and (with ``register``) a new model version.

    ``run_id`` (from :func:`open_run`) records into that run; default a new run that began
    when the fit did.

    Raises:
        LoadCheckError: the registered version does not load back from the registry in a fresh
            process (:mod:`nearcast.models.load_check`); it stays registered without an alias
            (tagged ``nearcast.load_check=failed``) and the run is marked FAILED.
    """
    client = settings.connect()
    experiment_id = settings.ensure_experiment(client)
    run_id = run_id or _create_run(client, experiment_id, spec.source, spec.name(),
                                  spec.tags, fitted.started)
    forecaster, table, config = fitted.forecaster, fitted.table, fitted.forecaster.config
    with mlflow.start_run(run_id=run_id):
        mlflow.set_tags(spec.tags or {})  # also on a run opened before the fit
        if spec.data_report is not None:
            tracking.log_series_report(spec.data_report)
        _log_params(spec)
        digest = tracking.log_dataset(spec.frame, spec.source, name=spec.source.rsplit("/", 1)[-1])
        if spec.ensemble is None:
            _log_training(fitted.members[0], fitted.started)
        else:
            _log_members(client, experiment_id, run_id, fitted.members, fitted.started,
                         joint=fitted.joint)
            if fitted.interval_factor is not None:
                mlflow.log_metric("interval_factor", fitted.interval_factor)
        forecaster.meta = forecaster.meta.model_copy(update={
            "data_digest": digest, "data_source": spec.source,
            "nearcast_version": tracking.nearcast_version()})
        mlflow.log_metric("train_seconds", fitted.train_seconds)
        _log_refit(fitted)
        histories = [table.series(i)[: -config.horizon] for i in range(len(table.ids))]
        tracking.log_evaluation(fitted.evaluation, fitted.members[0].result.epochs, histories)
        mlflow.log_dict(scales_record(table.ids, histories, config.season), SCALES_ARTIFACT)
        scores = tracking.score_table(fitted.evaluation.scores)
        note = _run_note(spec, len(table.ids), len(table.values), scores)
        if fitted.refit is not None:
            note += ("\n\nServed model: refitted on all the data, holdout included (steps per "
                     f"network: {fitted.refit.steps}); the scores above are the selected model's.")
        mlflow.set_tag(tracking.NOTE, note)
        info = log_forecaster(forecaster)
        version = None
        if register:  # alias challenger only once the version loads back (a fresh process)
            trained_by = tracking.run_link(experiment_id, run_id)
            version = registry.register(
                client, settings.model_name, info.model_uri, run_id, {"data_digest": digest},
                verify=load_check.verifier(settings, client, forecaster),
                description=f"### Holdout scores (last {config.horizon} steps)\n\n{scores}\n\n"
                f"### Aliases\n\n- **challenger**: trained by run {trained_by} ({spec.name()})")
    return Logged(run_id, info.model_uri, version)


def log_failed_fit(error: FitDivergedError, spec: RunSpec, settings: MlflowSettings,
                   run_id: str | None = None) -> str:
    """Record a diverged fit as a FAILED run (curves up to the divergence); returns its id."""
    client = settings.connect()
    experiment_id = settings.ensure_experiment(client)
    run_id = run_id or _create_run(client, experiment_id, spec.source, spec.name(),
                                  spec.tags, error.started)
    with mlflow.start_run(run_id=run_id):
        mlflow.set_tags(spec.tags or {})
        _log_params(spec)
        if spec.ensemble is None:
            _log_training(error.members[-1], error.started)
        else:
            _log_members(client, experiment_id, run_id, error.members, error.started, True)
        mlflow.set_tag(tracking.NOTE, f"**{spec.name()}**: {error} at epoch "
                       f"{len(error.members[-1].result.epochs)}; nothing was registered.")
    client.set_terminated(run_id, "FAILED")
    return run_id


def _run_note(spec: RunSpec, series: int, points: int, scores: str) -> str:
    """The run's markdown description: the score table first, then what was trained on what."""
    rule = ", ".join(f"{k} `{v}`" for k, v in spec.grid.model_dump().items())
    note = (f"Holdout scores against the baselines (**{spec.name()}**):\n\n{scores}\n\n"
            f"Data: `{spec.source}`, {series} series, {points} points on the grid ({rule}).")
    if spec.data_report is not None:
        note += "\n\nPer-series data report: artifact `data/series_report.json`."
    return note


__all__ = ["Logged", "RunSpec", "log_failed_fit", "log_fit", "open_run"]
