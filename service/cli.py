"""The ``nearcast`` command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from nearcast.service.cli_commands import monitor, promote, retrain, rollback, scheduler
from nearcast.service.cli_errors import quiet_tensorflow, reported, set_verbose

app = typer.Typer(help="nearcast: recurrent forecasters, tracked in MLflow, served over HTTP.",
                  no_args_is_help=True, pretty_exceptions_enable=False)


DataOption = Annotated[str | None, typer.Option(
    help="'m4_hourly', a data (or job) YAML file, or a long CSV/Parquet file, folder or glob "
    "(read with --config's data.columns); default: --config's data section."
)]
ModelOption = Annotated[str | None, typer.Option(
    help="Model URI; wins over --config. Default models:/<--config's model_name, else "
    "NEARCAST_MODEL_NAME>@champion."
)]
"""``--data`` and ``--model`` of the commands that act on a stored model and a source."""


@app.callback()
def _options(
    verbose: Annotated[bool, typer.Option(
        "--verbose", help="Show the full traceback when a command fails, and TensorFlow's "
        "start-up messages."
    )] = False,
) -> None:
    set_verbose(verbose)


@app.command()
def quickstart(
    budget: Annotated[float | None, typer.Option(
        help="Training wall-clock budget, seconds (default: configs/quickstart.yaml's "
        "train.max_seconds).")] = None,
    serve: Annotated[bool, typer.Option(help="Keep serving after the demo request.")] = True,
) -> None:
    """Train on the bundled M4 Hourly data, register the champion, serve it, send a request."""
    quiet_tensorflow()
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
    distributed: Annotated[bool, typer.Option(
        help="Train as one worker of the cluster in TF_CONFIG (data-parallel, each worker on "
        "its shard of the series; only the chief logs and registers)."
    )] = False,
) -> None:
    """Train a forecaster from a YAML job file, log it to MLflow and register it.

    The job file and the data are checked before TensorFlow loads; a mistake in either prints
    one line naming the file and the key or line (exit code 2).
    """
    quiet_tensorflow()
    from nearcast.service.progress import training_progress

    with reported(), training_progress():  # one line per epoch: epoch, losses, budget left
        from nearcast.models.jobconfig import JobConfig
        from nearcast.pipelines.dataset import load_dataset

        cluster = None
        if distributed:
            from nearcast.models.distributed import Cluster

            cluster = Cluster.from_env()
        job = JobConfig.from_yaml(config)
        if cluster is not None and job.train.refit:
            from nearcast.models.jobconfig import JobConfigError

            raise JobConfigError(f"{config}: train.refit is not supported with --distributed; "
                                 "set train.refit: false or train without --distributed")
        data = load_dataset(job.data)
        usable, skipped = job.usable_for_training(data.frame, strict)  # before TensorFlow loads
        if cluster is not None:
            from nearcast.pipelines.schema import UNIQUE_ID

            cluster.local_batch(job.train.batch_size)
            cluster.check_series(usable[UNIQUE_ID].nunique())
        for uid, n in list(skipped.items())[:10]:
            typer.echo(f"skipped series {uid}: {n} points, training needs at least "
                       f"{job.min_series_length()}")
        if len(skipped) > 10:
            typer.echo(f"skipped ... and {len(skipped) - 10} more series")
        for line in data.prepared.summary_lines(skipped):
            typer.echo(line)
        from nearcast.models.distributed import WorkerLostError
        from nearcast.models.estimator import Nearcast
        from nearcast.models.load_check import LoadCheckError
        from nearcast.models.settings import get_mlflow_settings
        from nearcast.models.train import train as train_model
        from nearcast.models.train import train_on_cluster
        from nearcast.models.training import TrainingDivergedError

        settings = get_mlflow_settings()
        if job.model_name:
            settings = settings.model_copy(update={"model_name": job.model_name})
        try:
            if cluster is None:
                result = train_model(Nearcast.from_job(job), settings, data, register=register,
                                     strict=strict)
            else:
                typer.echo(f"worker {cluster.rank} of {cluster.count} "
                           f"({'chief' if cluster.is_chief else 'worker'}): waiting for the "
                           "cluster")
                part = train_on_cluster(Nearcast.from_job(job), settings, data, cluster,
                                        register=register, strict=strict)
                typer.echo(f"worker {cluster.rank} of {cluster.count}: weights {part.weights}")
                if part.trained is None:
                    typer.echo(f"worker {cluster.rank} of {cluster.count}: trained on its "
                               "shard; the chief (worker 0) records the run")
                    return
                result = part.trained
        except (TrainingDivergedError, LoadCheckError, WorkerLostError) as exc:
            # Diverged or a worker lost: the run is FAILED, nothing registered. Load check
            # failed: the version is registered without any alias and tagged with the reason.
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
    quiet_tensorflow()
    import logging

    from pydantic import ValidationError

    from nearcast.service.edge import AuthConfigError, check_bind
    from nearcast.service.logs import LogSettings, configure_logging
    from nearcast.service.settings import get_api_settings

    for key, value in {"HOST": host, "PORT": port, "WORKERS": workers}.items():
        if value is not None:  # the app factory (in every worker) reads the environment
            os.environ[f"NEARCAST_{key}"] = str(value)
    from nearcast.models.settings import get_forecast_log_settings

    try:
        api, log_settings = get_api_settings(), LogSettings()
        mode = check_bind(api)
    except AuthConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except ValidationError as exc:
        typer.echo(f"error: {_settings_problem(exc)}", err=True)
        raise typer.Exit(2) from None
    try:
        get_forecast_log_settings()  # every worker reads them: refuse bad ones once, here
    except ValidationError as exc:
        typer.echo(f"error: {_settings_problem(exc, 'NEARCAST_FORECAST_LOG_')}", err=True)
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


def _settings_problem(exc: Exception, prefix: str = "NEARCAST_") -> str:
    """One line from a pydantic ValidationError of a settings class (names the variable)."""
    from pydantic import ValidationError

    if not isinstance(exc, ValidationError):
        return str(exc)
    parts = []
    for err in exc.errors(include_url=False, include_input=False):
        loc = "_".join(str(p) for p in err["loc"]).upper()
        where = f"{prefix}{loc}: " if loc else ""
        parts.append(where + str(err["msg"]).removeprefix("Value error, "))
    return "; ".join(parts)


@app.command()
def evaluate(
    data: DataOption = None,
    model: ModelOption = None,
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
    engine: Annotated[str, typer.Option(
        help="'local' (this process) or 'spark' (each series' folds forecast on a Spark "
        "executor; the same scores)."
    )] = "local",
    master: Annotated[str | None, typer.Option(
        help="Spark master for --engine spark (default local[*]; under spark-submit, the "
        "submit's).")] = None,
) -> None:
    """Backtest a stored model on rolling-origin folds, next to the naive baselines.

    A series too short for the folds is left out and named (``--strict`` fails instead); the
    summary counts the series scored and skipped. With ``--config job.yaml`` the job's model
    (``model_name``) is scored on the job's data, or on a ``--data`` file read with the job's
    column map; an explicit ``--model`` wins.
    """
    quiet_tensorflow()
    with reported():
        from nearcast.models.evaluate_job import evaluate_model
        from nearcast.service.job_target import evaluation_data, model_uri, read_job

        if engine not in ("local", "spark"):
            raise typer.BadParameter(f"--engine must be 'local' or 'spark', not {engine!r}")
        job = read_job(config)
        read = evaluation_data(data, job, config)  # refused before MLflow loads
        from nearcast.models.settings import get_mlflow_settings

        settings = get_mlflow_settings()
        uri = model_uri(model, job, settings)
        on = None
        if engine == "spark":
            from nearcast.service.spark_evaluate import spark_backtest

            on = spark_backtest(uri, settings, master)
        result = evaluate_model(uri, read, settings, folds, step, horizon, log, strict,
                                engine=on)
    version = f" (v{result.version.version})" if result.version else ""
    typer.echo(f"{uri}{version} on {result.source}")
    typer.echo(result.backtest.summary())
    if result.run_id:
        typer.echo(f"logged run {result.run_id}")


@app.command()
def forecast(
    out: Annotated[str, typer.Option(
        help="Where to write: a .parquet file, a folder (part-*.parquet), or a database URL "
        "(sqlite:///f.db, postgresql+psycopg2://...) with --table."
    )],
    data: DataOption = None,
    model: ModelOption = None,
    config: Annotated[Path | None, typer.Option(
        exists=True, dir_okay=False, help="Job YAML: forecast with its model (model_name), on "
        "its data (or on --data read with its column map)."
    )] = None,
    table: Annotated[str | None, typer.Option(help="Table, when --out is a database URL.")] = None,
    horizon: Annotated[int | None, typer.Option(
        min=1, help="Steps per series; default (and at most) the model's horizon."
    )] = None,
    strict: Annotated[bool, typer.Option(
        help="Fail on the first series the model refuses, instead of reporting and skipping it."
    )] = False,
    replace: Annotated[bool, typer.Option(help="Overwrite an existing output.")] = False,
    append: Annotated[bool, typer.Option(help="Add rows to an existing table.")] = False,
    engine: Annotated[str, typer.Option(
        help="'local' (this process) or 'spark' (series grouped onto Spark executors; a "
        "Parquet file or folder --data, written to a folder --out, is read and written by "
        "Spark itself)."
    )] = "local",
    master: Annotated[str | None, typer.Option(
        help="Spark master for --engine spark (default local[*]; under spark-submit, the "
        "submit's).")] = None,
) -> None:
    """Forecast every series of a source and write them with their provenance.

    Each series goes through the model's own pipeline rules, as in the API. A series the model
    refuses (a data problem of its own, too short, values <= 0 under log scaling, missing
    future-known covariates) is reported and skipped; ``--strict`` fails instead. Rows carry
    ``model``, ``model_name``, ``model_version``, ``run_id`` and ``origin``.
    """
    quiet_tensorflow()
    with reported():
        from nearcast.models.forecast_job import run_forecast_job
        from nearcast.service.job_target import evaluation_data, model_uri, read_job

        if engine not in ("local", "spark"):
            raise typer.BadParameter(f"--engine must be 'local' or 'spark', not {engine!r}")
        job = read_job(config)
        spark_reads = False  # Parquet in, a folder out: Spark reads and writes them itself
        if engine == "spark" and config is None and table is None and not append:
            from nearcast.service.spark_batch import reads_itself

            spark_reads = reads_itself(data, out)
        read = None if spark_reads else evaluation_data(data, job, config)  # before MLflow
        from nearcast.models.settings import get_mlflow_settings

        settings = get_mlflow_settings()
        uri = model_uri(model, job, settings)
        hook, note = None, _SPARK_NOT_LOGGED
        if read is None:
            from nearcast.service.spark_batch import forecast_parquet_on_spark

            result = forecast_parquet_on_spark(uri, str(data), settings, out, master,
                                               horizon=horizon, strict=strict, replace=replace)
        else:
            from nearcast.models.monitoring.batch_log import open_batch_log

            run = None
            if engine == "spark":
                from nearcast.service.spark_batch import spark_engine

                run = spark_engine(uri, settings, master)
            else:
                hook, note = open_batch_log()
            result = run_forecast_job(uri, read, settings, out, table=table, horizon=horizon,
                                      strict=strict, replace=replace, append=append, engine=run,
                                      on_chunk=hook)
    p = result.provenance
    version = f" (v{p.version})" if p.version is not None else ""
    typer.echo(f"{uri}{version} on {data if read is None else read.spec}")
    typer.echo(result.summary.text())
    typer.echo(f"wrote {result.summary.rows_written} rows to {result.out} in "
               f"{result.seconds:.1f} s")
    typer.echo(hook.line() if hook is not None else note)


_SPARK_NOT_LOGGED = "forecast log: --engine spark does not write the forecast log; not logged"


for _command in (promote, rollback, retrain, monitor, scheduler):
    app.command()(_command)


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
