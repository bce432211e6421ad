from __future__ import annotations

import itertools

import numpy as np
import pytest
from window_helpers import coded_table, gather_all, long_frame, table_of

from nearcast.pipelines.padding import fit_histories
from nearcast.pipelines.series_table import SeriesTable, last_windows, window_index, window_runs
from nearcast.pipelines.window_runs import WindowSpec


def reference_ends(length: int, spec: WindowSpec) -> np.ndarray:
    """Brute force: every end on the stride grid through the newest, kept if its padding is
    whole folds and its history long enough."""
    ends = [
        e
        for e in range(length - spec.horizon, spec.shortest_history - 1, -spec.stride)
        if e >= spec.input_size or (spec.input_size - e) % spec.fold == 0
    ]
    return np.asarray(sorted(ends), dtype=np.int64)


# ----------------------------------------------------------------------------- geometry
@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"input_size": 0, "horizon": 2}, "must be positive"),
        ({"input_size": 4, "horizon": 2, "stride": 0}, "must be positive"),
        ({"input_size": 6, "horizon": 2, "fold": 4}, "input_size 6 is not a multiple of fold 4"),
        ({"input_size": 6, "horizon": 2, "fold": 2, "min_history": 3}, "min_history 3"),
        ({"input_size": 6, "horizon": 2, "min_history": 8}, r"in \(0, 6\]"),
    ],
)
def test_window_spec_rejects_bad_geometry(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WindowSpec(**kwargs)


def test_window_spec_shortest_history_defaults_to_the_window() -> None:
    assert WindowSpec(6, 2).shortest_history == 6
    assert WindowSpec(6, 2, fold=2, min_history=2).shortest_history == 2


# ----------------------------------------------------------------------------- the table
def test_from_long_sorts_series_and_time() -> None:
    table = table_of({"b": [100, 101, 102], "a": [0, 1, 2, 3, 4]})
    assert table.ids.tolist() == ["a", "b"]
    assert table.values.dtype == np.float32
    assert table.values.tolist() == [0, 1, 2, 3, 4, 100, 101, 102]
    assert table.offsets.tolist() == [0, 5, 8]
    assert table.lengths.tolist() == [5, 3]
    assert table.series(1).tolist() == [100, 101, 102]


def test_from_long_names_non_finite_values() -> None:
    frame = long_frame({"a": [1.0, 2.0], "b": [3.0, np.nan, np.inf]})
    with pytest.raises(ValueError) as excinfo:
        SeriesTable.from_long(frame)
    text = str(excinfo.value)
    assert "2 non-finite y values reach windowing" in text
    assert "('b', Timestamp('2024-01-01 01:00:00+0000', tz='UTC'))" in text
    assert "('b', Timestamp('2024-01-01 02:00:00+0000', tz='UTC'))" in text


# ----------------------------------------------------------------------------- the index
def test_window_index_by_hand() -> None:
    # a: 10 points -> history ends 4..8; b: 6 points -> one window (end 4); c: too short.
    table = table_of({"a": range(10), "b": range(100, 106), "c": range(200, 205)})
    index, counts = window_index(table, WindowSpec(input_size=4, horizon=2))
    assert counts.tolist() == [5, 1, 0]
    assert index.tolist() == [[4, 0], [5, 0], [6, 0], [7, 0], [8, 0], [14, 10]]


def test_first_and_last_window_of_each_series_value_by_value() -> None:
    table = table_of({"a": range(10), "b": range(100, 107)})
    spec = WindowSpec(input_size=4, horizon=2)
    index, counts = window_index(table, spec)
    history, mask, target = gather_all(table, index, spec)
    first_a, last_a, first_b, last_b = 0, counts[0] - 1, counts[0], counts.sum() - 1
    assert history[first_a].tolist() == [0, 1, 2, 3] and target[first_a].tolist() == [4, 5]
    assert history[last_a].tolist() == [4, 5, 6, 7] and target[last_a].tolist() == [8, 9]
    assert history[first_b].tolist() == [100, 101, 102, 103]
    assert target[first_b].tolist() == [104, 105]
    assert history[last_b].tolist() == [101, 102, 103, 104]
    assert target[last_b].tolist() == [105, 106]
    assert (mask == 1.0).all()


def test_stride_counts_back_from_the_newest_window() -> None:
    table = table_of({"a": range(10)})
    index, _ = window_index(table, WindowSpec(input_size=4, horizon=2, stride=3))
    # newest end 8 (target = the last two points), then 5; 2 would leave too short a history
    assert index[:, 0].tolist() == [5, 8]


def test_short_histories_are_padded_at_the_start_in_whole_folds() -> None:
    # 7 points, window 6 + 2, fold 2, min history 2: newest end 5; ends 3 and 5 would pad odd
    # numbers of points, so the windows end at 2 and 4.
    table = table_of({"a": [1, 2, 3, 4, 5, 6, 7]})
    spec = WindowSpec(input_size=6, horizon=2, fold=2, min_history=2)
    index, counts = window_index(table, spec)
    assert index[:, 0].tolist() == [2, 4] and counts.tolist() == [2]
    history, mask, target = gather_all(table, index, spec)
    assert history.tolist() == [[0, 0, 0, 0, 1, 2], [0, 0, 1, 2, 3, 4]]
    assert mask.tolist() == [[0, 0, 0, 0, 1, 1], [0, 0, 1, 1, 1, 1]]
    assert target.tolist() == [[3, 4], [5, 6]]
    served = fit_histories([np.asarray([1.0, 2.0]), np.asarray([1.0, 2.0, 3.0, 4.0])], spec)
    np.testing.assert_array_equal(served.history, history)  # the serving rule is the same
    np.testing.assert_array_equal(served.mask, mask)


def test_window_index_matches_brute_force_for_many_geometries() -> None:
    rng = np.random.default_rng(0)
    checked = 0
    grid = itertools.product([4, 6, 12], [1, 3], [1, 2, 3, 5], [1, 2, 3, 4])
    for size, horizon, stride, fold in grid:
        if size % fold:
            continue
        for shortest in [None, *range(fold, size + 1, fold)]:
            spec = WindowSpec(size, horizon, stride, fold, shortest)
            lengths = rng.integers(0, 40, size=6)
            table = coded_table(lengths)
            index, counts = window_index(table, spec)
            expected = [reference_ends(int(n), spec) for n in lengths]
            assert counts.tolist() == [len(e) for e in expected], spec
            starts = np.repeat(table.offsets[:-1], counts)
            np.testing.assert_array_equal(index[:, 1], starts)
            np.testing.assert_array_equal(index[:, 0] - starts, np.concatenate(expected))
            assert window_runs(table, spec).total == len(index)
            checked += 1
    assert checked > 200


@pytest.mark.parametrize(
    "spec",
    [
        WindowSpec(4, 2),
        WindowSpec(6, 3, stride=2, fold=3, min_history=3),
        WindowSpec(8, 1, stride=3, fold=2, min_history=2),
    ],
)
def test_windows_never_cross_series_boundaries(spec: WindowSpec) -> None:
    table = coded_table([3, 9, 5, 20, 8, 1, 12])
    index, _ = window_index(table, spec)
    history, mask, target = gather_all(table, index, spec)
    assert len(index) > 5
    series = np.searchsorted(table.offsets, index[:, 1], side="right") - 1
    own = 1000.0 * (series + 1)
    real = mask == 1.0
    assert ((history // 1000 == (own // 1000)[:, None]) | ~real).all()
    assert (target // 1000 == (own // 1000)[:, None]).all()
    # real history then target are consecutive positions of that series, ending where the
    # window ends, and padding is zero at the start only
    local_end = index[:, 0] - index[:, 1]
    expect_target = own[:, None] + local_end[:, None] + np.arange(spec.horizon)
    np.testing.assert_array_equal(target, expect_target)
    positions = local_end[:, None] - spec.input_size + np.arange(spec.input_size)
    expect_history = own[:, None] + positions
    np.testing.assert_array_equal(history[real], expect_history[real])
    assert (history[~real] == 0).all()
    assert (np.diff(mask, axis=1) >= 0).all()


def test_last_windows_target_the_last_points() -> None:
    table = table_of({"a": range(10), "b": range(100, 103), "c": range(200, 208)})
    spec = WindowSpec(4, 2, fold=2, min_history=2)
    last = last_windows(table, spec)
    _, _, target = gather_all(table, last, spec)
    assert target.tolist() == [[8, 9], [206, 207]]  # "b": 3 points < min history 2 + horizon 2


def test_last_windows_count_steps_back_a_horizon_while_full_windows_remain() -> None:
    table = table_of({"a": range(10), "b": range(100, 103), "c": range(200, 208)})
    spec = WindowSpec(4, 2, fold=2, min_history=2)
    index = last_windows(table, spec, count=3)
    _, _, target = gather_all(table, index, spec)
    # "a": full-history ends 4..8, so 8, 6, 4; "c": ends 4..6, so 6, 4; "b": none
    assert target.tolist() == [[8, 9], [6, 7], [4, 5], [206, 207], [204, 205]]
    np.testing.assert_array_equal(last_windows(table, spec, count=1), index[[0, 3]])
