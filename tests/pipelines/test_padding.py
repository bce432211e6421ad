from __future__ import annotations

import numpy as np
import pytest

from nearcast.pipelines.padding import HistoryTooShortError, fit_histories, usable_length
from nearcast.pipelines.windows import SeriesTable, WindowSpec, gather_windows, window_index

SPEC = WindowSpec(input_size=6, horizon=2, fold=2, min_history=2)


def arr(*values: float) -> np.ndarray:
    return np.asarray(values, dtype=np.float64)


def test_long_history_is_cut_to_its_newest_points() -> None:
    fit = fit_histories([arr(*range(1, 11))], SPEC)
    assert fit.history.tolist() == [[5, 6, 7, 8, 9, 10]]
    assert fit.mask.tolist() == [[1, 1, 1, 1, 1, 1]]
    assert fit.used.tolist() == [6] and fit.dropped.tolist() == [4]
    assert fit.history.dtype == np.float32 and fit.mask.dtype == np.float32


def test_exact_history_is_kept_as_is() -> None:
    fit = fit_histories([arr(1, 2, 3, 4, 5, 6)], SPEC)
    assert fit.history.tolist() == [[1, 2, 3, 4, 5, 6]]
    assert fit.used.tolist() == [6] and fit.dropped.tolist() == [0]


def test_short_history_is_padded_at_the_start_in_whole_folds() -> None:
    # 5 points, fold 2: the oldest point is dropped so the padding is whole folds.
    fit = fit_histories([arr(7, 8, 9, 10, 11), arr(3, 4)], SPEC)
    assert fit.history.tolist() == [[0, 0, 8, 9, 10, 11], [0, 0, 0, 0, 3, 4]]
    assert fit.mask.tolist() == [[0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1]]
    assert fit.used.tolist() == [4, 2] and fit.dropped.tolist() == [1, 0]


def test_too_short_history_names_its_position() -> None:
    spec = WindowSpec(input_size=6, horizon=2, fold=2, min_history=4)
    with pytest.raises(HistoryTooShortError) as excinfo:
        fit_histories([arr(*range(8)), arr(1, 2, 3)], spec)
    assert excinfo.value.index == 1
    assert str(excinfo.value) == "3 points; the model needs at least 4 (in whole multiples of 2)"
    assert isinstance(excinfo.value, ValueError)
    with pytest.raises(HistoryTooShortError):  # without min_history the full window is needed
        fit_histories([arr(*range(5))], WindowSpec(input_size=6, horizon=2))


@pytest.mark.parametrize(
    ("n", "expected"), [(0, 0), (1, 0), (2, 2), (3, 2), (5, 4), (6, 6), (7, 6), (100, 6)]
)
def test_usable_length(n: int, expected: int) -> None:
    assert usable_length(n, SPEC) == expected


def test_serving_rule_equals_the_training_windows() -> None:
    # Every window the training pipeline cuts, fitted again from its raw real history by the
    # serving rule, gives the same model input.
    lengths = [3, 7, 12]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    values = np.arange(1, offsets[-1] + 1, dtype=np.float32)
    table = SeriesTable(np.asarray(["a", "b", "c"]), values, offsets)
    index, _ = window_index(table, SPEC)
    inputs, _ = gather_windows(values, index, SPEC)
    raw = [values[start:end] for end, start in index]
    fit = fit_histories(raw, SPEC)
    np.testing.assert_array_equal(fit.history, inputs["history"])
    np.testing.assert_array_equal(fit.mask, inputs["mask"])
