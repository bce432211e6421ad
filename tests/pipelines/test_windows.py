from __future__ import annotations

import gc
import itertools
import weakref
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from nearcast.pipelines.padding import fit_histories
from nearcast.pipelines.schema import DS, UNIQUE_ID, Y
from nearcast.pipelines.windows import (
    SeriesTable,
    WindowSpec,
    balanced_sample,
    balanced_stream,
    gather_windows,
    last_windows,
    make_dataset,
    window_dataset,
    window_index,
    window_runs,
)

START = pd.Timestamp("2024-01-01", tz="UTC")


def long_frame(
    series: dict[str, Sequence[float]], **extra: dict[str, Sequence[float]]
) -> pd.DataFrame:
    """Hourly long frame, rows shuffled so the table has to sort them."""
    frames = []
    for uid, values in series.items():
        frame = pd.DataFrame(
            {
                UNIQUE_ID: uid,
                DS: pd.date_range(START, periods=len(values), freq="h"),
                Y: np.asarray(values, dtype="float64"),
            }
        )
        for name, columns in extra.items():
            frame[name] = np.asarray(columns[uid], dtype="float64")
        frames.append(frame)
    return pd.concat(frames, ignore_index=True).sample(frac=1.0, random_state=3)


def table_of(series: dict[str, Sequence[float]]) -> SeriesTable:
    return SeriesTable.from_long(long_frame(series))


def coded_table(lengths: Sequence[int]) -> SeriesTable:
    """Series ``i`` holds ``1000 * (i + 1) + t``: every value tells its series and position."""
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    values = np.concatenate([1000.0 * (i + 1) + np.arange(n) for i, n in enumerate(lengths)])
    ids = np.asarray([f"s{i}" for i in range(len(lengths))])
    return SeriesTable(ids, values.astype(np.float32), offsets, np.zeros(len(lengths)))


def gather_all(table: SeriesTable, index: np.ndarray, spec: WindowSpec) -> tuple[np.ndarray, ...]:
    inputs, target = gather_windows(table.values, index, spec)
    return np.asarray(inputs["history"]), np.asarray(inputs["mask"]), np.asarray(target)


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
    assert pd.Timestamp(table.last_ds[0]) == START + pd.Timedelta("4h")
    assert table.covariates is None


def test_from_long_names_non_finite_values() -> None:
    frame = long_frame({"a": [1.0, 2.0], "b": [3.0, np.nan, np.inf]})
    with pytest.raises(ValueError) as excinfo:
        SeriesTable.from_long(frame)
    text = str(excinfo.value)
    assert "2 non-finite y values reach windowing" in text
    assert "('b', Timestamp('2024-01-01 01:00:00+0000', tz='UTC'))" in text
    assert "('b', Timestamp('2024-01-01 02:00:00+0000', tz='UTC'))" in text


def test_covariates_are_checked_and_named() -> None:
    frame = long_frame({"a": [1.0, 2.0]}, temp={"a": [5.0, np.nan]})
    with pytest.raises(ValueError, match="1 non-finite temp values"):
        SeriesTable.from_long(frame, covariates=["temp"])
    with pytest.raises(ValueError, match=r"covariate column\(s\) \['wind'\] missing"):
        SeriesTable.from_long(frame, covariates=["wind"])


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


# ----------------------------------------------------------------------------- sampling
def test_balanced_sample_draws_short_series_as_often_as_long_ones() -> None:
    table = coded_table([20, 2000])  # 15 windows vs 1995
    index, counts = window_index(table, WindowSpec(4, 2))
    picks = balanced_sample(index, counts, 20_000, np.random.default_rng(0))
    short = picks[:, 1] == 0
    assert counts.tolist() == [15, 1995]
    assert abs(short.mean() - 0.5) < 0.02  # uniform over windows would give 0.75 %
    per_window = np.bincount(picks[short, 0], minlength=19)[4:]
    assert len(per_window) == 15 and per_window.min() > 0.8 * short.sum() / 15
    long_ends = picks[~short, 0] - 20
    assert long_ends.min() < 24 and long_ends.max() > 1978  # the long series' range is covered


def test_sampling_is_deterministic_with_a_seed() -> None:
    table = coded_table([30, 50, 9])
    spec = WindowSpec(4, 2, fold=2, min_history=2)
    index, counts = window_index(table, spec)
    draw = lambda seed: balanced_sample(index, counts, 64, np.random.default_rng(seed))  # noqa: E731
    np.testing.assert_array_equal(draw(5), draw(5))
    assert not np.array_equal(draw(5), draw(6))
    runs = window_runs(table, spec)  # the index-free draw is the same draw
    np.testing.assert_array_equal(runs.balanced(64, np.random.default_rng(5)), draw(5))
    batches = [[b[1].numpy() for b in make_dataset(table, draw(5), spec, 16)] for _ in range(2)]
    for one, two in zip(*batches, strict=True):
        np.testing.assert_array_equal(one, two)


def test_balanced_sample_needs_one_window() -> None:
    table = coded_table([3, 4])
    index, counts = window_index(table, WindowSpec(4, 2))
    with pytest.raises(ValueError, match="no series is long enough"):
        balanced_sample(index, counts, 8, np.random.default_rng(0))


# ----------------------------------------------------------------------------- datasets
def test_make_dataset_batches_the_rows_in_order() -> None:
    table = coded_table([12, 7])
    spec = WindowSpec(4, 2, fold=2, min_history=2)
    index, _ = window_index(table, spec)
    batches = list(make_dataset(table, index, spec, batch_size=4))
    # 12 points: ends 2 (padded), 4..10; 7 points: ends 2 (padded), 4, 5 -> 11 windows
    assert len(index) == 11 and [len(t) for _, t in batches] == [4, 4, 3]
    history, mask, target = gather_all(table, index, spec)
    np.testing.assert_array_equal(np.concatenate([x["history"] for x, _ in batches]), history)
    np.testing.assert_array_equal(np.concatenate([x["mask"] for x, _ in batches]), mask)
    np.testing.assert_array_equal(np.concatenate([t for _, t in batches]), target)


def test_window_dataset_yields_every_window_once() -> None:
    table = coded_table([30, 5, 17, 9])
    spec = WindowSpec(6, 2, stride=2, fold=2, min_history=2)
    index, _ = window_index(table, spec)
    _, _, target = gather_all(table, index, spec)
    in_order = np.concatenate([t for _, t in window_dataset(table, spec, 8)])
    np.testing.assert_array_equal(in_order, target)
    shuffled = [
        np.concatenate([t for _, t in window_dataset(table, spec, 8, shuffle_buffer=64, seed=s)])
        for s in (1, 1, 2)
    ]
    np.testing.assert_array_equal(shuffled[0], shuffled[1])
    assert not np.array_equal(shuffled[0], in_order)
    assert not np.array_equal(shuffled[0], shuffled[2])
    by_first = lambda a: a[np.lexsort(a.T[::-1])]  # noqa: E731
    np.testing.assert_array_equal(by_first(shuffled[2]), by_first(in_order))


def test_shuffled_pass_keeps_whole_batches_and_mixes_blocks() -> None:
    # 9 series x 44 windows = 396 windows; blocks of 56 (buffer 50 rounded up to batches of 8)
    table = coded_table([47] * 9)
    spec = WindowSpec(2, 2)
    batches = [t for _, t in window_dataset(table, spec, 8, shuffle_buffer=50, seed=3)]
    assert [len(t) for t in batches] == [8] * 49 + [4]
    firsts = np.concatenate(batches)[:, 0]
    index, _ = window_index(table, spec)
    _, _, target = gather_all(table, index, spec)
    np.testing.assert_array_equal(np.sort(firsts), np.sort(target[:, 0]))
    # the first 56 windows are one block of consecutive positions, not the first block
    position = {int(v): i for i, v in enumerate(target[:, 0])}
    first_block = {position[int(v)] // 56 for v in firsts[:56]}
    assert len(first_block) == 1 and first_block != {0}


def test_datasets_free_their_series_once_dropped() -> None:
    # TensorFlow keeps every eager dataset's generator for the life of the process; the data
    # must not stay with it (a long-lived scheduler trains again and again).
    spec = WindowSpec(4, 2, fold=2, min_history=2)
    makers = {
        "balanced_stream": lambda t: balanced_stream(t, spec, 4, 2, seed=0),
        "window_dataset": lambda t: window_dataset(t, spec, 4),
        "make_dataset": lambda t: make_dataset(t, window_index(t, spec)[0], spec, 4),
    }
    for name, make in makers.items():
        table = coded_table([30, 12])
        values = weakref.ref(table.values)
        batches = iter(make(table))  # only the iterator holds the dataset from here on
        del table
        gc.collect()
        first = next(batches)[1].numpy()
        assert first.shape[1] == 2 and values() is not None, name  # alive while iterated
        del batches
        gc.collect()
        assert values() is None, f"{name} keeps the series after its iterator is gone"


def test_last_windows_target_the_last_points() -> None:
    table = table_of({"a": range(10), "b": range(100, 103), "c": range(200, 208)})
    spec = WindowSpec(4, 2, fold=2, min_history=2)
    last = last_windows(table, spec)
    _, _, target = gather_all(table, last, spec)
    assert target.tolist() == [[8, 9], [206, 207]]  # "b": 3 points < min history 2 + horizon 2


def test_covariates_travel_with_their_rows() -> None:
    values = {"a": list(range(1, 9)), "b": [50, 51, 52, 53, 54]}
    temp = {uid: [10.0 * v for v in vs] for uid, vs in values.items()}
    table = SeriesTable.from_long(long_frame(values, temp=temp), covariates=["temp"])
    assert table.covariate_names == ("temp",) and table.covariates is not None
    assert table.covariates.shape == (13, 1)
    spec = WindowSpec(4, 2, fold=2, min_history=2)
    index, _ = window_index(table, spec)
    batch = next(iter(make_dataset(table, index, spec, batch_size=len(index))))
    inputs, target = batch
    cov = np.asarray(inputs["covariates"])[:, :, 0]
    assert cov.shape == (len(index), 6)
    np.testing.assert_array_equal(cov[:, :4], 10.0 * np.asarray(inputs["history"]))
    np.testing.assert_array_equal(cov[:, 4:], 10.0 * np.asarray(target))
    assert cov[0].tolist() == [0, 0, 10, 20, 30, 40]  # padded like the history
