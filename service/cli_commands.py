"""The lifecycle commands of ``nearcast``: promote, rollback, retrain, monitor, the scheduler.

They move registry aliases, run retraining jobs or score the served forecasts;
:mod:`nearcast.service.cli` registers them on the ``nearcast`` command line.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

from nearcast.service.cli_errors import quiet_tensorflow, reported

_NAME_HELP = "Registered model name; wins over --config. Default: NEARCAST_MODEL_NAME."
_CONFIG_HELP = "Job YAML: act on its model_name (unless --name is given)."


def promote(
    version: Annotated[int, typer.Option(help="Model version to make champion.")],
    reason: Annotated[str, typer.Option(help="Why (recorded in a version tag).")] = "manual",
    name: Annotated[str | None, typer.Option(help=_NAME_HELP)] = None,
    config: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help=_CONFIG_HELP)
                      ] = None,
) -> None:
    """Point 'champion' at a version once it loads in a fresh process (previous one recorded).

    Exit code 0 when moved or already champion, 1 when refused (champion unchanged), 2 when the
    job file has a mistake.
    """
    quiet_tensorflow()
    with reported():  # a job file mistake: one line, exit 2
        from nearcast.models.settings import get_mlflow_settings
        from nearcast.service.alias_moves import describe, promote_version
        from nearcast.service.job_target import model_name, read_job

        settings = get_mlflow_settings()
        target = model_name(name, read_job(config), settings)
    try:
        move = promote_version(settings, target, version, reason, typer.echo)
    except (ValueError, RuntimeError) as exc:  # no such version, load check, moved, busy
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(describe(move))


def rollback(
    name: Annotated[str | None, typer.Option(help=_NAME_HELP)] = None,
    config: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help=_CONFIG_HELP)
                      ] = None,
) -> None:
    """Move 'champion' back to the previous champion (under the model's alias lock)."""
    quiet_tensorflow()
    with reported():  # a job file mistake: one line, exit 2
        from nearcast.models.settings import get_mlflow_settings
        from nearcast.service.alias_moves import describe, rollback_champion
        from nearcast.service.job_target import model_name, read_job

        settings = get_mlflow_settings()
        target = model_name(name, read_job(config), settings)
    try:
        move = rollback_champion(settings, target, typer.echo)
    except (ValueError, RuntimeError) as exc:  # no champion, no previous one, lock busy
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(describe(move))


def retrain(
    config: Annotated[Path, typer.Option(
        exists=True, dir_okay=False, help="Job YAML file (data, model, train, retrain)."
    )],
) -> None:
    """Retrain on the latest data; the challenger becomes champion only if it wins the gate.

    Exit code 0 when promoted or kept (the 'decision:' line says which), 3 when a retraining
    of the same model is already running, 1 when it failed (champion unchanged).
    """
    quiet_tensorflow()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # job logs, not a tty
    import logging

    from nearcast.service.logs import configure_logging
    from nearcast.service.retraining.job import EXIT_BUSY, EXIT_FAILED, RetrainError, run_retrain
    from nearcast.service.retraining.lock import LockBusyError

    configure_logging()
    log = logging.getLogger("nearcast.retrain")
    # SIGTERM (scheduler shutdown, Kubernetes) unwinds: the run is marked KILLED, lock released.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    from nearcast.service.progress import training_progress

    try:
        with training_progress():
            outcome = run_retrain(config, echo=typer.echo)
    except LockBusyError as exc:
        log.warning("already running: %s", exc, extra={"event": "busy", "config": str(config)})
        typer.echo(f"already running: {exc}", err=True)
        raise typer.Exit(EXIT_BUSY) from None
    except (RetrainError, ValueError, OSError) as exc:
        log.error("retrain failed: %s", exc, extra={"event": "failed", "config": str(config),
                                                    "error": type(exc).__name__})
        typer.echo(f"retrain failed: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    d = outcome.decision
    verdict = "superseded" if outcome.superseded else d.outcome
    log.info("decision: %s: %s", verdict, d.reason, extra={
        "event": "decision", "model": outcome.model, "decision": verdict, "metric": d.metric,
        "challenger_score": d.challenger, "reference": d.reference_name,
        "reference_score": d.reference, "threshold": d.threshold,
        "challenger_version": outcome.challenger.version, "run_id": outcome.run_id,
        "champion_before": outcome.champion_before.version if outcome.champion_before else None,
        "champion_after": outcome.champion_after.version if outcome.champion_after else None})
    typer.echo(outcome.summary())


def monitor(
    config: Annotated[Path, typer.Option(
        exists=True, dir_okay=False, help="Job YAML file (model_name, data, monitor)."
    )],
) -> None:
    """Score served forecasts against their actuals per version; alarm; retrain if told to.

    Exit code 0 when no alarm is raised (also when the forecast log has nothing to score yet:
    the output says so), 4 when an alarm is raised (a version still serving was degraded for
    monitor.days days in a row), 1 when the pass failed, 2 when the job file has a mistake.
    """
    quiet_tensorflow()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with reported():  # a job file mistake: one line, exit 2 (before MLflow is imported)
        from nearcast.models.jobconfig import JobConfig

        JobConfig.from_yaml(config)
    from nearcast.service.logs import configure_logging
    from nearcast.service.monitor_job import EXIT_FAILED, MonitorError, run_monitor

    configure_logging()
    # SIGTERM (scheduler shutdown) unwinds: the run is marked FAILED, a retraining stopped.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        outcome = run_monitor(config, echo=typer.echo)
    except MonitorError as exc:
        typer.echo(f"monitor failed: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    typer.echo(outcome.report())
    raise typer.Exit(outcome.exit_code)


def scheduler(
    config: Annotated[list[Path], typer.Option(
        exists=True, dir_okay=False,
        help="Job YAML with retrain.schedule and/or monitor.schedule (repeatable)."
    )],
) -> None:
    """Run `nearcast retrain` / `nearcast monitor` for each job file on its cron schedules."""
    from nearcast.service.retraining.schedule import run_scheduler

    try:
        code = run_scheduler(config)
    except ValueError as exc:  # names the file and the field
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


__all__ = ["monitor", "promote", "retrain", "rollback", "scheduler"]
