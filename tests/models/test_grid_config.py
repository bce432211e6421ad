"""The grid rule in the job file, in a model's metadata and where a stored model reads data."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import yaml

from conftest import TINY_MODEL, Champion
from nearcast.models.forecaster import Forecaster, ModelMeta
from nearcast.models.jobconfig import JobConfig, JobConfigError, data_config_for
from nearcast.pipelines.grid import GridRule
from nearcast.service.preparation import prepare_series
from nearcast.service.schemas import SeriesIn


def _job(tmp_path: Path, data: dict[str, object], model: dict[str, object],
         **extra: object) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({"data": data, "model": model, **extra}))
    return path


@pytest.mark.parametrize(("data", "model", "freq"), [
    ({"freq": "D"}, {}, "D"),               # given once, as data.freq
    ({}, {"freq": "D"}, "D"),               # older job files: model.freq alone
    ({"freq": "60min"}, {"freq": "h"}, "60min"),  # the same offset spelled twice
    ({"freq": None}, {"freq": "15min"}, "15min"),
    ({}, {}, "h"),
])
def test_the_job_file_gives_one_frequency(
    tmp_path: Path, data: dict[str, object], model: dict[str, object], freq: str
) -> None:
    job = JobConfig.from_yaml(_job(tmp_path, data, {"season": 4, "input_size": 48, "fold": 4,
                                                    **model}))
    assert (job.data.freq, job.model.freq) == (freq, freq)


def test_inferred_frequency_is_the_models(tmp_path: Path) -> None:
    job = JobConfig.from_yaml(_job(tmp_path, {"freq": None}, {}))
    assert job.data.freq is None  # inferred when the data is read
    assert job.model.on_grid(GridRule(freq="D")).freq == "D"


def test_data_and_model_that_disagree_are_refused_naming_both_keys(tmp_path: Path) -> None:
    path = _job(tmp_path, {"freq": "D"}, {"freq": "h"})
    with pytest.raises(JobConfigError) as err:
        JobConfig.from_yaml(path)
    assert str(err.value) == (f"{path}: model.freq 'h' differs from data.freq 'D': give the "
                              "grid frequency once, as data.freq")
    path = _job(tmp_path, {"freq": "h"}, {}, ensemble={"members": [{"freq": "D"}]})
    with pytest.raises(JobConfigError, match=r"ensemble.members\[0\].freq: every member is on "
                                             r"the data's grid"):
        JobConfig.from_yaml(path)
    path = _job(tmp_path, {"agg": "median", "gap_policy": "keep", "timezone": "CET"}, {})
    with pytest.raises(JobConfigError) as err:
        JobConfig.from_yaml(path)
    for key in ("data.agg: Input should be 'mean', 'sum'", "data.gap_policy: Input should be "
                "'ffill', 'linear' or 'zero' (got 'keep')", "data.timezone: Input should be 'UTC'"):
        assert key in str(err.value)


def test_metadata_of_older_artifacts_loads_with_todays_defaults() -> None:
    config = TINY_MODEL.model_dump()
    old = ModelMeta.model_validate(json.loads(json.dumps(
        {"config": config, "gap_policy": "zero", "bucket_agg": "mean", "data_digest": "x"})))
    assert old.grid == GridRule(freq="h", agg="mean", gap_policy="zero")
    assert ModelMeta.model_validate({"config": config | {"freq": "D"}}).grid == GridRule(freq="D")
    new = ModelMeta(config=TINY_MODEL, grid=GridRule(freq="h", agg="sum", max_gap=3))
    assert ModelMeta.model_validate_json(new.model_dump_json()) == new
    with pytest.raises(ValueError, match=r"grid frequency 'D' differs from the model's 'h'"):
        ModelMeta(config=TINY_MODEL, grid=GridRule(freq="D"))


def test_evaluation_data_is_read_by_the_models_rule(tmp_path: Path) -> None:
    meta = ModelMeta(config=TINY_MODEL, grid=GridRule(freq="h", agg="sum", max_gap=3))
    rule = meta.grid.model_dump()
    assert data_config_for("obs.csv", meta).rule().model_dump() == rule  # a bare data file
    job = _job(tmp_path, {"source": "files", "path": "obs.csv", "gap_policy": "linear"}, {})
    assert data_config_for(str(job), meta).rule().model_dump() == rule  # repeats: allowed
    job = _job(tmp_path, {"source": "files", "path": "obs.csv", "agg": "mean", "freq": "D"}, {})
    with pytest.raises(JobConfigError) as err:
        data_config_for(str(job), meta)
    assert str(err.value) == (f"{job}: data freq 'D' differs from the model's 'h'; "
                              "data agg 'mean' differs from the model's 'sum'")


def test_the_api_fills_gaps_up_to_the_models_max_gap(champion: Champion) -> None:
    base = champion.job.forecaster
    grid = GridRule(freq="h", max_gap=2)
    forecaster = Forecaster(base.model, base.meta.model_copy(update={"grid": grid}))
    values: list[float | None] = [float(v) for v in 10 + np.arange(72) % 24]
    start = datetime(2024, 1, 1, tzinfo=UTC)
    values[10] = values[11] = None  # 2 missing: filled
    out = prepare_series(SeriesIn(id="a", start=start, values=values), forecaster)
    assert out.imputed == 2 and np.isfinite(out.values).all()
    values[12] = None  # 3 missing in a row: longer than max_gap
    with pytest.raises(ValueError, match=r"the gap from 2024-01-01T10:00:00\+00:00 is longer "
                                         r"than the model's max_gap \(2 grid points\)"):
        prepare_series(SeriesIn(id="a", start=start, values=values), forecaster)


def test_retraining_refuses_a_champion_on_another_grid_rule(champion: Champion) -> None:
    from nearcast.service.retraining.job import _load_champion

    champion.settings.connect()
    ref, job, said = champion.job.version, JobConfig(model=TINY_MODEL), []
    assert ref is not None
    with pytest.raises(ValueError, match=rf"the job differs from champion v{ref.version} in "
                                         r"agg 'sum' \(champion 'mean'\), max_gap 4 \(champion "
                                         r"None\): their scores are not comparable"):
        _load_champion("tiny", ref, job, GridRule(freq="h", agg="sum", max_gap=4), said.append)
    assert _load_champion("tiny", ref, job, GridRule(freq="60min"), said.append) is not None
    assert said == [f"loaded champion v{ref.version}"]


def test_a_column_map_key_other_than_the_three_is_refused_naming_it(tmp_path: Path) -> None:
    path = _job(tmp_path, {"source": "files", "path": "x.csv",
                           "columns": {"y": "sales", "covariates": "price"}}, {})
    with pytest.raises(JobConfigError) as err:
        JobConfig.from_yaml(path)
    assert (f"{path}: data.columns: unknown key(s) ['covariates']: columns maps ['unique_id', "
            "'ds', 'y'] to the names of your columns") in str(err.value)
    path = _job(tmp_path, {"source": "files", "path": "x.csv",
                           "columns": {"y": "sales", "ds": "sales"}}, {})
    with pytest.raises(JobConfigError, match=r"data.columns: column map names a column twice"):
        JobConfig.from_yaml(path)
