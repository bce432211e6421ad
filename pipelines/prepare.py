"""The whole input pipeline in one call: validate -> bucket onto the grid -> fill gaps.

Covariates (:mod:`pipelines.covariates`) go through the same steps as the target, each with its
own bucket aggregation and gap policy, and come out complete (:mod:`pipelines.covariate_gaps`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from nearcast.pipelines.bucketing import BucketReport, bucket
from nearcast.pipelines.covariate_gaps import CovariateReport, fill_covariate_gaps
from nearcast.pipelines.covariates import Covariate, static_names, time_varying
from nearcast.pipelines.gaps import GapReport, fill_gaps
from nearcast.pipelines.grid import GridRule
from nearcast.pipelines.schema import LONG_COLUMNS
from nearcast.pipelines.validation import DuplicatePolicy, ValidationReport, validate_long


@dataclass(frozen=True)
class Regularized:
    """A regular, gap-filled long frame, the grid rule it is on and what each stage did.

    ``rule`` has the frequency the data was bucketed at (the inferred one when none was given);
    ``covariates`` is what gap filling did to the time-varying covariates (empty without any).
    """

    frame: pd.DataFrame
    rule: GridRule
    validation: ValidationReport
    buckets: BucketReport
    gaps: GapReport
    covariates: CovariateReport = field(default_factory=CovariateReport)

    def as_dict(self) -> dict[str, Any]:
        """All reports, for logging (``covariates`` only when there are covariates)."""
        out = {"validation": self.validation.as_dict(), "buckets": self.buckets.as_dict(),
               "gaps": self.gaps.as_dict()}
        if self.covariates.policies:
            out["covariates"] = self.covariates.as_dict()
        return out

    def series_report(self, skipped: Mapping[str, int] | None = None) -> pd.DataFrame:
        """One row per series: what validation, bucketing and gap filling did to it.

        Columns: ``unique_id``, ``points_in`` (input rows), ``duplicates_merged`` (rows with
        a repeated timestamp, merged by the rule's aggregation), ``rows_aggregated`` (further
        rows merged into one bucket), ``nan_in`` (input rows with a NaN value), ``empty_buckets``
        (grid slots without any row), ``values_imputed`` (missing values the gap policy
        filled), ``left_missing`` (still NaN: masked, not filled), ``rows_out`` (rows on the
        grid) and ``skipped_too_short`` (``skipped``: series left out of training, e.g. by
        :meth:`models.jobconfig.JobConfig.usable_for_training`). With time-varying covariates,
        one more column, ``covariate_values_filled``: their values filled in the series (by
        their gap policies or backward), over all of them.
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
        table = pd.DataFrame(rows, columns=_REPORT_COLUMNS)
        if self.covariates.policies:
            table[_COVARIATES_FILLED] = [self.covariates.values_filled(str(u))
                                         for u in table["unique_id"]]
        return table

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
            *self._covariate_lines(),
        ]

    def _covariate_lines(self) -> list[str]:
        """One line per time-varying covariate: missing values, and how they were filled."""
        return [
            f"data: covariate {name!r}: {c.missing} values missing on the grid; {c.filled} "
            f"filled ({self.covariates.policies[name]}), {c.backfilled} filled backward"
            for name, c in self.covariates.totals.items()
        ]


_REPORT_COLUMNS = ["unique_id", "points_in", "duplicates_merged", "rows_aggregated", "nan_in",
                   "empty_buckets", "values_imputed", "left_missing", "rows_out",
                   "skipped_too_short"]
_COVARIATES_FILLED = "covariate_values_filled"


def regularize(
    df: pd.DataFrame,
    rule: GridRule,
    *,
    duplicates: DuplicatePolicy = "aggregate",
    covariates: Mapping[str, Covariate] | None = None,
) -> Regularized:
    """Validate ``df`` (long format), bucket it onto ``rule``'s grid and fill its gaps.

    Args:
        df: long frame ``(unique_id, ds, y)``, plus a column per declared covariate.
        rule: the grid rule: frequency (None infers it), bucket aggregation, gap policy and
            longest gap filled; timestamps are UTC.
        duplicates: ``reject`` or ``aggregate`` repeated (series, timestamp) pairs (with the
            rule's aggregation; covariates with their own).
        covariates: the covariate columns, by name (:mod:`pipelines.covariates`); ``None`` or
            empty: the frame is ``(unique_id, ds, y)`` only.

    Returns:
        The frame has columns ``unique_id``, ``ds``, ``y``, then the time-varying covariates
        in declaration order (float64, none missing), then the static ones (float64, or str for
        categorical ones; one value per series).

    Raises:
        DataValidationError: naming the series, rows and column of every problem (a static
            covariate that varies or is missing, a series without any value of a covariate).
    """
    covs = dict(covariates or {})
    valid, vreport = validate_long(df, duplicates=duplicates, agg=rule.agg, covariates=covs)
    bucketed, breport = bucket(valid, rule.freq, agg=rule.agg, covariates=covs)
    filled, greport = fill_gaps(bucketed, rule.gap_policy, max_gap=rule.max_gap)
    used = rule.rule().model_copy(update={"freq": breport.freq})
    if not covs:
        return Regularized(filled, used, vreport, breport, greport)
    filled, creport = fill_covariate_gaps(filled, covs)
    return Regularized(_ordered(filled, covs), used, vreport, breport, greport, creport)


def _ordered(frame: pd.DataFrame, covs: Mapping[str, Covariate]) -> pd.DataFrame:
    """The long columns, the time-varying covariates, then the static ones, with their dtypes."""
    dtypes = {name: "str" if cov.kind == "categorical" else "float64"
              for name, cov in covs.items()}
    columns = [*LONG_COLUMNS, *time_varying(covs), *static_names(covs)]
    return frame[columns].astype(dtypes)


__all__ = ["Regularized", "regularize"]
