"""What a reviewer finds in MLflow: run names, descriptions, version notes, the data report."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from conftest import Champion, make_settings
from nearcast.models import tracking
from nearcast.models.evaluate_job import evaluate_model
from nearcast.pipelines.grid import GridRule
from nearcast.pipelines.prepare import regularize

DATA = Path(__file__).parents[1] / "data" / "m4_tiny_long.csv"


def _score_lines(scores: dict[str, dict[str, float]]) -> list[str]:
    return [f"| {m} | {s['smape']:.2f} | {s['mase']:.3f} | {s['owa']:.3f} |"
            for m, s in scores.items()]


def test_training_run_has_a_name_and_a_description_with_the_score_table(
    champion: Champion,
) -> None:
    client = champion.settings.connect()
    run = client.get_run(champion.job.run_id)
    assert run.info.run_name == "train lstm-1x8 m4_tiny"
    note = run.data.tags[tracking.NOTE]
    scores = champion.job.evaluation.scores
    assert len(scores) >= 3 and next(iter(scores)) == "model"  # the model, then the baselines
    for line in ["| method | sMAPE | MASE | OWA |", *_score_lines(scores)]:
        assert line in note
    assert "8 series" in note and "freq `h`" in note and note.startswith("Holdout scores")


def test_version_description_says_how_it_got_each_alias(champion: Champion) -> None:
    client = champion.settings.connect()
    ref = champion.job.version
    assert ref is not None
    text = client.get_model_version(ref.name, str(ref.version)).description
    for line in _score_lines(champion.job.evaluation.scores):
        assert line in text
    experiment = client.get_run(champion.job.run_id).info.experiment_id
    assert (f"- **challenger**: trained by run [{ref.run_id[:8]}](#/experiments/{experiment}/runs/"
            f"{ref.run_id}) (train lstm-1x8 m4_tiny)") in text
    champion_line = text.split("\n")[-1]  # the conftest promoted it with reason "tests"
    assert champion_line.startswith("- **champion** since ")
    assert champion_line.endswith(f"moved by {getpass.getuser()} from none — tests")
    assert text.index("**challenger**") < text.index("**champion**")


def test_experiment_has_a_description(champion: Champion) -> None:
    client = champion.settings.connect()
    experiment = client.get_experiment_by_name(champion.settings.experiment)
    assert experiment is not None
    note = experiment.tags[tracking.NOTE]
    assert "**train …** runs" in note and "**backtest …** runs" in note
    assert f"Registered model `{champion.settings.model_name}`" in note


def test_backtest_run_is_named_after_model_version_and_data(champion: Champion) -> None:
    settings = champion.settings.model_copy(update={"experiment": "review"})
    ref = champion.job.version
    assert ref is not None
    result = evaluate_model(f"models:/{ref.name}@champion", str(DATA), settings, n_folds=2,
                            log=True)
    assert result.run_id is not None
    run = settings.connect().get_run(result.run_id)
    assert run.info.run_name == f"backtest {ref.name} v{ref.version} m4_tiny_long.csv"
    note = run.data.tags[tracking.NOTE]
    assert "2 folds" in note
    for line in _score_lines(result.backtest.aggregate):
        assert line in note


def _messy() -> pd.DataFrame:
    """A: 10 hours, 2 duplicate rows, 1 NaN, hours 4-5 missing; B: clean 6 hours; C: 3 hours."""
    hours = pd.date_range("2024-01-01", periods=10, freq="h", tz="UTC")
    a = pd.DataFrame({"unique_id": "A", "ds": hours.delete([4, 5]),
                      "y": [1.0, 2.0, np.nan, 4.0, 7.0, 8.0, 9.0, 10.0]})
    dups = a.iloc[[0, 6]].assign(y=[3.0, 5.0])
    b = pd.DataFrame({"unique_id": "B", "ds": hours[:6], "y": np.arange(6.0)})
    c = pd.DataFrame({"unique_id": "C", "ds": hours[:3], "y": [1.0, 2.0, 3.0]})
    return pd.concat([a, dups, b, c], ignore_index=True)


def test_series_report_counts_duplicates_nans_and_gaps(tmp_path: Path) -> None:
    done = regularize(_messy(), GridRule(freq="h", agg="mean", gap_policy="linear"))
    table = done.series_report({"C": 3})
    settings, uri = make_settings(tmp_path), mlflow.get_tracking_uri()
    client = settings.connect()
    try:
        with mlflow.start_run(experiment_id=settings.ensure_experiment(client)) as run:
            tracking.log_series_report(table)
    finally:
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
    logged = json.loads(Path(client.download_artifacts(
        run.info.run_id, "data/series_report.json", str(tmp_path))).read_text())
    rows = pd.DataFrame(logged["data"], columns=logged["columns"]).set_index("unique_id")
    assert list(rows.index) == ["A", "B", "C"]
    assert rows.loc["A"].to_dict() == {
        "points_in": 10, "duplicates_merged": 2, "rows_aggregated": 0, "nan_in": 1,
        "empty_buckets": 2, "values_imputed": 3, "left_missing": 0, "rows_out": 10,
        "skipped_too_short": False}
    assert rows.loc["B", "points_in"] == 6 and rows.loc["B", "values_imputed"] == 0
    assert bool(rows.loc["C", "skipped_too_short"]) and not rows.loc["B", "skipped_too_short"]
    a = done.frame[done.frame["unique_id"] == "A"]["y"].tolist()
    assert a == pytest.approx([2.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 7.0, 10.0])
    assert done.summary_lines({"C": 3}) == [
        "data: 3 series in, 2 used, 1 skipped as too short",
        "data: 19 rows in -> 19 rows on the grid (freq h, agg mean, gaps linear)",
        "data: 2 duplicate timestamps merged, 0 rows aggregated into buckets",
        "data: 1 NaN values in, 2 empty buckets; 3 values filled, 0 left missing (masked)",
    ]
