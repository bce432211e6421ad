"""The load check: a version gets an alias only once it loads where it will be served.

Before ``challenger`` (``nearcast train``) or ``champion`` (``retrain``, ``promote``) points at a
version, nearcast loads that version back from the registry in a fresh Python process (``python
-m models.load_check``), exactly as a new server worker or ``mlflow.pyfunc.load_model`` would,
warms it and forecasts one fixed probe history. The forecast must be finite, of the model's
shape, and equal (to 1e-5) to the reference: the in-process forecast at registration, or the
one recorded on the version then (tag ``nearcast.load_check.forecast``) when an existing version
is promoted. The outcome is tagged on the version (``nearcast.load_check`` = passed or failed,
with the reason); a failure raises :class:`LoadCheckError` before any alias moves.

``NEARCAST_LOAD_CHECK`` picks how: ``subprocess`` (default: the real check, ~5-10 s to import
TensorFlow), ``inprocess`` (the same check in this process: catches a broken artifact but not
a missing import) or ``off``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from nearcast.models.forecaster import Forecaster
    from nearcast.models.registry import VersionRef
    from nearcast.models.settings import MlflowSettings

Mode = Literal["subprocess", "inprocess", "off"]
MODES: tuple[Mode, ...] = ("subprocess", "inprocess", "off")
ENV = "NEARCAST_LOAD_CHECK"
TAG, TAG_REASON, TAG_FORECAST = (
    "nearcast.load_check", "nearcast.load_check.reason", "nearcast.load_check.forecast")
TOLERANCE = 1e-5
TIMEOUT_SECONDS = 600.0
_MARKER = "nearcast-load-check: "
_MAX_RECORDED_CHARS = 20_000  # a longer reference forecast is not recorded (promote: shape only)


class LoadCheckError(RuntimeError):
    """A version failed its load check; no alias moved to it."""


def check_mode() -> Mode:
    """The mode from ``NEARCAST_LOAD_CHECK`` (default ``subprocess``).

    Raises:
        ValueError: naming the variable when its value is not a mode.
    """
    value = os.environ.get(ENV, "").strip().lower() or "subprocess"
    if value not in MODES:
        raise ValueError(f"{ENV}={value!r}: expected one of {', '.join(MODES)}")
    return value


def probe_history(input_size: int, season: int) -> np.ndarray:
    """The fixed probe history: a seasonal wave on a slow ramp, ``input_size`` points."""
    t = np.arange(input_size, dtype=np.float64)
    return (100.0 + 10.0 * np.sin(2 * np.pi * t / max(season, 1)) + 0.05 * t).astype(np.float32)


def probe_inputs(forecaster: Forecaster) -> dict[str, np.ndarray]:
    """The probe history fitted to the window, and fixed waves for a covariate model's inputs."""
    c = forecaster.config
    history = probe_history(c.input_size, c.season)[None, :]
    inputs = {"history": history, "mask": np.ones_like(history)}
    for key, spec in forecaster.input_specs.items():
        if key in inputs:
            continue
        shape = (1, *spec.shape[1:])
        if key == "series":
            inputs[key] = np.zeros(shape, np.int32)
        else:
            wave = np.sin(np.arange(int(np.prod(shape)), dtype=np.float64) / 7.0)
            inputs[key] = wave.reshape(shape).astype(np.float32)
    return inputs


def reference_forecast(forecaster: Forecaster) -> np.ndarray:
    """The forecast of the probe inputs (:func:`probe_inputs`), shape ``(1, H, K)``."""
    return forecaster.predict_inputs(probe_inputs(forecaster))


def probe(request: dict[str, Any]) -> dict[str, Any]:
    """Load ``request["uri"]`` with ``mlflow.pyfunc.load_model``, warm it, forecast the probe.

    Returns:
        ``{"ok": bool, "reason": str, "forecast": list | None}``; never raises for a model
        that does not load or forecasts wrong (the reason says what happened).
    """
    import mlflow

    try:
        model = mlflow.pyfunc.load_model(request["uri"])
        forecaster = model.unwrap_python_model().forecaster
        forecaster.warmup()
        c = forecaster.config
        got = reference_forecast(forecaster)
    except Exception as exc:  # what went wrong is the answer
        return {"ok": False, "reason": f"it does not load: {type(exc).__name__}: {_gist(exc)}",
                "forecast": None}
    reason = _compare(got, request.get("expected"), (1, c.horizon, len(c.output_names)))
    return {"ok": reason.startswith("loaded"), "reason": reason, "forecast": got.tolist()}


def _gist(exc: Exception) -> str:
    """The telling part of an error: Keras wraps the cause ("Could not locate class 'X'")."""
    text = str(exc).strip()
    text = text.rsplit("Exception encountered: ", 1)[-1].strip()
    first = text.splitlines()[0] if text else ""
    return first.split(" Full object config", 1)[0][:500]


def _compare(got: np.ndarray, expected: Any, shape: tuple[int, ...]) -> str:
    if got.shape != shape:
        return f"its forecast has shape {got.shape}, the model's config says {shape}"
    if not np.all(np.isfinite(got)):
        return "its forecast is not finite"
    if expected is None:
        return f"loaded, warmed, forecast finite of shape {shape} (no reference recorded)"
    want = np.asarray(expected, np.float64)
    if want.shape != got.shape:
        return f"its forecast has shape {got.shape}, the reference {want.shape}"
    diff = float(np.max(np.abs(got - want)))
    if not np.allclose(got, want, rtol=TOLERANCE, atol=TOLERANCE):
        return (f"its forecast differs from the reference by up to {diff:.6g} "
                f"(tolerance {TOLERANCE:g})")
    return f"loaded, warmed, forecast equal to the reference (max |diff| {diff:.3g})"


def run_probe(request: dict[str, Any], mode: Mode, settings: MlflowSettings) -> dict[str, Any]:
    """Run :func:`probe` in a fresh process (``subprocess``) or in this one (``inprocess``)."""
    if mode == "inprocess":
        settings.connect()
        return probe(request)
    uri = settings.resolved_tracking_uri()
    env = {**os.environ, **settings.http_env(), "MLFLOW_TRACKING_URI": uri,
           "MLFLOW_REGISTRY_URI": uri, "TF_CPP_MIN_LOG_LEVEL": "3",
           "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false"}
    try:
        done = subprocess.run([sys.executable, "-m", "nearcast.models.load_check"],
                              input=json.dumps(request), capture_output=True, text=True, env=env,
                              timeout=TIMEOUT_SECONDS, check=False)
    except subprocess.TimeoutExpired:
        return {"ok": False, "reason": f"the check process took over {TIMEOUT_SECONDS:g} s",
                "forecast": None}
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(_MARKER):
            return dict(json.loads(line.removeprefix(_MARKER)))
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return {"ok": False, "reason": f"the check process exited with code {done.returncode}: "
                                   f"{tail}"[:1000], "forecast": None}


def verify_version(
    settings: MlflowSettings, client: MlflowClient, ref: VersionRef,
    expected: np.ndarray | None = None, mode: Mode | None = None,
) -> str:
    """Check that ``ref`` loads in a fresh process and forecasts like ``expected``; tag it.

    Args:
        settings: the store (the fresh process opens the same one).
        client: registry client for the tags.
        ref: the version to check.
        expected: the reference forecast of the probe history; None uses the one recorded on
            the version at registration (if any), else only checks shape and finiteness.
        mode: default :func:`check_mode`.

    Returns:
        One line saying what was checked (``off`` says so).

    Raises:
        LoadCheckError: the version did not load, warm or forecast as expected; its tags say why.
    """
    mode = mode or check_mode()
    if mode == "off":
        return f"load check off ({ENV}=off)"
    version = str(ref.version)
    recorded = expected is None
    if recorded:
        expected = recorded_forecast(client, ref.name, ref.version)
    request = {"uri": f"models:/{ref.name}/{version}",
               "expected": None if expected is None else np.asarray(expected).tolist()}
    result = run_probe(request, mode, settings)
    if not result["ok"]:
        client.set_model_version_tag(ref.name, version, TAG, "failed")
        client.set_model_version_tag(ref.name, version, TAG_REASON, f"{mode}: {result['reason']}")
        raise LoadCheckError(f"{ref.name} v{version} failed its load check ({mode}): "
                             f"{result['reason']}; no alias moved")
    client.set_model_version_tag(ref.name, version, TAG, "passed")
    client.set_model_version_tag(ref.name, version, TAG_REASON, f"{mode}: {result['reason']}")
    if not recorded and expected is not None:
        text = json.dumps(np.asarray(expected, np.float64).round(7).tolist())
        if len(text) <= _MAX_RECORDED_CHARS:
            client.set_model_version_tag(ref.name, version, TAG_FORECAST, text)
    return f"load check passed ({mode}): {result['reason']}"


def recorded_forecast(client: MlflowClient, name: str, version: int) -> np.ndarray | None:
    """The reference forecast recorded on a version at registration (None when absent)."""
    tags = client.get_model_version(name, str(version)).tags or {}
    text = tags.get(TAG_FORECAST)
    if not text:
        return None
    try:
        values = np.asarray(json.loads(text), np.float64)
    except (ValueError, TypeError):
        return None
    return values if values.ndim == 3 and bool(np.all(np.isfinite(values))) else None


def verifier(
    settings: MlflowSettings, client: MlflowClient, forecaster: Forecaster
) -> Callable[[VersionRef], str]:
    """A check of a version just registered from ``forecaster`` (reference: its forecast)."""
    forecast = reference_forecast(forecaster)
    # A non-finite reference compares with nothing: the check itself says "not finite".
    expected = forecast if np.all(np.isfinite(forecast)) else None

    def check(ref: VersionRef) -> str:
        return verify_version(settings, client, ref, expected)

    return check


def main() -> int:
    """``python -m models.load_check``: a request (JSON) on stdin, the result on stdout."""
    request = json.loads(sys.stdin.read())
    result = probe(request)
    result["forecast"] = None  # the parent has the reference; keep the pipe small
    print(_MARKER + json.dumps(result, allow_nan=True), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())

__all__ = ["ENV", "MODES", "TAG", "TAG_FORECAST", "TAG_REASON", "TOLERANCE", "LoadCheckError",
           "Mode", "check_mode", "probe", "probe_history", "probe_inputs", "recorded_forecast",
           "reference_forecast", "run_probe", "verifier", "verify_version"]
