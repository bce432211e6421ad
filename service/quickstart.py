"""``nearcast quickstart``: bundled data -> trained, registered champion -> live API -> request."""

from __future__ import annotations

import json
import threading
import time
from importlib import resources

import httpx
import numpy as np
import pandas as pd
import uvicorn

from nearcast.models import registry
from nearcast.models.estimator import Nearcast
from nearcast.models.jobconfig import JobConfig
from nearcast.models.settings import MlflowSettings
from nearcast.models.train import Trained, train
from nearcast.pipelines.dataset import load_dataset
from nearcast.pipelines.schema import DS, UNIQUE_ID, Y
from nearcast.service.app import create_app
from nearcast.service.settings import ApiSettings

QUICKSTART_YAML = resources.files("nearcast") / "configs" / "quickstart.yaml"
"""The quickstart's job (shipped with the package): ``nearcast train --config`` runs it too."""


def quickstart_job(budget: float | None = None) -> JobConfig:
    """The packaged quickstart job, with ``budget`` seconds of training when given."""
    with resources.as_file(QUICKSTART_YAML) as path:
        job = JobConfig.from_yaml(path)
    if budget is not None:
        job = job.model_copy(update={"train": job.train.model_copy(
            update={"max_seconds": budget})})
    return job


def _say(msg: str) -> None:
    print(f"[nearcast] {msg}", flush=True)


def _train(settings: MlflowSettings, job: JobConfig) -> tuple[Trained, pd.DataFrame]:
    _say("loading the bundled M4 Hourly training series (synthetic hourly timestamps)")
    data = load_dataset(job.data)
    n = data.frame[UNIQUE_ID].nunique()
    _say(f"{n} series, {len(data.frame)} points; training an LSTM forecaster "
         f"(horizon {job.model.horizon}, input {job.model.input_size} steps; budget "
         f"{job.train.max_seconds:.0f}s)")
    for line in data.prepared.summary_lines():
        _say(line)
    result = train(Nearcast.from_job(job), settings, data)
    _say(f"run {result.run_id}: {len(result.training.epochs)} epochs in "
         f"{result.training.seconds:.0f}s ({result.training.stop_reason})")
    for method, s in result.evaluation.scores.items():
        _say(f"  {method:15s} sMAPE {s['smape']:6.2f}  MASE {s['mase']:5.2f}  OWA {s['owa']:.3f}")
    return result, data.frame


def _request_body(frame: pd.DataFrame, window: int) -> dict[str, object]:
    """The newest window of the first series, regular from its first timestamp."""
    first = frame[frame[UNIQUE_ID] == frame[UNIQUE_ID].iloc[0]]
    tail = first.tail(window)
    return {"series": [{"id": str(tail[UNIQUE_ID].iloc[0]),
                        "start": tail[DS].iloc[0].isoformat(),
                        "values": np.round(tail[Y].to_numpy(), 3).tolist()}]}


def run_quickstart(settings: MlflowSettings, api: ApiSettings, budget: float | None,
                   serve_forever: bool = True) -> dict[str, object]:
    """Train, register, promote, serve and send one forecast request; returns its JSON."""
    job = quickstart_job(budget)
    result, frame = _train(settings, job)
    assert result.version is not None
    client = settings.connect()
    registry.promote(client, settings.model_name, result.version.version, "quickstart")
    _say(f"registered {settings.model_name} v{result.version.version} with alias 'champion'")
    api = api.model_copy(update={"models": [settings.model_name]})
    server = uvicorn.Server(uvicorn.Config(create_app(api, settings), host=api.host,
                                           port=api.port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://{api.host}:{api.port}"
    _wait_ready(base, 60.0)
    _say(f"serving on {base} (docs: {base}/docs)")
    body = _request_body(frame, job.model.input_size)
    answer = httpx.post(f"{base}/v1/forecast", json=body, timeout=30).json()
    print(json.dumps(answer, indent=2), flush=True)
    _say(f"MLflow UI on the same store: nearcast ui   (tracking URI "
         f"{settings.resolved_tracking_uri()})")
    if serve_forever:
        _say("serving until Ctrl-C")
        try:
            while thread.is_alive():
                thread.join(0.5)
        except KeyboardInterrupt:
            pass
    server.should_exit = True
    thread.join(10)
    return dict(answer)


def _wait_ready(base: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the API at {base} did not become ready within {timeout:.0f}s")


__all__ = ["QUICKSTART_YAML", "quickstart_job", "run_quickstart"]
