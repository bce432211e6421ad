"""Shared by the committed-config tests: each config trained for one step on shrunk data.

Each config keeps its architecture (members, cells, windows, covariates, calendar, quantiles);
only the training run is shrunk: one epoch of one step on a small batch, one validation window,
no XLA compile, on the config's own data source cut to a few series (bundled M4) or to the
newest points a window needs (the EPF files), read once per session for every config using it.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import numpy as np

from nearcast.models.estimator import Nearcast
from nearcast.models.jobconfig import JobConfig
from nearcast.pipelines.dataset import DataConfig, LoadedData, RawData, prepare, read_raw
from nearcast.pipelines.schema import UNIQUE_ID

ROOT = Path(__file__).resolve().parents[2]
COMMITTED = sorted((ROOT / "configs").glob("*.yaml"))
ONE_STEP = {"epochs": 1, "steps_per_epoch": 1, "batch_size": 8, "max_seconds": None,
            "patience": 1, "val_windows": 1, "jit_compile": False, "verbose": False}
M4_SERIES = 3
SPARE = 48  # points kept beyond the fewest a series needs


def committed(m4: bool) -> list[Path]:
    """The committed configs reading the bundled M4 data (``m4``) or any other source."""
    return [p for p in COMMITTED if (JobConfig.from_yaml(p).data.source == "m4_hourly") == m4]


@cache
def _raw(data_json: str) -> RawData:
    """The source as read, once per test session for all configs reading it the same way."""
    return read_raw(DataConfig.model_validate_json(data_json))


def shrunk(job: JobConfig) -> LoadedData:
    """The config's data: M4's first few series, or each series' newest points."""
    data = job.data
    if data.source == "m4_hourly":
        data = data.model_copy(update={"n_series": M4_SERIES})
    raw = _raw(data.model_dump_json())
    frame = raw.frame
    if data.source != "m4_hourly":
        frame = frame.groupby(UNIQUE_ID, sort=False).tail(job.min_series_length() + SPARE)
    return prepare(data, RawData(frame.reset_index(drop=True), raw.origin))


def check_trains_one_step(path: Path) -> None:
    """Parse ``path`` as ``nearcast train --config`` does, train one step, check the result.

    Data paths in the configs are relative to the checkout: call with the checkout as cwd.
    """
    job = JobConfig.from_yaml(path)
    tiny = job.model_copy(update={"train": job.train.model_copy(update=ONE_STEP)})
    if tiny.ensemble is not None:
        tiny = tiny.model_copy(update={"ensemble": tiny.ensemble.model_copy(
            update={"max_seconds": None})})
    data = shrunk(tiny)
    fitted = Nearcast.from_job(tiny).fit(data).fitted
    assert fitted is not None
    members = job.member_configs()
    assert len(fitted.members) == len(members)
    for member, want in zip(fitted.members, members, strict=True):
        assert (member.config.cell, member.config.units, member.config.layers,
                member.config.input_size) == (want.cell, want.units, want.layers, want.input_size)
        assert len(member.result.epochs) == 1
    served = fitted.forecaster.config
    assert (served.horizon, served.quantiles) == (job.model.horizon, job.model.quantiles)
    if job.data.covariates:
        assert fitted.forecaster.meta.features is not None
        assert set(fitted.forecaster.meta.features.covariates) == set(job.data.covariates)
    assert all(math.isfinite(v) for v in fitted.evaluation.scores["model"].values())
    assert fitted.evaluation.actual.shape == (data.frame[UNIQUE_ID].nunique(), job.model.horizon)
    assert np.isfinite(fitted.evaluation.forecasts["model"]).all()
    if job.model.quantiles:
        assert {"coverage_80", "msis_80"} <= set(fitted.evaluation.intervals)
