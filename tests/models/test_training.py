"""The training loop's step: XLA-compiled or not, the same seeded training."""

from __future__ import annotations

import keras
import numpy as np
import pandas as pd

from nearcast.models.architectures import build_model
from nearcast.models.config import ModelConfig, TrainConfig
from nearcast.models.fitting import split_for_training
from nearcast.models.training import fit

CONFIG = ModelConfig(cell="lstm", units=8, input_size=72, horizon=24, fold=24, season=24,
                     min_history=48)


def _losses(df: pd.DataFrame, jit_compile: bool) -> tuple[list[float], list[float]]:
    train = TrainConfig(epochs=3, steps_per_epoch=5, batch_size=32, learning_rate=1e-2,
                        patience=10, verbose=False, jit_compile=jit_compile, seed=5)
    data, _ = split_for_training(df, CONFIG)
    keras.utils.set_random_seed(train.seed)
    result = fit(build_model(CONFIG), CONFIG, train, data)
    return [e.train_loss for e in result.epochs], [e.val_loss for e in result.epochs]


def test_xla_step_trains_like_the_plain_step(tiny_df: pd.DataFrame) -> None:
    xla_train, xla_val = _losses(tiny_df, jit_compile=True)
    plain_train, plain_val = _losses(tiny_df, jit_compile=False)
    assert len(xla_train) == len(plain_train) == 3
    assert xla_train[-1] < xla_train[0]
    # same seed, same batches: only floating-point order may differ between the two
    np.testing.assert_allclose(xla_train, plain_train, rtol=1e-3)
    np.testing.assert_allclose(xla_val, plain_val, rtol=1e-3)


def test_seeded_xla_training_repeats_exactly(tiny_df: pd.DataFrame) -> None:
    assert _losses(tiny_df, jit_compile=True) == _losses(tiny_df, jit_compile=True)
