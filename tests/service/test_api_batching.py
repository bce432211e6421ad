"""Micro-batching and the bounded queue over real HTTP.

The model worker thread is held by a gate (a task submitted to the batcher's own executor), so
requests pile up deterministically: no timing decides what is asserted.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import httpx
import pandas as pd
import pytest
from fastapi import FastAPI
from svc_helpers import metric, post, scrape, series_body, wait_for

from conftest import Champion, LiveServer, start_server, stop_server
from nearcast.service.app import create_app
from nearcast.service.batching import MicroBatcher
from nearcast.service.settings import ApiSettings


@pytest.fixture(scope="module")
def app(champion: Champion) -> FastAPI:
    api = ApiSettings(models=["tiny"], poll_seconds=60, batch_max_series=8,
                      queue_max_series=8, batch_max_wait_ms=2.0, retry_after_seconds=3)
    return create_app(api, champion.settings)


@pytest.fixture(scope="module")
def server(app: FastAPI) -> Iterator[LiveServer]:
    live = start_server(app)
    yield live
    stop_server(live)


def _batcher(app: FastAPI) -> MicroBatcher:
    batcher: MicroBatcher = app.state.nearcast.batchers["tiny"]
    return batcher


def _hold(batcher: MicroBatcher) -> threading.Event:
    gate = threading.Event()
    batcher._executor.submit(gate.wait, 30)  # occupy the model thread until released
    return gate


def _body(df: pd.DataFrame, uids: list[str]) -> dict[str, Any]:
    return {"series": [series_body(df, uid, 72) for uid in uids]}


def test_concurrent_requests_share_one_model_call(
    app: FastAPI, server: LiveServer, tiny_df: pd.DataFrame
) -> None:
    uids = ["H2", "H3", "H4", "H5", "H6"]
    alone = {uid: post(server, _body(tiny_df, [uid])).json()["series"][0] for uid in uids}
    batcher, before = _batcher(app), scrape(server)
    gate = _hold(batcher)
    with ThreadPoolExecutor(len(uids) + 1) as pool:
        first = pool.submit(post, server, _body(tiny_df, ["H1"]))
        assert wait_for(lambda: batcher.pending == 1)
        time.sleep(0.2)  # let the first batch close (it waits for the model thread)
        futures: dict[str, Future[httpx.Response]] = {
            uid: pool.submit(post, server, _body(tiny_df, [uid])) for uid in uids}
        assert wait_for(lambda: batcher.pending == 1 + len(uids))
        gate.set()
        assert first.result().status_code == 200
        batched = {uid: f.result().json()["series"][0] for uid, f in futures.items()}
    after = scrape(server)
    # Two model calls: the first request alone, then the five queued ones together.
    calls = metric(after, "nearcast_batch_requests_count") - metric(before,
                                                                    "nearcast_batch_requests_count")
    assert calls == 2
    assert metric(after, "nearcast_batch_requests_sum") - metric(
        before, "nearcast_batch_requests_sum") == 6
    assert metric(after, "nearcast_batch_series_bucket", le="4.0") - metric(
        before, "nearcast_batch_series_bucket", le="4.0") == 1
    assert batched == alone  # results were split back to the right requests


def test_full_queue_answers_503_with_retry_after(
    app: FastAPI, server: LiveServer, tiny_df: pd.DataFrame
) -> None:
    batcher, before = _batcher(app), scrape(server)
    gate = _hold(batcher)
    with ThreadPoolExecutor(2) as pool:
        a = pool.submit(post, server, _body(tiny_df, ["H1", "H2", "H3", "H4"]))
        assert wait_for(lambda: batcher.pending == 4)
        b = pool.submit(post, server, _body(tiny_df, ["H5", "H6", "H7", "H8"]))
        assert wait_for(lambda: batcher.pending == 8)
        full = post(server, _body(tiny_df, ["H1"]))
        gate.set()
        assert a.result().status_code == 200 and b.result().status_code == 200
    assert full.status_code == 503 and full.headers["retry-after"] == "3"
    assert full.json()["error"] == ("server: busy: model 'tiny' has 8 series queued; the limit "
                                    "is 8; retry later")
    assert metric(scrape(server), "nearcast_queue_rejected_total", model="tiny") - metric(
        before, "nearcast_queue_rejected_total", model="tiny") == 1
    assert post(server, _body(tiny_df, ["H1"])).status_code == 200  # drained: serving again


def test_request_larger_than_a_batch_is_split_into_model_calls(
    server: LiveServer, tiny_df: pd.DataFrame
) -> None:
    uids = ["H1", "H2", "H3", "H4", "H5", "H6", "H7", "H8", "H1", "H2"]  # 10 > 8 per call
    body = _body(tiny_df, uids)
    for i, item in enumerate(body["series"]):
        item["id"] = f"{item['id']}#{i}"  # ids are unique per request; H1, H2 repeat as data
    before = scrape(server)
    resp = post(server, body)
    assert resp.status_code == 200, resp.text
    out = resp.json()["series"]
    assert [s["id"] for s in out] == [f"{u}#{i}" for i, u in enumerate(uids)]
    assert out[0]["forecast"] == out[8]["forecast"]
    assert {k: v for k, v in out[1].items() if k != "id"} == \
        {k: v for k, v in out[9].items() if k != "id"}
    assert out[0]["forecast"] != out[1]["forecast"]
    assert metric(scrape(server), "nearcast_batch_series_sum") - metric(
        before, "nearcast_batch_series_sum") == 10
