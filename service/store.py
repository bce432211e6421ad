"""Served models, loaded from ``models:/<name>@<alias>`` and swapped when the alias moves.

A version is warmed before it serves: with XLA on (the default) its whole ladder of batch sizes
(:class:`models.compiled.CompiledLadder`) is compiled in the loading thread while the version it
replaces keeps serving, so no request ever waits for a compile.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np
from mlflow import MlflowClient

from nearcast.models.artifact import load_forecaster
from nearcast.models.compiled import DEFAULT_LIMIT, example_inputs, ladder_sizes
from nearcast.models.forecaster import Forecaster
from nearcast.models.registry import VersionRef, version_for_alias
from nearcast.service.errors import ApiError

log = logging.getLogger("nearcast.store")


@dataclass(frozen=True)
class LoadedModel:
    """One served model version (immutable: swapped whole, never edited)."""

    name: str
    alias: str
    ref: VersionRef
    forecaster: Forecaster
    loaded_at: float
    warmup_seconds: float = 0.0  # tracing (XLA: compiling the ladder) before it served


@dataclass
class ModelStatus:
    """Last refresh outcome for a model name."""

    last_check: float = 0.0
    last_error: str | None = None
    failed_version: int | None = None
    registry_reachable: bool = True
    failures: int = 0
    last_contact: float = 0.0  # when the registry last answered (0: never)


@dataclass
class ModelStore:
    """Holds the served models; :meth:`refresh` follows the alias."""

    client: MlflowClient
    names: list[str]
    alias: str = "champion"
    jit_compile: bool = False  # XLA ladder of ``batch_sizes`` (see the module)
    batch_sizes: tuple[int, ...] = ()  # default: powers of two up to ``batch_limit``
    batch_limit: int = DEFAULT_LIMIT
    retry_after: int = 30  # seconds until the next poll may load a missing model
    models: dict[str, LoadedModel] = field(default_factory=dict)
    status: dict[str, ModelStatus] = field(default_factory=dict)
    # The version served before the last swap, kept loaded: a rollback (or an alias moving
    # back and forth) swaps back at once instead of downloading and warming it again.
    previous: dict[str, LoadedModel] = field(default_factory=dict)
    _loaded: bool = False  # a version was loaded (not swapped back) since take_loaded()
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, name: str | None) -> LoadedModel:
        """The served model ``name`` (or the first configured one).

        Raises:
            KeyError: ``name`` is not configured (the message names the configured ones).
            ApiError: 503 with ``Retry-After``: configured, but no version is loaded (yet).
        """
        key = name or (self.names[0] if self.names else "")
        served = self.models.get(key)
        if served is not None:
            return served
        if key not in self.names:
            raise KeyError(f"model {key!r} is not served; served: {self.names}")
        status = self.status.get(key)
        why = status.last_error if status and status.last_error else "not loaded yet"
        raise ApiError(503, "model", f"{key!r} has no loaded version ({why}); the server "
                                     f"checks the alias {self.alias!r} every poll, retry later",
                       headers={"Retry-After": str(self.retry_after)})

    def refresh(self, name: str, force: bool = False) -> bool:
        """Load ``name@alias`` if its version changed; keep the old one on any failure.

        Args:
            name: registered model name.
            force: retry a version that failed before (the poller skips it).

        Returns:
            True when a new version was swapped in.
        """
        status = self.status.setdefault(name, ModelStatus())
        status.last_check = time.time()
        with self._lock:
            try:
                ref = version_for_alias(self.client, name, self.alias)
            except Exception as exc:  # registry down: keep serving what we have
                status.registry_reachable = False
                status.last_error = f"registry unreachable ({type(exc).__name__}); see the log"
                log.warning("registry unreachable for %s: %s", name, exc)
                return False
            status.registry_reachable, status.last_contact = True, time.time()
            current = self.models.get(name)
            if ref is None or (current is not None and current.ref.version == ref.version):
                status.last_error = None if ref else f"no version has alias {self.alias!r}"
                if ref is not None:
                    status.failed_version = None
                return False
            if status.failed_version == ref.version and not force:
                return False
            kept = self.previous.get(name)
            if kept is not None and kept.ref.version == ref.version:
                self._swap(name, kept, status, time.monotonic(), "swap back")
                return True
            return self._load(name, ref, status)

    def _load(self, name: str, ref: VersionRef, status: ModelStatus) -> bool:
        started = time.monotonic()
        fields = {"model": name, "version": ref.version, "alias": self.alias}
        log.info("loading %s v%s (alias %s)", name, ref.version, self.alias, extra=fields)
        try:
            forecaster = load_forecaster(f"models:/{name}/{ref.version}", self.jit_compile,
                                         self.batch_sizes or ladder_sizes(self.batch_limit))
            warmup = _warm(forecaster)
        except Exception as exc:
            if not self._registry_answers(name):  # e.g. a tracking server restarting mid-download
                status.registry_reachable = False
                status.last_error = f"v{ref.version} not loaded: registry unreachable " \
                                    f"({type(exc).__name__}); retrying at the next poll"
                log.warning("loading %s v%s failed, registry unreachable: %s", name, ref.version,
                            exc, extra=fields | {"error": type(exc).__name__})
                return False
            status.failed_version, status.last_error = ref.version, _public(ref.version, exc)
            status.failures += 1
            log.error("loading %s v%s failed; keeping the current model: %s", name, ref.version,
                      exc, exc_info=not isinstance(exc, WarmupError | OSError),
                      extra=fields | {"error": type(exc).__name__,
                                      "seconds": round(time.monotonic() - started, 3)})
            return False
        self._swap(name, LoadedModel(name, self.alias, ref, forecaster, time.time(), warmup),
                   status, started, "swap" if name in self.models else "load")
        self._loaded = True
        return True

    def take_loaded(self) -> bool:
        """True once after a version was loaded from the registry (a swap back is not a load).

        The caller then settles the heap (:func:`service.heap.settle_heap`): a load creates
        many objects and may drop an old model; a swap back does neither, so it costs no
        full collection.
        """
        loaded, self._loaded = self._loaded, False
        return loaded

    def _swap(self, name: str, new: LoadedModel, status: ModelStatus, started: float,
              event: str) -> None:
        """Serve ``new``; the version it replaces stays loaded for a swap back."""
        previous = self.models.get(name)
        if previous is not None:
            self.previous[name] = previous
        self.models[name] = new
        status.failed_version, status.last_error = None, None
        ref = new.ref
        was = f"v{previous.ref.version}" if previous else "none"
        log.info("serving %s v%s (alias %s, was %s)", name, ref.version, self.alias, was,
                 extra={"model": name, "version": ref.version, "alias": self.alias,
                        "previous_version": previous.ref.version if previous else None,
                        "run_id": ref.run_id, "event": event,
                        "seconds": round(time.monotonic() - started, 3),
                        "warmup_seconds": round(new.warmup_seconds, 3),
                        "compiles": new.forecaster.compiles})

    def _registry_answers(self, name: str) -> bool:
        """Whether the registry answers now (a failed load is only the version's fault if so)."""
        try:
            version_for_alias(self.client, name, self.alias)
        except Exception:
            return False
        return True

    def refresh_all(self) -> list[str]:
        """Refresh every configured model name; returns the names that got a new version."""
        return [name for name in self.names if self.refresh(name)]

    @property
    def ready(self) -> bool:
        """True when every configured model has a loaded version."""
        return bool(self.names) and not self.missing

    @property
    def missing(self) -> list[str]:
        """Configured names with no loaded version."""
        return [name for name in self.names if name not in self.models]

    @property
    def registry_reachable(self) -> bool:
        """False when the last poll of any model name could not reach the registry."""
        return all(s.registry_reachable for s in list(self.status.values()))


class WarmupError(ValueError):
    """A loaded model answered the warm-up call wrongly."""


def _public(version: int, exc: Exception) -> str:
    """What the API may say about a failed load: no paths, no internals (the log has them)."""
    if isinstance(exc, WarmupError):
        return f"v{version} failed its warm-up: {exc}"
    if isinstance(exc, OSError):
        return f"v{version} could not be loaded: artifact missing or unreadable " \
               f"({type(exc).__name__}); see the server log"
    return f"v{version} could not be loaded ({type(exc).__name__}); see the server log"


def _warm(forecaster: Forecaster) -> float:
    """Trace/compile (:meth:`Forecaster.warmup`), check a ``(1, H, K)`` finite answer; seconds."""
    c = forecaster.config
    seconds = forecaster.warmup()
    window = 100.0 + np.arange(c.input_size, dtype=np.float32) % max(c.season, 1)
    inputs = example_inputs(forecaster.input_specs, 1) | {
        "history": window[None, :], "mask": np.ones((1, c.input_size), np.float32)}
    out = forecaster.predict_inputs(inputs)
    expected = (1, c.horizon, len(c.output_names))
    if out.shape != expected:
        raise WarmupError(f"output has shape {out.shape}, expected {expected}")
    if not np.isfinite(out).all():
        raise WarmupError("the forecast is not finite")
    return seconds


__all__ = ["LoadedModel", "ModelStatus", "ModelStore", "WarmupError"]
