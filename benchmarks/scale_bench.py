"""Scale: batch forecasts of many synthetic series, three ways, with peak memory.

The quickstart model (LSTM 64, input 168 hours folded into 7 days of 24, horizon 48, log-level
scaling) is trained briefly on the bundled M4 Hourly data (:func:`benchmarks.serve_bench.train`;
any model of that shape forecasts at the same speed), registered and made ``champion`` in a
temporary embedded store. Synthetic hourly series (1,000 points each, positive: a level, a
daily and a weekly cycle and uniform noise) are generated on the fly, never stored, and forecast 48
steps ahead three ways:

* **one process**: ``nearcast forecast``'s own code (:func:`models.forecast_job.forecast_to`:
  model loaded from the registry, chunks of 2,000 series through :func:`models.batch.
  forecast_chunks`, a Parquet folder written chunk by chunk), the chunks made by a generator
  as the job asks for them, so nothing holds every series;
* **Spark** ``local[2]``: the series made on the executors (``spark.range`` + ``mapInArrow``
  running the same generator, its rows packed by bucket with the engine's own
  :func:`service.spark_batch.pack_rows`), forecast by :func:`service.spark_batch.
  forecast_packed_on_spark` (``groupBy(bucket).applyInArrow`` running
  :func:`models.batch.forecast_chunk`, the forecasts written by Spark to Parquet). Start-up
  (session, then a warm-up run of 2,000 series that loads the model in both Python workers)
  is reported apart from the timed run;
* **HTTP API**, for reference: ``nearcast serve`` (1 worker) on 127.0.0.1 with the same
  champion, sent a bounded subset of the same series (requests of 100 series x 1,000 points,
  4 at a time, a cap on count and time).

Each configuration runs in a process of its own (the HTTP one: the server); its peak memory is
the largest total resident set (``VmRSS``) of that process and every process under it (Spark:
the driver, its JVM and the Python workers), polled every 0.25 s (shared pages count once per
process); the one-process job's is its own ``VmHWM``. Two sizes per engine show whether memory
stays flat in the number of series. Series/s of the one-process job and of Spark's timed run
include making the series and writing the forecasts.

Training throughput: the quickstart job (fixed epochs) on 2,000 of the same synthetic series,
``nearcast train`` alone and as two ``--distributed`` workers on 127.0.0.1
(:mod:`benchmarks.scale_training`), samples/s and the scaling efficiency.

Run: ``python -m benchmarks.scale_bench [--quick] [--out PATH]``; prints a table and writes
benchmarks/results/scale.json (``--quick``: benchmarks/results/quick/scale.json).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from benchmarks.common import (
    ROOT,
    machine_info,
    max_rss_bytes,
    print_table,
    result_path,
    write_json,
)
from benchmarks.serve_bench import NAME, start, stop, train

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

LENGTH = 1000  # points per series
HORIZON = 48
CHUNK = 2000  # series per chunk of the one-process job (its default, CHUNK_SERIES)
START_NS = 1_704_067_200 * 10**9  # 2024-01-01 00:00 UTC
HOUR_NS = 3600 * 10**9
MODEL = f"models:/{NAME}@champion"
SPARK_MASTER = "local[2]"
WARMUP_SERIES = 2000
HTTP_PER_REQUEST, HTTP_CONCURRENCY, HTTP_SECONDS = 100, 4, 180.0
FULL = {"local": (10_000, 100_000), "spark": (10_000, 100_000), "http": 5_000, "budget": 10.0}
QUICK = {"local": (2_000, 10_000), "spark": (4_000,), "http": 500, "budget": 5.0}
# How the Spark engine got where it is: 100,000 series (10,000 where marked), measured once
# each while it was developed, on the same 2 shared cores; kept to show what does not pay.
SPARK_TRIED = [
    {"variant": "long rows, groupBy(bucket).applyInPandas, result cached and read 3 times",
     "series": 10_000, "series_per_s": 230},
    {"variant": "long rows, applyInArrow, no model (Spark's data movement alone)",
     "series": 10_000, "series_per_s": 430},
    {"variant": "rows packed per bucket as Arrow IPC blobs, result cached and read 3 times",
     "series": 100_000, "series_per_s": 1290},
    {"variant": "+ LZ4-compressed blobs", "series": 100_000, "series_per_s": 1400},
    {"variant": "+ one pass: Spark writes, series left out through an accumulator",
     "series": 100_000, "series_per_s": 2380},
    {"variant": "+ constant provenance columns added by Spark, not sent from Python",
     "series": 100_000, "series_per_s": 2530},
    {"variant": "packed blobs, no model (data movement alone: the ceiling)",
     "series": 100_000, "series_per_s": 4230},
    {"variant": "TensorFlow 1 thread per worker; driver memory 4g", "series": 100_000,
     "series_per_s": None, "note": "no measurable change"},
]
TARGETS = {"local_series_per_s_min": 5000.0, "spark_slowdown_max": 2.0,
           "rss_growth_max": 1.25}


# ----------------------------------------------------------------------------- the series
def synthetic_series(indices: np.ndarray, length: int = LENGTH) -> pa.Table:
    """The series ``S0000000``, ``S0000001``, ... of ``indices``, long, as one Arrow table.

    Hourly from 2024-01-01 UTC; each series a level (50..500) times a daily and a weekly
    cycle, plus uniform noise of +-2 %, so every value is > 0 (the model scales by log). The
    same indices give the same series.
    """
    import pyarrow as pa

    idx = np.asarray(indices, dtype=np.int64)
    count = len(idx)
    rng = np.random.default_rng([7, int(idx[0]) if count else 0, count])
    level = (50.0 + (idx * 7919 % 450) + rng.random(count))[:, None]
    noise = rng.random((count, length), dtype=np.float32)
    noise -= 0.5
    noise *= 0.04
    noise += _cycles(length)[idx % 24]  # one of 24 phases of the daily cycle
    y = level * noise  # float64: every bit of the mantissa in use, as in measured data
    names = pa.array([f"S{i:07d}" for i in idx], pa.string())
    ids = names.take(pa.array(np.repeat(np.arange(count), length)))
    ns = np.tile(START_NS + HOUR_NS * np.arange(length, dtype=np.int64), count)
    return pa.table({"unique_id": ids,
                     "ds": pa.array(ns // 1000).cast(pa.timestamp("us", tz="UTC")),
                     "y": pa.array(y.ravel(), pa.float64())})


@functools.cache
def _cycles(length: int) -> np.ndarray:
    """``1 + 0.3 sin(daily) + 0.1 sin(weekly)`` for each of 24 daily phases, ``(24, length)``."""
    hours = np.arange(length)[None, :]
    phase = np.arange(24)[:, None]
    return (1.0 + 0.3 * np.sin(2 * np.pi * (hours + phase) / 24)
            + 0.1 * np.sin(2 * np.pi * hours / 168)).astype(np.float32)


def local_chunks(n_series: int, per_chunk: int = CHUNK) -> Iterator[pd.DataFrame]:
    """``n_series`` series as long frames of ``per_chunk`` series, made one at a time."""
    for first in range(0, n_series, per_chunk):
        count = min(per_chunk, n_series - first)
        yield synthetic_series(np.arange(first, first + count)).to_pandas()


class _SparkSeries:
    """``mapInArrow`` function: series indices -> their rows, packed by the Spark engine's
    :func:`service.spark_batch.pack_rows` (``CHUNK`` series a time)."""

    def __init__(self, buckets: int) -> None:
        self.buckets = buckets

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from nearcast.service.spark_batch import pack_rows

        for batch in batches:
            idx = batch.column(0).to_numpy()
            for lo in range(0, len(idx), CHUNK):
                yield from pack_rows(synthetic_series(idx[lo:lo + CHUNK]),
                                     self.buckets).to_batches()


# ----------------------------------------------------------------------------- peak memory
def _children() -> dict[int, list[int]]:
    """Every process's children, from /proc."""
    out: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        out.setdefault(ppid, []).append(int(entry.name))
    return out


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class PeakMemory:
    """Peak resident memory of a process tree: the largest sum of its processes' ``VmRSS``."""

    def __init__(self, pid: int, every: float = 0.25) -> None:
        self.pid, self.every, self.peak = pid, every, 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _poll(self) -> None:
        while not self._done.is_set():
            tree, todo = [], [self.pid]
            kids = _children()
            while todo:
                pid = todo.pop()
                tree.append(pid)
                todo += kids.get(pid, [])
            self.peak = max(self.peak, sum(_rss(pid) for pid in tree))
            self._done.wait(self.every)

    def stop(self) -> int:
        """Stop polling; the peak in bytes."""
        self._done.set()
        self._thread.join(5)
        return self.peak


# ----------------------------------------------------------------------------- one configuration
def _settings(home: Path) -> Any:
    from nearcast.models.settings import MlflowSettings

    return MlflowSettings(home=home, model_name=NAME, experiment="scale-bench")


def child_local(home: Path, work: Path, n_series: int) -> dict[str, Any]:
    """The one-process job over ``n_series`` generated series, written to a Parquet folder."""
    from nearcast.models.forecast_job import forecast_to
    from nearcast.models.forecaster import ModelMeta

    started = time.perf_counter()
    marks: dict[str, float] = {"making": 0.0}

    def chunks(meta: ModelMeta) -> Iterator[pd.DataFrame]:
        marks["first"] = time.perf_counter()  # the model is loaded: the job asks for data
        made = local_chunks(n_series)
        while True:
            t0 = time.perf_counter()
            chunk = next(made, None)
            marks["making"] += time.perf_counter() - t0
            if chunk is None:
                return
            yield chunk

    result = forecast_to(MODEL, chunks, _settings(home), str(work / "local"))
    took = time.perf_counter() - marks["first"]
    assert result.summary.series_written == n_series, result.summary.text()
    return {"startup_s": marks["first"] - started, "seconds": took,
            "making_s": marks["making"], "series_written": result.summary.series_written,
            "rows_written": result.summary.rows_written, "own_peak_rss": max_rss_bytes()}


def child_spark(home: Path, work: Path, n_series: int) -> dict[str, Any]:
    """Spark ``local[2]``: a warm-up run, then ``n_series`` series made and forecast by Spark."""
    from nearcast.models.artifact import load_forecaster
    from nearcast.models.batch import Provenance
    from nearcast.models.evaluate_job import version_of
    from nearcast.models.inference import output_columns
    from nearcast.service.spark_batch import (
        PACKED,
        bucket_count,
        forecast_packed_on_spark,
        spark_session,
    )

    settings = _settings(home)
    ref = version_of(settings.connect(), MODEL)
    assert ref is not None
    provenance = Provenance(MODEL, ref.name, ref.version, ref.run_id)
    values = output_columns(load_forecaster(MODEL))
    # the Python workers import this module (the generator) from the checkout
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    os.environ["PYSPARK_SUBMIT_ARGS"] = "--conf spark.ui.showConsoleProgress=false pyspark-shell"
    t0 = time.perf_counter()
    spark = spark_session(SPARK_MASTER)
    session_s = time.perf_counter() - t0
    spark.sparkContext.setLogLevel("ERROR")

    def run(n: int, out: Path) -> Any:
        # by its module's name, not __main__'s, so the workers import it rather than unpickle
        from benchmarks.scale_bench import _SparkSeries

        buckets = bucket_count(spark.sparkContext.defaultParallelism, n)
        packed = (spark.range(0, n, 1, numPartitions=max(2, n // 10_000))
                  .mapInArrow(_SparkSeries(buckets), PACKED))
        return forecast_packed_on_spark(packed, MODEL, settings.resolved_tracking_uri(),
                                        provenance, HORIZON, values, str(out), buckets=buckets)

    t0 = time.perf_counter()
    run(WARMUP_SERIES, work / "spark-warmup")
    warmup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    summary = run(n_series, work / "spark")
    took = time.perf_counter() - t0
    spark.stop()
    assert summary.series_written == n_series, summary.text()
    return {"startup_s": session_s + warmup_s, "session_s": session_s, "warmup_s": warmup_s,
            "seconds": took, "series_written": summary.series_written,
            "rows_written": summary.rows_written}


def run_child(engine: str, home: Path, n_series: int) -> dict[str, Any]:
    """Run one configuration in a process of its own; its figures and peak memory."""
    work = Path(tempfile.mkdtemp(prefix=f"scale-{engine}-", dir=home))
    cmd = [sys.executable, "-m", "benchmarks.scale_bench", "--child", engine, "--home", str(home),
           "--work", str(work), "--series", str(n_series)]
    env = os.environ | {"TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    print(f"  {engine}: {n_series} series ...", flush=True)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True,
                            start_new_session=True)
    memory = PeakMemory(proc.pid)
    out, _ = proc.communicate(timeout=1800)
    peak = memory.stop()
    shutil.rmtree(work, ignore_errors=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{engine} {n_series}: exit code {proc.returncode}\n{out[-3000:]}")
    figures = json.loads(next(x for x in out.splitlines() if x.startswith("RESULT "))[7:])
    peak = max(peak, int(figures.pop("own_peak_rss", 0)))
    label = {"local": "one process", "spark": f"Spark {SPARK_MASTER}"}[engine]
    row = {"engine": label, "series": n_series, "points": n_series * LENGTH,
           "startup_s": round(figures["startup_s"], 1), "seconds": round(figures["seconds"], 1),
           "series_per_s": round(n_series / figures["seconds"], 1),
           "peak_rss_mib": round(peak / 2**20)}
    row |= {k: round(v, 1) for k, v in figures.items() if k in ("making_s", "session_s",
                                                                 "warmup_s")}
    print(f"  {label}: {row['series_per_s']:.0f} series/s, peak {row['peak_rss_mib']} MiB "
          f"(start-up {row['startup_s']} s)", flush=True)
    return row


# ----------------------------------------------------------------------------- HTTP reference
def _requests(n_series: int) -> list[bytes]:
    """The first ``n_series`` series as API request bodies of ``HTTP_PER_REQUEST`` each."""
    import pandas as pd

    per = HTTP_PER_REQUEST
    bodies = []
    for first in range(0, n_series, per):
        table = synthetic_series(np.arange(first, min(n_series, first + per)))
        ys = table.column("y").to_numpy().reshape(-1, LENGTH)
        names = table.column("unique_id").to_pylist()[::LENGTH]
        start = pd.Timestamp(START_NS, tz="UTC").isoformat()
        series = [{"id": n, "start": start, "values": [round(float(v), 4) for v in y]}
                  for n, y in zip(names, ys, strict=True)]
        bodies.append(json.dumps({"series": series, "horizon": HORIZON}).encode())
    return bodies


def http_row(home: Path, facts: dict[str, Any], n_series: int) -> dict[str, Any]:
    """``nearcast serve`` sent ``n_series`` series, ``HTTP_CONCURRENCY`` requests at a time."""
    import httpx

    bodies = _requests(n_series)
    t0 = time.perf_counter()
    proc, url = start("nearcast", home, facts)
    startup = time.perf_counter() - t0
    memory = PeakMemory(proc.pid)
    done: list[int] = []
    errors: list[str] = []

    async def send() -> float:
        queue = list(reversed(bodies))
        deadline = time.perf_counter() + HTTP_SECONDS
        async with httpx.AsyncClient(timeout=120) as client:

            async def worker() -> None:
                while queue and time.perf_counter() < deadline:
                    body = queue.pop()
                    resp = await client.post(url, content=body,
                                             headers={"content-type": "application/json"})
                    if resp.status_code == 200:
                        done.append(len(resp.json()["series"]))
                    else:
                        errors.append(f"{resp.status_code}: {resp.text[:200]}")

            began = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(HTTP_CONCURRENCY)))
            return time.perf_counter() - began

    try:
        asyncio.run(send_warmup(url, bodies[0]))
        took = asyncio.run(send())
    finally:
        peak = memory.stop()
        stop(proc)
    if errors:
        raise RuntimeError(f"HTTP: {len(errors)} failed requests, first: {errors[0]}")
    sent = sum(done)
    row = {"engine": "HTTP API (subset)", "series": sent, "points": sent * LENGTH,
           "startup_s": round(startup, 1), "seconds": round(took, 1),
           "series_per_s": round(sent / took, 1), "peak_rss_mib": round(peak / 2**20)}
    print(f"  HTTP: {row['series_per_s']:.0f} series/s over {sent} series, peak "
          f"{row['peak_rss_mib']} MiB", flush=True)
    return row


async def send_warmup(url: str, body: bytes) -> None:
    """One request before the timed ones (the server's first model call)."""
    import httpx

    async with httpx.AsyncClient(timeout=120) as client:
        resp = await client.post(url, content=body, headers={"content-type": "application/json"})
        resp.raise_for_status()


# ----------------------------------------------------------------------------- training
TRAIN_SERIES, QUICK_TRAIN_SERIES = 2_000, 400
"""Series the training rows train on (of :func:`synthetic_series`, 1,000 points each)."""


def training_rows(home: Path, quick: bool) -> list[dict[str, Any]]:
    """Training samples/s with 1 process and with 2 workers (:mod:`benchmarks.scale_training`)
    on synthetic series written to a Parquet file in ``home``."""
    import pyarrow.parquet as pq

    from benchmarks.scale_training import training_rows as measure

    data = home / "train-series.parquet"
    pq.write_table(synthetic_series(np.arange(QUICK_TRAIN_SERIES if quick else TRAIN_SERIES)),
                   data)
    return measure(data, home, quick)


# ----------------------------------------------------------------------------- the benchmark
def summarize(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's targets, checked on the largest runs."""
    def largest(engine: str) -> dict[str, Any] | None:
        mine = [r for r in rows if r["engine"] == engine]
        return max(mine, key=lambda r: r["series"]) if mine else None

    def growth(engine: str) -> float | None:
        mine = sorted((r for r in rows if r["engine"] == engine), key=lambda r: r["series"])
        return round(mine[-1]["peak_rss_mib"] / mine[0]["peak_rss_mib"], 3) if len(
            mine) > 1 else None

    local, spark = largest("one process"), largest(f"Spark {SPARK_MASTER}")
    slowdown = (round(local["series_per_s"] / spark["series_per_s"], 2)
                if local and spark else None)
    grown = {"one process": growth("one process"), "spark": growth(f"Spark {SPARK_MASTER}")}
    met = {"local_series_per_s_min": bool(local and local["series_per_s"]
                                          >= TARGETS["local_series_per_s_min"]),
           "spark_slowdown_max": slowdown is not None and slowdown
           <= TARGETS["spark_slowdown_max"],
           "rss_growth_max": all(g <= TARGETS["rss_growth_max"] for g in grown.values()
                                 if g is not None)}
    return {"spark_slowdown": slowdown, "rss_growth": grown, "targets": TARGETS, "met": met}


def run(quick: bool) -> dict[str, Any]:
    """Train in a temporary store, run every configuration, return the results record."""
    sizes = QUICK if quick else FULL
    home = Path(tempfile.mkdtemp(prefix="nearcast-scale-bench-"))
    try:
        print(f"training the quickstart model (budget {sizes['budget']:.0f}s) in {home}",
              flush=True)
        facts = train(home, float(sizes["budget"]))  # type: ignore[arg-type]
        rows = [run_child("local", home, n) for n in sizes["local"]]  # type: ignore[attr-defined]
        rows += [run_child("spark", home, n) for n in sizes["spark"]]  # type: ignore[attr-defined]
        rows.append(http_row(home, facts, int(sizes["http"])))  # type: ignore[call-overload]
        training = training_rows(home, quick)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return {
        "benchmark": "scale",
        "data": {"points_per_series": LENGTH, "freq": "h", "horizon": HORIZON,
                 "chunk_series": CHUNK, "generated": "on the fly (not stored)",
                 "http": f"a subset, {HTTP_PER_REQUEST} series per request, "
                         f"{HTTP_CONCURRENCY} at a time"},
        "model": {"config": "quickstart: LSTM 64, input 168 folded by 24, horizon 48, "
                            "log_level scaling", "train_seconds": facts["train_seconds"]},
        "peak_memory": "largest sum of VmRSS over the process and its children, polled every "
                       "0.25 s (one process: its VmHWM)",
        "machine_note": "2 cores shared with other work, one run",
        "forecast": rows, "training": training, **summarize(rows), "spark_tried": SPARK_TRIED,
        "machine": machine_info(),
    }


def main() -> None:
    """Parse arguments, run, print the table, write the JSON (or run one configuration)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller sizes, shorter training")
    parser.add_argument("--out", type=Path, help="result file (default: results/scale.json, "
                        "or results/quick/scale.json with --quick)")
    parser.add_argument("--child", choices=["local", "spark"], help=argparse.SUPPRESS)
    parser.add_argument("--home", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--series", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        one = child_local if args.child == "local" else child_spark
        print("RESULT " + json.dumps(one(args.home, args.work, args.series)), flush=True)
        return
    result = {"quick": args.quick, **run(args.quick)}
    print_table(result["forecast"], ["engine", "series", "startup_s", "seconds", "series_per_s",
                                     "peak_rss_mib"], title="batch forecasts")
    if result["training"]:
        print_table(result["training"], ["engine", "global_batch", "samples_per_s",
                                         "scaling_efficiency", "epoch_s", "val_loss", "wall_s"],
                    title="training samples/s")
    print("targets met:", result["met"], "| Spark slowdown:", result["spark_slowdown"],
          "| peak memory growth:", result["rss_growth"])
    write_json(args.out or result_path("scale", args.quick), result)


if __name__ == "__main__":
    main()
