"""Bad input over real HTTP: each gets the right 4xx and a JSON error naming field and problem;
the server keeps serving. Also auth scopes, the body limit and the 500 shape."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pandas as pd
import pytest
from fastapi import FastAPI
from svc_helpers import ADMIN_KEY, AUTH, USER_KEY, post, series_body

from conftest import Champion, LiveServer, start_server, stop_server
from nearcast.service.app import create_app
from nearcast.service.settings import ApiSettings

Body = dict[str, Any]


@pytest.fixture(scope="module")
def server(champion: Champion) -> Iterator[LiveServer]:
    api = ApiSettings(models=["tiny"], poll_seconds=60, api_keys=[USER_KEY],
                      admin_keys=[ADMIN_KEY], max_series=4, max_points=500,
                      max_body_bytes=64 * 1024)
    app = create_app(api, champion.settings)
    _add_faulty_route(app)
    live = start_server(app)
    yield live
    stop_server(live)


def _add_faulty_route(app: FastAPI) -> None:
    async def boom() -> None:
        raise RuntimeError("secret detail in /work/main/service/x.py")

    app.add_api_route("/boom", boom)


@pytest.fixture(scope="module")
def good(tiny_df: pd.DataFrame) -> Body:
    return {"series": [series_body(tiny_df, "H1", 72)]}


def _series(body: Body, **change: Any) -> Body:
    s = dict(body["series"][0]) | change
    return {**body, "series": [s]}


def _value(body: Body, i: int, v: Any) -> Body:
    values = list(body["series"][0]["values"])
    values[i] = v
    return _series(body, values=values)


def _hourly(body: Body, n: int) -> list[str]:
    start = pd.Timestamp(body["series"][0]["start"])
    return [(start + pd.Timedelta(hours=k)).isoformat() for k in range(n)]


def _with_timestamps(body: Body, stamps: list[str]) -> Body:
    s = {k: v for k, v in body["series"][0].items() if k != "start"}
    return {"series": [s | {"timestamps": stamps}]}


def _swap(stamps: list[str], i: int) -> list[str]:
    out = list(stamps)
    out[i], out[i + 1] = out[i + 1], out[i]
    return out


def _raw(body: Body, old: str, new: str) -> bytes:
    return json.dumps(body).replace(old, new, 1).encode()


Case = tuple[str, Callable[[Body], Body | bytes], int, str, str]
CASES: list[Case] = [
    ("values not a list", lambda b: _series(b, values="abc"), 422,
     "series[0] (id 'H1').values", "valid array"),
    ("value as string", lambda b: _value(b, 3, "605.0"), 422,
     "series[0] (id 'H1').values[3]", "valid number"),
    ("NaN string", lambda b: _value(b, 5, "NaN"), 422,
     "series[0] (id 'H1').values[5]", "valid number"),
    ("inf string", lambda b: _value(b, 6, "inf"), 422,
     "series[0] (id 'H1').values[6]", "valid number"),
    ("NaN literal", lambda b: _raw(_value(b, 7, 1234.5), "1234.5", "NaN"), 422,
     "series[0] (id 'H1').values[7]", "finite number"),
    ("Infinity literal", lambda b: _raw(_value(b, 8, 1234.5), "1234.5", "-Infinity"), 422,
     "series[0] (id 'H1').values[8]", "finite number"),
    ("overflowing number", lambda b: _raw(_value(b, 9, 1234.5), "1234.5", "1e400"), 422,
     "series[0] (id 'H1').values[9]", "finite number"),
    ("beyond float32", lambda b: _value(b, 2, 1e39), 422, "series[0] (id 'H1').values[2]",
     "within the float32 range"),
    ("boolean value", lambda b: _value(b, 1, True), 422,
     "series[0] (id 'H1').values[1]", "valid number"),
    ("id not a string", lambda b: _series(b, id=5), 422, "series[0].id", "valid string"),
    ("horizon as string", lambda b: b | {"horizon": "24"}, 422, "horizon", "valid integer"),
    ("horizon as float", lambda b: b | {"horizon": 2.5}, 422, "horizon", "valid integer"),
    ("horizon zero", lambda b: b | {"horizon": 0}, 422, "horizon", "greater than or equal to 1"),
    ("horizon too long", lambda b: b | {"horizon": 25}, 422, "horizon",
     "longer than the model's horizon 24"),
    ("no series", lambda b: {"series": []}, 422, "series", "at least 1 item"),
    ("series missing", lambda b: {}, 422, "series", "Field required"),
    ("empty values", lambda b: _series(b, values=[]), 422,
     "series[0] (id 'H1').values", "at least 1 item"),
    ("duplicate timestamps",
     lambda b: _with_timestamps(b, _hourly(b, 72)[:40] + _hourly(b, 72)[39:71]), 422,
     "series[0] (id 'H1')", "timestamps[40] (2024-01-10T15:00:00+00:00) repeats timestamps[39]"),
    ("unsorted timestamps", lambda b: _with_timestamps(b, _swap(_hourly(b, 72), 10)), 422,
     "series[0] (id 'H1')", "timestamps[11] (2024-01-09T10:00:00+00:00) is before"),
    ("timestamp count", lambda b: _with_timestamps(b, _hourly(b, 71)), 422,
     "series[0] (id 'H1')", "71 timestamps for 72 values"),
    ("start and timestamps", lambda b: _series(b, timestamps=_hourly(b, 72)), 422,
     "series[0] (id 'H1')", "exactly one of 'timestamps' or 'start'"),
    ("bad timestamp", lambda b: _series(b, start="2024-13-01T00:00:00Z"), 422,
     "series[0] (id 'H1').start", "month value is outside"),
    ("numeric timestamp", lambda b: _series(b, start=1700000000), 422,
     "series[0] (id 'H1').start", "ISO 8601"),
    ("extra field", lambda b: b | {"horizn": 3}, 422, "horizn", "Extra inputs are not permitted"),
    ("extra series field", lambda b: _series(b, value=[1.0]), 422,
     "series[0] (id 'H1').value", "Extra inputs"),
    ("unknown model", lambda b: b | {"model": "nope"}, 404, "model",
     "model 'nope' is not served; served: ['tiny']"),
    ("unknown quantile", lambda b: b | {"quantiles": [0.3]}, 422, "quantiles",
     "[0.3] not served; the model has none"),
    ("quantile out of range", lambda b: b | {"quantiles": [1.5]}, 422, "quantiles[0]",
     "less than 1"),
    ("history too short", lambda b: _series(b, values=b["series"][0]["values"][:47]), 422,
     "series[0] (id 'H1').values", "47 points; the model needs at least 48"),
    ("all null", lambda b: _series(b, values=[None] * 72), 422, "series[0] (id 'H1')",
     "cannot be filled"),
    ("leading null", lambda b: _value(b, 0, None), 422, "series[0] (id 'H1')",
     "missing values at the start"),
    ("negative with log scaling", lambda b: _value(b, 60, -3.0), 422,
     "series[0] (id 'H1').values", "needs values > 0"),
    ("too many series", lambda b: {"series": b["series"] * 5}, 422, "series",
     "5 items; the limit is 4"),
    ("too many points", lambda b: _series(b, values=[1.0] * 501), 422,
     "series[0] (id 'H1').values", "501 items; the limit is 500"),
    ("sparse timestamps", lambda b: _with_timestamps(
        _series(b, values=[5.0, 6.0]), ["2024-01-01T00:00:00Z", "2024-03-01T00:00:00Z"]), 422,
     "series[0] (id 'H1')", "span more than 720 grid points of the model's frequency 'h'; the "
     "limit is 720 (NEARCAST_MAX_SPAN_WINDOWS times the model's input window)"),
    ("invalid JSON", lambda b: b'{"series": [', 422, "body", "Invalid JSON"),
    ("JSON array", lambda b: b"[1, 2]", 422, "body", "should be an object"),
]


def _send(server: LiveServer, payload: Body | bytes, **kw: Any) -> httpx.Response:
    if isinstance(payload, bytes):
        return httpx.post(f"{server.url}/v1/forecast", content=payload, timeout=30,
                          headers=AUTH | {"content-type": "application/json"}, **kw)
    return post(server, payload)


def _assert_clean(resp: httpx.Response) -> dict[str, Any]:
    assert resp.headers["content-type"].startswith("application/json")
    text = resp.text
    assert "Traceback" not in text and "/work/" not in text and ".py" not in text
    body: dict[str, Any] = resp.json()
    assert set(body) == {"error", "detail"}
    return body


@pytest.mark.parametrize(("case", "mutate", "status", "field", "problem"), CASES,
                         ids=[c[0] for c in CASES])
def test_bad_input_gets_a_clear_4xx(server: LiveServer, good: Body, case: str,
                                    mutate: Callable[[Body], Body | bytes], status: int,
                                    field: str, problem: str) -> None:
    resp = _send(server, mutate(good))
    assert resp.status_code == status, resp.text
    body = _assert_clean(resp)
    assert body["error"].startswith(field + ":"), body
    assert problem in body["error"], body
    assert body["detail"][0]["field"] == field


def test_every_problem_is_listed(server: LiveServer, good: Body) -> None:
    bad = _value(_value(good, 3, "x"), 9, None) | {"horizon": "x"}
    bad["series"] = [*bad["series"], {"id": "B", "values": []}]
    body = _assert_clean(_send(server, bad))
    fields = [d["field"] for d in body["detail"]]
    assert fields == ["series[0] (id 'H1').values[3]", "series[1] (id 'B').values", "horizon"]
    assert "(and 2 more problems)" in body["error"]


def test_at_most_20_problems_are_listed_and_all_counted(server: LiveServer, good: Body) -> None:
    bad = good | {f"extra{i}": i for i in range(30)} | {"horizon": "x"}
    body = _assert_clean(_send(server, bad))
    assert len(body["detail"]) == 20
    assert body["detail"][0] == {"field": "horizon", "problem": "Input should be a valid integer"}
    assert body["detail"][1]["field"] == "extra0"
    assert body["error"] == ("horizon: Input should be a valid integer (and 30 more problems, 20 "
                             "listed)")


def test_oversized_body_is_refused(server: LiveServer, good: Body) -> None:
    big = {"series": [{**good["series"][0], "id": "x" * 100}] * 2, "pad": "y" * 70_000}
    resp = post(server, big)
    assert resp.status_code == 413
    sent = int(resp.request.headers["content-length"])
    assert sent > 65536
    assert _assert_clean(resp)["error"] == (f"body: {sent} bytes; the limit is 65536 bytes "
                                            "(send fewer series or split the request)")
    chunks = (b"x" * 8192 for _ in range(10))  # no Content-Length: streamed and counted
    resp = httpx.post(f"{server.url}/v1/forecast", content=chunks, timeout=30,
                      headers=AUTH | {"content-type": "application/json"})
    assert resp.status_code == 413 and "the limit is 65536 bytes" in _assert_clean(resp)["error"]


def test_api_keys_and_admin_scope(server: LiveServer, good: Body) -> None:
    url = server.url
    missing = httpx.post(f"{url}/v1/forecast", json=good)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "missing API key" in _assert_clean(missing)["error"]
    for header in ("Bearer wrong", "Basic " + USER_KEY, USER_KEY):
        resp = httpx.post(f"{url}/v1/forecast", json=good, headers={"Authorization": header})
        assert resp.status_code == 401, header
        assert _assert_clean(resp)["error"].startswith("authorization:")
    assert httpx.get(f"{url}/v1/models").status_code == 401
    assert httpx.get(f"{url}/v1/models", headers=AUTH).status_code == 200
    admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
    assert post(server, good, headers=admin).status_code == 200  # admin keys work everywhere
    reload_url = f"{url}/v1/models/tiny/reload"
    user_reload = httpx.post(reload_url, headers=AUTH)
    assert user_reload.status_code == 403
    assert "no admin scope" in _assert_clean(user_reload)["error"]
    assert httpx.post(reload_url).status_code == 401
    done = httpx.post(reload_url, headers=admin, timeout=30)
    assert done.status_code == 200 and done.json()["swapped"] is False
    assert httpx.post(f"{url}/v1/models/nope/reload", headers=admin).status_code == 404
    for open_path in ("/healthz", "/readyz", "/metrics"):
        assert httpx.get(f"{url}{open_path}").status_code == 200


def test_unknown_routes_methods_and_faults_answer_json(server: LiveServer) -> None:
    not_found = httpx.get(f"{server.url}/v2/forecast")
    assert not_found.status_code == 404 and _assert_clean(not_found)["error"] == "path: Not Found"
    wrong_method = httpx.get(f"{server.url}/v1/forecast", headers=AUTH)
    assert wrong_method.status_code == 405
    _assert_clean(wrong_method)
    fault = httpx.get(f"{server.url}/boom")
    assert fault.status_code == 500
    assert _assert_clean(fault) == {"error": "server: internal error", "detail": []}
    assert "secret" not in fault.text


def test_server_keeps_serving_after_bad_input(server: LiveServer, good: Body) -> None:
    for payload in (b"{", {"series": []}, _value(good, 1, "NaN")):
        assert _send(server, payload).status_code == 422
    resp = post(server, good)
    assert resp.status_code == 200 and len(resp.json()["series"][0]["forecast"]) == 24
