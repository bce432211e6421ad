"""A newcomer's first screen: no TensorFlow/MLflow start-up chatter, one line per epoch.

A tiny ``nearcast train`` runs in its own process with none of the quieting variables set in
its environment (the command sets them itself) and its output is not a terminal: each epoch is
one plain line (no carriage return) with the epoch, the train and validation losses (the same
as the run's MLflow metrics) and the time left of the budget. The live bar for a terminal and
the other failure lines are checked in this process.
"""

from __future__ import annotations

import io
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml
from mlflow import MlflowClient
from retrain_helpers import MODEL, REPO

from conftest import DATA
from nearcast.models.training import EpochLog
from nearcast.service.cli_errors import reported, set_verbose
from nearcast.service.progress import EpochProgress, describe_epoch

BUDGET = 600
# TensorFlow's C++ log lines (I0000 00:00:... port.cc:153] ...), absl's pre-init warning,
# oneDNN and CPU feature notes, MLflow's INFO lines and download bars.
CHATTER = re.compile(r"^[IWEF]\d{4} |absl|oneDNN|cpu_feature_guard|rebuild TensorFlow|"
                     r"INFO mlflow|Downloading artifacts", re.MULTILINE)
EPOCH = re.compile(r"^epoch (\d+)/2  train (\S+)  val (\S+)  \d+s elapsed, (\d+)s of the "
                   r"budget left$", re.MULTILINE)


def test_train_shows_epochs_and_no_start_up_chatter(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump({
        "model_name": "screen",
        "data": {"source": "files", "path": str(DATA / "m4_tiny_long.csv"), "freq": "h"},
        "model": MODEL,
        "train": {"epochs": 2, "steps_per_epoch": 3, "batch_size": 32, "patience": 5,
                  "max_seconds": BUDGET},
    }))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NEARCAST_", "MLFLOW_", "TF_", "GRPC_", "GLOG_"))}
    env |= {"NEARCAST_HOME": str(tmp_path / "home"), "NEARCAST_LOAD_CHECK": "inprocess"}
    done = subprocess.run([sys.executable, "-m", "nearcast", "train", "--config", str(job),
                           "--no-register"], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300, check=False)
    assert done.returncode == 0, done.stderr
    assert CHATTER.search(done.stderr) is None, done.stderr
    assert "\r" not in done.stderr + done.stdout  # not a terminal: plain lines
    epochs = EPOCH.findall(done.stderr)
    assert [int(e[0]) for e in epochs] == [1, 2], done.stderr
    assert all(0 < int(e[3]) <= BUDGET for e in epochs)

    run_id = re.search(r"^run (\w+); model screen$", done.stdout, re.MULTILINE)
    assert run_id, done.stdout
    client = MlflowClient(f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}")
    for metric, column in (("train_loss", 1), ("val_loss", 2)):
        logged = [m.value for m in sorted(client.get_metric_history(run_id[1], metric),
                                          key=lambda m: m.step)]
        shown = [float(e[column]) for e in epochs]
        assert shown == pytest.approx(logged, abs=5e-5)  # printed with 4 decimals
        assert all(math.isfinite(v) and v > 0 for v in shown)


def _log(epoch: int, stop: str = "", budget: float | None = 30.0) -> EpochLog:
    return EpochLog(epoch, 0.5 / epoch, 0.6 / epoch, 1.0, 1e-3, 2.0, epochs=4,
                    elapsed=2.0 * epoch, budget_left=budget, stop=stop)


def test_progress_is_a_live_bar_on_a_terminal_and_plain_lines_elsewhere() -> None:
    plain = io.StringIO()
    progress = EpochProgress(plain)
    assert not progress.live  # a StringIO is no terminal
    for log in (_log(1), _log(2, stop="early_stopping")):
        progress(log)
    progress.close()
    assert plain.getvalue() == (
        "epoch 1/4  train 0.5000  val 0.6000  2s elapsed, 30s of the budget left\n"
        "epoch 2/4  train 0.2500  val 0.3000  4s elapsed, 30s of the budget left  (stopped "
        "early: the validation loss stopped improving)\n")

    live = io.StringIO()
    bar = EpochProgress(live, live=True)
    bar(_log(1, budget=None))
    assert live.getvalue() == ("\r[#####...............] epoch 1/4  train 0.5000  val 0.6000  "
                               "2s elapsed\x1b[K")  # redrawn in place, the line left open
    bar(_log(4, stop="epochs", budget=None))
    assert live.getvalue().endswith("[####################] " + describe_epoch(
        _log(4, stop="epochs", budget=None)) + "\x1b[K\n")  # the last epoch ends the line
    bar(_log(1))
    bar.close()  # training stopped without a last epoch (diverged): the line is ended
    assert live.getvalue().endswith("\x1b[K\n") and live.getvalue().count("\n") == 2


def test_a_typer_exit_inside_reported_is_no_internal_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    set_verbose(False)
    with pytest.raises(typer.Exit) as exit_info, reported():
        typer.echo("error: training diverged (run x)", err=True)
        raise typer.Exit(1)
    assert exit_info.value.exit_code == 1
    assert capsys.readouterr().err == "error: training diverged (run x)\n"
