"""The HTTP edge over real HTTP: the documents follow the auth rule, JSON bodies only, Host
header check, request ids (echoed and carried by the log lines), auth failures logged without key
material. Also the bind guard and the allowed-host defaults (settings only, no server)."""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pandas as pd
import pytest
from fastapi import FastAPI
from svc_helpers import ADMIN_KEY, AUTH, USER_KEY, series_body

from conftest import Champion, LiveServer, start_server, stop_server
from nearcast.service.app import create_app
from nearcast.service.edge import AuthConfigError, check_bind
from nearcast.service.logs import JsonFormatter
from nearcast.service.settings import ApiSettings

DOCS = ("/openapi.json", "/docs", "/redoc")
GENERATED_ID = re.compile(r"[0-9a-f]{32}")


def _faulty(app: FastAPI) -> FastAPI:
    async def boom() -> None:
        raise RuntimeError("secret detail")

    app.add_api_route("/boom", boom)
    return app


@pytest.fixture(scope="module")
def keyed(champion: Champion) -> Iterator[LiveServer]:
    api = ApiSettings(models=["tiny"], poll_seconds=60, api_keys=[USER_KEY],
                      admin_keys=[ADMIN_KEY])
    live = start_server(_faulty(create_app(api, champion.settings)))
    yield live
    stop_server(live)


@pytest.fixture(scope="module")
def open_server(champion: Champion) -> Iterator[LiveServer]:
    """No keys, bound to loopback, configured as if on 0.0.0.0 with NEARCAST_AUTH=off."""
    api = ApiSettings(models=["tiny"], poll_seconds=60, host="0.0.0.0", auth="off")
    live = start_server(create_app(api, champion.settings))
    yield live
    stop_server(live)


@pytest.fixture
def log_lines() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """nearcast's log records as the JSON lines the server writes."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("nearcast")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    yield lines
    logger.removeHandler(handler)
    logger.setLevel(level)


@pytest.fixture(scope="module")
def body(tiny_df: pd.DataFrame) -> dict[str, Any]:
    return {"series": [series_body(tiny_df, "H1", 72)]}


def _json_error(resp: httpx.Response, status: int, field: str) -> str:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"] == "application/json"
    payload = resp.json()
    assert set(payload) == {"error", "detail"} and payload["detail"][0]["field"] == field
    assert payload["error"].startswith(f"{field}: ")
    return str(payload["error"])


def test_documents_need_a_key_and_declare_security_only_with_keys(
    keyed: LiveServer, open_server: LiveServer
) -> None:
    for path in DOCS:
        resp = httpx.get(f"{keyed.url}{path}", timeout=10)
        assert _json_error(resp, 401, "authorization").endswith("'Authorization: Bearer <key>'")
        assert resp.headers["www-authenticate"] == "Bearer"
        wrong = httpx.get(f"{keyed.url}{path}", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert httpx.get(f"{keyed.url}{path}", headers=AUTH, timeout=10).status_code == 200
        assert httpx.get(f"{open_server.url}{path}", timeout=10).status_code == 200
    doc = httpx.get(f"{keyed.url}/openapi.json", headers=AUTH, timeout=10).json()
    assert doc["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    secured = {(path, method) for path, ops in doc["paths"].items() for method, op in ops.items()
               if op.get("security") == [{"bearer": []}]}
    assert secured == {(path, method) for path, ops in doc["paths"].items()
                       if path.startswith("/v1/") for method in ops}  # every /v1 route
    assert secured >= {("/v1/forecast", "post"), ("/v1/models", "get"),
                       ("/v1/models/{name}/reload", "post"), ("/v1/actuals", "post")}
    doc = httpx.get(f"{open_server.url}/openapi.json", timeout=10).json()
    assert "securitySchemes" not in doc["components"]
    assert [p for p, ops in doc["paths"].items() for op in ops.values() if "security" in op] == []


@pytest.mark.parametrize(("content_type", "status"), [
    (None, 415), ("text/plain", 415), ("application/x-www-form-urlencoded", 415),
    ("application/json; charset=latin-1", 415), ("application/jsonx", 415),
    ("application/json", 200), ("Application/JSON; charset=UTF-8", 200),
])
def test_request_bodies_must_be_json(open_server: LiveServer, body: dict[str, Any],
                                     content_type: str | None, status: int) -> None:
    headers = {"content-type": content_type} if content_type else {}
    resp = httpx.post(f"{open_server.url}/v1/forecast", content=json.dumps(body).encode(),
                      headers=headers, timeout=30)
    if status == 415:
        error = _json_error(resp, 415, "content-type")
        assert "send the body as 'application/json' (UTF-8)" in error
        assert (content_type or "missing") in error
    else:
        assert resp.status_code == 200, resp.text
        assert resp.json()["series"][0]["id"] == "H1"


def test_unknown_host_headers_are_refused(open_server: LiveServer) -> None:
    port = open_server.url.rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example", ""):
        resp = httpx.get(f"{open_server.url}/v1/models", headers={"host": host}, timeout=10)
        error = _json_error(resp, 400, "host")
        assert "NEARCAST_ALLOWED_HOSTS" in error
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", "LOCALHOST", f"[::1]:{port}"):
        resp = httpx.get(f"{open_server.url}/v1/models", headers={"host": host}, timeout=10)
        assert resp.status_code == 200, (host, resp.text)


def test_allowed_hosts_default_to_loopback_and_the_bind_host() -> None:
    loopback = ["127.0.0.1", "localhost", "::1"]
    assert ApiSettings().trusted_hosts() == loopback
    assert ApiSettings(host="0.0.0.0", auth="off").trusted_hosts() == loopback
    assert ApiSettings(host="10.1.2.3", auth="off").trusted_hosts() == [*loopback, "10.1.2.3"]
    assert ApiSettings(allowed_hosts="api.example.com, *.internal").trusted_hosts() == [
        "api.example.com", "*.internal"]


def test_the_bind_guard_names_the_setting_that_allows_it() -> None:
    with pytest.raises(AuthConfigError, match="refusing to serve on 0.0.0.0 without API keys: "
                                              "set NEARCAST_API_KEYS .* NEARCAST_AUTH=off"):
        check_bind(ApiSettings(host="0.0.0.0"))
    with pytest.raises(AuthConfigError, match="NEARCAST_AUTH=on but no API key"):
        check_bind(ApiSettings(auth="on"))
    assert check_bind(ApiSettings(host="0.0.0.0", auth="off")).startswith(
        "auth: OFF (NEARCAST_AUTH=off) on 0.0.0.0")
    assert check_bind(ApiSettings()).startswith("auth: off (no API keys), allowed because")
    assert check_bind(ApiSettings(host="::1")).startswith("auth: off")
    keys = check_bind(ApiSettings(host="0.0.0.0", api_keys=["k"], admin_keys=["a", "b"]))
    assert keys == "auth: API keys required on /v1 and the API docs (1 API keys, 2 admin keys)"
    with pytest.raises(ValueError, match="NEARCAST_AUTH=off while API keys are configured"):
        ApiSettings(auth="off", api_keys=["k"])


def test_request_ids_are_echoed_and_carried_by_log_lines(
    keyed: LiveServer, body: dict[str, Any], log_lines: Callable[[], list[dict[str, Any]]]
) -> None:
    url = keyed.url
    sane = "req-42_a.b:c/d+e="
    assert httpx.get(f"{url}/healthz", headers={"x-request-id": sane}).headers[
        "x-request-id"] == sane
    generated = set()
    for bad in (b"x" * 129, b"bad id", "é".encode(), b"a;b", b""):
        echoed = httpx.get(f"{url}/healthz", headers={b"x-request-id": bad}).headers[
            "x-request-id"]
        assert GENERATED_ID.fullmatch(echoed), (bad, echoed)
        generated.add(echoed)
    generated.add(httpx.get(f"{url}/healthz").headers["x-request-id"])
    assert len(generated) == 6  # a new id each time

    # Refusals carry it too: a wrong key (logged without key material), a bad host, a 500.
    secret = "Bearer sekrit-wrong-key-123"
    refused = httpx.post(f"{url}/v1/forecast", json=body, timeout=30,
                         headers={"authorization": secret, "x-request-id": "auth-1"})
    assert refused.status_code == 401 and refused.headers["x-request-id"] == "auth-1"
    missing = httpx.get(f"{url}/openapi.json", headers={"x-request-id": "auth-2"})
    assert missing.status_code == 401 and missing.headers["x-request-id"] == "auth-2"
    host = httpx.get(f"{url}/healthz", headers={"host": "evil.example", "x-request-id": "h-1"})
    assert host.status_code == 400 and host.headers["x-request-id"] == "h-1"
    fault = httpx.get(f"{url}/boom", headers={"x-request-id": "boom-1"})
    assert fault.status_code == 500 and fault.headers["x-request-id"] == "boom-1"

    lines = log_lines()
    assert "sekrit" not in json.dumps(lines)
    by_id = {line.get("request_id"): line for line in lines}
    auth = by_id["auth-1"]
    assert (auth["logger"], auth["level"], auth["route"], auth["status"], auth["reason"]) == (
        "nearcast.auth", "WARNING", "/v1/forecast", 401, "unknown key")
    assert (by_id["auth-2"]["route"], by_id["auth-2"]["reason"]) == ("/openapi.json",
                                                                     "missing key")
    assert by_id["boom-1"]["logger"] == "nearcast.errors"
    assert by_id["boom-1"]["message"] == "internal error: RuntimeError"
    assert all(set(line) >= {"time", "level", "logger", "message"} for line in lines)


def test_admin_scope_refusal_is_logged(keyed: LiveServer,
                                       log_lines: Callable[[], list[dict[str, Any]]]) -> None:
    resp = httpx.post(f"{keyed.url}/v1/models/tiny/reload", headers=AUTH | {
        "x-request-id": "reload-1"}, timeout=30)
    assert resp.status_code == 403
    (line,) = [x for x in log_lines() if x.get("request_id") == "reload-1"]
    assert (line["route"], line["status"], line["reason"]) == (
        "/v1/models/{name}/reload", 403, "no admin scope")
    assert USER_KEY not in json.dumps(line)
