from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
import tensorflow as tf

from pipelines.length_buckets import (
    bucket_dataset,
    check_boundaries,
    default_boundaries,
    draw_lengths,
    gather_bucket,
    length_bucket_dataset,
    plan_buckets,
)
from pipelines.padding import fit_histories
from pipelines.windows import SeriesTable, WindowSpec

SPEC = WindowSpec(input_size=12, horizon=3, fold=2, min_history=2)
BOUNDS = (4, 8, 12)


def coded_table(lengths: Sequence[int]) -> SeriesTable:
    """Series ``i`` holds ``1000 * (i + 1) + t``: every value tells its series and position."""
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    values = np.concatenate([1000.0 * (i + 1) + np.arange(n) for i, n in enumerate(lengths)])
    ids = np.asarray([f"s{i}" for i in range(len(lengths))])
    return SeriesTable(ids, values.astype(np.float32), offsets, np.zeros(len(lengths)))


def tail_run(last: float, n: int) -> np.ndarray:
    """The ``n`` consecutive coded values ending at ``last``."""
    return last - np.arange(n)[::-1]


def batches(ds: tf.data.Dataset) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    return [(np.asarray(x["history"]), np.asarray(x["mask"]), np.asarray(y)) for x, y in ds]


# ----------------------------------------------------------------------------- boundaries
def test_default_boundaries_by_hand() -> None:
    spec = WindowSpec(input_size=168, horizon=48, fold=24, min_history=48)
    # linspace(48, 168, 4) = 48, 88, 128, 168 -> rounded up to whole days
    assert default_boundaries(spec) == (48, 96, 144, 168)
    assert default_boundaries(spec, n_buckets=1) == (168,)
    assert default_boundaries(spec, n_buckets=99) == (48, 72, 96, 120, 144, 168)
    assert default_boundaries(WindowSpec(168, 48, fold=24)) == (168,)
    with pytest.raises(ValueError, match="n_buckets"):
        default_boundaries(spec, n_buckets=0)


@pytest.mark.parametrize(
    ("bounds", "message"),
    [
        ((4, 7, 12), "bucket boundary 7 must be a multiple of 2 in \\[2, 12\\]"),
        ((4, 8), "must increase strictly and end at 12"),
        ((8, 4, 12), "must increase strictly"),
        ((4, 4, 12), "must increase strictly"),
        ((0, 12), "bucket boundary 0"),
        ((), "end at 12"),
    ],
)
def test_check_boundaries_names_the_culprit(bounds: tuple[int, ...], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        check_boundaries(bounds, SPEC)


def test_check_boundaries_accepts_good_ones() -> None:
    assert check_boundaries([2, 12], SPEC) == (2, 12)
    assert check_boundaries(np.asarray([12]), SPEC) == (12,)


# ----------------------------------------------------------------------------- lengths
def test_draw_lengths() -> None:
    # rows: a full window (20 points before its end), a padded one (6 points before its end)
    rows = np.asarray([[120, 100], [306, 300]] * 2000)
    kept = draw_lengths(rows, SPEC, np.random.default_rng(0), random_lengths=False)
    assert kept[:2].tolist() == [12, 6]
    drawn = draw_lengths(rows, SPEC, np.random.default_rng(0))
    full, short = drawn[0::2], drawn[1::2]
    assert set(full.tolist()) == {2, 4, 6, 8, 10, 12}
    assert set(short.tolist()) == {2, 4, 6}  # never more than the series has
    counts = np.bincount(full)[2::2]
    assert counts.min() > 0.8 * len(full) / 6  # uniform over the allowed lengths


# ----------------------------------------------------------------------------- batches
def test_batches_are_padded_to_their_bucket_at_the_start() -> None:
    table = coded_table([40, 9, 15, 60])
    plan = plan_buckets(table, SPEC, batch_size=16, n_windows=300, seed=4, boundaries=BOUNDS)
    out = batches(bucket_dataset(table, SPEC, plan))
    assert len(out) == len(plan.batch_order)
    lower = dict(zip(BOUNDS, (0, *BOUNDS[:-1]), strict=True))
    for (history, mask, target), bucket in zip(out, plan.batch_order, strict=True):
        padded = BOUNDS[bucket]
        assert history.shape[1] == mask.shape[1] == padded and padded % SPEC.fold == 0
        real = mask.sum(axis=1)
        assert (real > lower[padded]).all() and (real <= padded).all()  # the smallest bucket
        assert (np.diff(mask, axis=1) >= 0).all()  # zeros first, then ones: padding at the start
        assert (history[mask == 0] == 0).all()
        assert target.shape[1] == SPEC.horizon
        # real points then target: consecutive values of one series, the target right after
        tail = history[:, -1]
        for row, row_mask, row_target in zip(history, mask, target, strict=True):
            real_points = row[row_mask == 1]
            expected = tail_run(real_points[-1], len(real_points))
            np.testing.assert_array_equal(real_points, expected)
            assert row_target.tolist() == (real_points[-1] + 1 + np.arange(3)).tolist()
        assert ((history // 1000 == (tail // 1000)[:, None]) | (mask == 0)).all()


def test_batch_sizes_and_counts_per_bucket() -> None:
    table = coded_table([40, 9, 15, 60])
    plan = plan_buckets(table, SPEC, batch_size=16, n_windows=300, seed=4, boundaries=BOUNDS)
    per_bucket = np.bincount(plan.bucket, minlength=3)
    assert per_bucket.sum() == 300 and (per_bucket > 0).all()
    out = batches(bucket_dataset(table, SPEC, plan))
    for b, n in enumerate(per_bucket):
        sizes = [len(t) for (_, _, t), k in zip(out, plan.batch_order, strict=True) if k == b]
        assert sizes == [16] * (n // 16) + ([n % 16] if n % 16 else [])
    assert sorted(np.concatenate([m.sum(axis=1) for _, m, _ in out]).tolist()) == sorted(
        plan.lengths.tolist()
    )


def test_bucket_rows_follow_the_serving_padding_rule() -> None:
    table = coded_table([30, 11])
    plan = plan_buckets(table, SPEC, batch_size=8, n_windows=40, seed=1, boundaries=BOUNDS)
    for b, padded in enumerate(BOUNDS):
        chosen = plan.bucket == b
        rows, lengths = plan.rows[chosen], plan.lengths[chosen]
        inputs, _ = gather_bucket(table.values, rows, lengths, padded, SPEC)
        raw = [table.values[end - n : end] for (end, _), n in zip(rows, lengths, strict=True)]
        served = fit_histories(raw, WindowSpec(padded, SPEC.horizon, fold=2, min_history=2))
        np.testing.assert_array_equal(served.history, inputs["history"])
        np.testing.assert_array_equal(served.mask, inputs["mask"])


def test_natural_lengths_keep_what_each_window_has() -> None:
    # Each window keeps what it has: 9 points -> windows end at 2, 4, 6 with that many real
    # points; 30 points -> padded early windows (2..10 points) and full ones (12 points).
    table = coded_table([30, 9])
    plan = plan_buckets(table, SPEC, 8, 200, seed=0, boundaries=BOUNDS, random_lengths=False)
    long_rows = plan.rows[:, 1] == 0
    have = np.minimum(plan.rows[:, 0] - plan.rows[:, 1], 12)
    np.testing.assert_array_equal(plan.lengths, have)
    assert set(plan.lengths[~long_rows].tolist()) == {2, 4, 6}
    assert (plan.lengths[long_rows] == 12).mean() > 0.6  # 16 of its 21 windows are full
    assert abs(long_rows.mean() - 0.5) < 0.1  # balanced: the short series is not drowned
    assert abs(long_rows.mean() - 0.5) < 0.1  # balanced: the short series is not drowned


def test_same_seed_same_batches() -> None:
    table = coded_table([40, 9, 15])
    make = lambda seed: batches(  # noqa: E731
        length_bucket_dataset(table, SPEC, 8, 64, seed=seed, boundaries=BOUNDS)
    )
    one, two, other = make(3), make(3), make(4)
    assert len(one) == len(two)
    for a, b in zip(one, two, strict=True):
        for x, y in zip(a, b, strict=True):
            np.testing.assert_array_equal(x, y)
    differs = [a[0].shape != b[0].shape or not np.array_equal(a[0], b[0])
               for a, b in zip(one, other, strict=False)]
    assert len(one) != len(other) or any(differs)


def test_plan_rejects_empty_batches() -> None:
    table = coded_table([30])
    with pytest.raises(ValueError, match="batch_size and n_windows must be >= 1, got 0, 5"):
        plan_buckets(table, SPEC, 0, 5, seed=0)
    with pytest.raises(ValueError, match="no series is long enough"):
        plan_buckets(coded_table([3]), SPEC, 4, 5, seed=0)


def test_full_windows_only_make_one_bucket() -> None:
    table = coded_table([30, 20])
    spec = WindowSpec(input_size=12, horizon=3, fold=2)
    out = batches(length_bucket_dataset(table, spec, 32, 50, seed=0))
    assert [h.shape for h, _, _ in out] == [(32, 12), (18, 12)]
    assert (np.concatenate([m for _, m, _ in out]) == 1).all()


def test_model_accepts_every_bucket_and_ignores_the_padding() -> None:
    # A real forecaster: a bucket batch left-padded to T_b gives the forecast of the same real
    # history padded to the full window (what the service sends).
    from models.architectures.builder import build_model
    from models.config import ModelConfig

    config = ModelConfig(cell="lstm", units=4, input_size=12, horizon=3, fold=2, season=2,
                         min_history=2)
    model = build_model(config)
    table = coded_table([40, 9])
    seen = set()
    for x, _ in length_bucket_dataset(table, SPEC, 8, 48, seed=2, boundaries=BOUNDS):
        history, mask = np.asarray(x["history"]), np.asarray(x["mask"])
        raw = [h[m == 1] for h, m in zip(history, mask, strict=True)]
        full = fit_histories(raw, SPEC)
        short_out = model({"history": history, "mask": mask})["forecast"]
        full_out = model({"history": full.history, "mask": full.mask})["forecast"]
        np.testing.assert_allclose(np.asarray(short_out), np.asarray(full_out), rtol=1e-4)
        seen.add(history.shape[1])
    assert seen == set(BOUNDS)
