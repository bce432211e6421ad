"""``nearcast serve`` and ``nearcast ui`` in their own processes: the bind guard, JSON log lines
with request ids, and a UI that leaves no process behind."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from retrain_helpers import REPO, Proc, cli_env, start_cli
from svc_helpers import AUTH, USER_KEY, series_body, wait_for

from conftest import Champion, free_port, make_settings

_NATIVE_TF = re.compile(r"WARNING: All log messages before absl::InitializeLog\(\)|"
                        r"[IWEF]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] ")


def _run_serve(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "nearcast", "serve", *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def _records(proc: Proc) -> list[dict[str, Any]]:
    """The JSON log lines of ``proc`` (other lines are returned as ``{"raw": line}``)."""
    out = []
    for line in proc.lines:
        try:
            out.append(json.loads(line))
        except ValueError:
            out.append({"raw": line})
    return out


@pytest.mark.parametrize(("args", "env", "says"), [
    (["--host", "0.0.0.0"], {}, "error: refusing to serve on 0.0.0.0 without API keys: set "
     "NEARCAST_API_KEYS (and NEARCAST_ADMIN_KEYS for reload; a JSON list or k1,k2) so clients "
     "must send 'Authorization: Bearer <key>', or set NEARCAST_AUTH=off to serve without auth"),
    ([], {"NEARCAST_HOST": "192.0.2.1"}, "error: refusing to serve on 192.0.2.1 without API "
                                         "keys"),
    ([], {"NEARCAST_AUTH": "on"}, "error: NEARCAST_AUTH=on but no API key is configured: set "
                                  "NEARCAST_API_KEYS"),
    (["--host", "0.0.0.0"], {"NEARCAST_AUTH": "off", "NEARCAST_API_KEYS": "k"},
     "error: NEARCAST_AUTH=off while API keys are configured: unset NEARCAST_AUTH or the keys"),
    ([], {"NEARCAST_AUTH": "maybe"}, "error: NEARCAST_AUTH: Input should be 'auto', 'on' or "
                                     "'off'"),
], ids=["no-keys-0.0.0.0", "no-keys-NEARCAST_HOST", "auth-on-no-keys", "auth-off-with-keys",
        "auth-unknown"])
def test_serve_refuses_unsafe_auth_settings_in_one_line(
    tmp_path: Path, args: list[str], env: dict[str, str], says: str
) -> None:
    home = tmp_path / "home"
    done = _run_serve(cli_env(make_settings(tmp_path)) | {"NEARCAST_HOME": str(home)} | env,
                      *args)
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(says), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert not home.exists()  # refused before touching the store (or loading any model code)


@pytest.fixture
def blocked_port() -> Iterator[int]:
    """A loopback port held by a listener, so a bind to 0.0.0.0 on it fails."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield int(sock.getsockname()[1])


def test_auth_off_passes_the_guard_on_a_non_loopback_host(tmp_path: Path,
                                                          blocked_port: int) -> None:
    env = cli_env(make_settings(tmp_path)) | {"NEARCAST_AUTH": "off"}
    proc = start_cli(["serve", "--host", "0.0.0.0", "--port", str(blocked_port)], env)
    try:  # the mode is logged before TensorFlow loads; the port stays ours, nothing is bound
        line = proc.wait_for(lambda s: "NEARCAST_AUTH=off" in s, timeout=60)
    finally:
        proc.popen.kill()
        proc.finish(30)
    assert line is not None, proc.text
    record = json.loads(line)
    assert (record["level"], record["logger"], record["host"]) == ("WARNING", "nearcast.serve",
                                                                   "0.0.0.0")
    assert record["message"] == (f"auth: OFF (NEARCAST_AUTH=off) on 0.0.0.0: anyone who "
                                 f"reaches port {blocked_port} can forecast and reload models")


@pytest.mark.slow
def test_serve_logs_json_lines_with_request_ids(champion: Champion,
                                                tiny_df: pd.DataFrame) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = cli_env(champion.settings) | {
        "NEARCAST_MODELS": champion.settings.model_name, "NEARCAST_PORT": str(port),
        "NEARCAST_API_KEYS": USER_KEY, "NEARCAST_ACCESS_LOG": "true"}
    proc = start_cli(["serve"], env)
    body = {"series": [series_body(tiny_df, "H2", 72)]}
    try:
        assert wait_for(lambda: _ready(url) or proc.popen.poll() is not None, timeout=120)
        assert proc.popen.poll() is None, proc.text
        ok = httpx.post(f"{url}/v1/forecast", json=body, timeout=30,
                        headers=AUTH | {"X-Request-ID": "cli-req-1"})
        assert ok.status_code == 200 and ok.headers["x-request-id"] == "cli-req-1"
        refused = httpx.post(f"{url}/v1/forecast", json=body, timeout=30,
                             headers={"authorization": "Bearer wrong-sekrit"})
        assert refused.status_code == 401
        generated = refused.headers["x-request-id"]
        assert httpx.get(f"{url}/docs", timeout=10).status_code == 401
        assert httpx.get(f"{url}/healthz", headers={"host": "evil.example"}).status_code == 400
    finally:
        proc.popen.send_signal(signal.SIGTERM)
        code = proc.finish(60)
    assert code in (0, -signal.SIGTERM), proc.text  # uvicorn re-raises the signal it handled
    records = _records(proc)
    # Every line is one JSON object, except what TensorFlow's C++ runtime writes to the file
    # descriptor itself at import (absl logging, before Python could configure anything).
    assert [r for r in records if "raw" in r and not _NATIVE_TF.match(r["raw"])] == []
    records = [r for r in records if "raw" not in r]
    assert all(set(r) >= {"time", "level", "logger", "message"} for r in records)
    assert "wrong-sekrit" not in proc.text and USER_KEY not in proc.text

    def one(**match: object) -> dict[str, Any]:
        found = [r for r in records if all(r.get(k) == v for k, v in match.items())]
        assert len(found) == 1, (match, found)
        return found[0]

    access = one(logger="nearcast.access", request_id="cli-req-1")
    assert (access["method"], access["route"], access["status"]) == ("POST", "/v1/forecast", 200)
    assert access["duration_ms"] > 0
    assert one(logger="nearcast.auth", request_id=generated)["reason"] == "unknown key"
    assert one(logger="nearcast.access", request_id=generated)["status"] == 401
    mode = one(logger="nearcast.app", auth="keys")
    assert mode["message"].startswith("auth: API keys required")
    version = champion.job.version.version
    load = one(logger="nearcast.store", event="load")
    assert (load["model"], load["version"], load["alias"]) == ("tiny", version, "champion")
    assert load["seconds"] > 0
    assert any(r["logger"] == "uvicorn.error" and r["message"].startswith("Uvicorn running on")
               for r in records)


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


# ----------------------------------------------------------------------------- nearcast ui


def _processes() -> dict[int, tuple[int, int, str]]:
    """pid -> (parent pid, process group, command line) of every process we can see."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        out[int(entry)] = (int(fields[1]), int(fields[2]), cmd)
    return out


def _tree(root: int) -> dict[int, tuple[int, int, str]]:
    procs = _processes()
    found = {root}
    for _ in range(10):  # bounded: the tree is a few levels deep
        found |= {pid for pid, (ppid, _, _) in procs.items() if ppid in found}
    return {pid: procs[pid] for pid in found if pid in procs}


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


@pytest.mark.slow
def test_ui_stops_everything_it_started(tmp_path: Path) -> None:
    port = free_port()
    env = cli_env(make_settings(tmp_path)) | {"NEARCAST_HOME": str(tmp_path / "home")}
    popen = subprocess.Popen([sys.executable, "-m", "nearcast", "ui", "--port", str(port)],
                             cwd=REPO, env=env, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, start_new_session=True)
    tree: dict[int, tuple[int, int, str]] = {}
    try:
        assert wait_for(lambda: _answers(f"http://127.0.0.1:{port}/health")
                        or popen.poll() is not None, timeout=180, every=0.5)
        assert popen.poll() is None
        time.sleep(2)  # a job runner would have started by now
        tree = _tree(popen.pid)
        commands = [cmd for _, _, cmd in tree.values()]
        assert not [c for c in commands if "huey" in c or "_job_runner" in c], commands
        server_groups = {pgid for pid, (_, pgid, _) in tree.items() if pid != popen.pid}
        assert len(server_groups) == 1 and popen.pid not in server_groups  # its own group
        (group,) = server_groups
        assert 2 <= len(tree) <= 4, commands  # nearcast, mlflow ui, its uvicorn (1 worker)

        popen.send_signal(signal.SIGTERM)
        assert popen.wait(60) == 0
        assert wait_for(lambda: not any(_alive(pid) for pid in tree), timeout=15)
        with pytest.raises(ProcessLookupError):
            os.killpg(group, 0)
    finally:
        for pid in [*tree, popen.pid]:  # clean up whatever a failure left (our own pids only)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        popen.wait(10)


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
