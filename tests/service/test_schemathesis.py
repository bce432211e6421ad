"""Property-based API test: schemathesis, with every one of its checks, against the app's own
/openapi.json served over real HTTP by the real app, finds nothing.

The run is bounded (examples per operation, a time budget, a fixed seed) and covers all of
schemathesis' phases (examples, coverage, fuzzing, stateful), positive and negative cases.
Positive forecast bodies are fitted to the rules JSON Schema cannot state (tests/service/
st_hooks.py says which); the test then counts, from the server's own metrics, how many
generated forecast requests reached the forecasting path and came back 200.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from svc_helpers import metric, scrape

from conftest import TINY_MODEL, Champion, LiveServer, start_server, stop_server
from nearcast.service.app import create_app
from nearcast.service.settings import ApiSettings

HERE = Path(__file__).parent
ST = Path(sys.executable).parent / "st"
MAX_EXAMPLES, MAX_SECONDS, SEED = 25, 25, 20261130
MIN_FORECASTS = 10  # answered 200: about 150 at this budget; 34 and 16 on starved machines
# Small lists keep generation quick; the document states these very limits.
API = ApiSettings(models=["tiny"], poll_seconds=60, max_series=3, max_points=200)


@pytest.fixture(scope="module")
def server(champion: Champion) -> Iterator[LiveServer]:
    # No API keys on loopback: the document declares no security, as the server enforces none.
    live = start_server(create_app(API, champion.settings))
    yield live
    stop_server(live)


def test_schemathesis_with_all_checks_finds_nothing(server: LiveServer, tmp_path: Path) -> None:
    before, started = scrape(server), time.monotonic()
    env = {**os.environ, "SCHEMATHESIS_HOOKS": "st_hooks", "NEARCAST_ST_URL": server.url,
           "NEARCAST_ST_MAX_SPAN": str(API.max_span_windows * TINY_MODEL.input_size),
           "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [str(ST), "run", f"{server.url}/openapi.json", "--checks", "all",
         "--max-examples", str(MAX_EXAMPLES), "--max-time", str(MAX_SECONDS),
         "--seed", str(SEED), "--workers", "1", "--no-color"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False)
    out, seconds = proc.stdout + proc.stderr, time.monotonic() - started
    assert proc.returncode == 0, out[-8000:]
    assert "No issues found" in out, out[-3000:]
    after = scrape(server)
    route = {"route": "/v1/forecast", "method": "POST"}

    def count(status: str) -> float:
        return (metric(after, "nearcast_http_requests_total", status=status, **route)
                - metric(before, "nearcast_http_requests_total", status=status, **route))

    answered, rejected = count("200"), count("422")
    print(f"schemathesis: {answered:.0f} forecasts answered 200, {rejected:.0f} rejected 422 "
          f"(negative cases), {count('500'):.0f} server errors, in {seconds:.1f} s")
    assert answered >= MIN_FORECASTS
    assert rejected > 0  # negative cases were sent and refused
    assert count("500") == 0
