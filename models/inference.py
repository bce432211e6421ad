"""Raw long observations in, long forecast frame out, through the model's own pipeline rules."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from nearcast.models.forecaster import Forecaster
from nearcast.pipelines.prepare import Regularized
from nearcast.pipelines.schema import DS, UNIQUE_ID, Y


@dataclass(frozen=True)
class FrameForecast:
    """A long forecast frame plus what the pipeline did to the input.

    Attributes:
        frame: columns ``unique_id``, ``ds``, ``forecast`` and one ``qX`` per quantile,
            ``horizon`` rows per series.
        prepared: the regularised input and the validation/bucket/gap reports.
    """

    frame: pd.DataFrame
    prepared: Regularized


def check_horizon(forecaster: Forecaster, horizon: int) -> None:
    """Reject a horizon outside ``1..model horizon`` with a message naming both."""
    if not 1 <= horizon <= forecaster.config.horizon:
        raise ValueError(
            f"horizon {horizon} is outside 1..{forecaster.config.horizon} (the model's horizon)"
        )


def forecast_frame(forecaster: Forecaster, df: pd.DataFrame, horizon: int) -> FrameForecast:
    """Forecast every series of a long frame ``(unique_id, ds, y)``.

    The frame is validated, bucketed onto the model's frequency and gap-filled by the model's
    rule, then each series' history is cut or padded to the window.
    """
    check_horizon(forecaster, horizon)
    prepared = forecaster.regularize(df)
    frame = prepared.frame
    groups = list(frame.groupby(UNIQUE_ID, sort=True))
    histories = [g[Y].to_numpy(np.float32) for _, g in groups]
    result = forecaster.forecast(histories).values[:, :horizon, :]
    names = ["forecast" if n == "point" else n for n in forecaster.config.output_names]
    parts = []
    for (uid, g), values in zip(groups, result, strict=True):
        part = pd.DataFrame(values, columns=names)
        if "forecast" not in part:
            part.insert(0, "forecast", values[:, forecaster.config.point_index])
        part.insert(0, DS, forecaster.future_index(g[DS].iloc[-1], horizon))
        part.insert(0, UNIQUE_ID, str(uid))
        parts.append(part)
    out = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[UNIQUE_ID, DS])
    return FrameForecast(frame=out, prepared=prepared)


__all__ = ["FrameForecast", "check_horizon", "forecast_frame"]
