"""Load clients of the serving benchmark: ``wrk`` (preferred) and a bounded Python fallback.

Both are closed loops: each of the C connections sends its next request when the previous
answer arrives, so the load is bounded by C, and a run is bounded by its duration (the Python
client also by a request cap). A run takes one or several request bodies; with several, each
request picks one at random (the mixed-batch-size phase). ``wrk`` runs one thread pinned with
``taskset`` to the last CPU; the Python client (asyncio + httpx) needs a core of its own, so its
figures understate a fast server.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np

_LUA = """
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local bodies = {}
for line in io.lines(os.getenv("BENCH_BODIES")) do bodies[#bodies + 1] = line end
wrk.body = bodies[1]
if #bodies > 1 then
  request = function()
    return wrk.format(nil, nil, nil, bodies[math.random(#bodies)])
  end
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {"requests":%d,"duration_us":%d,"socket_errors":%d,"non2xx":%d,' ..
    '"p50_us":%d,"p99_us":%d,"mean_us":%.1f,"max_us":%d}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max))
end
"""


def _one_line(body: bytes) -> bytes:
    if b"\n" in body:
        raise ValueError("request bodies must be one line of JSON")
    return body


def run_wrk(url: str, bodies: list[bytes], conc: int, seconds: float, work: Path
            ) -> dict[str, Any]:
    """One bounded wrk run (1 thread, ``conc`` connections, ``seconds``)."""
    (work / "bodies.jsonl").write_bytes(b"\n".join(_one_line(b) for b in bodies) + b"\n")
    (work / "post.lua").write_text(_LUA)
    cmd = ["wrk", "-t1", f"-c{conc}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
           "-s", str(work / "post.lua"), url]
    if shutil.which("taskset") and (os.cpu_count() or 1) > 1:
        cmd = ["taskset", "-c", str((os.cpu_count() or 2) - 1), *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60, check=True,
                         env=os.environ | {"BENCH_BODIES": str(work / "bodies.jsonl")})
    line = next(x for x in out.stdout.splitlines() if x.startswith("RESULT "))
    r = json.loads(line.removeprefix("RESULT "))
    return {"requests": r["requests"], "errors": r["socket_errors"] + r["non2xx"],
            "rps": r["requests"] / (r["duration_us"] / 1e6), "p50_ms": r["p50_us"] / 1e3,
            "p99_ms": r["p99_us"] / 1e3, "mean_ms": r["mean_us"] / 1e3,
            "max_ms": r["max_us"] / 1e3}


def run_python(url: str, bodies: list[bytes], conc: int, seconds: float, _: Path
               ) -> dict[str, Any]:
    """Fallback client: ``conc`` asyncio workers, bounded by ``seconds`` and a request cap."""
    import asyncio

    import httpx

    cap = 200_000
    rng = np.random.default_rng(0)

    async def main() -> tuple[list[float], int, float]:
        lat: list[float] = []
        errors = 0
        limits = httpx.Limits(max_connections=conc, max_keepalive_connections=conc)
        async with httpx.AsyncClient(limits=limits, timeout=10) as client:
            end = time.perf_counter() + seconds

            async def worker() -> None:
                nonlocal errors
                while time.perf_counter() < end and len(lat) < cap:
                    body = bodies[int(rng.integers(len(bodies)))]
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
            "mean_ms": float(ms.mean()), "max_ms": float(ms.max())}


def client_for(use_wrk: bool) -> tuple[Any, str]:
    """The load function and its description for the results."""
    if use_wrk:
        return run_wrk, "wrk 1 thread, pinned with taskset to the last CPU"
    return run_python, "python asyncio + httpx (bounded), unpinned"


__all__ = ["client_for", "run_python", "run_wrk"]
