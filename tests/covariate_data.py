"""Constructed series whose target follows a future-known covariate (y = 3 x + noise)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from nearcast.pipelines.covariates import Covariate

COVARIATES = {"x": Covariate(role="future"), "p": Covariate(role="past"),
              "region": Covariate(role="static", kind="categorical")}


def driven_frame(n_series: int = 3, n: int = 360, seed: int = 0) -> pd.DataFrame:
    """Long frame: ``y = 10 + 3 x + noise`` with ``x`` random (future-known), ``p`` a
    past-only random column, ``region`` a static category; hourly UTC timestamps."""
    rng = np.random.default_rng(seed)
    parts = []
    for s in range(n_series):
        x = rng.normal(size=n)
        parts.append(pd.DataFrame({
            "unique_id": f"S{s}",
            "ds": pd.date_range("2024-03-01", periods=n, freq="h", tz="UTC"),
            "y": 10.0 + 3.0 * x + 0.1 * rng.normal(size=n), "x": x,
            "p": rng.normal(size=n), "region": "north" if s % 2 else "south"}))
    return pd.concat(parts, ignore_index=True)
