"""Single-series latency through the API: the recommended ensemble vs one of its members.

Both models come from ``configs/m4-hourly.yaml``: the single model is its base config, the
ensemble its 4 members joined into one graph (latency depends on the graph, not on how long it
trained, so each trains for a few seconds on a subset). One nearcast app on 127.0.0.1 serves
both (through the XLA ladder, the default; ``NEARCAST_XLA=false`` for the plain path);
requests alternate between them one at a time (bounded count and time), each a 336-point
history asking for 48 steps. Reports p50/p99 per model and the ratio (issue target: the
ensemble within 3x the single model).

Run: ``python -m benchmarks.ensemble_latency [--quick]``; writes ``results/ensemble_latency.json``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import numpy as np  # noqa: E402

from benchmarks.common import ROOT, machine_info, print_table, result_path, write_json  # noqa: E402

CONFIG = ROOT / "configs" / "m4-hourly.yaml"
REQUESTS, QUICK_REQUESTS, MAX_SECONDS = 400, 60, 120.0


def _train(home: Path) -> dict[str, Any]:
    """Register ``single`` and ``ensemble`` (champions) in an embedded store under ``home``."""
    from nearcast.models import registry
    from nearcast.models.estimator import Nearcast
    from nearcast.models.jobconfig import JobConfig
    from nearcast.models.settings import MlflowSettings
    from nearcast.models.train import train as train_model
    from nearcast.pipelines.dataset import load_dataset

    job = JobConfig.from_yaml(CONFIG)
    data = load_dataset(job.data.model_copy(update={"n_series": 40}))
    train = job.train.model_copy(update={"max_seconds": 5.0, "verbose": False})
    out: dict[str, Any] = {}
    for name, ensemble in (("single", None), ("ensemble", job.ensemble)):
        settings = MlflowSettings(home=home, experiment="latency", model_name=name)
        spec = job.model_copy(update={"train": train, "ensemble": ensemble})
        result = train_model(Nearcast.from_job(spec), settings, data)
        assert result.version is not None
        registry.promote(settings.connect(), name, result.version.version, "benchmark")
        out[name] = settings
    out["history"] = data.frame[data.frame["unique_id"] == data.frame["unique_id"].iloc[0]]
    return out


def _measure(url: str, history: Any, n: int) -> dict[str, list[float]]:
    import httpx

    tail = history.tail(336)
    series = [{"id": "s", "start": tail["ds"].iloc[0].isoformat(), "values": tail["y"].tolist()}]
    times: dict[str, list[float]] = {"single": [], "ensemble": []}
    deadline = time.monotonic() + MAX_SECONDS
    with httpx.Client(base_url=url, timeout=10) as client:
        for i in range(n + 20):
            if time.monotonic() > deadline:
                break
            model = "single" if i % 2 == 0 else "ensemble"
            t0 = time.perf_counter()
            resp = client.post("/v1/forecast", json={"series": series, "model": model})
            elapsed = time.perf_counter() - t0
            resp.raise_for_status()
            if i >= 20:  # the first 20 warm connections and code paths
                times[model].append(elapsed * 1000)
    return times


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_REQUESTS} requests")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    import threading

    import uvicorn

    from nearcast.service.app import create_app
    from nearcast.service.settings import ApiSettings

    with tempfile.TemporaryDirectory() as tmp:
        trained = _train(Path(tmp))
        api = ApiSettings(models=["single", "ensemble"], access_log=False)
        server = uvicorn.Server(uvicorn.Config(create_app(api, trained["single"]),
                                               host="127.0.0.1", port=0, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        port = server.servers[0].sockets[0].getsockname()[1]
        times = _measure(f"http://127.0.0.1:{port}", trained["history"],
                         QUICK_REQUESTS if args.quick else REQUESTS)
        server.should_exit = True
        thread.join(10)
    p50 = {m: float(np.percentile(t, 50)) for m, t in times.items()}
    rows = [{"model": m, "requests": len(t), "p50_ms": p50[m],
             "p99_ms": float(np.percentile(t, 99))} for m, t in times.items()]
    ratio = p50["ensemble"] / p50["single"]
    print_table(rows, title="single-series latency through POST /v1/forecast (sequential)")
    print(f"ensemble / single p50: {ratio:.2f}x (target <= 3x)")
    result = {"benchmark": "ensemble_latency", "quick": args.quick, "machine": machine_info(),
              "rows": rows, "ratio_p50": round(ratio, 3), "within_3x": ratio <= 3.0}
    write_json(args.out or result_path("ensemble_latency", args.quick), result)
    return result


if __name__ == "__main__":
    main()
