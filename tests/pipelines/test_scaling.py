from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

from nearcast.pipelines.errors import DataValidationError
from nearcast.pipelines.scaling import (
    LOG_FLOOR,
    SCALING_RULES,
    apply_scaling,
    invert_scaling,
    window_level,
)
from nearcast.pipelines.scaling_rules import refuse_non_positive
from nearcast.pipelines.schema import DS, UNIQUE_ID, Y
from nearcast.pipelines.windows import (
    SeriesTable,
    WindowSpec,
    gather_windows,
    last_windows,
    window_index,
)


def t(values: list[list[float]]) -> tf.Tensor:
    return tf.constant(values, dtype=tf.float32)


def level_of(
    history: list[list[float]], mask: list[list[float]], rule: str, season: int
) -> list[float]:
    return np.asarray(window_level(t(history), t(mask), rule, season)).ravel().tolist()


def test_log_level_is_the_mean_of_the_last_season_observed() -> None:
    history = [[1, 2, 4, 8], [0, 0, 3, 9], [5, 5, 5, 5]]
    mask = [[1, 1, 1, 1], [0, 0, 1, 1], [1, 1, 1, 1]]
    assert level_of(history, mask, "log_level", season=2) == pytest.approx([6.0, 6.0, 5.0])
    # a season longer than the window averages what is observed, never the padding
    assert level_of(history, mask, "log_level", season=8) == pytest.approx([3.75, 6.0, 5.0])
    level = window_level(t(history), t(mask), "log_level", 2)
    z = np.asarray(apply_scaling(t(history), level, "log_level"))
    assert z[0].tolist() == pytest.approx([math.log(x / 6) for x in (1, 2, 4, 8)], abs=1e-6)


def test_mean_abs_is_the_mean_absolute_observed_value() -> None:
    history = [[-2.0, 4.0, 0.0, -6.0], [99.0, 1.0, 2.0, 3.0]]
    mask = [[0, 1, 1, 1], [0, 1, 1, 1]]  # 99 and -2 are padding and must not count
    assert level_of(history, mask, "mean_abs", season=2) == pytest.approx([10 / 3, 2.0])
    level = window_level(t(history), t(mask), "mean_abs", 2)
    z = np.asarray(apply_scaling(t(history), level, "mean_abs"))
    assert z[1].tolist() == pytest.approx([49.5, 0.5, 1.0, 1.5])


def test_none_is_the_identity() -> None:
    history = [[3.0, -4.0]]
    level = window_level(t(history), t([[1, 1]]), "none", 1)
    assert np.asarray(level).tolist() == [[1.0]]
    assert np.asarray(apply_scaling(t(history), level, "none")).tolist() == history
    assert np.asarray(invert_scaling(t(history), level, "none")).tolist() == history


def test_level_mad_centres_on_the_level_and_divides_by_the_mean_deviation() -> None:
    history, mask = [[-4.0, 0.0, 4.0, 8.0], [99.0, -1.0, -1.0, -1.0]], [[1, 1, 1, 1], [0, 1, 1, 1]]
    level = window_level(t(history), t(mask), "level_mad", 2)
    # level = mean of the last 2 points; deviation = mean |x - level| over the real points
    np.testing.assert_allclose(np.asarray(level)[0], [6.0, 5.0])
    z = np.asarray(apply_scaling(t(history), level, "level_mad"))
    np.testing.assert_allclose(z[0], [-2.0, -1.2, -0.4, 0.4], rtol=1e-6)
    # a constant window (zero deviation): the floor keeps it finite, the level is the value
    assert np.asarray(level)[1, 0] == -1.0 and np.asarray(level)[1, 1] > 0.0
    assert np.isfinite(z[1]).all() and z[1, 1:].tolist() == [0.0, 0.0, 0.0]
    back = np.asarray(invert_scaling(tf.constant(z), level, "level_mad"))
    np.testing.assert_allclose(back[0], history[0], rtol=1e-6)


def test_scale_is_always_positive() -> None:
    zeros, padded = [[0.0, 0.0, 0.0]], [[0.0, 0.0, 0.0]]
    for rule in SCALING_RULES:
        for mask in ([[1, 1, 1]], padded):
            lvl = level_of(zeros, mask, rule, 2)[-1]  # level_mad: (level, deviation)
            assert lvl > 0.0
    z = apply_scaling(t(zeros), window_level(t(zeros), t(padded), "mean_abs", 2), "mean_abs")
    assert np.isfinite(np.asarray(z)).all()


@pytest.mark.parametrize(("rule", "low"), [(r, 1.0) for r in SCALING_RULES]
                         + [("level_mad", -1e4), ("mean_abs", -1e4), ("none", -1e4)])
def test_inverse_round_trip(rule: str, low: float) -> None:
    rng = np.random.default_rng(1)
    history = rng.uniform(low, 1e4, size=(16, 24)).astype(np.float32)
    mask = np.ones_like(history)
    mask[:5, :12] = 0.0
    level = window_level(tf.constant(history), tf.constant(mask), rule, 12)
    future = rng.uniform(low, 1e4, size=(16, 6, 3)).astype(np.float32)  # (B, H, K) forecasts
    for values in (history, future):
        back = invert_scaling(apply_scaling(tf.constant(values), level, rule), level, rule)
        np.testing.assert_allclose(np.asarray(back), values, rtol=2e-6, atol=2e-6 * 1e4)


def test_log_level_floors_non_positive_values() -> None:
    history = t([[0.0, -3.0, 10.0, 10.0]])
    level = window_level(history, tf.ones_like(history), "log_level", 2)
    z = np.asarray(apply_scaling(history, level, "log_level"))
    assert z[0, :2].tolist() == pytest.approx([math.log(LOG_FLOOR)] * 2, abs=1e-5)
    back = np.asarray(invert_scaling(tf.constant(z), level, "log_level"))
    assert back[0].tolist() == pytest.approx([LOG_FLOOR * 10, LOG_FLOOR * 10, 10, 10], rel=1e-5)


def test_unknown_rule_is_named() -> None:
    with pytest.raises(ValueError, match="unknown scaling rule 'zscore'"):
        window_level(t([[1.0]]), t([[1.0]]), "zscore", 1)


@pytest.mark.parametrize("rule", SCALING_RULES)
def test_level_never_sees_the_future(rule: str) -> None:
    # Two tables that differ only in the target period of each window: the windows' histories
    # and levels are identical, their targets are not.
    lengths = [40, 25]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    rng = np.random.default_rng(2)
    base = rng.uniform(10, 20, size=offsets[-1]).astype(np.float32)
    changed = base.copy()
    spec = WindowSpec(input_size=12, horizon=4, fold=4, min_history=4)
    for end in offsets[1:]:
        changed[end - spec.horizon : end] *= 50.0
    ids = np.asarray(["a", "b"])
    tables = [SeriesTable(ids, v, offsets) for v in (base, changed)]
    index = last_windows(tables[0], spec)
    np.testing.assert_array_equal(index, last_windows(tables[1], spec))
    levels, targets = [], []
    for table in tables:
        inputs, target = gather_windows(table.values, index, spec)
        levels.append(np.asarray(window_level(inputs["history"], inputs["mask"], rule, 4)))
        targets.append(np.asarray(target))
    np.testing.assert_array_equal(levels[0], levels[1])
    assert not np.allclose(targets[0], targets[1])
    # and for every window of the table: changing all later values leaves each level alone
    all_index, _ = window_index(tables[0], spec)
    end = int(all_index[3, 0])
    later = base.copy()
    later[end:offsets[1]] = 1e6
    one = all_index[3:4]
    levels = []
    for values in (base, later):
        inputs, _ = gather_windows(values, one, spec)
        levels.append(np.asarray(window_level(inputs["history"], inputs["mask"], rule, 4)))
    np.testing.assert_array_equal(levels[0], levels[1])


def test_log_level_data_with_values_not_above_zero_is_refused_naming_the_series() -> None:
    ds = pd.date_range("2024-01-01", periods=4, freq="h", tz="UTC")
    frame = pd.DataFrame({UNIQUE_ID: ["a"] * 4 + ["b"] * 4, DS: list(ds) * 2,
                          Y: [1.0, 2.0, 3.0, 4.0, 5.0, 0.0, -2.5, 1.0]})
    with pytest.raises(DataValidationError) as err:
        refuse_non_positive(frame, "log_level")
    assert str(err.value).count("[not_positive]") == 1
    assert ("series 'b': 2 value(s) <= 0 (first 0 at 2024-01-01T01:00:00+00:00); scaling "
            "'log_level' needs values > 0, 'level_mad' handles zeros and negative values"
            ) in str(err.value)
    for rule in ("level_mad", "mean_abs", "none"):
        refuse_non_positive(frame, rule)  # any real value
