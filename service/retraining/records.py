"""What a retraining records in MLflow: the ``retrain`` run, its scores, the decision.

The retrain run (tag ``nearcast.kind=retrain``) holds every method's scores on the scored
points and the decision; the challenger's training run is its child. Decision tags also go on
the model versions, so the registry shows why a version was or was not promoted.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from mlflow import MlflowClient
from mlflow.entities import Metric, RunTag

from nearcast.models.registry import VersionRef
from nearcast.service.retraining.gate import TAG_PREFIX, Decision

if TYPE_CHECKING:
    from nearcast.models.jobconfig import JobConfig

RUN_KIND = "retrain"

Echo = Callable[[str], None]


def version_label(ref: VersionRef | None) -> str:
    """``v3``, or ``none`` when there is no version."""
    return f"v{ref.version}" if ref else "none"


def run_tags(job: JobConfig, name: str, before: VersionRef | None) -> dict[str, str]:
    """Tags of a new retrain run: kind, model, the champion it challenges and the gate."""
    from nearcast.models import tracking  # loads TensorFlow: only once the lock is held

    return tracking.run_tags(job.data.describe(), kind=RUN_KIND) | {
        "nearcast.model": name, f"{TAG_PREFIX}champion_before": version_label(before),
        f"{TAG_PREFIX}metric": job.retrain.metric, f"{TAG_PREFIX}margin": str(job.retrain.margin),
        f"{TAG_PREFIX}warm_start": str(job.retrain.warm_start).lower(),
    }


def log_scores(
    client: MlflowClient, run_id: str, scores: dict[str, dict[str, float]], decision: Decision,
    horizon: int,
) -> None:
    """Every score (``<who>_<metric>``), the bar and the improvement, on the retrain run.

    The run's description (``mlflow.note.content``) gets the score table and the gate's verdict.
    """
    from nearcast.models.tracking import NOTE, score_table

    now = int(time.time() * 1000)
    values = {f"{who}_{k}": v for who, s in scores.items() for k, v in s.items()}
    values |= {"threshold": decision.threshold, "improvement": decision.improvement,
               "scored_points": float(horizon)}
    verdict = "promote the challenger" if decision.promote else "keep the champion"
    note = (f"### Scores on the same last {horizon} points of every series\n\n"
            f"{score_table(scores)}\n\n**Gate**: {verdict} — {decision.reason}")
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in values.items()],
                     tags=[RunTag(NOTE, note)])


def record_decision(
    client: MlflowClient, run_id: str, challenger: VersionRef,
    before: VersionRef | None, decision: Decision, superseded: str | None = None,
) -> None:
    """The decision on the retrain run and on the model versions (written once it holds).

    ``superseded``: why a winning challenger was not promoted (``champion`` moved during the
    run); the decision is then recorded as ``superseded``, with that reason.
    """
    gate = decision.tags()
    if superseded:
        gate |= {f"{TAG_PREFIX}decision": "superseded", f"{TAG_PREFIX}superseded": superseded}
    promoted = decision.promote and not superseded
    tags = gate | {f"{TAG_PREFIX}challenger_version": f"v{challenger.version}",
                   f"{TAG_PREFIX}training_run_id": challenger.run_id}
    client.log_batch(run_id, metrics=[Metric("promoted", float(promoted),
                                             int(time.time() * 1000), 0)],
                     tags=[RunTag(k, v) for k, v in tags.items()])
    version_tags = gate | {f"{TAG_PREFIX}run_id": run_id,
                           f"{TAG_PREFIX}champion_before": version_label(before)}
    for key, value in version_tags.items():
        client.set_model_version_tag(challenger.name, str(challenger.version), key, value)
    if not promoted:  # a promotion writes its own line (models.registry.move_champion)
        from nearcast.models.registry import note_alias

        why = f"superseded: {superseded}" if superseded else decision.reason
        note_alias(client, challenger.name, challenger.version,
                   f"- stays **challenger**: the retrain gate kept it out — {why}")
    if before is not None and not decision.promote:  # kept (not superseded: it lost nothing)
        client.set_model_version_tag(before.name, str(before.version),
                                     f"{TAG_PREFIX}last_challenge",
                                     f"v{challenger.version} kept out: {decision.reason}")


def record_finish(
    client: MlflowClient, run_id: str, champion: VersionRef | None, echo: Echo
) -> None:
    """Close the run; the decision already stands, so a failure here is only reported."""
    try:
        client.set_tag(run_id, f"{TAG_PREFIX}champion_after", version_label(champion))
        client.set_terminated(run_id, "FINISHED")
    except Exception as exc:
        echo(f"warning: could not close MLflow run {run_id}: {exc}")


def record_failure(client: MlflowClient, run_id: str, exc: BaseException, echo: Echo) -> None:
    """Mark the run FAILED (KILLED on interrupts) with the error; best effort."""
    failed = isinstance(exc, Exception)
    status, what = ("FAILED", "") if failed else ("KILLED", "interrupted: ")
    try:
        client.set_tag(run_id, f"{TAG_PREFIX}decision", "failed")
        client.set_tag(run_id, f"{TAG_PREFIX}error",
                       f"{what}{type(exc).__name__}: {exc}"[:4000])
        client.set_terminated(run_id, status)
    except Exception as inner:  # the registry may be what failed
        echo(f"warning: could not record the failure in MLflow run {run_id}: {inner}")


def close_dead_runs(client: MlflowClient, experiment_id: str, name: str, echo: Echo) -> None:
    """Mark retrain runs of ``name`` still RUNNING (and their children) KILLED.

    We hold the lock, so their processes are gone (killed or crashed mid-run).
    """
    quoted = name.replace("'", "\\'")
    running = "attributes.status = 'RUNNING'"
    dead = client.search_runs(
        [experiment_id], f"tags.`nearcast.kind` = '{RUN_KIND}' and tags.`nearcast.model` = "
                         f"'{quoted}' and {running}", max_results=100)
    for run in dead:
        dead_id = run.info.run_id
        for child in client.search_runs(
                [experiment_id], f"tags.`mlflow.parentRunId` = '{dead_id}' and {running}"):
            client.set_terminated(child.info.run_id, "KILLED")
        client.set_tag(dead_id, f"{TAG_PREFIX}decision", "failed")
        client.set_tag(dead_id, f"{TAG_PREFIX}error", "the process ended before finishing")
        client.set_terminated(dead_id, "KILLED")
        echo(f"marked the unfinished retrain run {dead_id} KILLED")


__all__ = ["RUN_KIND", "Echo", "close_dead_runs", "log_scores", "record_decision",
           "record_failure", "record_finish", "run_tags", "version_label"]
