"""The whole input pipeline in one call: validate -> bucket onto the grid -> fill gaps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from pipelines.bucketing import BucketReport, bucket
from pipelines.gaps import GapReport, fill_gaps
from pipelines.grid import GridRule
from pipelines.validation import DuplicatePolicy, ValidationReport, validate_long


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
