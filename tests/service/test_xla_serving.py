"""Serving through the XLA ladder over real HTTP: the whole ladder compiles before the server is
ready, later requests of mixed batch sizes compile nothing (the counter in /metrics stays), and
the forecasts equal those of the plain (``xla=False``) path on the same version."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from svc_helpers import metric, post, register_copy, scrape, series_body

from conftest import Champion, LiveServer, start_server, stop_server
from nearcast.models import registry
from nearcast.service.app import create_app
from nearcast.service.settings import ApiSettings

LADDER = (1, 2, 4, 8)  # powers of two up to batch_max_series=8


@pytest.fixture(scope="module")
def servers(champion: Champion) -> Iterator[dict[str, LiveServer]]:
    """The champion served twice: XLA (the default) and plain, small batches."""
    live: dict[str, LiveServer] = {}
    try:
        for key, xla in (("xla", True), ("plain", False)):
            api = ApiSettings(models=["tiny"], poll_seconds=60, batch_max_series=8, xla=xla)
            live[key] = start_server(create_app(api, champion.settings))
        yield live
    finally:
        for server in live.values():
            stop_server(server)


def _body(df: pd.DataFrame, n: int, offset: int = 0) -> dict[str, Any]:
    uids = sorted(df["unique_id"].unique())
    return {"series": [series_body(df, uids[(i + offset) % len(uids)], 72 + 7 * (i % 4),
                                   id=f"s{i}") for i in range(n)]}


def _compiles(server: LiveServer) -> float:
    return metric(scrape(server), "nearcast_model_compiles_total", model="tiny")


def test_default_settings_serve_through_xla(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NEARCAST_XLA", raising=False)  # tests/conftest.py turns it off
    assert ApiSettings().xla is True
    monkeypatch.setenv("NEARCAST_XLA", "false")
    assert ApiSettings().xla is False
    assert ApiSettings(xla_batch_sizes="1,4,32").xla_batch_sizes == [1, 4, 32]  # type: ignore[arg-type]


def test_the_ladder_is_compiled_before_ready(servers: dict[str, LiveServer]) -> None:
    text = scrape(servers["xla"])
    assert metric(text, "nearcast_model_compiles_total", model="tiny", version="1") == len(LADDER)
    assert metric(text, "nearcast_model_warmup_seconds", model="tiny", version="1") > 0
    # The plain path traces its shape-polymorphic function once.
    assert _compiles(servers["plain"]) == 1


def test_mixed_batch_sizes_compile_nothing_and_equal_the_plain_path(
    servers: dict[str, LiveServer], tiny_df: pd.DataFrame
) -> None:
    xla, plain = servers["xla"], servers["plain"]
    before = _compiles(xla)
    sizes = (1, 3, 17, 5, 2, 9, 8, 6)  # 9 and 17 run as chunks of 8 plus a padded rest
    for n in sizes:
        body = _body(tiny_df, n, offset=n)
        got, want = post(xla, body), post(plain, body)
        assert got.status_code == want.status_code == 200, got.text
        a, b = got.json()["series"], want.json()["series"]
        assert [s["id"] for s in a] == [s["id"] for s in b] == [f"s{i}" for i in range(n)]
        for x, y in zip(a, b, strict=True):
            np.testing.assert_allclose(x["forecast"], y["forecast"], rtol=1e-4)
    # Concurrent requests coalesce into micro-batches of whatever sizes arrive together.
    with ThreadPoolExecutor(6) as pool:
        answers = list(pool.map(lambda n: post(xla, _body(tiny_df, n)).status_code,
                                [1, 3, 2, 7, 1, 5, 4, 6, 1, 3, 11, 2] * 2))
    assert answers == [200] * 24
    after = scrape(xla)
    assert metric(after, "nearcast_model_compiles_total", model="tiny") == before == len(LADDER)
    calls = metric(after, "nearcast_batch_series_count", model="tiny")
    assert calls >= len(sizes) + 2  # 9 and 17 took more than one model call each



def test_a_new_version_serves_only_once_its_ladder_is_compiled(
    champion: Champion, tiny_df: pd.DataFrame
) -> None:
    """While v2 compiles (in the reload's thread), v1 answers; v2 arrives fully compiled."""
    name, settings = "tinyx", champion.settings
    client = settings.connect()
    v1 = register_copy(settings, name, champion.job.forecaster)
    registry.promote(client, name, v1.version, "tests")
    api = ApiSettings(models=[name], poll_seconds=600, batch_max_series=4, xla=True)
    server = start_server(create_app(api, settings))
    try:
        body = {"model": name, **_body(tiny_df, 3)}
        v2 = register_copy(settings, name, champion.job.forecaster)
        registry.promote(client, name, v2.version, "tests")
        with ThreadPoolExecutor(1) as pool:
            reload = pool.submit(httpx.post, f"{server.url}/v1/models/{name}/reload",
                                 timeout=120)
            versions = []
            while not reload.done() and len(versions) < 500:  # bounded
                resp = post(server, body)
                assert resp.status_code == 200, resp.text
                versions.append(resp.json()["model"]["version"])
                text = scrape(server)
                for v in (v1.version, v2.version):  # whatever serves is fully compiled
                    if metric(text, "nearcast_model_version", model=name) == v:
                        assert metric(text, "nearcast_model_compiles_total", model=name,
                                      version=str(v)) == 3
            assert reload.result().json()["version"] == v2.version
        assert versions and set(versions) <= {v1.version, v2.version}
        assert versions == sorted(versions)  # never back to v1 once v2 served
        text = scrape(server)
        assert metric(text, "nearcast_model_compiles_total", model=name,
                      version=str(v2.version)) == 3
        assert post(server, body).json()["model"]["version"] == v2.version
    finally:
        stop_server(server)
