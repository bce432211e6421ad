"""MLflow settings (env prefix ``NEARCAST_``), read through a cached getter.

The embedded default needs no server: a SQLite store and an artifact folder under a
project-local ``.nearcast/`` directory, created on first use (never at import).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import mlflow
from mlflow import MlflowClient
from pydantic import Field
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

    def connect(self) -> MlflowClient:
        """Point MLflow at the store (creating the embedded folders) and return a client."""
        if not self.tracking_uri:
            (self.home / "artifacts").mkdir(parents=True, exist_ok=True)
        uri = self.resolved_tracking_uri()
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        return MlflowClient(tracking_uri=uri, registry_uri=uri)

    def ensure_experiment(self, client: MlflowClient) -> str:
        """Id of the configured experiment, created with the artifact root if missing."""
        found = client.get_experiment_by_name(self.experiment)
        if found is not None:
            return str(found.experiment_id)
        return str(client.create_experiment(self.experiment, self.resolved_artifact_root()))


@lru_cache
def get_mlflow_settings() -> MlflowSettings:
    """Settings from the environment, read once."""
    return MlflowSettings()


__all__ = ["MlflowSettings", "get_mlflow_settings"]
