"""The retraining job: lock, fresh data, challenger, same-window scores, gate, promote or keep.

Every step before the promotion can fail (bad data, a NaN loss, registry errors) and none of
them touches ``champion``: the alias moves in one registry call, the last step that can fail.
A diverged challenger is never registered (:func:`nearcast.models.train.train`). The
decision, both scores and the baselines go into a ``retrain`` MLflow run (the challenger's
training run is its child) and into tags on the model versions.

The retraining lock is held for the whole run; the promotion itself happens under the model's
alias lock (shared with ``promote`` and ``rollback``) and only after the challenger passed a
fresh-process load check again and the retraining lock is confirmed alive. It is a
compare-and-set: when ``champion`` moved during the run (say, a ``rollback``), the retraining
does not move it back; it says so and records the decision as ``superseded``.

TensorFlow is imported only once the lock is held, so a second retraining of the same model
says "already running" within a second or two instead of after loading TensorFlow.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mlflow import MlflowClient

from nearcast.models import registry
from nearcast.models.config import LockConfig
from nearcast.models.jobconfig import JobConfig, read_retrain_section
from nearcast.models.settings import MlflowSettings, get_mlflow_settings
from nearcast.service.retraining import records
from nearcast.service.retraining.gate import TAG_PREFIX, Decision, decide
from nearcast.service.retraining.lock import HeldLock, alias_lock, retrain_lock
from nearcast.service.retraining.records import Echo, version_label

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from nearcast.models.forecaster import Forecaster
    from nearcast.pipelines.grid import GridRule

EXIT_OK, EXIT_FAILED, EXIT_BUSY = 0, 1, 3
"""Exit codes of ``nearcast retrain``: promoted and kept are both 0 (the output says which)."""

class RetrainError(RuntimeError):
    """The retraining failed; the message says where and that ``champion`` was not moved."""


@dataclass(frozen=True)
class RetrainOutcome:
    """What a finished retraining decided.

    Attributes:
        model: registered model name.
        decision: the gate's verdict and reason.
        run_id: the ``retrain`` MLflow run.
        training_run_id: the challenger's training run (a child of ``run_id``).
        challenger: the registered challenger version.
        champion_before: the champion when the job started (None on a first run).
        champion_after: the champion now (the challenger when promoted).
        horizon: points per series both models were scored on (the most recent ones).
        scores: ``challenger``, ``champion`` (when there was one) and each baseline ->
            metric -> value, all on the same windows.
        superseded: why a winning challenger was not promoted after all (``champion`` moved
            during the run); None otherwise.
    """

    model: str
    decision: Decision
    run_id: str
    training_run_id: str
    challenger: registry.VersionRef
    champion_before: registry.VersionRef | None
    champion_after: registry.VersionRef | None
    horizon: int
    scores: dict[str, dict[str, float]]
    superseded: str | None = None

    def summary(self) -> str:
        """Scores side by side, then one ``decision:`` line (``promoted`` or ``kept``)."""
        lines = [f"scores on the last {self.horizon} points of each series:"]
        lines += [f"  {who:16s} sMAPE {s['smape']:7.3f}  MASE {s['mase']:7.3f}  OWA "
                  f"{s['owa']:6.3f}" for who, s in self.scores.items()]
        v, was = self.challenger.version, version_label(self.champion_before)
        if self.superseded:
            verdict = (f"not promoted: {self.superseded}; v{v} stays challenger, champion is "
                       f"{version_label(self.champion_after)}")
        elif self.decision.promote:
            verdict = f"promoted: {self.model} v{v} is champion (was {was})"
        else:
            verdict = f"kept: champion stays {was}; v{v} stays challenger"
        lines.append(f"decision: {verdict} — {self.decision.reason}")
        return "\n".join(lines)


def run_retrain(
    config: str | Path, settings: MlflowSettings | None = None, echo: Echo = print
) -> RetrainOutcome:
    """Retrain the model of a job file, holding that model's retraining lock.

    Args:
        config: job YAML (``data``, ``model``, ``train``, ``retrain`` sections).
        settings: the MLflow store; default from the environment (``NEARCAST_HOME`` ...).
        echo: receives one progress line per step.

    Raises:
        LockBusyError: another retraining of the model is running.
        RetrainError: anything failed; ``champion`` is unchanged.
        ValueError: the job file is invalid (naming the file).
    """
    name, cfg = read_retrain_section(config)
    settings = settings or get_mlflow_settings()
    if name:
        settings = settings.model_copy(update={"model_name": name})
    with retrain_lock(settings, settings.model_name, cfg.lock, warn=echo) as held:
        echo(f"holding the {held}")
        try:
            job = JobConfig.from_yaml(config)
        except ValueError as exc:
            raise ValueError(f"{config}: {exc}") from exc
        return _retrain_locked(job, settings, held, echo)


def _retrain_locked(job: JobConfig, settings: MlflowSettings, held: HeldLock, echo: Echo
                    ) -> RetrainOutcome:
    name = settings.model_name
    before: registry.VersionRef | None = None
    try:
        client = settings.connect()
        experiment_id = settings.ensure_experiment(client)
        records.close_dead_runs(client, experiment_id, name, echo)
        before = registry.version_for_alias(client, name, registry.CHAMPION)
        run_id = client.create_run(experiment_id, run_name=f"retrain {name}",
                                   tags=records.run_tags(job, name, before)).info.run_id
    except Exception as exc:
        raise RetrainError(f"retraining {name} could not start: {type(exc).__name__}: {exc}; "
                           f"champion unchanged ({version_label(before)})") from exc
    echo(f"retraining {name} (champion {version_label(before)}), MLflow run {run_id}")
    steps: list[str] = []

    def step(line: str) -> None:  # the last step names where a failure happened
        steps.append(line)
        echo(line)

    try:
        outcome = _challenge(job, settings, client, run_id, before, held, step)
    except BaseException as exc:
        records.record_failure(client, run_id, exc, echo)
        if not isinstance(exc, Exception):
            raise
        where = f" at '{steps[-1]}'" if steps else ""
        moved = [line for line in steps if line.startswith("champion -> ")]
        state = moved[-1] if moved else f"champion unchanged ({version_label(before)})"
        raise RetrainError(f"retraining {name} failed{where}: {type(exc).__name__}: {exc}; "
                           f"{state}") from exc
    records.record_finish(client, outcome.run_id, outcome.champion_after, echo)
    return outcome


def _challenge(
    job: JobConfig, settings: MlflowSettings, client: MlflowClient, run_id: str,
    before: registry.VersionRef | None, held: HeldLock, echo: Echo,
) -> RetrainOutcome:
    from nearcast.models.estimator import Nearcast
    from nearcast.models.train import train
    from nearcast.pipelines.dataset import load_dataset

    name = settings.model_name
    echo(f"reading {job.data.describe()}")
    data = load_dataset(job.data)
    echo("\n".join(data.prepared.summary_lines()))
    champion = _load_champion(name, before, job, data.grid, echo)
    weights = _warm_start(job, champion, client, run_id, echo)
    echo("training the challenger")
    trained = train(Nearcast.from_job(job), settings, data, warm_start=weights,
                    tags={"mlflow.parentRunId": run_id})
    if trained.version is None:  # register=True always registers; keep mypy and readers sure
        raise RetrainError("the challenger was not registered")
    challenger = trained.version
    echo(f"challenger registered: {name} v{challenger.version} (run {trained.run_id})")
    horizon, scores = _score(trained.forecaster, champion, data.frame)
    decision = decide(job.retrain, scores["challenger"], scores.get("champion"), scores)
    records.log_scores(client, run_id, scores, decision, horizon)
    after, superseded = before, None
    if decision.promote:
        after, superseded = _promote(settings, client, job.retrain.lock, held, challenger, before,
                                     decision, echo)
    if decision.promote and superseded is None:
        try:  # the promotion stands; a record that fails now is only reported
            records.record_decision(client, run_id, challenger, before, decision)
        except Exception as exc:
            echo(f"warning: promoted, but recording the decision failed: {exc}")
    else:
        records.record_decision(client, run_id, challenger, before, decision, superseded)
    return RetrainOutcome(name, decision, run_id, trained.run_id, challenger, before, after,
                          horizon, scores, superseded)


def _promote(
    settings: MlflowSettings, client: MlflowClient, lock: LockConfig, held: HeldLock,
    challenger: registry.VersionRef, before: registry.VersionRef | None, decision: Decision,
    echo: Echo,
) -> tuple[registry.VersionRef | None, str | None]:
    """Load-check the challenger, then compare-and-set ``champion`` under the alias lock.

    Returns:
        ``(champion now, None)`` when promoted; ``(champion now, why not)`` when ``champion``
        moved since the run read it (nothing was moved).

    Raises:
        LoadCheckError: the challenger does not load in a fresh process any more.
        LockLostError: the retraining lock's connection is gone (PostgreSQL).
        LockBusyError: the alias lock stayed busy.
    """
    from nearcast.models.load_check import verify_version

    name, v = challenger.name, challenger.version
    echo(f"checking that {name} v{v} loads back from the registry")
    echo(verify_version(settings, client, challenger))
    echo(f"promoting {name} v{v}: {decision.reason}")
    with alias_lock(settings, name, lock, warn=echo):
        held.ensure_held()  # right before the move: a lost retraining lock fails the run here
        try:
            registry.move_champion(client, name, v, decision.reason, who="nearcast retrain",
                                   expected=before.version if before else None)
        except registry.AliasMovedError:
            now = registry.version_for_alias(client, name, registry.CHAMPION)
            why = (f"champion moved from {version_label(before)} to {version_label(now)} during "
                   "this retraining (compared against the old one)")
            echo(f"not promoted: {why}")
            return now, why
    echo(f"champion -> {name} v{v}")
    return challenger, None


def _load_champion(
    name: str, before: registry.VersionRef | None, job: JobConfig, grid: GridRule, echo: Echo
) -> Forecaster | None:
    """The champion's forecaster; ValueError unless its season and grid rule are the job's."""
    if before is None:
        return None
    from nearcast.models.artifact import load_forecaster

    champion = load_forecaster(f"models:/{name}/{before.version}")
    clashes = grid.differences(champion.meta.grid)
    if job.model.season != champion.config.season:
        clashes["season"] = (job.model.season, champion.config.season)
    if clashes:
        differ = ", ".join(f"{k} {ours!r} (champion {its!r})" for k, (ours, its) in clashes.items())
        raise ValueError(f"the job differs from champion v{before.version} in {differ}: their "
                         "scores are not comparable; promote by hand with `nearcast promote`")
    echo(f"loaded champion v{before.version}")
    return champion


def _warm_start(
    job: JobConfig, champion: Forecaster | None, client: MlflowClient, run_id: str, echo: Echo
) -> list[np.ndarray] | None:
    """The champion's weights when the job asks for a warm start and the networks match."""
    if not job.retrain.warm_start:
        return None
    weights = None
    if champion is None:
        note = "from scratch: no champion yet"
    elif job.ensemble is not None:
        note = "from scratch: an ensemble's members start from scratch"
    elif champion.config != job.model:
        ours, theirs = job.model.model_dump(), champion.config.model_dump()
        differ = sorted(k for k in ours if ours[k] != theirs[k])
        note = f"from scratch: the champion's model config differs in {differ}"
    else:
        note, weights = "from the champion's weights", champion.model.get_weights()
    echo(f"warm start: {note}")
    client.set_tag(run_id, f"{TAG_PREFIX}warm_start", note)
    return weights


def _score(
    challenger: Forecaster, champion: Forecaster | None, frame: pd.DataFrame
) -> tuple[int, dict[str, dict[str, float]]]:
    """Both models and the baselines on the same most-recent ``h`` points of every series.

    The challenger was trained with the last ``horizon >= h`` points held out, so neither
    model has seen the scored points (the champion was trained on older data).
    """
    from nearcast.models.backtest import backtest

    h = challenger.config.horizon
    if champion is not None:
        h = min(h, champion.config.horizon)
    new = backtest(challenger, frame, 1, horizon=h).aggregate
    scores = {"challenger": new["model"]}
    if champion is not None:
        scores["champion"] = backtest(champion, frame, 1, horizon=h).aggregate["model"]
    return h, scores | {k: v for k, v in new.items() if k != "model"}


__all__ = ["EXIT_BUSY", "EXIT_FAILED", "EXIT_OK", "RetrainError", "RetrainOutcome", "run_retrain"]
