"""Forecast log cost: ``nearcast serve`` latency with the log off, on, and on with a full queue.

The quickstart model is trained with a short budget in a temporary embedded store
(:func:`benchmarks.serve_bench.train`, registered as champion). Then ``nearcast serve`` (the
real CLI, 1 worker, its own process) runs three times on 127.0.0.1:

- ``off``: ``NEARCAST_FORECAST_LOG_ENABLED=false``;
- ``on``: the default log (SQLite under the store's home, batches every 0.5 s);
- ``full``: the log on with a queue that is always full (``queue_max_series=1``, the writer
  flushing once an hour): every forecast after the first is dropped and counted, the path a
  request takes when the store cannot keep up.

The three servers run side by side (3 processes, one store) and get single-series requests
(168 points of history, 48 steps ahead) at 1 and 8 connections from a closed-loop asyncio +
httpx client in this process (each connection sends its next request when the answer
arrives): a warm-up each, then bursts of a bounded number of requests to one server after the
other, the order rotating each cycle, so a change of the machine's load hits all three alike;
latencies are pooled per server. The client shares the machine's cores with the servers, so
the absolute figures are the client's too; the comparison between the three is what the
benchmark is for. After the load the servers' /metrics give what each log wrote and dropped.

Run: ``python -m benchmarks.forecast_log_bench [--quick] [--out PATH]``; prints a table and
writes benchmarks/results/forecast_log.json (``--quick``: benchmarks/results/quick/).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from benchmarks.common import machine_info, print_table, result_path, write_json
from benchmarks.serve_bench import HORIZON, bodies, start, stop, train

CONCURRENCY = (1, 8)
CONFIGS: dict[str, dict[str, str]] = {
    "off": {"NEARCAST_FORECAST_LOG_ENABLED": "false"},
    "on": {"NEARCAST_FORECAST_LOG_ENABLED": "true"},
    "full": {"NEARCAST_FORECAST_LOG_ENABLED": "true", "NEARCAST_FORECAST_LOG_QUEUE_MAX_SERIES": "1",
             "NEARCAST_FORECAST_LOG_FLUSH_SECONDS": "3600"},
}
# Requests per burst at each concurrency, bursts per server, warm-up requests, training budget.
FULL = {"burst": {1: 100, 8: 300}, "cycles": 10, "warmup": 100, "budget": 5.0}
QUICK = {"burst": {1: 50, 8: 150}, "cycles": 3, "warmup": 30, "budget": 3.0}
_LOG_ENV = ("NEARCAST_FORECAST_LOG_ENABLED", "NEARCAST_FORECAST_LOG_QUEUE_MAX_SERIES",
            "NEARCAST_FORECAST_LOG_FLUSH_SECONDS", "NEARCAST_FORECAST_LOG_URL")


def load(url: str, body: bytes, conc: int, requests: int) -> tuple[list[float], int]:
    """``requests`` requests over ``conc`` closed-loop connections: latencies (s), errors."""

    async def main() -> tuple[list[float], int]:
        lat: list[float] = []
        errors = 0
        left = requests
        limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
        async with httpx.AsyncClient(limits=limits, timeout=10) as client:

            async def worker() -> None:
                nonlocal errors, left
                while left > 0:
                    left -= 1
                    t0 = time.perf_counter()
                    r = await client.post(url, content=body,
                                          headers={"content-type": "application/json"})
                    lat.append(time.perf_counter() - t0)
                    errors += r.status_code != 200

            await asyncio.gather(*(worker() for _ in range(conc)))
            return lat, errors

    return asyncio.run(main())


def log_counts(url: str) -> dict[str, float]:
    """The forecast log's counters from the server's /metrics."""
    from prometheus_client.parser import text_string_to_metric_families

    base = url.removesuffix("/v1/forecast")
    text = httpx.get(f"{base}/metrics", timeout=10).text
    out = {"written": 0.0, "dropped": 0.0, "failed": 0.0, "queued": 0.0}
    names = {f"nearcast_forecast_log_{k}_total": k for k in ("written", "dropped", "failed")}
    names["nearcast_forecast_log_queue_series"] = "queued"
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name in names:
                out[names[sample.name]] += sample.value
    return out


def start_with(config: str, home: Path, facts: dict[str, Any]) -> tuple[Any, str]:
    """``nearcast serve`` with ``config``'s forecast log settings (a log file of its own)."""
    saved = {k: os.environ.get(k) for k in _LOG_ENV}
    os.environ.update(CONFIGS[config] | {"NEARCAST_FORECAST_LOG_URL": f"sqlite:///{home}/"
                                         f"log-{config}.db"})
    try:
        return start("nearcast", home, facts)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def measure(urls: dict[str, str], body: bytes, plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Bursts to each server in turn (rotating order), pooled per server and concurrency."""
    rows = []
    for conc in CONCURRENCY:
        for url in urls.values():
            load(url, body, conc, plan["warmup"])
        lat: dict[str, list[float]] = {cfg: [] for cfg in urls}
        errors = dict.fromkeys(urls, 0)
        took = dict.fromkeys(urls, 0.0)
        order = list(urls)
        for cycle in range(plan["cycles"]):
            for cfg in order[cycle % 3:] + order[:cycle % 3]:
                t0 = time.perf_counter()
                part, bad = load(urls[cfg], body, conc, plan["burst"][conc])
                took[cfg] += time.perf_counter() - t0
                lat[cfg] += part
                errors[cfg] += bad
        time.sleep(0.6)  # one flush interval: what the writer has done by now
        for cfg, url in urls.items():
            ms = np.asarray(lat[cfg]) * 1e3
            row = {"log": cfg, "concurrency": conc, "requests": len(ms), "errors": errors[cfg],
                   "p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
                   "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()),
                   "rps": len(ms) / took[cfg],
                   **{f"log_{k}": v for k, v in log_counts(url).items()},
                   "loadavg_1min_after": round(os.getloadavg()[0], 2)}
            print(f"  {cfg:4s} c={conc}: p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, "
                  f"{row['rps']:.0f} req/s; log written {row['log_written']:.0f}, dropped "
                  f"{row['log_dropped']:.0f}", flush=True)
            rows.append(row)
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Latency ratios of the log on and of the full queue to the log switched off."""
    out: dict[str, Any] = {}
    for conc in CONCURRENCY:
        by = {r["log"]: r for r in rows if r["concurrency"] == conc}
        out[f"c{conc}"] = {f"{q}_ratio_to_off": {cfg: by[cfg][f"{q}_ms"] / by["off"][f"{q}_ms"]
                                                 for cfg in ("on", "full")}
                           for q in ("p50", "p99")}
    return out


def run(plan: dict[str, Any]) -> dict[str, Any]:
    """Train, start the three servers, load them in interleaved bursts, stop them."""
    home = Path(tempfile.mkdtemp(prefix="nearcast-log-bench-"))
    procs = []
    try:
        print(f"training the quickstart model (budget {plan['budget']:.0f}s) in {home}",
              flush=True)
        facts = train(home, plan["budget"])
        body = bodies(facts["series"])["nearcast"]
        urls = {}
        for config in CONFIGS:
            proc, urls[config] = start_with(config, home, facts)
            procs.append(proc)
        rows = measure(urls, body, plan)
    finally:
        for proc in procs:
            stop(proc)
        shutil.rmtree(home, ignore_errors=True)
    return {"benchmark": "forecast_log", "client": "python asyncio + httpx (closed loop, "
            "bounded request counts), in this process, unpinned; the three servers run side by "
            "side and get interleaved bursts in rotating order",
            "request": {"series": 1, "history": 168, "horizon": HORIZON},
            "configs": CONFIGS, "plan": {k: v for k, v in plan.items() if k != "burst"} | {
                "burst": {f"c{c}": n for c, n in plan["burst"].items()}},
            "machine": machine_info(), "runs": rows, "summary": summarize(rows)}


def main() -> None:
    """Parse arguments, run, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer requests, one round")
    parser.add_argument("--out", type=Path, help="result file (default: results/forecast_log."
                        "json, or results/quick/forecast_log.json with --quick)")
    args = parser.parse_args()
    result = {"quick": args.quick, **run(QUICK if args.quick else FULL)}
    print_table(result["runs"], ["log", "concurrency", "requests", "errors", "p50_ms", "p90_ms",
                                 "p99_ms", "rps", "log_written", "log_dropped", "log_queued"],
                title="forecast log: latency per setting")
    for key, part in result["summary"].items():
        print(f"{key}: p50 on/off {part['p50_ratio_to_off']['on']:.2f}, full/off "
              f"{part['p50_ratio_to_off']['full']:.2f}; p99 on/off "
              f"{part['p99_ratio_to_off']['on']:.2f}, full/off "
              f"{part['p99_ratio_to_off']['full']:.2f}")
    write_json(args.out or result_path("forecast_log", args.quick), result)


if __name__ == "__main__":
    main()
