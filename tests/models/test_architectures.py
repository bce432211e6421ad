"""One shared check run over every architecture x head combination."""

from __future__ import annotations

import itertools

import mlflow
import numpy as np
import pandas as pd
import pytest

from conftest import make_settings
from nearcast.models.architectures import FAMILIES, build_model
from nearcast.models.artifact import load_forecaster, log_forecaster
from nearcast.models.config import ModelConfig, TrainConfig
from nearcast.models.fitting import split_for_training
from nearcast.models.forecaster import Forecaster, ModelMeta
from nearcast.models.training import fit

COMBOS = [
    (cell, head, layers, bidi)
    for cell, head in itertools.product(sorted(FAMILIES), ["direct", "autoregressive"])
    for layers, bidi in [(1, False), (2, True)]
]


def _config(cell: str, head: str, layers: int, bidi: bool, quantiles: list[float]) -> ModelConfig:
    return ModelConfig(cell=cell, head=head, layers=layers, bidirectional=bidi, units=8,
                       input_size=72, horizon=24, fold=24, season=24, min_history=48,
                       quantiles=quantiles)


@pytest.mark.parametrize(("cell", "head", "layers", "bidi"), COMBOS)
def test_architecture_contract(cell: str, head: str, layers: int, bidi: bool,
                               tiny_df: pd.DataFrame, tmp_path) -> None:  # type: ignore[no-untyped-def]
    quantiles = [0.1, 0.9] if layers == 2 else []
    config = _config(cell, head, layers, bidi, quantiles)
    data, _ = split_for_training(tiny_df, config)
    model = build_model(config)
    train = TrainConfig(epochs=3, steps_per_epoch=6, batch_size=32, learning_rate=1e-2,
                        patience=10, verbose=False,
                        jit_compile=False)  # the XLA step equals this one: test_training
    result = fit(model, config, train, data)
    losses = [e.train_loss for e in result.epochs]
    assert losses[-1] < losses[0], losses
    forecaster = Forecaster(result.model, ModelMeta(config=config))
    k = len(config.output_names)
    hist = data.val_inputs["history"][:4]
    out = forecaster.predict_arrays(hist, data.val_inputs["mask"][:4])
    assert out.shape == (4, 24, k)
    if k > 1:
        assert np.all(np.diff(out, axis=-1) >= 0), "quantiles must not cross"

    # Saving and loading through MLflow gives identical forecasts.
    settings = make_settings(tmp_path)
    settings.connect()
    with mlflow.start_run(experiment_id=settings.ensure_experiment(settings.connect())):
        info = log_forecaster(forecaster)
    loaded = load_forecaster(info.model_uri)
    np.testing.assert_allclose(loaded.predict_arrays(hist, data.val_inputs["mask"][:4]), out,
                               atol=1e-6)

    # A padded (shorter) history gives the same forecast as the unpadded one.
    short = hist[:, -48:]
    padded = forecaster.forecast(list(short)).values
    unpadded = result.model({"history": short, "mask": np.ones_like(short)})["forecast"]
    np.testing.assert_allclose(padded, np.asarray(unpadded), rtol=1e-5)


def test_untrained_skip_model_is_seasonal_naive() -> None:
    config = _config("gru", "direct", 1, False, [])
    forecaster = Forecaster(build_model(config), ModelMeta(config=config))
    rng = np.random.default_rng(0)
    hist = (50 + 10 * rng.random((3, 72))).astype(np.float32)
    out = forecaster.predict_arrays(hist, np.ones_like(hist))[:, :, 0]
    np.testing.assert_allclose(out, hist[:, -24:], rtol=1e-5)
