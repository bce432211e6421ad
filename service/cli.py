"""The ``nearcast`` command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from nearcast.service.cli_errors import is_verbose, reported, set_verbose

app = typer.Typer(help="nearcast: recurrent forecasters, tracked in MLflow, served over HTTP.",
                  no_args_is_help=True, pretty_exceptions_enable=False)


@app.callback()
def _options(
    verbose: Annotated[bool, typer.Option(
        "--verbose", help="Show the full traceback when a command fails, and TensorFlow's "
        "start-up messages."
    )] = False,
) -> None:
    set_verbose(verbose)


def _quiet_tensorflow() -> None:
    """Keep TensorFlow's start-up chatter off the screen, unless ``nearcast --verbose``."""
    if not is_verbose():
        from nearcast.service.quiet import quiet_tensorflow

        quiet_tensorflow()


@app.command()
def quickstart(
    budget: Annotated[float | None, typer.Option(
        help="Training wall-clock budget, seconds (default: configs/quickstart.yaml's "
        "train.max_seconds).")] = None,
    serve: Annotated[bool, typer.Option(help="Keep serving after the demo request.")] = True,
) -> None:
    """Train on the bundled M4 Hourly data, register the champion, serve it, send a request."""
    _quiet_tensorflow()
    from nearcast.service.progress import training_progress

    with reported(), training_progress():  # one line per epoch: epoch, losses, budget left
        from nearcast.models.settings import get_mlflow_settings
        from nearcast.service.quickstart import run_quickstart
        from nearcast.service.settings import get_api_settings

        run_quickstart(get_mlflow_settings(), get_api_settings(), budget, serve_forever=serve)


@app.command()
def train(
    config: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="Job YAML file.")],
    register: Annotated[bool, typer.Option(help="Register the model (alias challenger).")] = True,
    strict: Annotated[bool, typer.Option(
        help="Fail on a series too short to train on, instead of leaving it out."
    )] = False,
) -> None:
    """Train a forecaster from a YAML job file, log it to MLflow and register it.

    The job file and the data are checked before TensorFlow loads; a mistake in either prints
    one line naming the file and the key or line (exit code 2).
    """
    _quiet_tensorflow()
    from nearcast.service.progress import training_progress

    with reported(), training_progress():  # one line per epoch: epoch, losses, budget left
        from nearcast.models.jobconfig import JobConfig
        from nearcast.pipelines.dataset import load_dataset

        job = JobConfig.from_yaml(config)
        data = load_dataset(job.data)
        _, skipped = job.usable_for_training(data.frame, strict)  # said before TensorFlow loads
        for uid, n in list(skipped.items())[:10]:
            typer.echo(f"skipped series {uid}: {n} points, training needs at least "
                       f"{job.min_series_length()}")
        if len(skipped) > 10:
            typer.echo(f"skipped ... and {len(skipped) - 10} more series")
        for line in data.prepared.summary_lines(skipped):
            typer.echo(line)
        from nearcast.models.estimator import Nearcast
        from nearcast.models.load_check import LoadCheckError
        from nearcast.models.settings import get_mlflow_settings
        from nearcast.models.train import train as train_model
        from nearcast.models.training import TrainingDivergedError

        settings = get_mlflow_settings()
        if job.model_name:
            settings = settings.model_copy(update={"model_name": job.model_name})
        try:
            result = train_model(Nearcast.from_job(job), settings, data, register=register,
                                 strict=strict)
        except (TrainingDivergedError, LoadCheckError) as exc:
            # Diverged: the run is FAILED, nothing registered. Load check failed: the version
            # is registered without any alias and tagged with the reason.
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None
    for method, s in result.evaluation.scores.items():
        typer.echo(f"{method:15s} sMAPE {s['smape']:6.2f}  MASE {s['mase']:5.2f}  "
                   f"OWA {s['owa']:.3f}")
    version = f" v{result.version.version} (alias challenger)" if result.version else ""
    typer.echo(f"run {result.run_id}; model {settings.model_name}{version}")


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Bind address.")] = None,
    port: Annotated[int | None, typer.Option(help="Port.")] = None,
    workers: Annotated[int | None, typer.Option(
        min=1, max=64, help="uvicorn worker processes (each loads the model and follows the "
        "alias; /metrics sums requests over all of them).")] = None,
) -> None:
    """Serve the champion model(s) over HTTP.

    Without API keys only a loopback host is served, unless NEARCAST_AUTH=off; the check runs
    before anything heavy is imported.
    """
    _quiet_tensorflow()
    import logging

    from pydantic import ValidationError

    from nearcast.service.edge import AuthConfigError, check_bind
    from nearcast.service.logs import LogSettings, configure_logging
    from nearcast.service.settings import get_api_settings

    for key, value in {"HOST": host, "PORT": port, "WORKERS": workers}.items():
        if value is not None:  # the app factory (in every worker) reads the environment
            os.environ[f"NEARCAST_{key}"] = str(value)
    try:
        api, log_settings = get_api_settings(), LogSettings()
        mode = check_bind(api)
    except AuthConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except ValidationError as exc:
        typer.echo(f"error: {_settings_problem(exc)}", err=True)
        raise typer.Exit(2) from None
    configure_logging(log_settings)
    logging.getLogger("nearcast.serve").log(
        logging.INFO if api.auth_enabled else logging.WARNING, mode,
        extra={"host": api.host, "port": api.port, "workers": api.workers})
    import uvicorn

    from nearcast.service.metrics import multiprocess_dir

    with multiprocess_dir(api.workers):  # Prometheus multiprocess mode for N > 1 workers
        uvicorn.run("nearcast.service.logs:app_factory", factory=True, host=api.host, port=api.port,
                    workers=api.workers, access_log=False, log_config=None)


def _settings_problem(exc: Exception) -> str:
    """One line from a pydantic ValidationError of a settings class (names the variable)."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return str(exc)
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = "_".join(str(p) for p in err["loc"]).upper()
        where = f"NEARCAST_{loc}: " if loc else ""
        parts.append(where + str(err["msg"]).removeprefix("Value error, "))
    return "; ".join(parts)


_NAME_HELP = "Registered model name; wins over --config. Default: NEARCAST_MODEL_NAME."
_CONFIG_HELP = "Job YAML: act on its model_name (unless --name is given)."


@app.command()
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
    _quiet_tensorflow()
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


@app.command()
def rollback(
    name: Annotated[str | None, typer.Option(help=_NAME_HELP)] = None,
    config: Annotated[Path | None, typer.Option(exists=True, dir_okay=False, help=_CONFIG_HELP)
                      ] = None,
) -> None:
    """Move 'champion' back to the previous champion (under the model's alias lock)."""
    _quiet_tensorflow()
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


@app.command()
def retrain(
    config: Annotated[Path, typer.Option(
        exists=True, dir_okay=False, help="Job YAML file (data, model, train, retrain)."
    )],
) -> None:
    """Retrain on the latest data; the challenger becomes champion only if it wins the gate.

    Exit code 0 when promoted or kept (the 'decision:' line says which), 3 when a retraining
    of the same model is already running, 1 when it failed (champion unchanged).
    """
    _quiet_tensorflow()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")  # job logs, not a tty
    import logging
    import signal

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


@app.command()
def scheduler(
    config: Annotated[list[Path], typer.Option(
        exists=True, dir_okay=False, help="Job YAML with retrain.schedule (repeatable)."
    )],
) -> None:
    """Run `nearcast retrain` for each job file on its cron schedule until SIGTERM/Ctrl-C."""
    from nearcast.service.retraining.schedule import run_scheduler

    try:
        code = run_scheduler(config)
    except ValueError as exc:  # names the file and the field
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@app.command()
def evaluate(
    data: Annotated[str | None, typer.Option(
        help="'m4_hourly', a data (or job) YAML file, or a long CSV/Parquet file, folder or glob "
        "(read with --config's data.columns); default: --config's data section."
    )] = None,
    model: Annotated[str | None, typer.Option(
        help="Model URI; wins over --config. Default models:/<--config's model_name, else "
        "NEARCAST_MODEL_NAME>@champion."
    )] = None,
    config: Annotated[Path | None, typer.Option(
        exists=True, dir_okay=False, help="Job YAML: evaluate its model (model_name) on its data "
        "(or on --data read with its column map)."
    )] = None,
    folds: Annotated[int, typer.Option(min=1, help="Rolling-origin folds.")] = 3,
    step: Annotated[int | None, typer.Option(
        min=1, help="Points between fold cutoffs; default the horizon."
    )] = None,
    horizon: Annotated[int | None, typer.Option(
        min=1, help="Points scored per fold; default (and at most) the model's horizon."
    )] = None,
    log: Annotated[bool, typer.Option(help="Record the backtest as an MLflow run.")] = False,
    strict: Annotated[bool, typer.Option(
        help="Fail on a series too short for the folds, instead of leaving it out."
    )] = False,
) -> None:
    """Backtest a stored model on rolling-origin folds, next to the naive baselines.

    A series too short for the folds is left out and named (``--strict`` fails instead); the
    summary counts the series scored and skipped. With ``--config job.yaml`` the job's model
    (``model_name``) is scored on the job's data, or on a ``--data`` file read with the job's
    column map; an explicit ``--model`` wins.
    """
    _quiet_tensorflow()
    with reported():
        from nearcast.models.evaluate_job import evaluate_model
        from nearcast.service.job_target import evaluation_data, model_uri, read_job

        job = read_job(config)
        read = evaluation_data(data, job, config)  # refused before MLflow loads
        from nearcast.models.settings import get_mlflow_settings

        settings = get_mlflow_settings()
        uri = model_uri(model, job, settings)
        result = evaluate_model(uri, read, settings, folds, step, horizon, log, strict)
    version = f" (v{result.version.version})" if result.version else ""
    typer.echo(f"{uri}{version} on {result.source}")
    typer.echo(result.backtest.summary())
    if result.run_id:
        typer.echo(f"logged run {result.run_id}")


@app.command()
def ui(port: Annotated[int, typer.Option(help="Port of the MLflow UI.")] = 5000) -> None:
    """Open the MLflow UI on nearcast's store (127.0.0.1); Ctrl-C/SIGTERM stops all of it."""
    from nearcast.models.settings import get_mlflow_settings
    from nearcast.service.ui import run_ui, ui_command

    settings = get_mlflow_settings()
    settings.connect()
    cmd = ui_command(sys.executable, settings.resolved_tracking_uri(),
                     settings.resolved_artifact_root(), port)
    typer.echo(f"MLflow UI: http://127.0.0.1:{port}")
    raise typer.Exit(run_ui(cmd))


if __name__ == "__main__":
    app()
