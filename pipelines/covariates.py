"""Covariates: the columns a series carries besides its target, declared once by name.

A covariate is declared under the name it has inside nearcast (the key of a
:data:`Covariates` mapping) with a :class:`Covariate`: its *role* and *kind*, the source
column it is read from when that is named otherwise, and, for the time-varying ones, how a
grid bucket aggregates it and how its gaps are filled.

Roles:

* ``future``: known ahead for the whole forecast horizon (a day-ahead load forecast, a
  planned promotion); a forecast reads it up to the horizon's end.
* ``past``: observed like the target, known only up to the forecast origin.
* ``static``: one value per series (a region, a store size); constant within a series.

Only static covariates may be ``categorical`` (their values are kept as strings); time-varying
ones are numeric (float64). The data layer (:func:`pipelines.prepare.regularize`) validates,
buckets and gap-fills covariates like the target, each with its own aggregation and gap policy,
and leaves no covariate value missing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from nearcast.pipelines.grid import Aggregation, GapPolicy

__all__ = [
    "Covariate",
    "CovariateKind",
    "CovariateRole",
    "Covariates",
    "bucket_aggregation",
    "future_names",
    "past_names",
    "source_column",
    "static_names",
    "time_varying",
]

CovariateRole = Literal["future", "past", "static"]
"""``future``: known over the forecast horizon; ``past``: known up to the origin; ``static``:
one value per series."""

CovariateKind = Literal["numeric", "categorical"]
"""``numeric`` values are float64; ``categorical`` ones (static covariates only) are strings."""


class Covariate(BaseModel):
    """How one covariate is read, bucketed and gap-filled.

    Attributes:
        role: ``future``, ``past`` or ``static`` (see :data:`CovariateRole`).
        kind: ``numeric`` or ``categorical``; categorical only for a static covariate.
        column: The source column (file, table, frame) when it is named otherwise than the
            covariate; used only when reading a source. Names are taken verbatim (leading
            spaces included, e.g. ``" Grid load forecast"``).
        agg: How the values falling into one grid bucket become one (time-varying ones;
            a static covariate takes its series' value).
        gap_policy: How a grid point without a value is filled (time-varying ones); what the
            policy cannot fill (a leading gap under ``ffill``) is filled backward from the next
            value, and counted.
    """

    model_config = ConfigDict(extra="forbid")

    role: CovariateRole = Field(description="future, past or static.")
    kind: CovariateKind = Field("numeric", description="numeric, or categorical (static only).")
    column: str | None = Field(None, description="Source column, when named otherwise.")
    agg: Aggregation = Field("mean", description="Bucket aggregation (time-varying ones).")
    gap_policy: GapPolicy = Field("ffill", description="Gap filling (time-varying ones).")

    @model_validator(mode="after")
    def _categorical_static(self) -> Covariate:
        if self.kind == "categorical" and self.role != "static":
            raise ValueError(f"a categorical covariate must have role 'static', not "
                             f"{self.role!r}: time-varying covariates are numeric")
        return self


Covariates = dict[str, Covariate]
"""Covariate declarations by the column name inside nearcast (after mapping)."""


def time_varying(covs: Mapping[str, Covariate]) -> list[str]:
    """Names of the past and future covariates, in declaration order."""
    return [name for name, cov in covs.items() if cov.role != "static"]


def future_names(covs: Mapping[str, Covariate]) -> list[str]:
    """Names of the future-known covariates, in declaration order."""
    return [name for name, cov in covs.items() if cov.role == "future"]


def past_names(covs: Mapping[str, Covariate]) -> list[str]:
    """Names of the past-only covariates, in declaration order."""
    return [name for name, cov in covs.items() if cov.role == "past"]


def static_names(covs: Mapping[str, Covariate]) -> list[str]:
    """Names of the static covariates, in declaration order."""
    return [name for name, cov in covs.items() if cov.role == "static"]


def source_column(name: str, cov: Covariate) -> str:
    """The column a covariate is read from: its ``column``, or its name."""
    return name if cov.column is None else cov.column


def bucket_aggregation(cov: Covariate) -> Aggregation:
    """How a bucket (or repeated timestamp) aggregates the covariate: static ones take first."""
    return "first" if cov.role == "static" else cov.agg
