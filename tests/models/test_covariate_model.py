"""Covariate models in memory: they use a future-known driver, never the target's future."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from covariate_data import COVARIATES, driven_frame

from nearcast.models.backtest import backtest
from nearcast.models.config import EnsembleConfig, ModelConfig, TrainConfig
from nearcast.models.fitting import Fitted, fit_forecaster
from nearcast.models.inference import forecast_frame
from nearcast.pipelines.calendar import CalendarRule
from nearcast.pipelines.grid import GridRule
from nearcast.pipelines.windows import SeriesTable, cut_index, gather_batch

MODEL = ModelConfig(units=16, input_size=48, horizon=24, fold=24, season=24,
                    scaling="level_mad", seasonal_skip=False, embedding=4,
                    calendar=CalendarRule(features=["hour", "weekday"]))
TRAIN = TrainConfig(epochs=8, steps_per_epoch=40, batch_size=64, learning_rate=3e-3,
                    patience=8, verbose=False)
GRID = GridRule(freq="h")


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    return driven_frame()


@pytest.fixture(scope="module")
def fitted(frame: pd.DataFrame) -> Fitted:
    return fit_forecaster(frame, MODEL, TRAIN, GRID, covariates=COVARIATES)


def test_the_driver_makes_the_forecast_and_without_it_the_same_config_cannot(
    frame: pd.DataFrame, fitted: Fitted
) -> None:
    with_driver = fitted.evaluation.scores["model"]["mae"]
    alone = fit_forecaster(frame[["unique_id", "ds", "y"]],
                           MODEL.model_copy(update={"calendar": None, "embedding": 0}),
                           TRAIN, GRID).evaluation.scores["model"]["mae"]
    # y = 10 + 3x with x ~ N(0, 1): knowing x leaves the 0.1 noise; not knowing it, ~2.4.
    assert with_driver < 0.8, with_driver
    assert alone > 1.8, alone
    assert with_driver < alone / 3


def test_the_target_after_the_cutoff_never_changes_a_forecast(
    frame: pd.DataFrame, fitted: Fitted
) -> None:
    fc, spec = fitted.forecaster, MODEL.window_spec()
    table = SeriesTable.from_long(frame, fc.meta.features)
    ends = table.offsets[:-1] + 200
    inputs, _ = gather_batch(table, cut_index(table, ends, spec), spec)
    changed = frame.copy()
    after = changed.groupby("unique_id").cumcount() >= 200
    changed.loc[after, "y"] = changed.loc[after, "y"] * -50.0 + 1e4
    changed.loc[after, "p"] = 99.0  # past-only covariates after the cutoff are unseen too
    table2 = SeriesTable.from_long(changed, fc.meta.features)
    inputs2, _ = gather_batch(table2, cut_index(table2, ends, spec), spec)
    np.testing.assert_array_equal(fc.predict_inputs(inputs), fc.predict_inputs(inputs2))
    # while the future-known driver over the horizon does change it
    moved = frame.copy()
    moved.loc[after, "x"] = moved.loc[after, "x"] + 2.0
    table3 = SeriesTable.from_long(moved, fc.meta.features)
    inputs3, _ = gather_batch(table3, cut_index(table3, ends, spec), spec)
    shift = fc.predict_inputs(inputs3) - fc.predict_inputs(inputs)
    assert float(np.mean(shift)) > 2.0  # 3 * 2.0 = 6 for a perfect model


def test_forecast_frame_reads_future_rows_and_names_a_missing_driver(
    frame: pd.DataFrame, fitted: Fitted
) -> None:
    fc = fitted.forecaster
    history = frame.groupby("unique_id").head(300)
    future = frame.groupby("unique_id").nth(list(range(300, 324)))
    out = forecast_frame(fc, pd.concat([history, future.assign(y=np.nan)]), 24).frame
    truth = future["y"].to_numpy()
    assert np.abs(out["forecast"].to_numpy() - truth).mean() < 0.8
    same = forecast_frame(fc, history, 24, future=future.drop(columns=["y"])).frame
    np.testing.assert_allclose(same["forecast"], out["forecast"], atol=1e-5)
    with pytest.raises(ValueError, match="'x' holds a missing"):
        forecast_frame(fc, pd.concat([history, future.assign(y=np.nan, x=np.nan)]), 24)


def test_a_backtest_forecasts_each_fold_as_served_with_the_future_drivers_of_its_horizon(
    frame: pd.DataFrame, fitted: Fitted
) -> None:
    fc = fitted.forecaster
    result = backtest(fc, frame, n_folds=30, step=3, horizon=12)  # 30 folds, one batch
    assert (len(result.folds), result.n_scored, result.horizon) == (30, 3, 12)
    assert result.aggregate["model"]["mae"] < 0.8 < result.aggregate["naive"]["mae"]
    # changing the target and the past-only column after the last cutoff changes nothing
    changed = frame.copy()
    after = changed.groupby("unique_id").cumcount() >= 360 - 12
    changed.loc[after, ["y", "p"]] = 1e4
    again = backtest(fc, changed, n_folds=30, step=3, horizon=12)  # the same batches
    for before, now in zip(result.folds, again.folds, strict=True):
        np.testing.assert_array_equal(now.forecasts["model"], before.forecasts["model"])
    last = backtest(fc, changed, n_folds=1, horizon=12).folds[0].forecasts["model"]
    # one fold is a batch of another size: the same up to float32 rounding
    np.testing.assert_allclose(last, result.folds[-1].forecasts["model"], rtol=1e-5)
    # fold k as served: history to its cutoff, the drivers of the model's 24 steps after it
    for k in (0, 17, 25):  # (folds 26..29 end within 24 rows of the data's end)
        cut = 360 - 12 - (29 - k) * 3
        rows = frame.groupby("unique_id").cumcount()
        hist, fut = frame[rows < cut], frame[(rows >= cut) & (rows < cut + 24)]
        served = forecast_frame(fc, hist, 12, future=fut.drop(columns=["y", "p"])).frame
        np.testing.assert_allclose(result.folds[k].forecasts["model"].ravel(),
                                   served["forecast"].to_numpy(), atol=1e-5)
        assert result.cutoffs[k]["S1"] == hist.loc[hist["unique_id"] == "S1", "ds"].iloc[-1]
    with pytest.raises(ValueError, match=r"covariates \['p'\], which the data does not have"):
        backtest(fc, frame.drop(columns=["p"]), n_folds=2)


def test_an_ensemble_of_covariate_members_is_one_model(frame: pd.DataFrame) -> None:
    ensemble = EnsembleConfig(members=[{"seed": 0}, {"seed": 1, "units": 8}],
                              interval_coverage=None)
    short = TRAIN.model_copy(update={"epochs": 2, "steps_per_epoch": 10})
    fitted = fit_forecaster(frame, MODEL, short, GRID, ensemble, covariates=COVARIATES)
    names = {i.name for i in fitted.forecaster.model.inputs}
    assert names == {"history", "mask", "past", "future", "static", "series"}
    assert np.isfinite(fitted.evaluation.scores["model"]["mae"])


def test_the_front_door_fits_and_predicts_with_covariates(frame: pd.DataFrame) -> None:
    from nearcast import LSTM, Nearcast

    model = Nearcast(LSTM(8), horizon=24, input_size=48, fold=24, season=24,
                     scaling="level_mad", covariates={"x": {"role": "future"}},
                     train={"epochs": 1, "steps_per_epoch": 5, "verbose": False})
    data = frame[["unique_id", "ds", "y", "x"]]
    model.fit(data.groupby("unique_id").head(300))
    future = data.groupby("unique_id").nth(list(range(300, 324))).drop(columns=["y"])
    out = model.predict(data.groupby("unique_id").head(300), future=future)
    assert len(out) == 72 and np.isfinite(out["forecast"]).all()
    assert [c["name"] for c in model.forecaster.describe()["covariates"]] == ["x"]
