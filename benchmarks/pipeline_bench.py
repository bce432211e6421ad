"""Windowing speed and peak memory: nearcast's windows vs Keras' per-series windowing.

Both sides cut the same windows (input 168, horizon 48, stride 1, batch 256) from the same
series and iterate every window once, yielding ``(x (B, 168), y (B, 48))`` batches:

* nearcast: one :class:`pipelines.windows.SeriesTable` and
  :func:`pipelines.windows.window_dataset` (lazy runs, one numpy gather per batch fed to
  ``tf.data`` by a generator, so the values are never copied into TensorFlow);
* keras: ``tf.keras.utils.timeseries_dataset_from_array`` applied to each series in turn
  (sequence length 216 = 168 + 48, split into x and y in a ``map``).

Each side runs in a fresh subprocess: TensorFlow is imported, the raw data (every series'
values as float64, as the sources load them) is built, the side's code path is warmed up on two
series, the resident-set high-water mark is reset (``/proc/self/clear_refs``) and only then the
measured pass starts. "peak" is the high-water mark minus the resident set just before the
pass, i.e. the memory the windowing itself added on top of the raw data; it is compared to the
raw data size (``raw_bytes`` = 8 bytes per point; ``peak_over_raw_f32`` divides by 4 bytes per
point). A pass over two series measures the fixed cost of a pass (TensorFlow's iterator,
threads and buffers), which dominates on small data such as M4 Hourly (2.8 MB of values). A
checksum of all x and y values shows both sides produced the same windows.

Run: ``python -m benchmarks.pipeline_bench [--quick]``; writes benchmarks/results/pipeline.json.
The full run takes about 4 minutes on 2 cores, most of it Keras' side (about 6,000-11,000
windows/s; on the 10-million-point set it runs on the first 1.5M points, see
``KERAS_MAX_POINTS``); ``--quick`` (20 M4 series, 150,000 synthetic points) about a minute.
``--data`` and ``--side`` select parts.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import max_rss_bytes, reset_peak_rss, rss_bytes

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "pipeline.json"
INPUT, HORIZON, STRIDE, BATCH = 168, 48, 1, 256
SIDES = ("nearcast", "keras")
FULL = {"m4_hourly": None, "synthetic": 10_000_000}
QUICK = {"m4_hourly": 20, "synthetic": 150_000}
SYNTHETIC_SERIES_POINTS = (2_500, 7_500)
# Keras windows the 10M-point set at ~11k windows/s (15 minutes); its rate is measured on the
# whole series within the first 1.5M points instead, which keeps `make bench` under 30 minutes.
KERAS_MAX_POINTS = 1_500_000


# ----------------------------------------------------------------------------- raw data
def m4_raw(n_series: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Bundled M4 Hourly: ``(values float64 (N,), offsets (S + 1,))``."""
    from nearcast.pipelines.sources import load_m4_hourly

    frame = load_m4_hourly(n_series=n_series).sort_values(["unique_id", "ds"], kind="stable")
    counts = frame.groupby("unique_id", sort=True).size().to_numpy()
    values = frame["y"].to_numpy(dtype=np.float64, copy=True)
    return values, np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)


def synthetic_raw(points: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """``points`` hourly values in series of 2,500 to 7,500 points: daily cycle + random walk."""
    rng = np.random.default_rng(seed)
    lo, hi = SYNTHETIC_SERIES_POINTS
    lengths = rng.integers(lo, hi + 1, size=points // lo + 1)
    cut = int(np.searchsorted(np.cumsum(lengths), points))
    lengths = lengths[: cut + 1]
    lengths[-1] = points - int(lengths[:-1].sum())
    if lengths[-1] < INPUT + HORIZON:  # fold a too-short remainder into the previous series
        lengths[-2] += lengths[-1]
        lengths = lengths[:-1]
    t = np.arange(points, dtype=np.float64)
    values = 100.0 + 20.0 * np.sin(2 * np.pi * t / 24.0) + np.cumsum(rng.normal(0, 1, points))
    return values, np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def load_raw(data: str, quick: bool) -> tuple[np.ndarray, np.ndarray]:
    """The raw data of one benchmark set."""
    size = (QUICK if quick else FULL)[data]
    return m4_raw(size) if data == "m4_hourly" else synthetic_raw(int(size or 0))


# ----------------------------------------------------------------------------- the two sides
def run_nearcast(values: np.ndarray, offsets: np.ndarray) -> tuple[int, float]:
    """Every window once through ``window_dataset``; returns ``(windows, checksum)``."""
    import tensorflow as tf

    from nearcast.pipelines.windows import SeriesTable, WindowSpec, window_dataset

    spec = WindowSpec(INPUT, HORIZON, stride=STRIDE)
    n_series = len(offsets) - 1
    table = SeriesTable(
        ids=np.arange(n_series).astype(str), values=values.astype(np.float32), offsets=offsets
    )
    windows, checksum = 0, 0.0
    for inputs, target in window_dataset(table, spec, BATCH):
        windows += int(target.shape[0])
        checksum += float(tf.reduce_sum(inputs["history"]) + tf.reduce_sum(target))
    return windows, checksum


def run_keras(values: np.ndarray, offsets: np.ndarray) -> tuple[int, float]:
    """Every window once, ``timeseries_dataset_from_array`` per series."""
    import tensorflow as tf

    def split(batch: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return batch[:, :INPUT], batch[:, INPUT:]

    windows, checksum = 0, 0.0
    for i in range(len(offsets) - 1):
        series = values[offsets[i] : offsets[i + 1]].astype(np.float32)
        ds = tf.keras.utils.timeseries_dataset_from_array(
            series, None, sequence_length=INPUT + HORIZON, sequence_stride=STRIDE,
            batch_size=BATCH,
        ).map(split, num_parallel_calls=tf.data.AUTOTUNE)
        for x, y in ds:
            windows += int(y.shape[0])
            checksum += float(tf.reduce_sum(x) + tf.reduce_sum(y))
    return windows, checksum


# ----------------------------------------------------------------------------- worker
def worker(side: str, data: str, quick: bool, floor: bool = False) -> dict[str, Any]:
    """Measure one side on one data set (run in a fresh process).

    With ``floor`` only series 3 and 4 are windowed (after warming up on series 1 and 2): the
    memory a pass costs whatever the data size (runtime threads, buffers, tracing).
    """
    import tensorflow as tf

    run = run_nearcast if side == "nearcast" else run_keras
    values, offsets = load_raw(data, quick)
    if side == "keras" and offsets[-1] > KERAS_MAX_POINTS:
        keep = max(int(np.searchsorted(offsets, KERAS_MAX_POINTS, side="right")) - 1, 2)
        values, offsets = values[: offsets[keep]], offsets[: keep + 1]
    run(values[: offsets[2]], offsets[:3])  # warm up the runtime and tracing on two series
    if floor:
        values, offsets = values[offsets[2] : offsets[4]], offsets[2:5] - offsets[2]
    gc.collect()
    reset = reset_peak_rss()
    base = rss_bytes()
    t0 = time.perf_counter()
    windows, checksum = run(values, offsets)
    seconds = time.perf_counter() - t0
    peak = max_rss_bytes() - base
    return {
        "data": data + ("/floor" if floor else ""), "side": side, "series": len(offsets) - 1,
        "points": int(offsets[-1]), "raw_bytes": int(values.nbytes), "windows": windows,
        "seconds": round(seconds, 3), "windows_per_s": round(windows / seconds, 1),
        "peak_bytes": int(peak), "peak_over_raw": round(peak / values.nbytes, 3),
        "peak_over_raw_f32": round(peak / (offsets[-1] * 4), 3),
        "checksum": checksum, "peak_reset": reset, "tensorflow": tf.__version__,
    }


def spawn(side: str, data: str, quick: bool, floor: bool = False) -> dict[str, Any]:
    """Run :func:`worker` in a fresh interpreter and return its result."""
    cmd = [sys.executable, "-m", "benchmarks.pipeline_bench", "--worker"]
    cmd += ["--side", side, "--data", data] + (["--floor"] if floor else [])
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run(
        cmd + (["--quick"] if quick else []), cwd=ROOT, env=env, check=True,
        capture_output=True, text=True, timeout=3_600,
    )
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


# ----------------------------------------------------------------------------- report
def summarise(
    rows: list[dict[str, Any]], floors: list[dict[str, Any]]
) -> dict[str, dict[str, Any]]:
    """Per data set: speed ratio, nearcast's peak vs raw, same windows on both sides.

    ``nearcast_fixed_bytes`` is nearcast's peak on two series (``floors``): what a pass costs
    whatever the data size; ``nearcast_peak_minus_fixed_over_raw`` is the part that grows with it.
    """
    fixed = {r["side"]: r["peak_bytes"] for r in floors}
    checks = {}
    for data in dict.fromkeys(r["data"] for r in rows):
        found = {r["side"]: r for r in rows if r["data"] == data}
        if set(found) != set(SIDES):
            continue
        near, ker = found["nearcast"], found["keras"]
        # None: Keras ran on a prefix of the series (KERAS_MAX_POINTS), so no checksum to compare.
        same = None if near["points"] != ker["points"] else (
            near["windows"] == ker["windows"]
            and bool(np.isclose(near["checksum"], ker["checksum"], rtol=1e-6)))
        speedup = near["windows_per_s"] / ker["windows_per_s"]
        growing = (near["peak_bytes"] - fixed.get("nearcast", 0)) / near["raw_bytes"]
        checks[data] = {
            "speedup": round(speedup, 2), "same_windows": same,
            "nearcast_peak_over_raw": near["peak_over_raw"],
            "nearcast_peak_over_raw_f32": near["peak_over_raw_f32"],
            "nearcast_fixed_bytes": fixed.get("nearcast"),
            "nearcast_peak_minus_fixed_over_raw": round(growing, 3),
            "at_least_as_fast": speedup >= 1.0, "peak_within_2x_raw": near["peak_over_raw"] <= 2.0,
        }
    return checks


def print_table(rows: list[dict[str, Any]], checks: dict[str, dict[str, Any]]) -> None:
    """Print the results (fixed-cost rows first) and the checks."""
    head = f"{'data':<15} {'side':<9} {'series':>6} {'points':>11} {'windows':>11} "
    head += f"{'seconds':>8} {'windows/s':>11} {'peak MB':>8} {'raw MB':>7} {'peak/raw':>8}"
    print(head)
    for r in rows:
        print(
            f"{r['data']:<15} {r['side']:<9} {r['series']:>6} {r['points']:>11,} "
            f"{r['windows']:>11,} {r['seconds']:>8.2f} {r['windows_per_s']:>11,.0f} "
            f"{r['peak_bytes'] / 1e6:>8.1f} {r['raw_bytes'] / 1e6:>7.1f} {r['peak_over_raw']:>8.2f}"
        )
    for data, c in checks.items():
        print(f"{data}: nearcast {c['speedup']:.2f}x keras's windows/s; peak/raw "
              f"{c['nearcast_peak_over_raw']:.2f} (float32 {c['nearcast_peak_over_raw_f32']:.2f}, "
              f"without the fixed cost {c['nearcast_peak_minus_fixed_over_raw']:.2f}); "
              f"same windows: {c['same_windows']}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="subsets: 20 M4 series, 150k points")
    parser.add_argument("--data", choices=tuple(FULL), action="append", help="default: both")
    parser.add_argument("--side", choices=SIDES, action="append", help="default: both")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--floor", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        result = worker(args.side[0], args.data[0], args.quick, args.floor)
        print(json.dumps(result))
        return result
    datas, sides = args.data or list(FULL), args.side or list(SIDES)
    floors = [spawn(side, "m4_hourly", True, floor=True) for side in sides]
    rows = [spawn(side, data, args.quick) for data in datas for side in sides]
    checks = summarise(rows, floors)
    print_table(floors + rows, checks)
    report = {
        "benchmark": "pipeline_windows", "quick": args.quick,
        "geometry": {"input": INPUT, "horizon": HORIZON, "stride": STRIDE, "batch": BATCH},
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "results": rows, "fixed_cost": floors, "checks": checks,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return report


if __name__ == "__main__":
    main()
