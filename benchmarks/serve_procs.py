"""Server processes of the serving benchmarks, and the quickstart model they share.

:func:`start` runs ``nearcast serve`` (any variant: extra environment) or ``mlflow models
serve`` from a temporary embedded store on 127.0.0.1 in its own session; :func:`stop` ends its
process group. :func:`train_quickstart` trains the quickstart model with a short budget
(:mod:`benchmarks.load_bench` and :mod:`benchmarks.forecast_log_bench` serve it).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT

BIN = Path(sys.executable).parent
NAME = "serve-bench"


def train_quickstart(home: Path, budget: float) -> dict[str, Any]:
    """Train the quickstart model, register it and make it champion; returns its facts."""
    from nearcast.models import registry
    from nearcast.models.estimator import Nearcast
    from nearcast.models.settings import MlflowSettings
    from nearcast.models.train import train as train_model
    from nearcast.pipelines.dataset import load_dataset
    from nearcast.service.quickstart import quickstart_job

    settings = MlflowSettings(home=home, model_name=NAME, experiment="serve-bench")
    spec = quickstart_job(budget)
    spec = spec.model_copy(update={"train": spec.train.model_copy(update={"verbose": False})})
    data = load_dataset(spec.data)
    job = train_model(Nearcast.from_job(spec), settings, data)
    assert job.version is not None
    registry.promote(settings.connect(), NAME, job.version.version, "serve benchmark")
    tail = data.frame[data.frame["unique_id"] == data.frame["unique_id"].iloc[0]].tail(168)
    return {"version": job.version.version, "run_id": job.run_id,
            "tracking_uri": settings.resolved_tracking_uri(),
            "train_seconds": round(job.training.seconds, 1),
            "series": {"id": str(tail["unique_id"].iloc[0]), "start": tail["ds"].iloc[0],
                       "values": [round(float(v), 3) for v in tail["y"]]}}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(server: str, home: Path, facts: dict[str, Any],
                 env_extra: dict[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``server`` (``nearcast…`` or ``mlflow``) in its own session; it and its base URL.

    ``env_extra``: more environment (e.g. ``NEARCAST_XLA=false``).
    """
    port = _free_port()
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                        "TF_CPP_MIN_LOG_LEVEL": "2", "MLFLOW_TRACKING_URI": facts["tracking_uri"],
                        "MLFLOW_REGISTRY_URI": facts["tracking_uri"]} | (env_extra or {})
    if server.startswith("nearcast"):
        env |= {"NEARCAST_HOME": str(home), "NEARCAST_MODELS": NAME, "NEARCAST_PORT": str(port)}
        cmd, ready = [sys.executable, "-m", "nearcast", "serve"], "/readyz"
    else:
        cmd = [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{NAME}@champion",
               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
        ready = "/ping"
    log = open(home / f"{server}.log", "wb")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    _wait(proc, base + ready, 900.0, home / f"{server}.log")
    return proc, base


def _wait(proc: subprocess.Popen[bytes], url: str, timeout: float, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text()[-3000:]
            raise RuntimeError(f"server exited ({proc.returncode}); log:\n{tail}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready within {timeout:.0f}s")


def start(server: str, home: Path, facts: dict[str, Any]) -> tuple[subprocess.Popen[bytes], str]:
    """:func:`start_server` with its default settings; returns it and its forecast URL."""
    proc, base = start_server(server, home, facts)
    return proc, url_of(server, base)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (ours: started with its own session)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def url_of(server: str, base: str) -> str:
    """The forecast URL of a server."""
    return base + ("/v1/forecast" if server.startswith("nearcast") else "/invocations")


def forecast_of(server: str, base: str, body: bytes) -> list[float]:
    """One request; the 48 point forecasts."""
    import httpx

    resp = httpx.post(url_of(server, base), content=body,
                      headers={"content-type": "application/json"}, timeout=60)
    resp.raise_for_status()
    out = resp.json()
    if server.startswith("nearcast"):
        return [float(v) for v in out["series"][0]["forecast"]]
    return [float(row["forecast"]) for row in out["predictions"]]


def model_state(base: str) -> dict[str, float]:
    """``nearcast_model_compiles_total`` and ``nearcast_model_warmup_seconds`` from /metrics."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    wanted = {"nearcast_model_compiles_total": "compiles",
              "nearcast_model_warmup_seconds": "warmup_seconds"}
    out = dict.fromkeys(wanted.values(), 0.0)
    for family in text_string_to_metric_families(httpx.get(base + "/metrics", timeout=10).text):
        for s in family.samples:
            if s.name in wanted:
                out[wanted[s.name]] += s.value
    return out


__all__ = ["BIN", "NAME", "forecast_of", "model_state", "start", "start_server", "stop",
           "train_quickstart", "url_of"]
