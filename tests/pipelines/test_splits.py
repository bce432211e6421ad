from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nearcast.pipelines.errors import DataValidationError
from nearcast.pipelines.schema import DS, UNIQUE_ID, Y
from nearcast.pipelines.splits import Fold, backtest_folds, train_test_split, train_val_test_split

HOURS = pd.date_range("2024-01-01", periods=10, freq="h", tz="UTC")


def series() -> pd.DataFrame:
    """Series "a": 10 points y=0..9; series "b": 6 points y=100..105 (shuffled order)."""
    df = pd.DataFrame(
        {
            UNIQUE_ID: ["a"] * 10 + ["b"] * 6,
            DS: list(HOURS) + list(HOURS[:6]),
            Y: list(np.arange(10.0)) + list(np.arange(100.0, 106.0)),
        }
    )
    return df.sample(frac=1.0, random_state=1)


def ys(df: pd.DataFrame, uid: str) -> list[float]:
    return df.loc[df[UNIQUE_ID] == uid, Y].tolist()


def assert_no_leak(train: pd.DataFrame, test: pd.DataFrame) -> None:
    last_train = train.groupby(UNIQUE_ID)[DS].max()
    first_test = test.groupby(UNIQUE_ID)[DS].min()
    assert set(first_test.index) <= set(last_train.index)
    assert (last_train[first_test.index] < first_test).all()


def test_train_test_split_takes_the_last_h_points() -> None:
    train, test = train_test_split(series(), h=2)
    assert ys(train, "a") == [0, 1, 2, 3, 4, 5, 6, 7]
    assert ys(test, "a") == [8, 9]
    assert ys(train, "b") == [100, 101, 102, 103]
    assert ys(test, "b") == [104, 105]
    assert len(train) + len(test) == 16
    assert_no_leak(train, test)


def test_train_test_split_names_short_series() -> None:
    with pytest.raises(DataValidationError) as excinfo:
        train_test_split(series(), h=6)
    (problem,) = excinfo.value.problems
    assert (problem.kind, problem.unique_id) == ("too_short", "b")
    assert "series 'b': series has 6 point(s); need more than 6" in str(excinfo.value)
    with pytest.raises(ValueError, match=">= 1"):
        train_test_split(series(), h=0)


def test_train_val_test_split() -> None:
    train, val, test = train_val_test_split(series(), val_h=3, test_h=2)
    assert ys(train, "a") == [0, 1, 2, 3, 4]
    assert ys(val, "a") == [5, 6, 7]
    assert ys(test, "a") == [8, 9]
    assert ys(train, "b") == [100]
    assert ys(val, "b") == [101, 102, 103]
    assert ys(test, "b") == [104, 105]
    assert_no_leak(train, val)
    assert_no_leak(val, test)
    with pytest.raises(DataValidationError, match="series 'b'"):
        train_val_test_split(series(), val_h=4, test_h=2)


def test_backtest_folds_roll_the_origin() -> None:
    folds = backtest_folds(series(), h=2, n_windows=3, step=1)
    assert len(folds) == 3
    # fold k tests rows ending (n_windows - 1 - k) * step rows before the series end
    assert [ys(f.test, "a") for f in folds] == [[6, 7], [7, 8], [8, 9]]
    assert [ys(f.train, "a") for f in folds] == [list(range(6)), list(range(7)), list(range(8))]
    assert [ys(f.test, "b") for f in folds] == [[102, 103], [103, 104], [104, 105]]
    assert [f.cutoffs for f in folds] == [
        {"a": HOURS[5], "b": HOURS[1]},
        {"a": HOURS[6], "b": HOURS[2]},
        {"a": HOURS[7], "b": HOURS[3]},
    ]
    for fold in folds:
        assert isinstance(fold, Fold)
        assert_no_leak(fold.train, fold.test)
        for uid, cutoff in fold.cutoffs.items():
            assert (fold.train.loc[fold.train[UNIQUE_ID] == uid, DS] <= cutoff).all()
            test_ds = fold.test.loc[fold.test[UNIQUE_ID] == uid, DS]
            assert (test_ds > cutoff).all() and len(test_ds) == 2
    last = folds[-1].test.groupby(UNIQUE_ID)[DS].max()
    assert last.to_dict() == {"a": HOURS[9], "b": HOURS[5]}


def test_backtest_default_step_is_h() -> None:
    folds = backtest_folds(series(), h=2, n_windows=2)
    assert [ys(f.test, "a") for f in folds] == [[6, 7], [8, 9]]
    assert [ys(f.test, "b") for f in folds] == [[102, 103], [104, 105]]


def test_backtest_names_series_too_short_for_the_folds() -> None:
    with pytest.raises(DataValidationError) as excinfo:
        backtest_folds(series(), h=2, n_windows=3, step=2)  # needs > 6 points
    assert [p.unique_id for p in excinfo.value.problems] == ["b"]
    with pytest.raises(ValueError, match="n_windows"):
        backtest_folds(series(), h=2, n_windows=0)


def test_duplicate_timestamps_are_refused() -> None:
    df = series()
    with pytest.raises(DataValidationError, match="more than once"):
        train_test_split(pd.concat([df, df.iloc[:1]]), h=1)
