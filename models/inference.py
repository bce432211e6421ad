"""Raw long observations in, long forecast frame out, through the model's own pipeline rules."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from nearcast.models.forecaster import Forecaster
from nearcast.pipelines.covariates import past_names, static_names
from nearcast.pipelines.errors import DataValidationError, Problem
from nearcast.pipelines.feature_windows import (
    CovariateBatch,
    CovariateError,
    covariate_batch,
    future_frame,
)
from nearcast.pipelines.features import FeatureSpec
from nearcast.pipelines.on_grid import grid_step
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


def split_future(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a long frame into history and future rows.

    Per series, the rows after its last observed ``y`` whose ``y`` is missing are the steps to
    forecast (their future-known covariates are given).
    """
    frame = df.sort_values([UNIQUE_ID, DS], kind="stable")
    observed = frame[Y].notna()
    after_last = observed[::-1].astype(int).groupby(frame[UNIQUE_ID][::-1]).cummax()[::-1] == 0
    return frame[~after_last], frame[after_last]


def forecast_frame(forecaster: Forecaster, df: pd.DataFrame, horizon: int,
                   future: pd.DataFrame | None = None) -> FrameForecast:
    """Forecast every series of a long frame ``(unique_id, ds, y[, covariates])``.

    The frame is validated, bucketed onto the model's frequency and gap-filled by the model's
    rule, then each series' history is cut or padded to the window. A covariate model takes
    the future-known covariates of the model's horizon from ``future`` (``unique_id``,
    ``ds``, one column per future covariate), or from the rows of ``df`` after each series'
    last observed ``y`` (:func:`split_future`).

    Raises:
        DataValidationError: naming the series whose covariates do not fit the model.
    """
    check_horizon(forecaster, horizon)
    if forecaster.meta.covariate_model and future is None:
        df, future = split_future(df)
    return forecast_regular(forecaster, forecaster.regularize(df), horizon, future)


def forecast_regular(forecaster: Forecaster, prepared: Regularized, horizon: int,
                     future: pd.DataFrame | None = None) -> FrameForecast:
    """:func:`forecast_frame` of a frame already put on the model's grid (``prepared``).

    ``future`` holds a covariate model's future-known values (see :func:`forecast_frame`).

    Raises:
        DataValidationError: naming the series whose covariates do not fit the model.
    """
    check_horizon(forecaster, horizon)
    features = forecaster.meta.features if forecaster.meta.covariate_model else None
    groups = list(prepared.frame.groupby(UNIQUE_ID, sort=True))
    histories = [g[Y].to_numpy(np.float32) for _, g in groups]
    covariates = None if features is None else _covariates(forecaster, features, groups, future)
    result = forecaster.forecast(histories, covariates).values[:, :horizon, :]
    if not groups:
        return FrameForecast(frame=pd.DataFrame(columns=[UNIQUE_ID, DS]), prepared=prepared)
    last = pd.DatetimeIndex([g[DS].iloc[-1] for _, g in groups])
    out = forecast_rows(forecaster, pd.Index([str(uid) for uid, _ in groups]), last, result)
    return FrameForecast(frame=out, prepared=prepared)


def forecast_rows(forecaster: Forecaster, ids: pd.Index, last: pd.DatetimeIndex,
                  values: np.ndarray) -> pd.DataFrame:
    """The long forecast frame of series ``ids`` (one row per series and step, no loop).

    Args:
        forecaster: the model (its output names and frequency).
        ids: series keys, shape ``(S,)``.
        last: each series' last timestamp on the grid, shape ``(S,)``.
        values: the model's outputs, shape ``(S, h, K)`` (``h`` steps after ``last``).

    Returns:
        Columns ``unique_id``, ``ds`` and :func:`output_columns`, ``S * h`` rows, series after
        series.
    """
    n, steps = values.shape[:2]
    names = output_columns(forecaster)
    own = names[len(names) - values.shape[2]:]  # without a "forecast" added in front
    flat = values.reshape(n * steps, values.shape[2])
    columns: dict[str, object] = {UNIQUE_ID: ids.astype(str).repeat(steps),
                                  DS: _future_stamps(forecaster, last, steps)}
    if len(own) < len(names):
        columns["forecast"] = flat[:, forecaster.config.point_index]
    columns |= {name: flat[:, k] for k, name in enumerate(own)}
    return pd.DataFrame(columns)


def _future_stamps(forecaster: Forecaster, last: pd.DatetimeIndex, steps: int
                   ) -> pd.DatetimeIndex:
    """The ``steps`` timestamps after each of ``last`` (:meth:`Forecaster.future_index`), flat."""
    step = grid_step(forecaster.config.freq)
    start = last.tz_convert("UTC") if last.tz is not None else last.tz_localize("UTC")
    if step is not None:  # fixed length: arithmetic on the epoch nanoseconds
        ns = start.as_unit("ns").asi8[:, None] + step * np.arange(1, steps + 1, dtype=np.int64)
        return pd.DatetimeIndex(ns.ravel().view("M8[ns]")).tz_localize("UTC")
    distinct, where = np.unique(start.as_unit("ns").asi8, return_inverse=True)
    table = np.stack([forecaster.future_index(pd.Timestamp(t, tz="UTC"), steps).as_unit("ns")
                      .asi8 for t in distinct])
    return pd.DatetimeIndex(table[where].ravel().view("M8[ns]")).tz_localize("UTC")


def output_columns(forecaster: Forecaster) -> list[str]:
    """The value columns of a forecast frame: ``forecast`` (the point), then the quantiles.

    A model without a ``point`` output (quantiles only) gets ``forecast`` from its point
    quantile, in front.
    """
    names = ["forecast" if n == "point" else n for n in forecaster.config.output_names]
    return names if "forecast" in names else ["forecast", *names]


def _covariates(forecaster: Forecaster, features: FeatureSpec,
                groups: Sequence[tuple[object, pd.DataFrame]], future: pd.DataFrame | None
                ) -> CovariateBatch:
    """The covariate inputs of each series, its future rows checked against the model's steps.

    Raises:
        DataValidationError: naming the series: future rows missing or at other timestamps,
            or a covariate that does not fit.
    """
    horizon = forecaster.config.horizon
    by_series = ({} if future is None else
                 {str(k): g for k, g in future.groupby(future[UNIQUE_ID].astype(str))})
    not_future = {UNIQUE_ID, DS, Y} | set(past_names(features.covariates)) | set(
        static_names(features.covariates))
    futures: list[pd.DataFrame] = []
    problems: list[Problem] = []
    for uid, g in groups:
        steps = forecaster.future_index(g[DS].iloc[-1], horizon)
        rows = by_series.get(str(uid))
        given = {} if rows is None else _on_steps(rows, steps, not_future)
        try:
            futures.append(future_frame(steps, given, features, len(futures)))
        except CovariateError as exc:
            problems.append(Problem("covariates", str(uid), [], f"{exc} (steps "
                                    f"{steps[0].isoformat()}..{steps[-1].isoformat()})"))
    if problems:
        raise DataValidationError(problems)
    ids = [str(uid) for uid, _ in groups]
    try:
        return covariate_batch(features, forecaster.config.window_spec(),
                               [g for _, g in groups], futures, ids)
    except CovariateError as exc:
        raise DataValidationError([Problem("covariates", ids[exc.index], [], str(exc))]) from None


def _on_steps(rows: pd.DataFrame, steps: pd.DatetimeIndex, skip: set[str]
              ) -> dict[str, np.ndarray]:
    """Each column of a series' future rows but ``skip`` at the forecast steps (NaN: missing)."""
    indexed = rows.set_index(pd.DatetimeIndex(pd.to_datetime(rows[DS], utc=True)))
    indexed = indexed[~indexed.index.duplicated(keep="last")]
    return {str(n): indexed[n].reindex(steps).to_numpy(np.float64)
            for n in rows.columns if n not in skip}


__all__ = ["FrameForecast", "check_horizon", "forecast_frame", "forecast_regular",
           "forecast_rows", "output_columns", "split_future"]
