"""A request series' covariates against what the model takes (``GET /v1/models``).

Checked before any grid is built, so each problem is a 422 naming the series and the field:
``covariates.<name>`` (aligned with the history), ``future.<name>`` (one value per step of the
model's horizon) or ``static.<name>``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from nearcast.pipelines.covariates import future_names, static_names, time_varying
from nearcast.pipelines.features import FeatureSpec
from nearcast.service.schemas import SeriesIn


class CovariateFieldError(ValueError):
    """One covariate field of a series is wrong; ``field`` is its path within the series."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def check_covariates(item: SeriesIn, features: FeatureSpec | None, horizon: int) -> None:
    """Refuse missing, extra, misaligned or mistyped covariates of one series.

    Args:
        item: the request series.
        features: the model's feature spec (None: a target-only model).
        horizon: the model's horizon (the length every ``future`` list must have).

    Raises:
        CovariateFieldError: naming the field and what is wrong.
    """
    covs = features.covariates if features is not None else {}
    _names("covariates", item.covariates, time_varying(covs), "past or future-known")
    _names("future", item.future, future_names(covs), "future-known")
    _names("static", item.static, static_names(covs), "static")
    for name, values in (item.future or {}).items():
        if len(values) != horizon:
            raise CovariateFieldError(f"future.{name}", f"{len(values)} values; the model "
                                      f"needs one per step of its horizon ({horizon})")
    for name, value in (item.static or {}).items():
        assert features is not None  # _names refused any static for a target-only model
        try:
            features.check_static(name, value)
        except ValueError as exc:
            raise CovariateFieldError(f"static.{name}", str(exc)) from None


def _names(field: str, given: Mapping[str, object] | None, wanted: list[str], kind: str
           ) -> None:
    present = set(given or {})
    for name in wanted:
        if name not in present:
            raise CovariateFieldError(f"{field}.{name}", f"missing: the model needs this "
                                      f"{kind} covariate")
    extra = sorted(present - set(wanted))
    if extra:
        takes = wanted or "none"
        raise CovariateFieldError(f"{field}.{extra[0]}", f"not a {kind} covariate of this "
                                  f"model (it takes {takes})")


def history_columns(item: SeriesIn, features: FeatureSpec) -> dict[str, np.ndarray | float | str]:
    """The covariate columns of the series' history frame (nulls as NaN, statics repeated)."""
    out: dict[str, np.ndarray | float | str] = {}
    for name, values in (item.covariates or {}).items():
        out[name] = np.asarray([np.nan if v is None else v for v in values], np.float64)
    for name in static_names(features.covariates):
        out[name] = (item.static or {})[name]
    return out


__all__ = ["CovariateFieldError", "check_covariates", "history_columns"]
