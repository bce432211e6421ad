"""Several processes opening a new embedded store at once all succeed (one creates it)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from mlflow import MlflowClient

SCRIPT = """
import sys
from pathlib import Path
from nearcast.models.settings import MlflowSettings
settings = MlflowSettings(home=Path(sys.argv[1]), experiment="race")
settings.ensure_experiment(settings.connect())
"""


def test_processes_creating_a_new_sqlite_store_at_once_do_not_race(tmp_path: Path) -> None:
    home = tmp_path / "home"
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, str(home)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(3)]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    failed = [out for p, out in zip(procs, outputs, strict=True) if p.returncode != 0]
    # Before the creation lock, two of them failed in MLflow's schema migrations.
    assert not failed, failed[0][-2000:]
    uri = f"sqlite:///{(home / 'mlflow.db').resolve()}"
    names = [e.name for e in MlflowClient(uri).search_experiments()]
    assert names.count("race") == 1
