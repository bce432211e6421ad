"""The whole input pipeline in one call: validate -> bucket onto the grid -> fill gaps."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from pipelines.bucketing import BucketReport, bucket
from pipelines.gaps import GapReport, fill_gaps
from pipelines.validation import ValidationReport, validate_long


@dataclass(frozen=True)
class Regularized:
    """A regular, gap-filled long frame and what each stage did."""

    frame: pd.DataFrame
    validation: ValidationReport
    buckets: BucketReport
    gaps: GapReport

    def as_dict(self) -> dict[str, Any]:
        """All three reports, for logging."""
        return {"validation": self.validation.as_dict(), "buckets": self.buckets.as_dict(),
                "gaps": self.gaps.as_dict()}


def regularize(
    df: pd.DataFrame,
    freq: str | None,
    *,
    agg: str = "mean",
    gap_policy: str = "linear",
    max_gap: int | None = None,
    duplicates: str = "aggregate",
) -> Regularized:
    """Validate ``df`` (long format), bucket it at ``freq`` and fill gaps by ``gap_policy``.

    Args:
        df: long frame ``(unique_id, ds, y)``.
        freq: grid frequency (pandas alias), or None to infer it.
        agg: bucket aggregation.
        gap_policy: ``ffill``, ``linear``, ``zero`` or ``keep``.
        max_gap: longest run of missing points to fill.
        duplicates: ``reject`` or ``aggregate`` repeated (series, timestamp) pairs.
    """
    valid, vreport = validate_long(df, duplicates=duplicates, agg=agg)  # type: ignore[arg-type]
    bucketed, breport = bucket(valid, freq, agg=agg)
    filled, greport = fill_gaps(bucketed, gap_policy, max_gap=max_gap)  # type: ignore[arg-type]
    return Regularized(filled, vreport, breport, greport)


__all__ = ["Regularized", "regularize"]
