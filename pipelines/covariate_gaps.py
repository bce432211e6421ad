"""Fill the gaps of time-varying covariates, each by its own policy, and count what was filled.

After bucketing, a covariate value is missing where the input had none or where a bucket was
empty. :func:`fill_covariate_gaps` fills it with the covariate's gap policy
(:func:`pipelines.gaps.policy_values`, within each series); what the policy cannot fill (a
leading gap under ``ffill`` or ``linear``) is filled backward from the next value. No covariate
value is left missing (the grid rule's ``max_gap`` is for the target only), and every filled
value is counted per series and column (:class:`CovariateReport`). A series in which a
covariate has no value at all is an error naming both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from nearcast.pipelines.covariates import Covariate, time_varying
from nearcast.pipelines.errors import DataValidationError, Problem
from nearcast.pipelines.gaps import policy_values
from nearcast.pipelines.schema import DS, UNIQUE_ID

__all__ = ["CovariateGaps", "CovariateReport", "fill_covariate_gaps"]


@dataclass(frozen=True)
class CovariateGaps:
    """Gap counts of one covariate in one series (or over all series).

    Attributes:
        missing: Grid rows without a value after bucketing (NaN in, or an empty bucket).
        filled: Missing rows filled by the covariate's gap policy.
        backfilled: Missing rows the policy could not fill, filled backward from the next
            value (``missing == filled + backfilled``).
    """

    missing: int = 0
    filled: int = 0
    backfilled: int = 0

    @property
    def values_filled(self) -> int:
        """Every value that was filled (by the policy or backward)."""
        return self.filled + self.backfilled


@dataclass(frozen=True)
class CovariateReport:
    """What :func:`fill_covariate_gaps` did, per series and per time-varying covariate.

    Attributes:
        policies: Gap policy of each time-varying covariate, in declaration order.
        per_series: ``{unique_id: {covariate: CovariateGaps}}``.
    """

    policies: dict[str, str] = field(default_factory=dict)
    per_series: dict[str, dict[str, CovariateGaps]] = field(default_factory=dict)

    @property
    def totals(self) -> dict[str, CovariateGaps]:
        """Counts of each covariate summed over all series."""
        out: dict[str, CovariateGaps] = {}
        for name in self.policies:
            counts = [cols[name] for cols in self.per_series.values() if name in cols]
            out[name] = CovariateGaps(
                missing=sum(c.missing for c in counts),
                filled=sum(c.filled for c in counts),
                backfilled=sum(c.backfilled for c in counts),
            )
        return out

    def values_filled(self, unique_id: str) -> int:
        """Covariate values filled in one series, over all its covariates."""
        return sum(c.values_filled for c in self.per_series.get(unique_id, {}).values())

    def as_dict(self) -> dict[str, Any]:
        """Return the report as plain data for logging.

        Returns:
            ``{"policies", "totals", "per_series"}`` as plain dictionaries.
        """
        return {
            "policies": dict(self.policies),
            "totals": {name: asdict(c) for name, c in self.totals.items()},
            "per_series": {uid: {name: asdict(c) for name, c in cols.items()}
                           for uid, cols in self.per_series.items()},
        }


def fill_covariate_gaps(
    df: pd.DataFrame, covariates: Mapping[str, Covariate]
) -> tuple[pd.DataFrame, CovariateReport]:
    """Fill every missing value of the time-varying covariates of a regular long frame.

    Args:
        df: Bucketed long frame (regular grid per series) with ``unique_id``, ``ds`` and the
            covariate columns.
        covariates: The declarations; static ones are left as they are.

    Returns:
        The frame sorted by ``unique_id``, ``ds`` (fresh index) with no time-varying covariate
        value missing (float64), and the report.

    Raises:
        DataValidationError: Naming each series and covariate without any value.
    """
    work = df.sort_values([UNIQUE_ID, DS], kind="stable").reset_index(drop=True)
    uids = work[UNIQUE_ID]
    names = time_varying(covariates)
    columns: dict[str, pd.Series] = {}
    stats: dict[str, pd.DataFrame] = {}
    problems: list[Problem] = []
    for name in names:
        values = work[name].astype("float64")
        missing = values.isna()
        by_policy = values.mask(missing, policy_values(uids, values, covariates[name].gap_policy))
        backward = by_policy.groupby(uids, sort=False).bfill()
        problems += _empty_series(name, backward.isna(), uids)
        columns[name] = backward
        stats[name] = pd.DataFrame({"missing": missing, "filled": missing & by_policy.notna(),
                                    "backfilled": by_policy.isna()})
    if problems:
        raise DataValidationError(problems)
    report = _report({n: covariates[n].gap_policy for n in names}, uids, stats)
    return work.assign(**columns), report


def _empty_series(name: str, left: pd.Series, uids: pd.Series) -> list[Problem]:
    """A problem for each series in which covariate ``name`` has no value at all."""
    return [
        Problem(kind="missing_covariate", unique_id=str(uid), column=name,
                message=f"covariate {name!r} has no value in this series (nothing to fill its "
                "gaps from)")
        for uid in pd.unique(uids[left].to_numpy())
    ]


def _report(
    policies: dict[str, str], uids: pd.Series, stats: Mapping[str, pd.DataFrame]
) -> CovariateReport:
    """Aggregate the per-row flags into per-series, per-covariate counts."""
    per_series: dict[str, dict[str, CovariateGaps]] = {
        str(uid): {} for uid in pd.unique(uids.to_numpy())
    }
    for name, flags in stats.items():
        sums = flags.groupby(uids.to_numpy(), sort=True).sum().astype("int64")
        for uid, row in sums.iterrows():
            per_series[str(uid)][name] = CovariateGaps(**{str(k): int(v) for k, v in row.items()})
    return CovariateReport(policies=policies, per_series=per_series)
