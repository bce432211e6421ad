"""Fill missing target values of bucketed series, never across series boundaries.

:func:`fill_gaps` works on a frame on a regular grid per series (the output of
:func:`pipelines.bucketing.bucket`): a *gap* is a run of consecutive rows of one series whose
``y`` is NaN. What was filled is counted per series (:class:`GapReport`), never hidden.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, get_args

import numpy as np
import pandas as pd

from nearcast.pipelines.grid import GapPolicy
from nearcast.pipelines.schema import DS, UNIQUE_ID, Y

__all__ = ["GapReport", "SeriesGaps", "fill_gaps", "policy_values"]


@dataclass(frozen=True)
class SeriesGaps:
    """Gap counts of one series (or totals over all series).

    Attributes:
        missing: Rows whose ``y`` was NaN on input.
        filled: Missing rows that received a value.
        unfilled: Missing rows still NaN on output (``missing == filled + unfilled``).
        longest_gap: Longest run of consecutive missing rows (for totals: over all series).
        leading: Missing rows before the first observed value of the series.
    """

    missing: int = 0
    filled: int = 0
    unfilled: int = 0
    longest_gap: int = 0
    leading: int = 0


@dataclass(frozen=True)
class GapReport:
    """What :func:`fill_gaps` did, per series.

    Attributes:
        policy: The gap policy applied.
        max_gap: The longest gap that was filled (``None``: no limit).
        per_series: Counts keyed by ``unique_id``.
    """

    policy: str
    max_gap: int | None
    per_series: dict[str, SeriesGaps] = field(default_factory=dict)

    @property
    def totals(self) -> SeriesGaps:
        """Counts summed over all series (``longest_gap`` is the maximum)."""
        series = list(self.per_series.values())
        return SeriesGaps(
            missing=sum(s.missing for s in series),
            filled=sum(s.filled for s in series),
            unfilled=sum(s.unfilled for s in series),
            longest_gap=max((s.longest_gap for s in series), default=0),
            leading=sum(s.leading for s in series),
        )

    def as_dict(self) -> dict[str, Any]:
        """Return the report as plain data for logging.

        Returns:
            ``{"policy", "max_gap", "totals", "per_series"}`` as plain dictionaries.
        """
        return {
            "policy": self.policy,
            "max_gap": self.max_gap,
            "totals": asdict(self.totals),
            "per_series": {uid: asdict(gaps) for uid, gaps in self.per_series.items()},
        }


def fill_gaps(
    df: pd.DataFrame, policy: GapPolicy, *, max_gap: int | None = None
) -> tuple[pd.DataFrame, GapReport]:
    """Fill NaN ``y`` of each series according to ``policy``.

    Policies:

    * ``"ffill"``: carry the last observed value forward. Leading gaps stay NaN.
    * ``"linear"``: interpolate linearly between the observed values around the gap, by row
      position (the grid is regular). Trailing gaps hold the last observed value (there is
      nothing to interpolate towards); leading gaps stay NaN.
    * ``"zero"``: fill with 0.0, leading and trailing gaps included.

    Args:
        df: Bucketed long frame (regular grid per series) with ``unique_id``, ``ds``, ``y``.
        policy: The gap policy.
        max_gap: Gaps of more than this many consecutive missing rows are left NaN whole (and
            counted as unfilled); ``None`` fills gaps of any length.

    Returns:
        The frame sorted by ``unique_id``, ``ds`` with ``y`` filled, and a :class:`GapReport`.

    Raises:
        ValueError: On an unknown policy, a negative ``max_gap`` or missing columns.
    """
    if policy not in get_args(GapPolicy):
        raise ValueError(f"unknown gap policy {policy!r}; choose one of {get_args(GapPolicy)}")
    if max_gap is not None and max_gap < 0:
        raise ValueError(f"max_gap must be >= 0 or None, got {max_gap}")
    missing_columns = [c for c in (UNIQUE_ID, DS, Y) if c not in df.columns]
    if missing_columns:
        raise ValueError(f"missing column(s) {missing_columns}; columns: {list(df.columns)}")
    work = df.sort_values([UNIQUE_ID, DS], kind="stable").reset_index(drop=True)
    y = work[Y].astype("float64")
    missing = y.isna()
    run_length, leading = _gap_runs(work[UNIQUE_ID], missing)
    eligible = missing if max_gap is None else missing & (run_length <= max_gap)
    filled_y = y.mask(eligible, policy_values(work[UNIQUE_ID], y, policy))
    out = work.assign(**{Y: filled_y})
    stats = pd.DataFrame(
        {
            "missing": missing,
            "filled": missing & filled_y.notna(),
            "unfilled": filled_y.isna(),
            "longest_gap": run_length,
            "leading": leading,
        }
    )
    return out, _report(policy, max_gap, work[UNIQUE_ID], stats)


def _gap_runs(uids: pd.Series, missing: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Return, per row, the length of the gap it belongs to (0 if observed) and leading flags."""
    new_series = uids.ne(uids.shift())
    starts = missing & (new_series | ~missing.shift(fill_value=False))
    run_id = starts.cumsum()
    sizes = run_id[missing].value_counts()
    run_length = run_id.map(sizes).where(missing, 0).astype("int64")
    leading_runs = run_id[starts & new_series]
    leading = missing & run_id.isin(leading_runs)
    return run_length, leading


def policy_values(uids: pd.Series, y: pd.Series, policy: GapPolicy) -> pd.Series:
    """Return the value each row would get under ``policy`` (NaN where it cannot be filled).

    Args:
        uids: The series of each row; rows are in time order within each series.
        y: The values (NaN: missing), same index.
        policy: The gap policy (see :func:`fill_gaps`).

    Returns:
        Per row, the value it gets if it is missing (NaN where the policy cannot fill it);
        take only the missing rows from it.
    """
    if policy == "zero":
        return pd.Series(0.0, index=y.index)
    forward = y.groupby(uids, sort=False).ffill()
    if policy == "ffill":
        return forward
    return _interpolate(uids, y, forward)


def _interpolate(uids: pd.Series, y: pd.Series, forward: pd.Series) -> pd.Series:
    """Linear interpolation by row position within each series; trailing gaps hold forward."""
    position = pd.Series(np.arange(len(y), dtype="float64"), index=y.index)
    known = position.where(y.notna())
    prev_pos = known.groupby(uids, sort=False).ffill()
    next_pos = known.groupby(uids, sort=False).bfill()
    backward = y.groupby(uids, sort=False).bfill()
    weight = (position - prev_pos) / (next_pos - prev_pos)
    inside = forward + (backward - forward) * weight
    return inside.where(next_pos.notna(), forward)


def _report(policy: str, max_gap: int | None, uids: pd.Series, stats: pd.DataFrame) -> GapReport:
    """Aggregate the per-row flags into per-series counts."""
    totals = stats.groupby(uids.to_numpy(), sort=True).agg(
        missing=("missing", "sum"),
        filled=("filled", "sum"),
        unfilled=("unfilled", "sum"),
        longest_gap=("longest_gap", "max"),
        leading=("leading", "sum"),
    )
    per_series = {
        str(uid): SeriesGaps(**{str(k): int(v) for k, v in row.items()})
        for uid, row in totals.astype("int64").iterrows()
    }
    return GapReport(policy=policy, max_gap=max_gap, per_series=per_series)
