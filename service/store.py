"""Served models, loaded from ``models:/<name>@<alias>`` and swapped when the alias moves."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from mlflow import MlflowClient

from models.artifact import load_forecaster
from models.forecaster import Forecaster
from models.registry import VersionRef, version_for_alias

log = logging.getLogger("nearcast.store")


@dataclass(frozen=True)
class LoadedModel:
    """One served model version (immutable: swapped whole, never edited)."""

    name: str
    alias: str
    ref: VersionRef
    forecaster: Forecaster
    loaded_at: float


@dataclass
class ModelStatus:
    """Last refresh outcome for a model name."""

    last_check: float = 0.0
    last_error: str | None = None
    failed_version: int | None = None
    registry_reachable: bool = True


@dataclass
class ModelStore:
    """Holds the served models; :meth:`refresh` follows the alias."""

    client: MlflowClient
    names: list[str]
    alias: str = "champion"
    jit_compile: bool = False
    models: dict[str, LoadedModel] = field(default_factory=dict)
    status: dict[str, ModelStatus] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, name: str | None) -> LoadedModel:
        """The served model ``name`` (or the first one); KeyError names what is served."""
        key = name or (self.names[0] if self.names else "")
        try:
            return self.models[key]
        except KeyError:
            raise KeyError(f"model {key!r} is not served; served: {sorted(self.models)}") from None

    def refresh(self, name: str) -> bool:
        """Load ``name@alias`` if its version changed; keep the old one on any failure.

        Returns:
            True when a new version was swapped in.
        """
        status = self.status.setdefault(name, ModelStatus())
        status.last_check = time.time()
        with self._lock:
            try:
                ref = version_for_alias(self.client, name, self.alias)
            except Exception as exc:  # registry down: keep serving what we have
                status.registry_reachable, status.last_error = False, f"registry: {exc}"
                log.warning("registry unreachable for %s: %s", name, exc)
                return False
            status.registry_reachable = True
            current = self.models.get(name)
            if ref is None or (current is not None and current.ref.version == ref.version):
                status.last_error = None if ref else f"no version has alias {self.alias!r}"
                return False
            if status.failed_version == ref.version:
                return False
            return self._load(name, ref, status)

    def _load(self, name: str, ref: VersionRef, status: ModelStatus) -> bool:
        try:
            forecaster = load_forecaster(f"models:/{name}/{ref.version}", self.jit_compile)
            forecaster.warmup()
        except Exception as exc:
            status.failed_version, status.last_error = ref.version, f"v{ref.version}: {exc}"
            log.error("loading %s v%s failed; keeping the current model: %s", name, ref.version,
                      exc)
            return False
        self.models[name] = LoadedModel(name, self.alias, ref, forecaster, time.time())
        status.failed_version, status.last_error = None, None
        log.info("serving %s v%s (alias %s)", name, ref.version, self.alias)
        return True

    def refresh_all(self) -> None:
        """Refresh every configured model name."""
        for name in self.names:
            self.refresh(name)

    @property
    def ready(self) -> bool:
        """True when at least one model is loaded."""
        return bool(self.models)


__all__ = ["LoadedModel", "ModelStatus", "ModelStore"]
