"""Training throughput of the quickstart LSTM: one process against two data-parallel workers.

Both are ``nearcast train`` as a user runs it, each process of its own: once alone, once as two
workers of one ``TF_CONFIG`` cluster on 127.0.0.1 (``--distributed``). The job is the quickstart
model and train settings with a fixed number of epochs (no early stopping, no time budget) and
the same global batch, on the series in ``data``. Samples/s is windows trained per second of
the training loop after the first epoch (which traces the step), read from the run's
``epoch_seconds`` curve; wall time includes start-up, data, scoring and logging.

On a 2-core machine the two workers share the cores one process already uses, so this measures
the cost of the all-reduce and of the split, not a speed-up; on two machines each worker has
its own cores.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import ROOT

EPOCHS, QUICK_EPOCHS = 6, 3


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _job(data: Path, folder: Path, epochs: int) -> Path:
    """The quickstart job on ``data`` with a fixed number of epochs."""
    job = yaml.safe_load((ROOT / "configs" / "quickstart.yaml").read_text())
    job["data"] = {"source": "files", "path": str(data), "freq": "h", "gap_policy": "linear"}
    job["model_name"] = "scale-training"
    job["train"] |= {"epochs": epochs, "max_seconds": None, "patience": epochs + 1}
    path = folder / "train-job.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NEARCAST_", "MLFLOW_"))}
    return env | {"NEARCAST_HOME": str(home), "TF_CPP_MIN_LOG_LEVEL": "3",
                  "NEARCAST_EXPERIMENT": "scale-training"}


def _launch(job: Path, home: Path, workers: int) -> float:
    """Run the job alone (``workers == 1``) or as ``workers`` processes; wall seconds."""
    cmd = [sys.executable, "-m", "nearcast", "train", "--config", str(job), "--no-register"]
    started = time.perf_counter()
    if workers == 1:
        subprocess.run(cmd, env=_env(home), check=True, capture_output=True, timeout=1800)
        return time.perf_counter() - started
    hosts = [f"127.0.0.1:{_free_port()}" for _ in range(workers)]
    procs = []
    for rank in range(workers):
        config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": rank}}
        procs.append(subprocess.Popen([*cmd, "--distributed"],
                                      env=_env(home) | {"TF_CONFIG": json.dumps(config)},
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                      text=True))
    try:
        codes = [p.wait(1800) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    if any(codes):
        raise RuntimeError(f"distributed training failed: exit codes {codes}")
    return time.perf_counter() - started


def _throughput(home: Path, batch: int, steps: int) -> dict[str, float]:
    """Samples/s after the first epoch, from the newest run of the store."""
    from mlflow import MlflowClient

    uri = f"sqlite:///{home / 'mlflow.db'}"
    client = MlflowClient(uri, uri)
    experiment = client.get_experiment_by_name("scale-training")
    assert experiment is not None
    run = client.search_runs([experiment.experiment_id],
                             order_by=["attributes.start_time DESC"], max_results=1)[0]
    seconds = [m.value for m in sorted(client.get_metric_history(run.info.run_id,
                                                                  "epoch_seconds"),
                                       key=lambda m: m.step)][1:]
    return {"samples_per_s": len(seconds) * steps * batch / sum(seconds),
            "epoch_s": sum(seconds) / len(seconds),
            "val_loss": client.get_metric_history(run.info.run_id, "val_loss")[-1].value}


def training_rows(data: Path, folder: Path, quick: bool) -> list[dict[str, Any]]:
    """Samples/s with 1 process and with 2 workers, and the scaling efficiency."""
    job = _job(data, folder, QUICK_EPOCHS if quick else EPOCHS)
    spec = yaml.safe_load(job.read_text())["train"]
    rows: list[dict[str, Any]] = []
    for workers in (1, 2):
        home = folder / f"train-{workers}"
        wall = _launch(job, home, workers)
        row = {"engine": f"train, {workers} worker{'s' if workers > 1 else ''}",
               "workers": workers, "global_batch": spec["batch_size"],
               "epochs": spec["epochs"], "wall_s": wall}
        rows.append(row | _throughput(home, spec["batch_size"], spec["steps_per_epoch"]))
    one = rows[0]["samples_per_s"]
    for row in rows:
        row["scaling_efficiency"] = row["samples_per_s"] / (one * row["workers"])
    return rows


__all__ = ["training_rows"]
