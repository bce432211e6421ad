"""API settings (env prefix ``NEARCAST_``), read through a cached getter and injected."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from models.settings import get_mlflow_settings


class ApiSettings(BaseSettings):
    """How the forecast API runs."""

    model_config = SettingsConfigDict(env_prefix="NEARCAST_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    models: list[str] = Field(
        default_factory=list, description="Registered model names to serve; default: model_name."
    )
    alias: str = "champion"
    poll_seconds: float = Field(30.0, gt=0.0, description="Alias polling interval.")
    api_keys: list[str] = Field(default_factory=list, description="Bearer keys; empty = no auth.")
    admin_keys: list[str] = Field(default_factory=list, description="Keys allowed to reload.")
    max_series: int = Field(1024, ge=1, description="Series per request.")
    max_points: int = Field(10_000, ge=1, description="History points per series.")
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024)
    jit_compile: bool = Field(False, description="Compile the model function with XLA.")

    def served_models(self) -> list[str]:
        """Model names to serve (falls back to the MLflow settings' model name)."""
        return self.models or [get_mlflow_settings().model_name]


@lru_cache
def get_api_settings() -> ApiSettings:
    """Settings from the environment, read once."""
    return ApiSettings()


__all__ = ["ApiSettings", "get_api_settings"]
