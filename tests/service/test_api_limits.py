"""Hostile input and admission over real HTTP: timestamps outside the supported range, deep
nesting, bad bytes, duplicate ids, non-finite forecasts, 8 MB of invalid values, grids far
wider than the model's window and a full admission gate. Each gets its 4xx (or 503) with the
JSON error body, and the server keeps serving."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pandas as pd
import pytest
from svc_helpers import series_body

from conftest import Champion, LiveServer, start_server, stop_server
from nearcast.service.app import create_app
from nearcast.service.settings import ApiSettings

Body = dict[str, Any]
ADMITTED = 2  # NEARCAST_MAX_CONCURRENT_REQUESTS of this module's server


@pytest.fixture(scope="module")
def server(champion: Champion) -> Iterator[LiveServer]:
    # Default body limit (8 MiB), series and points limits; a small admission gate.
    api = ApiSettings(models=["tiny"], poll_seconds=60, max_concurrent_requests=ADMITTED)
    live = start_server(create_app(api, champion.settings))
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def good(tiny_df: pd.DataFrame) -> Body:
    return {"series": [series_body(tiny_df, "H1", 72)]}


def _post(server: LiveServer, payload: Body | bytes) -> httpx.Response:
    content = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return httpx.post(f"{server.url}/v1/forecast", content=content, timeout=60,
                      headers={"content-type": "application/json"})


def _error(resp: httpx.Response, status: int) -> dict[str, Any]:
    assert resp.status_code == status, resp.text[:2000]
    assert resp.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = resp.json()
    assert set(body) == {"error", "detail"} and body["detail"], body
    assert "Traceback" not in resp.text and ".py" not in resp.text
    return body


def _still_serving(server: LiveServer, good: Body) -> None:
    resp = _post(server, good)
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["series"][0]["forecast"]) == 24


def _with(good: Body, **change: Any) -> Body:
    series = {k: v for k, v in good["series"][0].items() if k not in change} | change
    return {"series": [{k: v for k, v in series.items() if v is not None}]}


def _hourly(start: str, n: int) -> list[str]:
    first = pd.Timestamp(start)
    return [(first + pd.Timedelta(hours=k)).isoformat() for k in range(n)]


RANGE = "outside the supported time range from 1900-01-01T00:00:00Z (inclusive) to " \
        "2200-01-01T00:00:00Z (exclusive)"


def test_timestamps_outside_the_range_are_422(server: LiveServer, good: Body) -> None:
    cases = [
        # (start or timestamps, field, problem)
        ({"start": "0001-01-01T00:00:00+01:00"}, "series[0] (id 'H1').start", "year 0001 is " +
         RANGE),
        ({"start": "9999-12-31T23:00:00-05:00"}, "series[0] (id 'H1').start", "year 9999"),
        ({"start": "1899-12-31T23:00:00Z"}, "series[0] (id 'H1').start", "year 1899"),
        ({"start": "1900-01-01T00:30:00+01:00"}, "series[0] (id 'H1').start",
         "1899-12-31T23:30:00+00:00 (UTC) is " + RANGE),
        ({"start": None, "timestamps": _hourly("2024-01-01T00:00:00Z", 71) +
          ["2200-01-01T00:00:00Z"]}, "series[0] (id 'H1').timestamps[71]", "year 2200"),
        # The history fits, but it runs past the end / its forecast would.
        ({"start": "2199-12-31T00:00:00Z"}, "series[0] (id 'H1')",
         "72 values at frequency 'h' from 2199-12-31T00:00:00+00:00 run past the supported"),
        ({"start": "2199-12-29T00:00:00Z"}, "series[0] (id 'H1')",
         "and a forecast of 24 steps would run past the supported time range"),
        ({"start": None, "timestamps": _hourly("2199-12-29T00:00:00Z", 72)},
         "series[0] (id 'H1')", "a forecast of 24 steps at frequency 'h' after "
         "2199-12-31T23:00:00+00:00 would run past the supported time range"),
    ]
    for change, field, problem in cases:
        body = _error(_post(server, _with(good, **change)), 422)
        assert body["error"].startswith(field + ":"), (change, body)
        assert problem in body["error"], (change, body)
        assert body["detail"][0]["field"] == field
    # The last hour before the end is accepted: a 24-step forecast ends at 2199-12-31T23:00.
    ok = _post(server, _with(good, start="2199-12-28T00:00:00Z"))
    assert ok.status_code == 200, ok.text
    assert ok.json()["series"][0]["timestamps"][-1] == "2199-12-31T23:00:00Z"
    _still_serving(server, good)


def test_parse_failures_are_4xx_json(server: LiveServer, good: Body) -> None:
    deep = b'{"series": ' + b"[" * 1000 + b"]" * 1000 + b"}"
    values = json.dumps(good["series"][0]["values"])
    cases: list[tuple[bytes, str, str]] = [
        (deep, "body", "recursion limit exceeded"),
        (b'{"series": [{"id": "\xff\xfe", "start": "2024-01-01T00:00:00Z", "values": [1]}]}',
         "body", "Invalid JSON"),
        (b'{"series": [], "horizon": 1' + b"0" * 400 + b"}", "series", "at least 1 item"),
        (b'{"series": [{"id": "a", "start": "2024-01-01T00:00:00Z", "values": ' +
         values.replace("594.0", "1e400", 1).encode() + b"}]}",
         "series[0] (id 'a').values[0]", "finite number"),
        (b'"just a string"', "body", "should be an object"),
        (b"null", "body", "should be an object"),
        (b"12", "body", "should be an object"),
        (b"", "body", "Invalid JSON"),
    ]
    for raw, field, problem in cases:
        body = _error(_post(server, raw), 422)
        assert body["error"].startswith(field + ":") and problem in body["error"], (raw[:80], body)
    huge_horizon = _error(_post(server, good | {"horizon": 10**400}), 422)
    assert huge_horizon["detail"][0]["field"] == "horizon"
    _still_serving(server, good)


def test_duplicate_ids_name_both_positions(server: LiveServer, good: Body,
                                           tiny_df: pd.DataFrame) -> None:
    other = series_body(tiny_df, "H2", 72)
    body = {"series": [good["series"][0], other, {**other, "id": "H1"}]}
    err = _error(_post(server, body), 422)
    assert err["error"] == ("series[2] (id 'H1').id: repeats the id of series[0]; series ids "
                            "must be unique in a request")
    _still_serving(server, good)


def test_non_finite_forecast_is_422_naming_the_series(server: LiveServer, good: Body,
                                                      tiny_df: pd.DataFrame) -> None:
    huge = {"id": "huge", "start": good["series"][0]["start"], "values": [3.0e38] * 72}
    resp = _post(server, {"series": [good["series"][0], huge]})
    err = _error(resp, 422)
    assert err["detail"] == [{"field": "series[1] (id 'huge')", "problem": (
        "the forecast is not finite: the input is outside what the model can represent "
        "(values too large for its float32 arithmetic); scale the values down")}]
    assert "NaN" not in resp.text and "Infinity" not in resp.text
    _still_serving(server, good)


def _timed(server: LiveServer, raw: bytes) -> tuple[dict[str, Any], float]:
    started = time.perf_counter()
    resp = _post(server, raw)
    return _error(resp, 422), time.perf_counter() - started


def test_8mb_of_invalid_values_lists_at_most_20_problems(server: LiveServer, good: Body) -> None:
    limit = 8 * 1024 * 1024
    head = b'{"series":[{"id":"a","start":"2024-01-01T00:00:00Z","values":['
    one_series = head + b",".join([b'""'] * ((limit - 100) // 3)) + b"]}]}"
    per = b'{"id":"s%d","start":"2024-01-01T00:00:00Z","values":[' + b",".join(
        [b'""'] * 9000) + b"]}"
    n_series = (limit - 100) // (len(per) + 2)
    many_series = b'{"series":[' + b",".join(per % i for i in range(n_series)) + b"]}"
    extra_keys = head + b"1]," + b",".join(
        b'"k%d":0' % i for i in range((limit - 200) // 12)) + b"}]}"
    timings = {}
    for name, raw in [("one series", one_series), ("many series", many_series),
                      ("extra keys", extra_keys)]:
        assert limit - 200_000 < len(raw) <= limit, (name, len(raw))
        body, timings[name] = _timed(server, raw)
        assert len(body["detail"]) <= 20, name
        if name == "one series":
            assert body["error"] == (f"series[0] (id 'a').values: {(limit - 100) // 3} items; "
                                     "the limit is 10000")
        elif name == "many series":
            assert len(body["detail"]) == 20
            assert body["detail"][5] == {"field": "series[5] (id 's5').values[0]",
                                         "problem": "Input should be a valid number"}
            assert body["error"].endswith(f"(and {n_series - 1} more problems, 20 listed)")
        else:
            assert body["detail"][0] == {"field": "series[0] (id 'a').k0",
                                         "problem": "Extra inputs are not permitted"}
            assert body["error"].endswith(f"(and {(limit - 200) // 12 - 1} more problems, 20 "
                                          "listed)")
    print("8 MB invalid bodies answered in (s):",
          {k: round(v, 3) for k, v in timings.items()})
    _still_serving(server, good)


def test_grid_span_far_beyond_the_window_is_refused(server: LiveServer, good: Body) -> None:
    ten_years = {"start": None, "values": [5.0, 6.0, 7.0],
                 "timestamps": ["2014-01-01T00:00:00Z", "2019-01-01T00:00:00Z",
                                "2024-01-01T00:00:00Z"]}
    err = _error(_post(server, _with(good, **ten_years)), 422)
    assert err["error"] == (
        "series[0] (id 'H1'): timestamps from 2014-01-01T00:00:00+00:00 to "
        "2024-01-01T00:00:00+00:00 span more than 720 grid points of the model's frequency "
        "'h'; the limit is 720 (NEARCAST_MAX_SPAN_WINDOWS times the model's input window)")
    # 720 hourly grid points (10 windows of 72) are accepted, bucketed and forecast.
    edge = {"start": None, "values": [5.0, 7.0],
            "timestamps": ["2024-01-01T00:00:00Z", "2024-01-30T23:59:59Z"]}
    resp = _post(server, _with(good, **edge))
    assert resp.status_code == 200, resp.text
    assert resp.json()["series"][0]["pipeline"]["buckets_filled"] == 718
    _still_serving(server, good)


def _hold(server: LiveServer) -> socket.socket:
    """A forecast request whose body never finishes arriving: it holds an admission slot."""
    port = int(server.url.rsplit(":", 1)[1])
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(b"POST /v1/forecast HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Type: application/json\r\nContent-Length: 100000\r\n\r\n{")
    return sock


def test_admission_answers_503_before_reading_the_body(server: LiveServer, good: Body) -> None:
    held = [_hold(server) for _ in range(ADMITTED)]
    try:
        time.sleep(0.5)  # let the server take both slots
        port = int(server.url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=10) as late:
            # Declares 5 MB and sends none of it: the answer comes without the body.
            late.sendall(b"POST /v1/forecast HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Type: application/json\r\nContent-Length: 5000000\r\n\r\n")
            head, _, payload = _read_response(late).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503"), head
        assert b"retry-after: 1" in head.lower()
        err = json.loads(payload)
        assert err["error"] == ("server: busy: 2 forecast requests are being received or "
                                "prepared (NEARCAST_MAX_CONCURRENT_REQUESTS); retry later")
        assert httpx.get(f"{server.url}/v1/models").status_code == 200  # other routes pass
    finally:
        for sock in held:
            sock.close()
    _still_serving(server, good)  # the slots came back


def _read_response(sock: socket.socket) -> bytes:
    data = b""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
        head, sep, rest = data.partition(b"\r\n\r\n")
        if sep and b"content-length" in head.lower():
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            if len(rest) >= length:
                break
    return data
