"""Readiness over real HTTP: ``/readyz`` is 503 while any configured model has no loaded version,
forecasts for such a model get a JSON 503 with ``Retry-After`` (an unknown name stays 404), and
both turn 200 once the alias gets a version (loaded and logged by the alias follower)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import httpx
import pandas as pd
import pytest
import uvicorn
from fastapi import FastAPI
from svc_helpers import post, register_copy, series_body, wait_for

from conftest import Champion, LiveServer, free_port
from nearcast.models import registry
from nearcast.service.app import create_app
from nearcast.service.settings import ApiSettings

NAME = "tinyr"  # registered, but no version holds 'champion' until the test promotes one


def _start_unready(app: FastAPI, live: list[LiveServer]) -> LiveServer:
    """Serve ``app`` on loopback; wait for /healthz (the lifespan has run), not /readyz."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    started = LiveServer(server, thread, f"http://127.0.0.1:{port}")
    live.append(started)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not server.started:
        time.sleep(0.1)
    assert httpx.get(f"{started.url}/healthz", timeout=10).status_code == 200
    return started


def _forecast(server: LiveServer, body: dict[str, Any], model: str) -> httpx.Response:
    return post(server, body | {"model": model}, headers={})


def test_readyz_and_forecasts_wait_for_every_configured_model(
    champion: Champion, tiny_df: pd.DataFrame, live: list[LiveServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = champion.settings
    version = register_copy(settings, NAME, champion.job.forecaster)  # no alias yet
    api = ApiSettings(models=["tiny", NAME], poll_seconds=0.5, retry_after_seconds=2)
    server = _start_unready(create_app(api, settings), live)
    body = {"series": [series_body(tiny_df, "H3", 72)]}

    ready = httpx.get(f"{server.url}/readyz", timeout=10)
    assert ready.status_code == 503 and ready.headers["retry-after"] == "1"  # the poll interval
    state = ready.json()
    assert state["error"] == f"server: not ready: no loaded version of ['{NAME}']"
    assert state["detail"] == [{"field": NAME,
                                "problem": "no version has alias 'champion'"}]
    assert (state["ready"], state["models"], state["registry_reachable"]) == (False, ["tiny"],
                                                                              True)
    assert state["details"]["tiny"]["version"] == champion.job.version.version
    assert state["details"][NAME]["version"] is None
    assert state["details"][NAME]["last_error"] == "no version has alias 'champion'"

    waiting = _forecast(server, body, NAME)
    assert waiting.status_code == 503 and waiting.headers["retry-after"] == "1"
    assert waiting.json() == {
        "error": f"model: '{NAME}' has no loaded version (no version has alias 'champion'); the "
                 "server checks the alias 'champion' every poll, retry later",
        "detail": [{"field": "model",
                    "problem": f"'{NAME}' has no loaded version (no version has alias "
                               "'champion'); the server checks the alias 'champion' every "
                               "poll, retry later"}]}
    unknown = _forecast(server, body, "nope")
    assert unknown.status_code == 404
    assert unknown.json()["error"] == f"model: model 'nope' is not served; served: " \
                                      f"['tiny', '{NAME}']"
    assert _forecast(server, body, "tiny").status_code == 200  # the loaded one keeps serving

    caplog.set_level(logging.INFO, logger="nearcast.store")
    registry.promote(settings.connect(), NAME, version.version, "tests")
    assert wait_for(lambda: httpx.get(f"{server.url}/readyz", timeout=10).status_code == 200,
                    timeout=60)
    ready = httpx.get(f"{server.url}/readyz", timeout=10).json()
    assert ready["ready"] is True and ready["models"] == ["tiny", NAME]
    assert ready["details"][NAME]["version"] == version.version
    served = _forecast(server, body, NAME)
    assert served.status_code == 200, served.text
    assert served.json()["model"]["version"] == version.version

    (loaded,) = [r for r in caplog.records if r.getMessage().startswith(f"serving {NAME} ")]
    assert loaded.getMessage() == f"serving {NAME} v{version.version} (alias champion, was none)"
    fields = {k: getattr(loaded, k) for k in ("model", "version", "alias", "event",
                                              "previous_version", "run_id")}
    assert fields == {"model": NAME, "version": version.version, "alias": "champion",
                      "event": "load", "previous_version": None, "run_id": version.run_id}
    assert 0 < loaded.__dict__["seconds"] < 60
