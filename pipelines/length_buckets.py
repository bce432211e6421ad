"""Length buckets: windows of varying real history length, each batch padded to its bucket.

Every drawn window gets a real history length ``l``: a multiple of ``fold`` in
``[min_history, input_size]``, uniformly at random (augmentation) or simply what the series has
(short series). It joins the bucket with the smallest boundary ``T_b >= l`` and is batched only
with windows of that bucket, so a batch is ``(B, T_b)`` instead of ``(B, input_size)``:
left-padded with zeros and mask 0.0, the rule :func:`pipelines.padding.fit_histories` applies
to a request for a window of ``T_b`` points. Boundaries are multiples of ``fold``, so the model
(which folds ``fold`` points into one step) accepts every batch.

This is what ``tf.data.Dataset.bucket_by_sequence_length`` does, planned up front in numpy
instead of element by element: the batches are fixed before the first step (deterministic for
a seed, batch sizes exact), each batch is one vectorised gather, and the padding goes at the
start (``bucket_by_sequence_length`` pads at the end). :func:`length_bucket_dataset` yields the
same ``(inputs, target)`` structure as :func:`pipelines.windows.make_dataset`, so a training
loop can use either.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from pipelines.window_runs import WindowSpec
from pipelines.windows import (
    NumpyBatch,
    SeriesTable,
    gather_windows,
    numpy_dataset,
    window_runs,
)


@dataclass(frozen=True)
class BucketPlan:
    """Windows assigned to length buckets, and the order their batches come out.

    Attributes:
        boundaries: padded length ``T_b`` of each bucket, ascending, shape ``(K,)``.
        rows: window index rows ``(end, start)`` as in :func:`pipelines.windows.window_index`,
            shape ``(n, 2)``.
        lengths: real history length of each window, shape ``(n,)``.
        bucket: bucket of each window, shape ``(n,)``.
        batch_order: bucket of each batch in emission order, shape ``(n_batches,)``.
        batch_size: windows per batch (the last batch of each bucket may be smaller).
    """

    boundaries: tuple[int, ...]
    rows: np.ndarray
    lengths: np.ndarray
    bucket: np.ndarray
    batch_order: np.ndarray
    batch_size: int


def default_boundaries(spec: WindowSpec, n_buckets: int = 4) -> tuple[int, ...]:
    """Up to ``n_buckets`` evenly spaced lengths from ``min_history`` to ``input_size``.

    Each is rounded up to whole folds; the last is always ``input_size``.
    """
    if n_buckets < 1:
        raise ValueError(f"n_buckets must be >= 1, got {n_buckets}")
    lo, hi, fold = spec.shortest_history, spec.input_size, spec.fold
    raw = np.linspace(lo, hi, n_buckets) if n_buckets > 1 else np.asarray([hi])
    return tuple(sorted({int(np.ceil(x / fold)) * fold for x in raw}))


def check_boundaries(boundaries: Sequence[int], spec: WindowSpec) -> tuple[int, ...]:
    """Return ``boundaries`` as a tuple after checking them against ``spec``.

    Raises:
        ValueError: unless they are strictly increasing multiples of ``fold`` within
            ``[min_history, input_size]`` ending at ``input_size`` (naming the culprit).
    """
    bounds = tuple(int(b) for b in boundaries)
    lo, hi, fold = spec.shortest_history, spec.input_size, spec.fold
    for b in bounds:
        if b % fold or not lo <= b <= hi:
            raise ValueError(f"bucket boundary {b} must be a multiple of {fold} in [{lo}, {hi}]")
    if not bounds or bounds[-1] != hi or any(np.diff(bounds) <= 0):
        raise ValueError(f"bucket boundaries {bounds} must increase strictly and end at {hi}")
    return bounds


def draw_lengths(
    rows: np.ndarray, spec: WindowSpec, rng: np.random.Generator, *, random_lengths: bool = True
) -> np.ndarray:
    """Real history length of each window.

    Args:
        rows: window index rows ``(end, start)``, shape ``(n, 2)``.
        spec: window geometry.
        rng: source of randomness.
        random_lengths: draw uniformly among the multiples of ``fold`` from ``min_history`` to
            what the window has (at most ``input_size``); False keeps what it has.

    Returns:
        Lengths, shape ``(n,)``, never more than the points before ``end`` in the series.
    """
    available = np.minimum(rows[:, 0] - rows[:, 1], spec.input_size)
    if not random_lengths:
        return np.asarray(available, dtype=np.int64)
    choices = (available - spec.shortest_history) // spec.fold + 1
    pick = (rng.random(len(rows)) * choices).astype(np.int64)
    return np.asarray(spec.shortest_history + spec.fold * pick, dtype=np.int64)


def plan_buckets(
    table: SeriesTable,
    spec: WindowSpec,
    batch_size: int,
    n_windows: int,
    *,
    seed: int,
    boundaries: Sequence[int] | None = None,
    random_lengths: bool = True,
) -> BucketPlan:
    """Draw ``n_windows`` balanced windows, their lengths, buckets and batch order.

    Windows come from :meth:`pipelines.window_runs.WindowRuns.balanced` (every series equally
    likely); batches of different buckets are interleaved in a seeded random order.

    Args:
        table: the series.
        spec: window geometry (``min_history`` sets the shortest drawn length).
        batch_size: windows per batch.
        n_windows: windows to draw.
        seed: seed of every random choice.
        boundaries: bucket lengths (default :func:`default_boundaries`).
        random_lengths: see :func:`draw_lengths`.
    """
    if batch_size < 1 or n_windows < 1:
        raise ValueError(f"batch_size and n_windows must be >= 1, got {batch_size}, {n_windows}")
    rng = np.random.default_rng(seed)
    bounds = check_boundaries(
        default_boundaries(spec) if boundaries is None else boundaries, spec
    )
    rows = window_runs(table, spec).balanced(n_windows, rng)
    lengths = draw_lengths(rows, spec, rng, random_lengths=random_lengths)
    bucket = np.searchsorted(np.asarray(bounds), lengths, side="left")
    n_batches = -(-np.bincount(bucket, minlength=len(bounds)) // batch_size)
    order = rng.permutation(np.repeat(np.arange(len(bounds)), n_batches))
    return BucketPlan(bounds, rows, lengths, bucket, order, batch_size)


def gather_bucket(
    values: np.ndarray, rows: np.ndarray, lengths: np.ndarray, padded: int, spec: WindowSpec
) -> NumpyBatch:
    """Materialise one batch of windows left-padded to ``padded`` points (numpy).

    Args:
        values: all series values, shape ``(N,)``.
        rows: window index rows ``(end, start)``, shape ``(B, 2)``.
        lengths: real history length of each window (at most ``padded``), shape ``(B,)``.
        padded: the bucket length ``T_b``.
        spec: window geometry (its horizon).

    Returns:
        ``({"history": (B, T_b), "mask": (B, T_b)}, target (B, H))``.
    """
    ends = np.asarray(rows, dtype=np.int64)[:, 0]
    cut = np.stack([ends, ends - np.asarray(lengths, dtype=np.int64)], axis=1)
    return gather_windows(values, cut, WindowSpec(padded, spec.horizon, fold=spec.fold))


def bucket_dataset(table: SeriesTable, spec: WindowSpec, plan: BucketPlan) -> tf.data.Dataset:
    """The planned batches, in ``plan.batch_order``, prefetched.

    Returns:
        A dataset of ``({"history": (B, T_b), "mask": (B, T_b)}, target (B, H))`` where
        ``T_b = plan.boundaries[plan.batch_order[i]]`` for batch ``i``.
    """
    members = [np.flatnonzero(plan.bucket == b) for b in range(len(plan.boundaries))]
    if not any(len(m) for m in members):
        raise ValueError("the plan holds no window")

    def batches(source: tuple[SeriesTable, BucketPlan, list[np.ndarray]]) -> Iterator[NumpyBatch]:
        held, planned, chosen_by_bucket = source
        cursor = [0] * len(chosen_by_bucket)
        for b in planned.batch_order:
            lo = cursor[b]
            cursor[b] += planned.batch_size
            chosen = chosen_by_bucket[b][lo : lo + planned.batch_size]
            yield gather_bucket(held.values, planned.rows[chosen], planned.lengths[chosen],
                                planned.boundaries[b], spec)

    return numpy_dataset(batches, (table, plan, members), None, spec.horizon)


def length_bucket_dataset(
    table: SeriesTable,
    spec: WindowSpec,
    batch_size: int,
    n_windows: int,
    *,
    seed: int,
    boundaries: Sequence[int] | None = None,
    random_lengths: bool = True,
) -> tf.data.Dataset:
    """Balanced windows of varying history length, batched by length bucket.

    Same arguments as :func:`plan_buckets`.

    Returns:
        A dataset of ``({"history": (B, T_b), "mask": (B, T_b)}, target (B, H))`` with
        ``T_b`` a multiple of ``spec.fold``; deterministic for a ``seed``.
    """
    plan = plan_buckets(
        table, spec, batch_size, n_windows, seed=seed, boundaries=boundaries,
        random_lengths=random_lengths,
    )
    return bucket_dataset(table, spec, plan)


__all__ = [
    "BucketPlan",
    "bucket_dataset",
    "check_boundaries",
    "default_boundaries",
    "draw_lengths",
    "gather_bucket",
    "length_bucket_dataset",
    "plan_buckets",
]
