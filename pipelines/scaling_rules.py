"""The per-window scaling rules by name, and what each needs of the data (no TensorFlow here).

:mod:`pipelines.scaling` computes them inside the model's graph; this module names them, so a
job file can be checked, and data refused for a rule it cannot meet, before TensorFlow loads.

Rules:
    ``log_level``: ``z = log(x / level)``, level = mean of the last ``season`` points. Needs
        values > 0: training and serving both refuse a value <= 0.
    ``level_mad``: ``z = (x - level) / mad``, level as above, ``mad`` = mean absolute deviation
        from the level over the window. Any real value: zeros and negatives (prices, net flows).
    ``mean_abs``: ``z = x / scale``, scale = mean absolute value of the window.
    ``none``: identity.
"""

from __future__ import annotations

from typing import Literal, get_args

import pandas as pd

from nearcast.pipelines.errors import DataValidationError, Problem
from nearcast.pipelines.schema import DS, UNIQUE_ID, Y

ScalingRule = Literal["log_level", "level_mad", "mean_abs", "none"]
SCALING_RULES: tuple[str, ...] = get_args(ScalingRule)
POSITIVE_RULES: frozenset[str] = frozenset({"log_level"})
"""Rules that need every value > 0."""

_SHOWN = 10


def refuse_non_positive(df: pd.DataFrame, rule: str) -> None:
    """Refuse a regular long frame holding a value <= 0 when ``rule`` needs positive values.

    Raises:
        DataValidationError: naming each series (the first ten), how many values are <= 0, the
            first one and its timestamp, and the rule that handles them.
    """
    if rule not in POSITIVE_RULES:
        return
    bad = df[df[Y] <= 0]
    if bad.empty:
        return
    problems = []
    for uid, rows in list(bad.groupby(UNIQUE_ID, sort=True))[:_SHOWN]:
        first = rows.iloc[0]
        problems.append(Problem(
            kind="not_positive", unique_id=str(uid),
            message=f"{len(rows)} value(s) <= 0 (first {float(first[Y]):g} at "
                    f"{first[DS].isoformat()}); scaling {rule!r} needs values > 0, "
                    "'level_mad' handles zeros and negative values"))
    raise DataValidationError(problems)


__all__ = ["POSITIVE_RULES", "SCALING_RULES", "ScalingRule", "refuse_non_positive"]
