"""The whole input pipeline in one call: validate -> bucket onto the grid -> fill gaps."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from nearcast.pipelines.bucketing import BucketReport, bucket
from nearcast.pipelines.gaps import GapReport, fill_gaps
from nearcast.pipelines.grid import GridRule
from nearcast.pipelines.validation import DuplicatePolicy, ValidationReport, validate_long


@dataclass(frozen=True)
class Regularized:
    """A regular, gap-filled long frame, the grid rule it is on and what each stage did.

    ``rule`` has the frequency the data was bucketed at (the inferred one when none was given).
    """

    frame: pd.DataFrame
    rule: GridRule
    validation: ValidationReport
    buckets: BucketReport
    gaps: GapReport

    def as_dict(self) -> dict[str, Any]:
        """All three reports, for logging."""
        return {"validation": self.validation.as_dict(), "buckets": self.buckets.as_dict(),
                "gaps": self.gaps.as_dict()}

    def series_report(self, skipped: Mapping[str, int] | None = None) -> pd.DataFrame:
        """One row per series: what validation, bucketing and gap filling did to it.

        Columns: ``unique_id``, ``points_in`` (input rows), ``duplicates_merged`` (rows with
        a repeated timestamp, merged by the rule's aggregation), ``rows_aggregated`` (further
        rows merged into one bucket), ``nan_in`` (input rows with a NaN value), ``empty_buckets``
        (grid slots without any row), ``values_imputed`` (missing values the gap policy
        filled), ``left_missing`` (still NaN: masked, not filled), ``rows_out`` (rows on the
        grid) and ``skipped_too_short`` (``skipped``: series left out of training, e.g. by
        :meth:`models.jobconfig.JobConfig.usable_for_training`).
        """
        skipped = skipped or {}
        rows = []
        for uid, b in self.buckets.per_series.items():
            v = self.validation.per_series.get(uid, {})
            g = self.gaps.per_series.get(uid)
            rows.append({
                "unique_id": uid, "points_in": v.get("rows_in", b.rows_in),
                "duplicates_merged": v.get("duplicate_rows_aggregated", 0),
                "rows_aggregated": b.rows_aggregated, "nan_in": v.get("missing_y", 0),
                "empty_buckets": b.empty_buckets, "values_imputed": g.filled if g else 0,
                "left_missing": g.unfilled if g else 0, "rows_out": b.buckets,
                "skipped_too_short": uid in skipped,
            })
        return pd.DataFrame(rows, columns=_REPORT_COLUMNS)

    def summary_lines(self, skipped: Mapping[str, int] | None = None) -> list[str]:
        """A few lines for a person: series in/used/skipped, rows, merges, NaNs, gaps, rule."""
        table = self.series_report(skipped)
        n_skipped = int(table["skipped_too_short"].sum())
        total = {c: int(table[c].sum()) for c in _REPORT_COLUMNS[1:-1]}
        rule = self.rule
        gap = f"{rule.gap_policy}" + (f", max_gap {rule.max_gap}" if rule.max_gap is not None
                                      else "")
        return [
            f"data: {len(table)} series in, {len(table) - n_skipped} used, {n_skipped} skipped "
            "as too short",
            f"data: {total['points_in']} rows in -> {total['rows_out']} rows on the grid "
            f"(freq {rule.freq}, agg {rule.agg}, gaps {gap})",
            f"data: {total['duplicates_merged']} duplicate timestamps merged, "
            f"{total['rows_aggregated']} rows aggregated into buckets",
            f"data: {total['nan_in']} NaN values in, {total['empty_buckets']} empty buckets; "
            f"{total['values_imputed']} values filled, {total['left_missing']} left missing "
            "(masked)",
        ]


_REPORT_COLUMNS = ["unique_id", "points_in", "duplicates_merged", "rows_aggregated", "nan_in",
                   "empty_buckets", "values_imputed", "left_missing", "rows_out",
                   "skipped_too_short"]


def regularize(
    df: pd.DataFrame, rule: GridRule, *, duplicates: DuplicatePolicy = "aggregate"
) -> Regularized:
    """Validate ``df`` (long format), bucket it onto ``rule``'s grid and fill its gaps.

    Args:
        df: long frame ``(unique_id, ds, y)``.
        rule: the grid rule: frequency (None infers it), bucket aggregation, gap policy and
            longest gap filled; timestamps are UTC.
        duplicates: ``reject`` or ``aggregate`` repeated (series, timestamp) pairs (with the
            rule's aggregation).
    """
    valid, vreport = validate_long(df, duplicates=duplicates, agg=rule.agg)
    bucketed, breport = bucket(valid, rule.freq, agg=rule.agg)
    filled, greport = fill_gaps(bucketed, rule.gap_policy, max_gap=rule.max_gap)
    used = rule.rule().model_copy(update={"freq": breport.freq})
    return Regularized(filled, used, vreport, breport, greport)


__all__ = ["Regularized", "regularize"]
