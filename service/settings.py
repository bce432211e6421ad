"""API settings (env prefix ``NEARCAST_``), read through a cached getter and injected.

Auth is off by default on the embedded default (no keys configured): anyone who can reach the
port may forecast and reload. Set ``NEARCAST_API_KEYS`` (forecast and listing) and
``NEARCAST_ADMIN_KEYS`` (also reload) before binding anything but 127.0.0.1: without keys,
``nearcast serve`` refuses a non-loopback host unless ``NEARCAST_AUTH=off``. List settings
take a JSON list (``'["k1","k2"]'``) or a comma-separated string (``k1,k2``).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from nearcast.models.settings import get_mlflow_settings

#: Hard caps of the request schema (the settings may only lower them).
MAX_SERIES_CAP = 10_000
MAX_POINTS_CAP = 100_000
MAX_HORIZON_CAP = 10_000

_StrList = Annotated[list[str], NoDecode]


class ApiSettings(BaseSettings):
    """How the forecast API runs."""

    model_config = SettingsConfigDict(env_prefix="NEARCAST_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    workers: int = Field(1, ge=1, le=64)
    access_log: bool = Field(False, description="uvicorn access log (metrics cover requests).")
    models: _StrList = Field(
        default_factory=list, description="Registered model names to serve; default: model_name."
    )
    alias: str = "champion"
    poll_seconds: float = Field(30.0, gt=0.0, description="Alias polling interval.")
    api_keys: _StrList = Field(default_factory=list, description="Bearer keys; empty = no auth.")
    admin_keys: _StrList = Field(default_factory=list, description="Keys allowed to reload.")
    auth: Literal["auto", "on", "off"] = Field(
        "auto", description="auto: keys when configured, else loopback binds only; on: keys "
        "required; off: no auth on any bind (explicit opt-out).")
    allowed_hosts: _StrList = Field(
        default_factory=list, description="Accepted Host headers ('*' any, '*.example.com'); "
        "default: loopback names plus the bind host.")
    max_series: int = Field(1024, ge=1, le=MAX_SERIES_CAP, description="Series per request.")
    max_points: int = Field(
        10_000, ge=1, le=MAX_POINTS_CAP, description="History points per series."
    )
    max_body_bytes: int = Field(8 * 1024 * 1024, ge=1024, description="Request body size.")
    xla: bool = Field(
        True, description="Serve through XLA: every batch size of xla_batch_sizes is compiled "
        "at warm-up, before the version serves; each model call is padded up to the next one.")
    xla_batch_sizes: Annotated[list[Annotated[int, Field(ge=1)]], NoDecode] = Field(
        default_factory=list, description="The compiled batch sizes; default: powers of two "
        "up to batch_max_series (bigger batches run in chunks of the largest).")
    batch_max_series: int = Field(
        256, ge=1, description="Series per batched model call (micro-batching)."
    )
    batch_max_wait_ms: float = Field(
        2.0, ge=0.0, le=100.0,
        description="Longest wait for more requests to join a batch; the wait also ends as "
        "soon as an event-loop turn brings no new request.",
    )
    queue_max_series: int = Field(
        4096, ge=1, description="Series queued or running per model before answering 503."
    )
    retry_after_seconds: int = Field(1, ge=1, description="Retry-After of a 503 (queue full).")
    max_concurrent_requests: int = Field(
        8, ge=1, le=10_000,
        description="Forecast requests being received (large bodies), parsed or prepared at "
        "once; beyond it a 503 with Retry-After before the body is read. Parsing an 8 MB body "
        "can take ~100 MB for a moment. The model queue is bounded separately "
        "(queue_max_series).",
    )
    max_span_windows: int = Field(
        10, ge=1, le=1000,
        description="Grid span of a series with timestamps, first to last, in model input "
        "windows: at most this many times the model's input_size grid points (checked before "
        "any grid is built).",
    )

    @field_validator("models", "api_keys", "admin_keys", "allowed_hosts", "xla_batch_sizes",
                     mode="before")
    @classmethod
    def _split(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @model_validator(mode="after")
    def _check(self) -> ApiSettings:
        if self.queue_max_series < self.batch_max_series:
            raise ValueError(f"queue_max_series {self.queue_max_series} is below "
                             f"batch_max_series {self.batch_max_series}")
        if self.auth == "off" and self.auth_enabled:
            raise ValueError("NEARCAST_AUTH=off while API keys are configured: unset "
                             "NEARCAST_AUTH or the keys (NEARCAST_API_KEYS/NEARCAST_ADMIN_KEYS)")
        return self

    def served_models(self) -> list[str]:
        """Model names to serve (falls back to the MLflow settings' model name)."""
        return self.models or [get_mlflow_settings().model_name]

    @property
    def auth_enabled(self) -> bool:
        """True when any key is configured."""
        return bool(self.api_keys or self.admin_keys)

    def trusted_hosts(self) -> list[str]:
        """Accepted Host names: ``allowed_hosts``, else loopback names plus a specific bind host."""
        if self.allowed_hosts:
            return list(self.allowed_hosts)
        hosts = ["127.0.0.1", "localhost", "::1"]
        if self.host not in ("0.0.0.0", "::", "") and self.host not in hosts:
            hosts.append(self.host)
        return hosts


@lru_cache
def get_api_settings() -> ApiSettings:
    """Settings from the environment, read once."""
    return ApiSettings()


__all__ = ["MAX_HORIZON_CAP", "MAX_POINTS_CAP", "MAX_SERIES_CAP", "ApiSettings",
           "get_api_settings"]
