"""The XLA ladder: every batch size compiles once, answers equal the plain path, and the compile
count is TensorFlow's own (a shape outside the ladder would show up in it)."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from conftest import TINY_MODEL
from nearcast.models.architectures import build_model
from nearcast.models.compiled import CompiledLadder, ladder_sizes
from nearcast.models.forecaster import Forecaster, ModelMeta
from nearcast.pipelines.grid import GridRule

SIZES = (1, 2, 4, 8)


@pytest.fixture(scope="module")
def pair() -> tuple[Forecaster, Forecaster]:
    """The same untrained network behind the plain path and an XLA ladder of 1, 2, 4, 8."""
    keras.utils.set_random_seed(3)
    config = TINY_MODEL.model_copy(update={"quantiles": [0.1, 0.9]})
    config = type(config).model_validate(config.model_dump())
    meta = ModelMeta(config=config, grid=GridRule(freq=config.freq))
    model = build_model(config, name="tiny")
    return Forecaster(model, meta), Forecaster(model, meta, jit_compile=True, batch_sizes=SIZES)


def _windows(n: int, length: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(n)
    t = np.arange(length, dtype=np.float32)
    history = (100 + 20 * np.sin(2 * np.pi * t / 24) + rng.normal(0, 3, (n, length)))
    mask = np.ones((n, length), np.float32)
    mask[:, :5] = 0.0  # a padded start, as fit_histories makes for short series
    return {"history": history.astype(np.float32), "mask": mask}


def test_ladder_sizes_are_powers_of_two_up_to_the_limit() -> None:
    assert ladder_sizes(1) == (1,)
    assert ladder_sizes(8) == (1, 2, 4, 8)
    assert ladder_sizes(256) == (1, 2, 4, 8, 16, 32, 64, 128, 256)
    assert ladder_sizes(100) == (1, 2, 4, 8, 16, 32, 64, 100)
    with pytest.raises(ValueError, match="at least 1"):
        ladder_sizes(0)
    with pytest.raises(ValueError, match="at least 1"):
        CompiledLadder(lambda x: x["history"], {}, [0, 4])


def test_warmup_compiles_each_size_once_and_later_batches_compile_nothing(
    pair: tuple[Forecaster, Forecaster],
) -> None:
    plain, xla = pair
    assert xla.ladder is not None and xla.ladder.sizes == SIZES
    assert xla.compiles == 0
    seconds = xla.warmup()
    assert seconds > 0 and xla.ladder.warmup_seconds == seconds
    assert xla.compiles == len(SIZES)
    length = plain.config.input_size
    # 3 and 5 pad up (to 4 and 8), 8 is a ladder size, 19 and 8+1 chunk above the largest.
    for n in (1, 3, 5, 8, 9, 19, 2, 7):
        inputs = _windows(n, length)
        got, want = xla.predict_inputs(inputs), plain.predict_inputs(inputs)
        assert got.shape == want.shape == (n, plain.config.horizon, 3)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    assert xla.compiles == len(SIZES)
    assert xla.ladder.size_for(3) == 4 and xla.ladder.size_for(8) == 8


def test_the_count_is_tensorflows_own_trace_count(pair: tuple[Forecaster, Forecaster]) -> None:
    """A shape outside the ladder that reached the compiled function would count as a compile."""
    _, xla = pair
    assert xla.ladder is not None
    xla.warmup()  # again: compiled shapes are reused, the count stays
    before = xla.compiles
    assert before == len(SIZES)
    xla.ladder._run(_windows(3, xla.config.input_size))  # bypasses the padding on purpose
    assert xla.compiles == before + 1


def test_rows_do_not_depend_on_their_batch_neighbours(pair: tuple[Forecaster, Forecaster]
                                                      ) -> None:
    """The padded rows (copies of the last row) leave the real rows' forecasts unchanged."""
    _, xla = pair
    inputs = _windows(5, xla.config.input_size)
    together = xla.predict_inputs(inputs)
    alone = np.concatenate([xla.predict_inputs({k: v[i:i + 1] for k, v in inputs.items()})
                            for i in range(5)])
    np.testing.assert_allclose(together, alone, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="empty batch"):
        xla.predict_inputs({k: v[:0] for k, v in inputs.items()})
