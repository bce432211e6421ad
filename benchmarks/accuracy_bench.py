"""Accuracy of the default LSTM and GRU configs and the recommended ensemble on M4 Hourly.

Each config (``configs/lstm.yaml``, ``configs/gru.yaml``, ``configs/m4-hourly.yaml``: 4 members
served as one model) is trained through the same code path
as ``nearcast train`` (:func:`nearcast.models.train.train`, into a throwaway MLflow store under
``benchmarks/results/tmp/``). The last ``horizon`` = 48 points of every series are held out;
training and early stopping never see them. Reported per config: sMAPE, MASE and OWA (relative
to Naive2) of the model, naive, seasonal naive and Naive2 on that holdout; for a model with
quantiles, the coverage and MSIS (M4's mean scaled interval score) of each central interval
(``intervals``: ``coverage_80``, ``msis_80``); the training wall
time (the fit loop, and the whole job including MLflow logging and registration); the wall time
to forecast every series once (median of 3 after one warm-up call).

Run: ``python -m benchmarks.accuracy_bench [--quick] [--configs a.yaml b.yaml]``; writes
``benchmarks/results/accuracy.json`` (``accuracy_quick.json`` with ``--quick``: 40 series, a
20-second budget per config (per member; ensembles keep their first 2 members), for checking
the script, not the numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
CONFIGS = [ROOT / "configs" / n for n in ("lstm.yaml", "gru.yaml", "m4-hourly.yaml")]
QUICK_SERIES, QUICK_SECONDS = 40, 20.0
METHODS = ("model", "naive", "seasonal_naive", "naive2")


def _conditions(quick: bool) -> dict[str, Any]:
    import keras
    import tensorflow as tf

    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "quick": quick,
        "cpus": os.cpu_count(), "load_average_start": os.getloadavg(),
        "python": platform.python_version(), "tensorflow": tf.__version__,
        "keras": keras.__version__, "tf_threads": {
            "intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
            "inter_op": tf.config.threading.get_inter_op_parallelism_threads()},
    }


def _forecast_seconds(job: Any, frame: Any, horizon: int) -> float:
    """Median wall time to forecast every series from its history before the holdout."""
    from nearcast.pipelines.windows import SeriesTable

    table = SeriesTable.from_long(frame)
    histories = [table.series(i)[:-horizon] for i in range(len(table.ids))]
    job.forecaster.forecast(histories)  # warm-up (traces the compiled function)
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        job.forecaster.forecast(histories)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def run_config(path: Path, quick: bool, store: Path, verbose: bool) -> dict[str, Any]:
    """Train one config into ``store``; returns its scores and timings."""
    from nearcast.models.config import METRICS
    from nearcast.models.estimator import Nearcast
    from nearcast.models.jobconfig import JobConfig
    from nearcast.models.settings import MlflowSettings
    from nearcast.models.train import train
    from nearcast.pipelines.dataset import load_dataset

    job_cfg = JobConfig.from_yaml(path)
    data_cfg, train_cfg = job_cfg.data, job_cfg.train.model_copy(update={"verbose": verbose})
    ensemble = job_cfg.ensemble
    if quick:
        data_cfg = data_cfg.model_copy(update={"n_series": QUICK_SERIES})
        train_cfg = train_cfg.model_copy(update={"max_seconds": QUICK_SECONDS})
        if ensemble is not None:
            ensemble = ensemble.model_copy(update={"members": ensemble.members[:2]})
    data = load_dataset(data_cfg)
    settings = MlflowSettings(home=store / path.stem, experiment="accuracy-bench",
                              model_name=f"bench-{path.stem}")
    t0 = time.perf_counter()
    run = job_cfg.model_copy(update={"data": data_cfg, "train": train_cfg, "ensemble": ensemble})
    job = train(Nearcast.from_job(run), settings, data)
    job_seconds = time.perf_counter() - t0
    scores = {m: {k: job.evaluation.scores[m][k] for k in METRICS} for m in METHODS}
    model, snaive = scores["model"], scores["seasonal_naive"]
    return {
        "config": str(path.relative_to(ROOT)), "model": job_cfg.model.model_dump(),
        "train": train_cfg.model_dump(), "series": int(data.frame["unique_id"].nunique()),
        "points": len(data.frame), "holdout": job_cfg.model.horizon,
        "members": len(job.members),
        "epochs_run": len(job.training.epochs), "best_epoch": job.training.best_epoch,
        "stop_reason": job.training.stop_reason,
        "train_seconds": job.model.fitted.train_seconds if job.model.fitted else 0.0,
        "refit_seconds": job.model.fitted.refit.seconds
        if job.model.fitted and job.model.fitted.refit else None,
        "intervals": job.evaluation.intervals,
        "job_seconds": job_seconds,
        "forecast_seconds": _forecast_seconds(job, data.frame, job_cfg.model.horizon),
        "scores": scores,
        "beats_seasonal_naive": {"smape": model["smape"] < snaive["smape"],
                                 "mase": model["mase"] < snaive["mase"]},
    }


def print_table(runs: list[dict[str, Any]]) -> None:
    """Print one block per config: methods x (sMAPE, MASE, OWA), then the timings."""
    print(f"\n{'config':18s}{'method':16s}{'sMAPE':>8s}{'MASE':>8s}{'OWA':>8s}")
    for run in runs:
        for i, method in enumerate(METHODS):
            s = run["scores"][method]
            name = run["config"] if i == 0 else ""
            print(f"{name:18s}{method:16s}{s['smape']:8.2f}{s['mase']:8.3f}{s['owa']:8.3f}")
        beats = run["beats_seasonal_naive"]
        print(f"{'':18s}train {run['train_seconds']:.0f}s ({run['epochs_run']} epochs, "
              f"{run['stop_reason']}, best {run['best_epoch']}); job {run['job_seconds']:.0f}s; "
              f"forecast {run['series']} series {run['forecast_seconds'] * 1000:.0f} ms; "
              f"beats seasonal naive: sMAPE {beats['smape']}, MASE {beats['mase']}")
        iv = run.get("intervals") or {}
        for width in sorted({k.split("_", 1)[1] for k in iv}, key=int, reverse=True):
            print(f"{'':18s}{width}% interval: coverage {iv[f'coverage_{width}']:.3f}, "
                  f"MSIS {iv[f'msis_{width}']:.3f}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print the table and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 series, 20 s per config")
    parser.add_argument("--configs", nargs="+", type=Path, default=CONFIGS)
    parser.add_argument("--verbose", action="store_true", help="print every epoch")
    parser.add_argument("--out", type=Path, default=None, help="JSON output path")
    args = parser.parse_args(argv)
    conditions = _conditions(args.quick)
    (RESULTS / "tmp").mkdir(parents=True, exist_ok=True)
    store = Path(tempfile.mkdtemp(prefix="accuracy-", dir=RESULTS / "tmp"))
    try:
        runs = [run_config(p.resolve(), args.quick, store, args.verbose) for p in args.configs]
    finally:
        shutil.rmtree(store, ignore_errors=True)
    conditions["load_average_end"] = os.getloadavg()
    result = {"benchmark": "accuracy", "conditions": conditions, "runs": runs}
    print_table(runs)
    out = args.out or RESULTS / ("accuracy_quick.json" if args.quick else "accuracy.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2, default=str))
    print(f"\nwrote {out.relative_to(ROOT) if out.is_relative_to(ROOT) else out}")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
