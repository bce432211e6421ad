"""Serving speed: ``nearcast serve`` vs ``mlflow models serve`` on the same registered model.

The quickstart model (LSTM 64, input 168 hours folded into 7 days of 24, horizon 48) is trained
on the bundled M4 Hourly data with a short budget, registered and made ``champion`` in a
temporary embedded store. Then each server in turn is started on 127.0.0.1 from that store
(``nearcast serve``: the real CLI, 1 worker; ``mlflow models serve -m models:/NAME@champion
--env-manager local``), checked to return the same forecast, and loaded with single-series
requests (168 points of history, 48 steps ahead) at concurrency 1 and 16.

Load client: ``wrk`` (closed loop: each of the C connections sends its next request when the
previous answer arrives, so the load is bounded by C; a run is bounded by its duration), one
thread pinned to the last CPU with ``taskset``; the servers are not pinned. Without ``wrk`` a
bounded asyncio + httpx client is used instead (and named in the results): it needs a core of
its own, so its figures understate the faster server.

Figures depend on a quiet machine: each run records the 1-minute load average after it.

Run: ``python -m benchmarks.serve_bench [--quick] [--out PATH]``; prints a table and writes
benchmarks/results/serve.json (``--quick``: benchmarks/results/quick/serve.json).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks.common import ROOT, machine_info, result_path, write_json

BIN = Path(sys.executable).parent
NAME = "serve-bench"
CONCURRENCY = (1, 16)
HORIZON = 48
TARGETS = {"c16_ratio_min": 30.0, "c16_p99_ms_max": 30.0, "c1_p50_ms_max": 5.0}


# ----------------------------------------------------------------------------- model + requests
def train(home: Path, budget: float) -> dict[str, Any]:
    """Train the quickstart model, register it and make it champion; returns its facts."""
    from nearcast.models import registry
    from nearcast.models.estimator import Nearcast
    from nearcast.models.settings import MlflowSettings
    from nearcast.models.train import train as train_model
    from nearcast.pipelines.dataset import load_dataset
    from nearcast.service.quickstart import quickstart_job

    settings = MlflowSettings(home=home, model_name=NAME, experiment="serve-bench")
    spec = quickstart_job(budget)
    spec = spec.model_copy(update={"train": spec.train.model_copy(update={"verbose": False})})
    data = load_dataset(spec.data)
    job = train_model(Nearcast.from_job(spec), settings, data)
    assert job.version is not None
    registry.promote(settings.connect(), NAME, job.version.version, "serve benchmark")
    tail = data.frame[data.frame["unique_id"] == data.frame["unique_id"].iloc[0]].tail(168)
    return {"version": job.version.version, "run_id": job.run_id,
            "tracking_uri": settings.resolved_tracking_uri(),
            "train_seconds": round(job.training.seconds, 1),
            "series": {"id": str(tail["unique_id"].iloc[0]), "start": tail["ds"].iloc[0],
                       "values": [round(float(v), 3) for v in tail["y"]]}}


def bodies(series: dict[str, Any]) -> dict[str, bytes]:
    """The same single-series, 48-step request in each server's format."""
    start = series["start"]
    near = {"series": [{"id": series["id"], "start": start.isoformat(),
                        "values": series["values"]}], "horizon": HORIZON}
    # MLflow's signature types ds as naive timestamps (read as UTC by nearcast's pyfunc).
    hours = [(start + i * timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
             for i in range(len(series["values"]))]
    rows = [[series["id"], t, v] for t, v in zip(hours, series["values"], strict=True)]
    mlf = {"dataframe_split": {"columns": ["unique_id", "ds", "y"], "data": rows},
           "params": {"horizon": HORIZON}}
    return {"nearcast": json.dumps(near).encode(), "mlflow": json.dumps(mlf).encode()}


# ----------------------------------------------------------------------------- servers
def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start(server: str, home: Path, facts: dict[str, Any]) -> tuple[subprocess.Popen[bytes], str]:
    """Start one server in its own session; returns it and its forecast URL once ready."""
    port = _free_port()
    env = os.environ | {"PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
                        "TF_CPP_MIN_LOG_LEVEL": "2", "MLFLOW_TRACKING_URI": facts["tracking_uri"],
                        "MLFLOW_REGISTRY_URI": facts["tracking_uri"]}
    if server == "nearcast":
        env |= {"NEARCAST_HOME": str(home), "NEARCAST_MODELS": NAME, "NEARCAST_PORT": str(port)}
        cmd = [sys.executable, "-m", "nearcast", "serve"]
        ready, url = "/readyz", "/v1/forecast"
    else:
        cmd = [str(BIN / "mlflow"), "models", "serve", "-m", f"models:/{NAME}@champion",
               "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)]
        ready, url = "/ping", "/invocations"
    log = open(home / f"{server}.log", "wb")  # noqa: SIM115 (closed with the process)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    _wait(proc, base + ready, 180.0, home / f"{server}.log")
    return proc, base + url


def _wait(proc: subprocess.Popen[bytes], url: str, timeout: float, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text()[-3000:]
            raise RuntimeError(f"server exited ({proc.returncode}); log:\n{tail}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"{url} not ready within {timeout:.0f}s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's process group (ours: started with its own session)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def forecast_of(server: str, url: str, body: bytes) -> list[float]:
    """One request; the 48 point forecasts."""
    import httpx

    resp = httpx.post(url, content=body, headers={"content-type": "application/json"},
                      timeout=60)
    resp.raise_for_status()
    out = resp.json()
    if server == "nearcast":
        return [float(v) for v in out["series"][0]["forecast"]]
    return [float(row["forecast"]) for row in out["predictions"]]


# ----------------------------------------------------------------------------- load clients
_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = io.open(os.getenv("BENCH_BODY"), "rb"):read("*a")
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"socket_errors":%d,"non2xx":%d,' ..
    '"p50_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
"""


def run_wrk(url: str, body: bytes, conc: int, seconds: float, work: Path) -> dict[str, Any]:
    """One bounded wrk run (1 thread, ``conc`` connections, ``seconds``)."""
    (work / "body.json").write_bytes(body)
    (work / "post.lua").write_text(_LUA)
    cmd = ["wrk", "-t1", f"-c{conc}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
           "-s", str(work / "post.lua"), url]
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        cmd = ["taskset", "-c", str((os.cpu_count() or 2) - 1), *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True,
                         env=os.environ | {"BENCH_BODY": str(work / "body.json")})
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    r = json.loads(line.removeprefix("RESULT "))
    return {"requests": r["requests"], "errors": r["socket_errors"] + r["non2xx"],
            "rps": r["requests"] / (r["duration_us"] / 1e6), "p50_ms": r["p50_us"] / 1e3,
            "p99_ms": r["p99_us"] / 1e3, "mean_ms": r["mean_us"] / 1e3}


def run_python(url: str, body: bytes, conc: int, seconds: float, _: Path) -> dict[str, Any]:
    """Fallback client: ``conc`` asyncio workers, bounded by ``seconds`` and a request cap."""
    import asyncio

    import httpx
    import numpy as np

    cap = 200_000

    async def main() -> tuple[list[float], int, float]:
        lat: list[float] = []
        errors = 0
        limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
        async with httpx.AsyncClient(limits=limits, timeout=10) as client:
            end = time.perf_counter() + seconds

            async def worker() -> None:
                nonlocal errors
                while time.perf_counter() < end and len(lat) < cap:
                    t0 = time.perf_counter()
                    r = await client.post(url, content=body,
                                          headers={"content-type": "application/json"})
                    lat.append(time.perf_counter() - t0)
                    errors += r.status_code != 200

            t0 = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(conc)))
            return lat, errors, time.perf_counter() - t0

    lat, errors, took = asyncio.run(main())
    ms = np.asarray(lat) * 1e3
    return {"requests": len(lat), "errors": errors, "rps": len(lat) / took,
            "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
            "mean_ms": float(ms.mean())}


# ----------------------------------------------------------------------------- the benchmark
def measure(server: str, home: Path, facts: dict[str, Any], body: bytes, seconds: float,
            client: Any) -> tuple[list[dict[str, Any]], list[float]]:
    """Start ``server``, check one answer, run a warm-up and each concurrency, stop it."""
    proc, url = start(server, home, facts)
    try:
        answer = forecast_of(server, url, body)
        rows = []
        for conc in CONCURRENCY:
            client(url, body, conc, min(2.0, seconds), home)  # warm-up, not recorded
            row = {"server": server, "concurrency": conc, **client(url, body, conc, seconds,
                                                                    home),
                   "loadavg_1min_after": round(os.getloadavg()[0], 2)}
            print(f"  {server:9s} c={conc:<3d} {row['rps']:9.1f} req/s  p50 {row['p50_ms']:8.2f} ms"
                  f"  p99 {row['p99_ms']:8.2f} ms  ({row['requests']} requests, "
                  f"{row['errors']} errors)", flush=True)
            rows.append(row)
        return rows, answer
    finally:
        stop(proc)


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Ratios nearcast / mlflow per concurrency and the issue's targets."""
    by = {(r["server"], r["concurrency"]): r for r in rows}
    ratios = {f"c{c}": by[("nearcast", c)]["rps"] / by[("mlflow", c)]["rps"] for c in CONCURRENCY}
    checks = {
        "c16_ratio_min": ratios["c16"] >= TARGETS["c16_ratio_min"],
        "c16_p99_ms_max": by[("nearcast", 16)]["p99_ms"] <= TARGETS["c16_p99_ms_max"],
        "c1_p50_ms_max": by[("nearcast", 1)]["p50_ms"] <= TARGETS["c1_p50_ms_max"],
    }
    return {"rps_ratio": ratios, "targets": TARGETS, "met": checks}


def print_table(rows: list[dict[str, Any]], summary: dict[str, Any]) -> None:
    """The results as a table."""
    print(f"\n{'server':10s} {'conc':>4s} {'req/s':>10s} {'p50 ms':>9s} {'p99 ms':>9s}"
          f" {'requests':>9s} {'errors':>7s}")
    for r in rows:
        print(f"{r['server']:10s} {r['concurrency']:4d} {r['rps']:10.1f} {r['p50_ms']:9.2f}"
              f" {r['p99_ms']:9.2f} {r['requests']:9d} {r['errors']:7d}")
    for key, ratio in summary["rps_ratio"].items():
        print(f"nearcast / mlflow requests/s at {key}: {ratio:.1f}x")
    print("targets met:", summary["met"])


def run(seconds: float, budget: float, use_wrk: bool) -> dict[str, Any]:
    """Train in a temporary store, measure both servers, return the results record."""
    client = run_wrk if use_wrk else run_python
    home = Path(tempfile.mkdtemp(prefix="nearcast-serve-bench-"))
    try:
        print(f"training the quickstart model (budget {budget:.0f}s) in {home}", flush=True)
        facts = train(home, budget)
        body = bodies(facts["series"])
        rows: list[dict[str, Any]] = []
        answers = {}
        for server in ("nearcast", "mlflow"):
            part, answers[server] = measure(server, home, facts, body[server], seconds, client)
            rows += part
    finally:
        shutil.rmtree(home, ignore_errors=True)
    gap = max(abs(a - b) / max(abs(b), 1e-9) for a, b in zip(*answers.values(), strict=True))
    return {
        "benchmark": "serve", "seconds_per_run": seconds,
        "client": ("wrk 1 thread, pinned with taskset to the last CPU" if use_wrk
                   else "python asyncio + httpx (bounded), unpinned"),
        "request": {"series": 1, "history": 168, "horizon": HORIZON},
        "model": {k: facts[k] for k in ("version", "train_seconds")} | {
            "config": "quickstart: LSTM 64, input 168 folded by 24, horizon 48"},
        "same_forecast_max_rel_diff": gap,
        "machine": machine_info(),
        "runs": rows, **summarize(rows),
    }


def main() -> None:
    """Parse arguments, run, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="short training and load runs")
    parser.add_argument("--seconds", type=float, help="load duration per run")
    parser.add_argument("--budget", type=float, help="training budget, seconds")
    parser.add_argument("--out", type=Path, help="result file (default: results/serve.json, "
                        "or results/quick/serve.json with --quick)")
    args = parser.parse_args()
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    budget = args.budget or (15.0 if args.quick else 60.0)
    result = {"quick": args.quick, **run(seconds, budget, shutil.which("wrk") is not None)}
    print_table(result["runs"], result)
    write_json(args.out or result_path("serve", args.quick), result)


if __name__ == "__main__":
    main()
