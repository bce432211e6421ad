"""Joint ensemble training (one step updates every member) and train.refit, on tiny real data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient

from conftest import make_settings, train_tiny
from nearcast.models.architectures import build_model
from nearcast.models.config import EnsembleConfig, ModelConfig, TrainConfig
from nearcast.models.ensemble import ensemble_config
from nearcast.models.evaluation import holdout_evaluate
from nearcast.models.fitting import split_for_training
from nearcast.models.joint import JointSteps, fit_joint

BASE = ModelConfig(cell="gru", units=8, input_size=72, horizon=24, fold=24, min_history=48,
                   quantiles=[0.1, 0.9])
MEMBERS = [{"seed": 1}, {"seed": 2, "cell": "lstm", "input_size": 48}]
TRAIN = TrainConfig(epochs=4, steps_per_epoch=3, batch_size=32, patience=10,
                    learning_rate=0.003, jit_compile=False, verbose=False)
REPO = Path(__file__).resolve().parents[2]


def test_ensemble_budget_keeps_old_configs_meaning() -> None:
    ens = EnsembleConfig(members=MEMBERS)
    assert ens.budget(TRAIN.model_copy(update={"max_seconds": 10.0})) == 20.0  # 10 s x 2
    assert ens.budget(TRAIN) is None
    shared = EnsembleConfig(members=MEMBERS, max_seconds=30.0)
    assert shared.budget(TRAIN) == 30.0
    assert shared.budget(TRAIN.model_copy(update={"max_seconds": 10.0})) == 20.0  # the smaller
    # Sequentially (joint: false), a member gets an equal share of the ensemble's budget.
    assert [t.max_seconds for _, t in shared.member_configs(BASE, TRAIN)] == [15.0, 15.0]
    assert [t.max_seconds for _, t in ens.member_configs(BASE, TRAIN.model_copy(
        update={"max_seconds": 10.0}))] == [10.0, 10.0]


def test_joint_fit_keeps_each_members_best_weights_and_patience(tiny_df: pd.DataFrame) -> None:
    ens = EnsembleConfig(members=MEMBERS)
    pairs = ens.member_configs(BASE.model_copy(update={"freq": "h"}), TRAIN)
    configs = [c for c, _ in pairs]
    data, _ = split_for_training(tiny_df, ensemble_config(configs), None)
    models = []
    for i, (cfg, train) in enumerate(pairs):
        keras.utils.set_random_seed(train.seed)
        models.append(build_model(cfg, name=f"member_{i}"))
    keras.utils.set_random_seed(pairs[0][1].seed)
    first = build_model(configs[0], name="again")  # the seed alone fixes the initial weights
    for a, b in zip(first.get_weights(), models[0].get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)
    cfg = TRAIN.model_copy(update={"epochs": 6, "patience": 1, "learning_rate": 0.05})
    results = fit_joint(models, configs, cfg, data, None)
    # Each member's restored weights score its own best validation loss.
    vals = JointSteps(models, configs, cfg).val(data)
    for res, val in zip(results, vals, strict=True):
        assert val == pytest.approx(res.best_val_loss, rel=1e-5)
        assert res.best_step == res.best_epoch * cfg.steps_per_epoch
        assert res.stop_reason in {"early_stopping", "epochs"}
        # A member stops updating after it runs out of patience (one stale epoch here).
        if res.stop_reason == "early_stopping":
            assert len(res.epochs) == res.best_epoch + 1


def test_refit_serves_a_retrained_model_with_the_selected_models_scores(
    tiny_df: pd.DataFrame, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, "refit")
    train = TRAIN.model_copy(update={"refit": True})
    job = train_tiny(tiny_df, BASE, train, settings, ensemble=EnsembleConfig(members=MEMBERS))
    fitted = job.model.fitted
    assert fitted is not None and fitted.refit is not None and fitted.selected is not None
    assert fitted.joint
    assert fitted.refit.steps == [m.result.best_step for m in fitted.members]
    served, selected = fitted.forecaster.model.get_weights(), fitted.selected.model.get_weights()
    assert len(served) == len(selected)
    assert any(not np.allclose(a, b) for a, b in zip(served, selected, strict=True))
    # The run's holdout metrics are the selected model's evaluation.
    again = holdout_evaluate(fitted.selected, fitted.table, BASE.horizon).scores["model"]
    run = MlflowClient(settings.resolved_tracking_uri()).get_run(job.run_id).data
    for key in ("smape", "mase", "owa"):
        assert run.metrics[f"model_{key}"] == pytest.approx(again[key], rel=1e-9)
    assert run.tags["nearcast.served_model"] == "refitted"
    assert run.tags["nearcast.refit_steps"] == ",".join(map(str, fitted.refit.steps))
    assert job.version is not None  # the load check passed on the refitted model
    # A fresh process loads the registered (refitted) model and forecasts as this one does.
    history = tiny_df[tiny_df["unique_id"] == "H1"].sort_values("ds")["y"].to_numpy()[-96:]
    code = ("import json, sys, numpy as np, nearcast; "
            "m = nearcast.load('models:/refit@challenger', tracking_uri=sys.argv[1]); "
            "h = np.array(json.loads(sys.argv[2])); "
            "print(json.dumps(m.forecaster.forecast([h]).values[0].tolist()))")
    out = subprocess.run([sys.executable, "-c", code, settings.resolved_tracking_uri(),
                          json.dumps(history.tolist())], cwd=REPO, capture_output=True,
                         text=True, timeout=120, check=True)
    loaded = np.array(json.loads(out.stdout.strip().splitlines()[-1]))
    here = fitted.forecaster.forecast([history]).values[0]
    np.testing.assert_allclose(loaded, here, rtol=1e-5)
    assert not np.allclose(here, fitted.selected.forecast([history]).values[0])


def test_refit_of_a_single_model_in_turn(tiny_df: pd.DataFrame, tmp_path: Path) -> None:
    train = TRAIN.model_copy(update={"refit": True, "epochs": 2})
    job = train_tiny(tiny_df, BASE, train, make_settings(tmp_path, "single"), register=False)
    fitted = job.model.fitted
    assert fitted is not None and fitted.refit is not None and not fitted.joint
    assert fitted.refit.steps == [fitted.members[0].result.best_step]
    assert fitted.forecaster.meta.metrics == fitted.evaluation.scores["model"]
