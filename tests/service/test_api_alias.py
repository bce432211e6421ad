"""Alias following without restart: a moved champion is served within a poll; a broken version
is reported and the old one keeps serving."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pandas as pd
import pytest
from svc_helpers import (
    delete_artifacts,
    metric,
    nan_copy,
    post,
    register_copy,
    scrape,
    series_body,
    wait_for,
)

from conftest import Champion, LiveServer, start_server
from nearcast.models import registry
from nearcast.service.app import create_app
from nearcast.service.settings import ApiSettings

NAME = "tinyf"


def _info(server: LiveServer) -> dict[str, Any]:
    (info,) = httpx.get(f"{server.url}/v1/models", timeout=10).json()
    assert info["name"] == NAME
    return dict(info)


def _provenance(server: LiveServer, body: dict[str, Any]) -> dict[str, Any]:
    resp = post(server, body)
    assert resp.status_code == 200, resp.text
    return dict(resp.json()["model"])


def test_alias_moves_are_followed_and_broken_versions_skipped(
    champion: Champion, tiny_df: pd.DataFrame, live: list[LiveServer],
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings, forecaster = champion.settings, champion.job.forecaster
    client = settings.connect()
    v1 = register_copy(settings, NAME, forecaster)
    registry.promote(client, NAME, v1.version, "tests")
    server = start_server(create_app(ApiSettings(models=[NAME], poll_seconds=0.5), settings))
    live.append(server)
    body = {"model": NAME, "series": [series_body(tiny_df, "H7", 72)]}
    assert _provenance(server, body) == {"model": NAME, "version": v1.version,
                                         "alias": "champion", "run_id": v1.run_id}

    v2 = register_copy(settings, NAME, forecaster)
    registry.promote(client, NAME, v2.version, "tests")
    assert wait_for(lambda: _info(server).get("version") == v2.version, timeout=30)
    assert _provenance(server, body) == {"model": NAME, "version": v2.version,
                                         "alias": "champion", "run_id": v2.run_id}

    caplog.set_level(logging.ERROR, logger="nearcast.store")
    v3 = register_copy(settings, NAME, forecaster)
    delete_artifacts(settings, v3)
    registry.promote(client, NAME, v3.version, "tests")
    assert wait_for(lambda: _info(server).get("failed_version") == v3.version, timeout=30)
    info = _info(server)
    assert info["version"] == v2.version
    assert info["last_error"] == (f"v{v3.version} could not be loaded: artifact missing or "
                                  "unreadable (FileNotFoundError); see the server log")
    assert _provenance(server, body)["version"] == v2.version
    assert any(f"loading {NAME} v{v3.version} failed" in r.getMessage() for r in caplog.records)
    assert metric(scrape(server), "nearcast_model_load_failures_total", model=NAME) == 1
    assert metric(scrape(server), "nearcast_model_version", model=NAME) == v2.version

    forced = httpx.post(f"{server.url}/v1/models/{NAME}/reload", timeout=60).json()
    assert forced == {"name": NAME, "swapped": False, "version": v2.version,
                      "last_error": info["last_error"]}
    assert metric(scrape(server), "nearcast_model_load_failures_total", model=NAME) == 2

    v4 = register_copy(settings, NAME, nan_copy(forecaster))  # loads, fails its warm-up
    registry.promote(client, NAME, v4.version, "tests")
    assert wait_for(lambda: _info(server).get("failed_version") == v4.version, timeout=30)
    info = _info(server)
    assert info["version"] == v2.version
    assert info["last_error"] == f"v{v4.version} failed its warm-up: the forecast is not finite"
    assert _provenance(server, body)["version"] == v2.version

    registry.promote(client, NAME, v2.version, "tests: roll back")  # alias back: error clears
    assert wait_for(lambda: _info(server)["last_error"] is None, timeout=30)
    assert _info(server)["version"] == v2.version


def test_alias_moving_back_swaps_back_to_the_version_kept_loaded(
    champion: Champion, tiny_df: pd.DataFrame, live: list[LiveServer]
) -> None:
    name = "tinyback"
    settings, forecaster = champion.settings, champion.job.forecaster
    client = settings.connect()
    v1 = register_copy(settings, name, forecaster)
    v2 = register_copy(settings, name, forecaster)
    registry.promote(client, name, v1.version, "tests")
    server = start_server(create_app(ApiSettings(models=[name], poll_seconds=0.5), settings))
    live.append(server)
    body = {"model": name, "series": [series_body(tiny_df, "H7", 72)]}
    first = post(server, body).json()
    assert first["model"]["version"] == v1.version

    registry.promote(client, name, v2.version, "tests")
    assert wait_for(lambda: post(server, body).json()["model"]["version"] == v2.version)
    # v1's files are gone: it can only come back from memory, not by loading it again.
    delete_artifacts(settings, v1)
    registry.promote(client, name, v1.version, "tests: roll back")
    assert wait_for(lambda: post(server, body).json()["model"]["version"] == v1.version)
    (info,) = httpx.get(f"{server.url}/v1/models", timeout=10).json()
    assert info["version"] == v1.version and info["last_error"] is None
    assert post(server, body).json()["series"] == first["series"]
