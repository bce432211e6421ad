from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
from window_helpers import coded_table, gather_all

from nearcast.pipelines.series_table import window_index, window_runs
from nearcast.pipelines.window_runs import WindowSpec, balanced_positions
from nearcast.pipelines.windows import balanced_stream, window_dataset


# ----------------------------------------------------------------------------- sampling
def test_balanced_draws_short_series_as_often_as_long_ones() -> None:
    table = coded_table([20, 2000])  # 15 windows vs 1995
    runs = window_runs(table, WindowSpec(4, 2))
    counts = runs.counts
    picks = runs.balanced(20_000, np.random.default_rng(0))
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
    runs = window_runs(table, spec)
    draw = lambda seed: runs.balanced(64, np.random.default_rng(seed))  # noqa: E731
    np.testing.assert_array_equal(draw(5), draw(5))
    assert not np.array_equal(draw(5), draw(6))
    index, counts = window_index(table, spec)  # the index-free draw picks the same rows
    positions = balanced_positions(counts, 64, np.random.default_rng(5))
    np.testing.assert_array_equal(index[positions], draw(5))
    streams = [iter(balanced_stream(table, spec, 16, 2, seed=5)) for _ in range(2)]
    for _ in range(3):
        np.testing.assert_array_equal(next(streams[0])[1].numpy(), next(streams[1])[1].numpy())


def test_balanced_draw_needs_one_window() -> None:
    runs = window_runs(coded_table([3, 4]), WindowSpec(4, 2))
    with pytest.raises(ValueError, match="no series is long enough"):
        runs.balanced(8, np.random.default_rng(0))


# ----------------------------------------------------------------------------- datasets
def test_window_dataset_batches_the_windows_in_order() -> None:
    table = coded_table([12, 7])
    spec = WindowSpec(4, 2, fold=2, min_history=2)
    index, _ = window_index(table, spec)
    batches = list(window_dataset(table, spec, batch_size=4))
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
