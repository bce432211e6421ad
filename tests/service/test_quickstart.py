"""`nearcast quickstart` end to end on the bundled data, with a tiny training budget."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from mlflow import MlflowClient

from conftest import free_port, make_settings
from nearcast.models.registry import version_for_alias
from nearcast.service.quickstart import run_quickstart
from nearcast.service.settings import ApiSettings


def test_quickstart_trains_registers_serves_and_forecasts(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, "quickstart")
    api = ApiSettings(port=free_port())
    answer = run_quickstart(settings, api, budget=3.0, serve_forever=False)

    (series,) = answer["series"]  # type: ignore[misc]
    assert series["id"] == "H1"
    assert len(series["timestamps"]) == 48 and len(series["forecast"]) == 48
    stamps = pd.to_datetime(series["timestamps"])
    assert (stamps.to_series().diff().dropna() == pd.Timedelta(hours=1)).all()
    assert all(v > 0 for v in series["forecast"])  # M4 Hourly H1 is positive

    client = MlflowClient(settings.resolved_tracking_uri())
    (run,) = client.search_runs([settings.ensure_experiment(client)])
    assert run.data.params["model.cell"] == "lstm"
    losses = client.get_metric_history(run.info.run_id, "train_loss")
    assert len(losses) >= 1 and [m.step for m in losses] == list(range(1, len(losses) + 1))
    champion = version_for_alias(client, "quickstart", "champion")
    assert champion is not None and champion.run_id == run.info.run_id
    assert answer["model"] == {"model": "quickstart", "version": champion.version,  # type: ignore[index]
                               "alias": "champion", "run_id": run.info.run_id}


def test_quickstart_runs_the_packaged_quickstart_yaml() -> None:
    # The quickstart reads configs/quickstart.yaml as package data (no code constants).
    from nearcast.models.jobconfig import JobConfig
    from nearcast.pipelines.dataset import DataConfig
    from nearcast.service.quickstart import QUICKSTART_YAML, quickstart_job

    repo = JobConfig.from_yaml(Path(__file__).parents[2] / "configs" / "quickstart.yaml")
    assert QUICKSTART_YAML.is_file()
    assert quickstart_job() == repo
    assert quickstart_job(3.0).train == repo.train.model_copy(update={"max_seconds": 3.0})
    assert repo.data == DataConfig(source="m4_hourly")
