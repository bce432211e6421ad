"""The ``nearcast`` command line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="nearcast: recurrent forecasters, tracked in MLflow, served over HTTP.",
                  no_args_is_help=True, pretty_exceptions_enable=False)


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@app.command()
def quickstart(
    budget: Annotated[float, typer.Option(help="Training wall-clock budget, seconds.")] = 90.0,
    serve: Annotated[bool, typer.Option(help="Keep serving after the demo request.")] = True,
) -> None:
    """Train on the bundled M4 Hourly data, register the champion, serve it, send a request."""
    _quiet_tensorflow()
    from models.settings import get_mlflow_settings
    from service.quickstart import run_quickstart
    from service.settings import get_api_settings

    run_quickstart(get_mlflow_settings(), get_api_settings(), budget, serve_forever=serve)


@app.command()
def train(
    config: Annotated[Path, typer.Option(exists=True, dir_okay=False, help="Job YAML file.")],
    register: Annotated[bool, typer.Option(help="Register the model (alias challenger).")] = True,
) -> None:
    """Train a forecaster from a YAML job file, log it to MLflow and register it."""
    _quiet_tensorflow()
    from models.job import train_and_register
    from models.jobconfig import JobConfig
    from models.settings import get_mlflow_settings
    from pipelines.dataset import load_dataset

    job = JobConfig.from_yaml(config)
    settings = get_mlflow_settings()
    if job.model_name:
        settings = settings.model_copy(update={"model_name": job.model_name})
    data = load_dataset(job.data)
    result = train_and_register(data.frame, job.model, job.train, settings, data.source,
                                register=register, gap_policy=job.data.gap_policy,
                                ensemble=job.ensemble)
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
    """Serve the champion model(s) over HTTP."""
    _quiet_tensorflow()
    import uvicorn

    from service.metrics import multiprocess_dir
    from service.settings import get_api_settings

    api = get_api_settings()
    api = api.model_copy(update={k: v for k, v in
                                 {"host": host, "port": port, "workers": workers}.items() if v})
    with multiprocess_dir(api.workers):  # Prometheus multiprocess mode for N > 1 workers
        uvicorn.run("service.app:create_app", factory=True, host=api.host, port=api.port,
                    workers=api.workers, access_log=api.access_log)


@app.command()
def promote(
    version: Annotated[int, typer.Option(help="Model version to make champion.")],
    reason: Annotated[str, typer.Option(help="Why (recorded in a version tag).")] = "manual",
    name: Annotated[str | None, typer.Option(help="Registered model name.")] = None,
) -> None:
    """Point the 'champion' alias at a version (the previous champion is recorded)."""
    from models import registry
    from models.settings import get_mlflow_settings

    settings = get_mlflow_settings()
    try:
        ref = registry.promote(settings.connect(), name or settings.model_name, version, reason)
    except ValueError as exc:  # names the model and the versions there are
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"champion -> {ref.name} v{ref.version}")


@app.command()
def rollback(
    name: Annotated[str | None, typer.Option(help="Registered model name.")] = None,
) -> None:
    """Move 'champion' back to the previous champion."""
    from models import registry
    from models.settings import get_mlflow_settings

    settings = get_mlflow_settings()
    try:
        ref = registry.rollback(settings.connect(), name or settings.model_name)
    except ValueError as exc:  # no champion, or it records no previous one
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"champion -> {ref.name} v{ref.version}")


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
    import signal

    from service.locks import LockBusyError
    from service.retrain import EXIT_BUSY, EXIT_FAILED, RetrainError, run_retrain

    # SIGTERM (scheduler shutdown, Kubernetes) unwinds: the run is marked KILLED, lock released.
    previous = signal.signal(signal.SIGTERM, lambda *_: sys.exit(128 + signal.SIGTERM))
    try:
        outcome = run_retrain(config, echo=typer.echo)
    except LockBusyError as exc:
        typer.echo(f"already running: {exc}", err=True)
        raise typer.Exit(EXIT_BUSY) from None
    except (RetrainError, ValueError, OSError) as exc:
        typer.echo(f"retrain failed: {exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    typer.echo(outcome.summary())


@app.command()
def scheduler(
    config: Annotated[list[Path], typer.Option(
        exists=True, dir_okay=False, help="Job YAML with retrain.schedule (repeatable)."
    )],
) -> None:
    """Run `nearcast retrain` for each job file on its cron schedule until SIGTERM/Ctrl-C."""
    from service.scheduler import run_scheduler

    try:
        code = run_scheduler(config)
    except ValueError as exc:  # names the file and the field
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


@app.command()
def evaluate(
    data: Annotated[str, typer.Option(
        help="'m4_hourly', a data (or job) YAML file, or a long CSV/Parquet file, folder or glob."
    )],
    model: Annotated[str | None, typer.Option(
        help="Model URI; default models:/<NEARCAST_MODEL_NAME>@champion."
    )] = None,
    folds: Annotated[int, typer.Option(min=1, help="Rolling-origin folds.")] = 3,
    step: Annotated[int | None, typer.Option(
        min=1, help="Points between fold cutoffs; default the horizon."
    )] = None,
    horizon: Annotated[int | None, typer.Option(
        min=1, help="Points scored per fold; default (and at most) the model's horizon."
    )] = None,
    log: Annotated[bool, typer.Option(help="Record the backtest as an MLflow run.")] = False,
) -> None:
    """Backtest a stored model on rolling-origin folds, next to the naive baselines."""
    _quiet_tensorflow()
    from models.evaluate_job import evaluate_model
    from models.settings import get_mlflow_settings

    settings = get_mlflow_settings()
    uri = model or f"models:/{settings.model_name}@champion"
    try:
        result = evaluate_model(uri, data, settings, folds, step, horizon, log)
    except (ValueError, FileNotFoundError) as exc:  # the message names what and where
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    version = f" (v{result.version.version})" if result.version else ""
    typer.echo(f"{uri}{version} on {result.source}")
    typer.echo(result.backtest.summary())
    if result.run_id:
        typer.echo(f"logged run {result.run_id}")


@app.command()
def ui(port: Annotated[int, typer.Option(help="Port of the MLflow UI.")] = 5000) -> None:
    """Open the MLflow UI on nearcast's store (127.0.0.1)."""
    from models.settings import get_mlflow_settings

    settings = get_mlflow_settings()
    settings.connect()
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri",
           settings.resolved_tracking_uri(), "--host", "127.0.0.1", "--port", str(port)]
    root = settings.resolved_artifact_root()
    if root:
        cmd += ["--default-artifact-root", root]
    typer.echo(f"MLflow UI: http://127.0.0.1:{port}")
    raise typer.Exit(subprocess.call(cmd))


if __name__ == "__main__":
    app()
