"""`nearcast train --distributed`: two worker processes on 127.0.0.1 under one TF_CONFIG.

Each worker is the real CLI in its own process. The chief (worker 0) records one run and one
version; the other worker writes nothing to MLflow. The loss curve is held to a one-process fit
with the same global batch and seed: the workers draw their windows from their own halves of
the series, so the curves differ by sampling, not by more than the stated tolerance.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nearcast.models import registry
from nearcast.models.artifact import load_forecaster
from nearcast.models.distributed import weights_digest
from nearcast.models.estimator import Nearcast
from nearcast.models.jobconfig import JobConfig
from nearcast.models.settings import MlflowSettings
from nearcast.service.cli import app
from tests.conftest import free_port, in_process_cli, make_settings
from tests.service.retrain_helpers import (
    MODEL,
    Proc,
    champion_version,
    cli_env,
    start_cli,
    tiny_frame,
    write_job,
)

NAME = "dist"
LEARNER = MODEL | {"seasonal_skip": False}
"""Without the seasonal skip the loss falls steeply (0.17 to 0.07 in six epochs), so the curve
shows the optimisation, not a plateau."""
TRAIN = {"epochs": 6, "steps_per_epoch": 8, "batch_size": 32, "seed": 3, "patience": 50,
         "learning_rate": 0.005}
TRAIN_TOLERANCE = 0.10
"""Each epoch's mean training loss within 10% of the one-process fit's (measured: 4% at most)."""
VAL_TOLERANCE = 0.20
"""Each epoch's validation loss within 20% of the one-process fit's (measured: 14% at most)."""


def _workers(job: Path, settings: MlflowSettings) -> list[Proc]:
    """Worker 1, then the chief (worker 0), each `nearcast train --distributed`."""
    hosts = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    procs = []
    for rank in (1, 0):
        config = {"cluster": {"worker": hosts}, "task": {"type": "worker", "index": rank}}
        env = cli_env(settings) | {"TF_CONFIG": json.dumps(config)}
        procs.append(start_cli(["train", "--config", str(job), "--distributed"], env))
    return procs


@pytest.fixture(scope="module")
def cluster_run(tmp_path_factory: pytest.TempPathFactory
                ) -> tuple[MlflowSettings, Path, str, str]:
    """Two workers trained ``NAME`` v1: the store, the job file, the chief's and the worker's
    output."""
    root = tmp_path_factory.mktemp("distributed")
    settings = make_settings(root, NAME)
    data = root / "tiny.csv"
    tiny_frame().to_csv(data, index=False)
    job = write_job(root / "job.yaml", data, NAME, LEARNER, TRAIN)
    worker, chief = _workers(job, settings)
    assert chief.finish(240) == 0, chief.text
    assert worker.finish(60) == 0, worker.text
    assert "worker 1 of 2: trained on its shard; the chief (worker 0) records the run" \
        in worker.text
    return settings, job, chief.text, worker.text


def test_two_workers_record_one_run_and_one_version_with_the_one_process_curve(
    cluster_run: tuple[MlflowSettings, Path, str, str],
) -> None:
    settings, job, chief, worker = cluster_run
    client = settings.connect()
    runs = client.search_runs([client.get_experiment_by_name(settings.experiment).experiment_id])
    assert len(runs) == 1
    versions = client.search_model_versions(f"name='{NAME}'")
    assert [int(v.version) for v in versions] == [1]
    run = runs[0]
    assert run.info.status == "FINISHED"
    assert run.data.tags["nearcast.workers"] == "2"
    assert versions[0].run_id == run.info.run_id
    assert f"run {run.info.run_id}; model {NAME} v1 (alias challenger)" in chief
    # Both workers ended with the very same weights, and they are the registered model's.
    digest = run.data.tags["nearcast.weights_digest"]
    assert f"worker 0 of 2: weights {digest}" in chief
    assert f"worker 1 of 2: weights {digest}" in worker
    served = load_forecaster(f"models:/{NAME}/1")
    assert weights_digest(served.model.get_weights()) == digest

    def curve(key: str) -> np.ndarray:
        history = sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)
        return np.array([m.value for m in history])

    alone = Nearcast.from_job(JobConfig.from_yaml(job)).fit(tiny_frame())
    assert alone.fitted is not None
    epochs = alone.fitted.members[0].result.epochs
    one_train = np.array([e.train_loss for e in epochs])
    one_val = np.array([e.val_loss for e in epochs])
    two_train, two_val = curve("train_loss"), curve("val_loss")
    assert len(two_train) == len(one_train) == TRAIN["epochs"]
    assert np.all(np.abs(two_train / one_train - 1) < TRAIN_TOLERANCE), (two_train, one_train)
    assert np.all(np.abs(two_val / one_val - 1) < VAL_TOLERANCE), (two_val, one_val)
    assert one_train[-1] < 0.6 * one_train[0]  # a curve, not a plateau


def test_a_killed_worker_fails_the_run_and_leaves_the_champion(
    cluster_run: tuple[MlflowSettings, Path, str, str], tmp_path: Path,
) -> None:
    settings, job, _, _ = cluster_run
    client = settings.connect()
    registry.promote(client, NAME, 1, "tests")
    long_job = tmp_path / "long.yaml"
    spec = JobConfig.from_yaml(job).model_dump(mode="json", exclude_none=True)
    spec["train"] |= {"epochs": 500}
    long_job.write_text(json.dumps(spec))  # JSON is YAML
    worker, chief = _workers(long_job, settings)
    try:
        assert chief.wait_for(lambda line: line.startswith("epoch 1/500"), 240), chief.text
        worker.popen.send_signal(signal.SIGKILL)
        code = chief.finish(120)
    finally:
        worker.finish(10)
        chief.finish(10)
    assert code == 1, chief.text
    assert "error: another training worker stopped or did not answer" in chief.text
    runs = client.search_runs([client.get_experiment_by_name(settings.experiment).experiment_id],
                              order_by=["attributes.start_time DESC"])
    assert len(runs) == 2
    assert runs[0].info.status == "FAILED"
    assert [int(v.version) for v in client.search_model_versions(f"name='{NAME}'")] == [1]
    assert champion_version(settings, NAME) == 1


def test_a_cluster_that_does_not_fit_the_job_is_refused_in_one_line(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, NAME)
    data = tmp_path / "tiny.csv"
    tiny_frame().to_csv(data, index=False)
    odd = write_job(tmp_path / "odd.yaml", data, NAME, MODEL, TRAIN | {"batch_size": 33})
    hosts = [f"127.0.0.1:{free_port()}" for _ in range(2)]
    many = [f"127.0.0.1:{free_port()}" for _ in range(9)]

    def tf_config(workers: list[str], kind: str = "worker", index: int = 0) -> str:
        return json.dumps({"cluster": {"worker": workers}, "task": {"type": kind, "index": index}})

    cases = [
        (odd, "", "error: --distributed needs TF_CONFIG, e.g. "),
        (odd, "{not json", "error: TF_CONFIG is not a cluster and task: "),
        (odd, tf_config(hosts, "ps"), "error: TF_CONFIG task ps 0 is not in its cluster "
                                      "(0 chief, 2 workers)"),
        (odd, tf_config(hosts, index=2), "error: TF_CONFIG task worker 2 is not in its cluster"),
        (odd, tf_config(hosts), "error: train.batch_size 33 is not a multiple of the 2 workers"),
        (write_job(tmp_path / "job.yaml", data, NAME, MODEL, TRAIN | {"batch_size": 36}),
         tf_config(many), "error: 9 workers but only 8 series to train on; use at most one "
                          "worker per series"),
        (write_job(tmp_path / "refit.yaml", data, NAME, MODEL, TRAIN | {"refit": True}),
         tf_config(hosts), "train.refit is not supported with --distributed"),
    ]
    runner = CliRunner()
    with in_process_cli(settings) as env:
        for job, config, message in cases:
            done = runner.invoke(app, ["train", "--config", str(job), "--distributed"],
                                 env=env | {"TF_CONFIG": config})
            assert done.exit_code == 2, (config, done.output)
            assert message in done.output, (config, done.output)
            assert "Traceback" not in done.output
    assert not (settings.home / "mlflow.db").exists()  # refused before MLflow or TensorFlow
