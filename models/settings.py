"""MLflow settings (env prefix ``NEARCAST_``), read through a cached getter.

The embedded default needs no server: a SQLite store and an artifact folder under a
project-local ``.nearcast/`` directory, created on first use (never at import).

With a remote tracking server (``http://...``), every MLflow HTTP call (registry, runs and the
artifacts proxied by the server) has a timeout and a bounded number of retries, so a slow or
restarting server fails a call within seconds instead of hanging training or serving. MLflow
reads these limits from its ``MLFLOW_HTTP_REQUEST_*`` variables at each call: :meth:`connect`
sets them from the ``registry_*`` settings (nearcast's settings win over values already set).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path

import mlflow
from filelock import FileLock
from mlflow import MlflowClient
from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class MlflowSettings(BaseSettings):
    """Where runs and models live."""

    model_config = SettingsConfigDict(env_prefix="NEARCAST_", extra="ignore")

    home: Path = Field(Path(".nearcast"), description="Folder of the embedded default store.")
    tracking_uri: str | None = Field(
        None, description="MLflow tracking URI; default sqlite:///<home>/mlflow.db."
    )
    artifact_root: str | None = Field(
        None, description="Artifact location for new experiments; default <home>/artifacts."
    )
    experiment: str = "nearcast"
    model_name: str = "nearcast-m4-hourly"
    registry_timeout: int = Field(
        10, ge=1, le=3600,
        description="Seconds an HTTP call to a remote tracking server may wait to connect or "
        "for data (MLFLOW_HTTP_REQUEST_TIMEOUT).",
    )
    registry_retries: int = Field(
        3, ge=0, le=10,
        description="Retries of a failed HTTP call to a remote tracking server (refused, "
        "timed out, 429/5xx) (MLFLOW_HTTP_REQUEST_MAX_RETRIES).",
    )
    registry_backoff: int = Field(
        1, ge=0, le=120,
        description="Backoff factor (seconds) between retries: waits 0, 2x, 4x, ... plus up to "
        "1 s jitter (MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR).",
    )

    def resolved_tracking_uri(self) -> str:
        """The tracking URI, defaulting to the embedded SQLite store."""
        if self.tracking_uri:
            return self.tracking_uri
        return f"sqlite:///{(self.home / 'mlflow.db').resolve()}"

    def resolved_artifact_root(self) -> str | None:
        """Artifact root for new experiments (None lets a remote server decide)."""
        if self.artifact_root:
            return self.artifact_root
        if self.tracking_uri:
            return None
        return (self.home / "artifacts").resolve().as_uri()

    def http_env(self) -> dict[str, str]:
        """MLflow's HTTP limits from these settings (what :meth:`connect` puts in the env).

        A call to an unreachable server gives up after ``registry_retries + 1`` attempts of at
        most ``registry_timeout`` seconds each plus the backoff waits between them.
        """
        return {"MLFLOW_HTTP_REQUEST_TIMEOUT": str(self.registry_timeout),
                "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(self.registry_retries),
                "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(self.registry_backoff)}

    def connect(self) -> MlflowClient:
        """Point MLflow at the store (creating the embedded folders) and return a client.

        Also sets MLflow's HTTP timeout, retries and backoff (:meth:`http_env`) for this
        process: MLflow reads them at every call, including artifact up- and downloads.
        """
        if not self.tracking_uri:
            (self.home / "artifacts").mkdir(parents=True, exist_ok=True)
        os.environ.update(self.http_env())
        uri = self.resolved_tracking_uri()
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        with _sqlite_creation_lock(uri):
            return MlflowClient(tracking_uri=uri, registry_uri=uri)

    def ensure_experiment(self, client: MlflowClient) -> str:
        """Id of the configured experiment, created with the artifact root if missing.

        The experiment gets a description (the ``mlflow.note.content`` tag the UI shows) unless
        it has one already.
        """
        found = client.get_experiment_by_name(self.experiment)
        if found is None:
            experiment_id = str(client.create_experiment(self.experiment,
                                                         self.resolved_artifact_root()))
        elif "mlflow.note.content" in (found.tags or {}):
            return str(found.experiment_id)
        else:
            experiment_id = str(found.experiment_id)
        client.set_experiment_tag(experiment_id, "mlflow.note.content", EXPERIMENT_NOTE.format(
            model=self.model_name))
        return experiment_id


EXPERIMENT_NOTE = """nearcast forecasters: every run of `nearcast` lands here.

- **train …** runs (`nearcast train`): one model trained on a job's data; the description \
holds its holdout scores against the seasonal-naive baselines, the params `data.*` hold the grid \
rule and the artifact `data/series_report.json` what was done to each series.
- **retrain …** runs (`nearcast retrain`): the scheduled challenge; a child `train` run trains \
the challenger and the gate's decision is in the tags `nearcast.decision*`.
- **backtest …** runs (`nearcast evaluate --log`): rolling-origin scores of a registered \
version, per fold.

Registered model `{model}`: aliases `champion` (served) and `challenger` (newest trained); each \
version's description says how it got them."""


_CREATED: set[str] = set()


@contextlib.contextmanager
def _sqlite_creation_lock(uri: str) -> Iterator[None]:
    """Hold a file lock next to a SQLite store while this process first opens it.

    MLflow creates (and migrates) a SQLite store's tables when a client first opens it, and two
    processes doing so at once race on the schema migrations (``duplicate column name``,
    ``Online migration expected to match one row``: two retrainings the scheduler starts on a
    new store). The lock lets one create the store while the other waits; afterwards each
    finds it complete. Other stores (a tracking server, PostgreSQL) need no lock.
    """
    prefix = "sqlite:///"
    if not uri.startswith(prefix) or uri in _CREATED:
        yield
        return
    database = Path(uri[len(prefix):])
    database.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{database}.create.lock", timeout=300):
        yield
    _CREATED.add(uri)


@lru_cache
def get_mlflow_settings() -> MlflowSettings:
    """Settings from the environment, read once."""
    return MlflowSettings()


class ForecastLogSettings(BaseSettings):
    """Where served forecasts and their actuals are logged (env prefix ``NEARCAST_FORECAST_LOG_``).

    The default store is SQLite under ``NEARCAST_HOME``; a ``postgresql+psycopg2://`` URL puts
    it in PostgreSQL. The API queues forecasts and writes them in batches off the request path.
    """

    model_config = SettingsConfigDict(env_prefix="NEARCAST_FORECAST_LOG_", extra="ignore")

    url: str | None = Field(
        None, description="SQLAlchemy URL of the log; default sqlite:///<NEARCAST_HOME>/"
        "forecast_log.db.")
    enabled: bool = Field(True, description="Log served forecasts and accept actuals.")
    queue_max_series: int = Field(
        20000, ge=1, description="Series the API may hold queued for the log; beyond, a "
        "forecast is dropped from the log (counted), never delaying a request.")
    batch_series: int = Field(2000, ge=1, description="Series written per batch.")
    flush_seconds: float = Field(0.5, gt=0, description="Seconds between the writer's flushes.")
    retention_days: float = Field(
        90, gt=0, description="Days the log keeps forecasts and actuals, counted from when it "
        "received them.")

    def resolved_url(self, home: Path | None = None) -> str:
        """The log's URL, defaulting to SQLite in ``home`` (default ``NEARCAST_HOME``)."""
        if self.url:
            return self.url
        folder = get_mlflow_settings().home if home is None else home
        return f"sqlite:///{(folder / 'forecast_log.db').resolve()}"


@lru_cache
def get_forecast_log_settings() -> ForecastLogSettings:
    """Forecast log settings from the environment, read once."""
    return ForecastLogSettings()


class CalibrationSettings(BaseSettings):
    """Interval calibration of served quantiles (env prefix ``NEARCAST_CALIBRATION_``).

    The method and what ``window`` means for how fast it follows a shift:
    :mod:`nearcast.models.monitoring.calibration`.
    """

    model_config = SettingsConfigDict(env_prefix="NEARCAST_CALIBRATION_", extra="ignore")

    enabled: bool = Field(True, description="Serve calibrated intervals (false: the raw ones).")
    window: int = Field(200, ge=1, le=1_000_000, description="Latest scores kept per version "
                        "and horizon step.")
    min_points: int = Field(30, ge=1, description="Fewer scores than this at a step: the raw "
                            "interval is served there.")
    refresh_seconds: float = Field(30.0, gt=0, le=86_400, description="Seconds between two "
                                   "refreshes of the factors (also refreshed after actuals).")

    @model_validator(mode="after")
    def _window_holds_min_points(self) -> CalibrationSettings:
        if self.min_points > self.window:
            raise ValueError(f"min_points ({self.min_points}) must not exceed window "
                             f"({self.window}): no step could ever be calibrated")
        return self


@lru_cache
def get_calibration_settings() -> CalibrationSettings:
    """Calibration settings from the environment, read once."""
    return CalibrationSettings()


__all__ = ["CalibrationSettings", "ForecastLogSettings", "MlflowSettings",
           "get_calibration_settings", "get_forecast_log_settings", "get_mlflow_settings"]
