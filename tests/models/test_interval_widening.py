"""An ensemble's intervals are widened on validation windows before the holdout, never on it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nearcast.models.config import EnsembleConfig, ModelConfig, TrainConfig
from nearcast.models.ensemble import ensemble_config, interval_factor, join_members
from nearcast.models.fitting import fit_forecaster, split_for_training
from nearcast.models.forecaster import Forecaster, ModelMeta
from nearcast.pipelines.grid import GridRule

BASE = ModelConfig(cell="gru", units=8, input_size=48, horizon=24, fold=24, min_history=48,
                   quantiles=[0.1, 0.9])
TRAIN = TrainConfig(epochs=2, steps_per_epoch=3, batch_size=32, verbose=False)


def test_factor_is_fitted_on_the_newest_interval_windows(tiny_df: pd.DataFrame) -> None:
    ens = EnsembleConfig(members=[{"seed": 1}, {"seed": 2}], interval_windows=3)
    fitted = fit_forecaster(tiny_df, BASE, TRAIN, GridRule(freq="h"), ens)
    assert fitted.interval_factor is not None
    configs = [m.config for m in fitted.members]
    raw = join_members([m.result.model for m in fitted.members], configs)
    cfg = ensemble_config(configs)
    forecaster = Forecaster(raw, ModelMeta(config=cfg, grid=GridRule(freq="h")))
    windows = {}
    for count in (1, 3):
        data, _ = split_for_training(tiny_df, cfg, None, count)
        windows[count] = data
    assert len(windows[3].val_target) == 3 * len(windows[1].val_target)
    # The newest of them ends right before the holdout (the last horizon points): never in it.
    for uid, target in zip(sorted(tiny_df["unique_id"].unique()), windows[1].val_target,
                           strict=True):
        series = tiny_df[tiny_df["unique_id"] == uid].sort_values("ds")["y"].to_numpy()
        np.testing.assert_allclose(target, series[-2 * BASE.horizon : -BASE.horizon], rtol=1e-6)
    outputs = forecaster.predict_inputs(windows[3].val_inputs)
    want = interval_factor(outputs, windows[3].val_target, cfg, 0.8)
    assert fitted.interval_factor == pytest.approx(want, rel=1e-6)
    widened = outputs[:, :, 1:2] + (outputs - outputs[:, :, 1:2]) * fitted.interval_factor
    target = windows[3].val_target
    inside = (widened[:, :, 0] <= target) & (target <= widened[:, :, 2])
    assert inside.mean() >= 0.8  # split conformal covers at least the target where it was fitted
    assert {"coverage_80", "msis_80"} <= set(fitted.evaluation.intervals)
