"""Load: ``nearcast serve`` under 64 concurrent clients, steady, while the alias moves, and while
the tracking server is stopped and restarted.

Setup, the way a user runs it: a real ``mlflow server`` on 127.0.0.1 (SQLite backend and
proxied artifacts in a temporary folder) is the tracking URI; the quickstart model is trained
through it with a short budget (the quickstart's code path, as in :mod:`benchmarks.serve_bench`),
registered and made ``champion`` (v1), and registered once more as v2 (same artifact). Then
``nearcast serve`` runs in its own process group on a free port of 127.0.0.1 with
``NEARCAST_POLL_SECONDS=1``, and three loads of single-series requests (168 points of history,
48 steps ahead) run against it, each at concurrency 64 for 60 s (``--quick``: 8 s):

1. steady: the champion only;
2. alias moves: ``champion`` moves between v1 and v2 every 2 s (``MlflowClient.
   set_registered_model_alias`` from this process: the plain alias move the server follows);
3. tracking outage: the tracking server's process group is stopped a quarter into the load,
   kept down 15 s (quick: 3 s) and restarted on the same port; once it answers again the
   alias moves once more, to check that the server follows it again.

Load client: 64 asyncio tasks sharing one httpx client in this process (closed loop: each sends
its next request when the previous answer arrives), bounded by duration and a request cap.
Failed = any answer other than 200 or any connection error or timeout (10 s). Every answer's
``model.version`` is recorded: versions seen, swaps observed, alias moves followed and the lag
of each swap (:mod:`benchmarks.load_figures`). ``/readyz`` is polled
every 0.5 s to see when the server notices the outage. The servers' logs are kept in
benchmarks/results/tmp/load/.

Run: ``python -m benchmarks.load_bench [--quick] [--out PATH]``; prints a table and writes
benchmarks/results/load.json (``--quick``: benchmarks/results/quick/load.json).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import RESULTS, ROOT, machine_info, print_table, result_path, write_json
from benchmarks.load_figures import Sample, log_problems, summarize
from benchmarks.serve_bench import HORIZON, NAME, bodies, start, stop, train
from benchmarks.tracking_server import TrackingServer

CONCURRENCY = 64
POLL_SECONDS = 1.0
SWAP_EVERY = 2.0
TIMEOUT = 10.0
MAX_REQUESTS = 400_000  # per load: far above what 2 cores answer in 60 s
# Seconds: each load, the training budget (any model serves at the same speed), the outage.
FULL = {"seconds": 60.0, "budget": 15.0, "down": 15.0}
QUICK = {"seconds": 8.0, "budget": 5.0, "down": 3.0}
TARGETS = {"failed": 0}
LOGS = RESULTS / "tmp" / "load"
Disturb = Callable[[float, float], dict[str, Any]]


# ----------------------------------------------------------------------------- the load
async def _client_task(client: httpx.AsyncClient, url: str, body: bytes, t0: float, end: float,
                       samples: list[Sample]) -> None:
    while time.perf_counter() < end and len(samples) < MAX_REQUESTS:
        sent = time.perf_counter()
        try:
            resp = await client.post(url, content=body,
                                     headers={"content-type": "application/json"})
        except httpx.HTTPError as exc:
            samples.append((sent - t0, time.perf_counter() - sent, 0, 0, type(exc).__name__))
            await asyncio.sleep(0.05)  # a refused connection must not spin
            continue
        took = time.perf_counter() - sent
        try:
            out = resp.json()
            version = int(out["model"]["version"]) if resp.status_code == 200 else 0
            kind = "" if version else f"{resp.status_code}: {out['error']}"[:200]
        except (ValueError, KeyError, TypeError):
            version, kind = 0, f"{resp.status_code} (not the expected JSON): {resp.text[:120]}"
        samples.append((sent - t0, took, resp.status_code, version, kind))


async def _watch_ready(client: httpx.AsyncClient, base: str, t0: float, end: float
                       ) -> list[tuple[float, bool | None]]:
    """``/readyz`` every 0.5 s: (time, registry_reachable; None when not 200)."""
    seen: list[tuple[float, bool | None]] = []
    for _ in range(int((end - t0) / 0.5) + 1):
        if time.perf_counter() >= end:
            break
        try:
            resp = await client.get(f"{base}/readyz")
            ok = resp.json().get("registry_reachable") if resp.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            ok = None
        seen.append((time.perf_counter() - t0, ok))
        await asyncio.sleep(0.5)
    return seen


async def _load(url: str, body: bytes, seconds: float, disturb: Disturb | None
                ) -> tuple[list[Sample], float, list[tuple[float, bool | None]], dict[str, Any]]:
    """One load (``disturb`` runs alongside in a thread); samples, duration, /readyz, facts."""
    limits = httpx.Limits(max_connections=CONCURRENCY + 1,
                          max_keepalive_connections=CONCURRENCY + 1)
    samples: list[Sample] = []
    async with httpx.AsyncClient(limits=limits, timeout=TIMEOUT) as client:
        t0 = time.perf_counter()
        end = t0 + seconds
        side = asyncio.create_task(asyncio.to_thread(disturb or (lambda *_: {}), t0, end))
        watch = asyncio.create_task(_watch_ready(client, url.rsplit("/v1/", 1)[0], t0, end))
        await asyncio.gather(*(_client_task(client, url, body, t0, end, samples)
                               for _ in range(CONCURRENCY)))
        took = time.perf_counter() - t0
        return samples, took, await watch, await side  # a restart may outlast the load


# ----------------------------------------------------------------------------- disturbances
def _move(client: Any, versions: tuple[int, int], t0: float) -> tuple[float, int]:
    """Move ``champion`` to the version it is not on; (seconds since t0, version)."""
    current = int(client.get_model_version_by_alias(NAME, "champion").version)
    target = versions[1] if current == versions[0] else versions[0]
    client.set_registered_model_alias(NAME, "champion", str(target))
    return round(time.perf_counter() - t0, 3), target


def swapping(client: Any, versions: tuple[int, int]) -> Disturb:
    """Load 2: the alias moves every SWAP_EVERY seconds until the load ends."""

    def run(t0: float, end: float) -> dict[str, Any]:
        moves = []
        for i in range(1, int((end - t0) / SWAP_EVERY) + 1):
            time.sleep(max(0.0, t0 + i * SWAP_EVERY - time.perf_counter()))
            if time.perf_counter() < end - 0.5:
                moves.append(_move(client, versions, t0))
        return {"moves": moves}

    return run


def outage(tracking: TrackingServer, client: Any, versions: tuple[int, int], down: float
           ) -> Disturb:
    """Load 3: stop the tracking server a quarter in, restart it after ``down`` seconds, and
    move the alias once it answers (if the load lasts long enough to see it followed)."""

    def run(t0: float, end: float) -> dict[str, Any]:
        time.sleep(max(0.0, t0 + (end - t0) / 4 - time.perf_counter()))
        stopped = time.perf_counter() - t0
        tracking.stop()
        time.sleep(down)
        restarted = time.perf_counter() - t0
        tracking.start()
        up = time.perf_counter() - t0
        late = end - time.perf_counter() < 3 * POLL_SECONDS + 2
        return {"stopped_at_s": round(stopped, 2), "restarted_at_s": round(restarted, 2),
                "answering_at_s": round(up, 2), "down_s": round(up - stopped, 2),
                "moves": [] if late else [_move(client, versions, t0)]}

    return run


# ----------------------------------------------------------------------------- the benchmark
def _second_version(tracking: TrackingServer, version: int) -> tuple[Any, tuple[int, int]]:
    """Register the champion's artifact again (v2); returns the client and both versions."""
    from mlflow import MlflowClient

    from nearcast.models import registry

    client = MlflowClient(tracking_uri=tracking.url, registry_uri=tracking.url)
    first = client.get_model_version(NAME, str(version))
    second = registry.register(client, NAME, str(first.source), str(first.run_id))
    return client, (version, second.version)


def _keep_logs(work: Path) -> None:
    """Keep the servers' logs (results/tmp/load/, not committed) before the folder goes."""
    LOGS.mkdir(parents=True, exist_ok=True)
    for log in work.glob("*.log"):
        shutil.copy(log, LOGS / log.name)
    print(f"server logs kept in {LOGS.relative_to(ROOT)}", flush=True)


def run(seconds: float, budget: float, down: float) -> dict[str, Any]:
    """Start the tracking server, train, serve, run the three loads; the results record."""
    work = Path(tempfile.mkdtemp(prefix="nearcast-load-bench-"))
    tracking = TrackingServer(f"sqlite:///{work / 'mlflow.db'}", work / "artifacts",
                              work / "mlflow-server.log")
    api = None
    try:
        tracking.start()
        # what `nearcast serve` (started from this environment) and the training read
        os.environ |= {"NEARCAST_TRACKING_URI": tracking.url,
                       "NEARCAST_POLL_SECONDS": str(POLL_SECONDS)}
        print(f"training the quickstart model (budget {budget:.0f}s) through {tracking.url}",
              flush=True)
        facts = train(work, budget)
        client, versions = _second_version(tracking, facts["version"])
        api, url = start("nearcast", work, facts)
        body = bodies(facts["series"])["nearcast"]
        asyncio.run(_load(url, body, min(2.0, seconds), None))  # warm-up, not recorded
        loads = (("steady", None), ("alias moves every 2 s", swapping(client, versions)),
                 ("tracking server restart", outage(tracking, client, versions, down)))
        rows = []
        for name, disturb in loads:
            print(f"load '{name}': concurrency {CONCURRENCY} for {seconds:.0f}s", flush=True)
            rows.append(summarize(name, *asyncio.run(_load(url, body, seconds, disturb))))
            rows[-1]["server_alive_after"] = api.poll() is None
            print(json.dumps(rows[-1], default=str), flush=True)
        problems = log_problems(work / "nearcast.log")
    finally:
        if api is not None:
            stop(api)
        tracking.stop()
        _keep_logs(work)
        shutil.rmtree(work, ignore_errors=True)
    return {
        "benchmark": "load", "concurrency": CONCURRENCY, "seconds_per_load": seconds,
        "poll_seconds": POLL_SECONDS, "swap_every_seconds": SWAP_EVERY, "outage_seconds": down,
        "client": f"python asyncio + httpx, {CONCURRENCY} tasks, closed loop, timeout "
                  f"{TIMEOUT:.0f} s, unpinned",
        "server": f"nearcast serve, 1 worker, default settings but NEARCAST_POLL_SECONDS="
                  f"{POLL_SECONDS:g}",
        "tracking": "mlflow server on 127.0.0.1, SQLite backend, proxied artifacts",
        "request": {"series": 1, "history": 168, "horizon": HORIZON},
        "model": {"name": NAME, "versions": list(versions),
                  "train_seconds": facts["train_seconds"],
                  "config": "quickstart: LSTM 64, input 168 folded by 24, horizon 48"},
        "server_log_problems": {"count": len(problems),
                                "most_common": dict(Counter(problems).most_common(5))},
        "machine": machine_info(), "targets": TARGETS,
        "met": all(r["failed"] <= TARGETS["failed"] for r in rows), "loads": rows,
    }


COLUMNS = ["load", "requests", "failed", "p50_ms", "p99_ms", "rps", "versions_seen",
           "swaps_observed", "alias_moves", "moves_followed", "swap_lag_max_s", "down_s"]


def main() -> None:
    """Parse arguments, run, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"loads of {QUICK['seconds']:g} s instead of {FULL['seconds']:g} s")
    parser.add_argument("--seconds", type=float, help="duration of each load")
    parser.add_argument("--out", type=Path, help="result file (default: results/load.json, "
                        "or results/quick/load.json with --quick)")
    args = parser.parse_args()
    mode = QUICK if args.quick else FULL
    seconds = args.seconds or mode["seconds"]
    result = {"quick": args.quick, **run(seconds, mode["budget"], mode["down"])}
    print_table(result["loads"], COLUMNS, title=f"load: concurrency {CONCURRENCY}, {seconds:.0f}s "
                "each (failed = non-200 or connection error; target 0)")
    write_json(args.out or result_path("load", args.quick), result)


if __name__ == "__main__":
    main()
