"""Batch forecasts: every series of a source, chunk by chunk, by the API's pipeline rules.

:func:`forecast_chunks` takes long frames that each hold whole series (a source read in chunks
of series, a Spark group) and yields, per chunk, the forecasts and the series it left out with
why. A series is left out, never silently dropped, when the model's rules refuse it as they
refuse an API request: a data problem of its own (validation, bucketing, gaps), too short a
history, a value <= 0 for a model with log scaling, missing future-known covariates (a
covariate model reads them from the rows after each series' last observed ``y``, or from
``future``), or a forecast that is not finite. A problem of the whole source (a missing column)
raises. ``strict`` raises on the first series left out.

Each output row carries its provenance: ``model`` (URI), ``model_name``, ``model_version``,
``run_id`` and ``origin`` (the series' last grid timestamp), next to ``unique_id``, ``ds``,
``forecast`` and the quantile columns (:func:`models.inference.forecast_regular`, the pyfunc's
path after the grid rule).

A chunk already on the model's grid (:func:`pipelines.on_grid.on_grid`) takes a fast path: no
pandas pipeline (it would change nothing), one gather of the windows and one model call; the
same rows, the same series left out with the same messages.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from pandas.tseries.frequencies import to_offset

from nearcast.models.forecaster import Forecaster
from nearcast.models.inference import (
    check_horizon,
    forecast_regular,
    forecast_rows,
    output_columns,
    split_future,
)
from nearcast.pipelines.errors import DataValidationError, InputError, Problem
from nearcast.pipelines.on_grid import GridSeries, on_grid
from nearcast.pipelines.padding import usable_length
from nearcast.pipelines.scaling_rules import POSITIVE_RULES
from nearcast.pipelines.schema import DS, UNIQUE_ID, Y
from nearcast.pipelines.series_table import cut_index, gather_inputs

PROVENANCE = ("model", "model_name", "model_version", "run_id", "origin")
"""Provenance columns of every output row, after ``unique_id`` and ``ds``."""


@dataclass(frozen=True)
class Provenance:
    """Where the forecasts come from (written on every row)."""

    model_uri: str
    name: str = ""
    version: int | None = None
    run_id: str = ""


@dataclass
class BatchSummary:
    """Counts over all chunks.

    Attributes:
        series_read: series in the source.
        series_written: series forecast and written.
        rows_written: forecast rows written.
        skipped: series left out -> why (the first problem found).
    """

    series_read: int = 0
    series_written: int = 0
    rows_written: int = 0
    skipped: dict[str, str] = field(default_factory=dict)

    def add(self, read: int, frame: pd.DataFrame, skipped: dict[str, str]) -> None:
        """Count one chunk."""
        self.series_read += read
        self.series_written += int(frame[UNIQUE_ID].nunique()) if len(frame) else 0
        self.rows_written += len(frame)
        self.skipped |= skipped

    def text(self, shown: int = 10) -> str:
        """``N series read, W forecast (R rows), S skipped`` and the first skipped ones."""
        lines = [f"{self.series_read} series read, {self.series_written} forecast "
                 f"({self.rows_written} rows), {len(self.skipped)} skipped"]
        lines += [f"skipped {uid}: {why}" for uid, why in list(self.skipped.items())[:shown]]
        if len(self.skipped) > shown:
            lines.append(f"skipped ... and {len(self.skipped) - shown} more series")
        return "\n".join(lines)


class SeriesSkippedError(InputError, ValueError):
    """``strict``: a series was left out (the message names it and why)."""


def forecast_chunks(
    forecaster: Forecaster, chunks: Iterable[pd.DataFrame], provenance: Provenance,
    horizon: int | None = None, strict: bool = False,
) -> Iterator[tuple[pd.DataFrame, dict[str, str], int]]:
    """Forecast each chunk's series; yield ``(forecasts, skipped, series in the chunk)``.

    Args:
        forecaster: the model.
        chunks: long frames ``(unique_id, ds, y[, covariates])``, each holding whole series.
        provenance: written on every row.
        horizon: steps per series (default: the model's).
        strict: raise :class:`SeriesSkippedError` instead of leaving a series out.

    Raises:
        DataValidationError: a problem of the whole source, not of one series.
        SeriesSkippedError: ``strict`` and a series left out.
    """
    steps = forecaster.config.horizon if horizon is None else horizon
    for chunk in chunks:
        frame, skipped, n_series = _forecast_counted(forecaster, chunk, provenance, steps)
        if strict and skipped:
            uid, why = next(iter(skipped.items()))
            raise SeriesSkippedError(f"series {uid!r}: {why} (--strict; {len(skipped)} series "
                                     "left out in this chunk)")
        yield frame, skipped, n_series


def forecast_chunk(forecaster: Forecaster, chunk: pd.DataFrame, provenance: Provenance,
                   horizon: int) -> tuple[pd.DataFrame, dict[str, str]]:
    """Forecast one chunk of whole series; returns the rows and the series left out.

    A chunk already on the model's grid (:func:`pipelines.on_grid.on_grid`: the common case
    of a clean source) skips the pandas pipeline, which would leave it as it is; any other
    chunk, and any chunk of a covariate model, is regularised first.
    """
    frame, skipped, _ = _forecast_counted(forecaster, chunk, provenance, horizon)
    return frame, skipped


def _forecast_counted(forecaster: Forecaster, chunk: pd.DataFrame, provenance: Provenance,
                      horizon: int) -> tuple[pd.DataFrame, dict[str, str], int]:
    """:func:`forecast_chunk`, and the number of series in the chunk."""
    grid = None if forecaster.meta.covariate_model else on_grid(chunk, forecaster.meta.grid)
    if grid is not None:
        return (*_forecast_on_grid(forecaster, grid, provenance, horizon), len(grid.ids))
    work = chunk.copy()
    work[UNIQUE_ID] = work[UNIQUE_ID].astype(str)
    n_series = int(work[UNIQUE_ID].nunique())
    return (*_forecast_regularized(forecaster, work, provenance, horizon), n_series)


def _forecast_regularized(forecaster: Forecaster, work: pd.DataFrame, provenance: Provenance,
                          horizon: int) -> tuple[pd.DataFrame, dict[str, str]]:
    """:func:`forecast_chunk` through the pipeline; ``work``'s ids are strings."""
    skipped: dict[str, str] = {}
    for _ in range(work[UNIQUE_ID].nunique() + 1):  # each round leaves out >= 1 series
        if work.empty:
            return _empty(forecaster), skipped
        try:
            out = _forecast_clean(forecaster, work, horizon)
        except DataValidationError as exc:
            bad = _series_problems(exc)
            skipped |= bad
            work = work[~work[UNIQUE_ID].isin(bad)]
            continue
        return _with_provenance(out, provenance, forecaster.config.freq), skipped
    raise RuntimeError("batch forecast: series kept failing")  # unreachable: see the loop bound


def _forecast_on_grid(forecaster: Forecaster, grid: GridSeries, provenance: Provenance,
                      horizon: int) -> tuple[pd.DataFrame, dict[str, str]]:
    """:func:`forecast_chunk` of series already on the grid: one gather, one model call.

    The same rows, in the same order (series sorted by id), and the same series left out for
    the same reasons as the pipeline's path.
    """
    check_horizon(forecaster, horizon)
    spec = forecaster.config.window_spec()
    order = np.argsort(grid.ids.to_numpy(), kind="stable")  # the pipeline's order: by id
    lows = (np.minimum.reduceat(grid.values, grid.offsets[:-1])
            if forecaster.config.scaling in POSITIVE_RULES else None)
    refused = _refusals(forecaster, grid.ids[order], grid.lengths[order],
                        None if lows is None else lows[order])
    skipped = {uid: f"[{kind}] {why}" for uid, (kind, why) in refused.items()}
    if refused:
        order = order[~grid.ids[order].isin(list(refused))]
    if not len(order):
        return _empty(forecaster), skipped
    table = grid.table()
    index = cut_index(table, table.offsets[1:], spec)[order]
    values = forecaster.predict_inputs(gather_inputs(table, index, spec))[:, :horizon, :]
    finite = np.isfinite(values).all(axis=(1, 2))
    skipped |= {str(uid): f"[not_finite] {_NOT_FINITE}" for uid in grid.ids[order[~finite]]}
    order, values = order[finite], values[finite]
    if not len(order):
        return _empty(forecaster), skipped
    last = pd.DatetimeIndex(grid.last[order].view("M8[ns]")).tz_localize("UTC")
    out = forecast_rows(forecaster, grid.ids[order], last, values)
    return _with_provenance(out, provenance, forecaster.config.freq), skipped


def _forecast_clean(forecaster: Forecaster, work: pd.DataFrame, horizon: int) -> pd.DataFrame:
    """Forecast ``work`` if the model takes every series of it.

    Raises:
        DataValidationError: naming the series the pipeline or the model refuses (the caller
            leaves them out and tries again).
    """
    history, future = split_future(work) if forecaster.meta.covariate_model else (work, None)
    prepared = forecaster.regularize(history)
    refused = _refused(forecaster, prepared.frame)
    if refused:
        raise DataValidationError(Problem(kind, uid, [], why)
                                  for uid, (kind, why) in refused.items())
    out = forecast_regular(forecaster, prepared, horizon, future).frame
    values = out.drop(columns=[UNIQUE_ID, DS]).to_numpy(np.float64)
    finite = pd.Series(np.isfinite(values).all(axis=1)).groupby(out[UNIQUE_ID].to_numpy()).all()
    if not finite.all():
        raise DataValidationError(Problem("not_finite", str(uid), [], _NOT_FINITE)
                                  for uid in finite.index[~finite.to_numpy()])
    return out


_NOT_FINITE = ("the forecast is not finite: the input is outside what the model can represent "
               "(values too large for its float32 arithmetic)")


def _refused(forecaster: Forecaster, prepared: pd.DataFrame) -> dict[str, tuple[str, str]]:
    """Series of a regularised frame the model cannot forecast -> ``(kind, why)``."""
    groups = prepared.groupby(UNIQUE_ID, sort=True)[Y]
    lengths = groups.size()
    lows = groups.min().to_numpy() if forecaster.config.scaling in POSITIVE_RULES else None
    return _refusals(forecaster, lengths.index, lengths.to_numpy(), lows)


def _refusals(forecaster: Forecaster, ids: pd.Index, lengths: np.ndarray,
              lows: np.ndarray | None) -> dict[str, tuple[str, str]]:
    """Series the model cannot forecast -> ``(kind, why)``, in the order of ``ids``.

    Too short a history (``lengths``: points on the grid), or (``lows``: each series' smallest
    value, given under log scaling) a value <= 0.
    """
    spec = forecaster.config.window_spec()
    names = ids.to_numpy()
    usable = np.asarray([usable_length(int(n), spec) for n in lengths], dtype=np.int64)
    out = {}
    for i in np.flatnonzero(usable < spec.shortest_history):
        out[str(names[i])] = ("too_short", f"{int(lengths[i])} points on the model's grid; the "
                              f"model needs at least {spec.shortest_history} (in multiples of "
                              f"{spec.fold})")
    low = np.full(len(names), np.inf) if lows is None else lows
    for i in np.flatnonzero(low <= 0):
        out.setdefault(str(names[i]), ("not_positive", f"a value <= 0 ({float(low[i]):g}); the "
                                       "model uses log scaling and needs values > 0"))
    return out


def _series_problems(exc: DataValidationError) -> dict[str, str]:
    """The series each problem names -> its first message.

    Raises:
        DataValidationError: ``exc`` itself when a problem names no series (the whole source).
    """
    bad: dict[str, str] = {}
    for problem in exc.problems:
        if problem.unique_id is None:
            raise exc
        bad.setdefault(str(problem.unique_id), f"[{problem.kind}] {problem.message}")
    return bad


def _with_provenance(out: pd.DataFrame, provenance: Provenance, freq: str) -> pd.DataFrame:
    """``out`` with the provenance columns; ``origin``: one step before each series' first."""
    first = out.groupby(UNIQUE_ID, sort=False)[DS].transform("min")
    cols: dict[str, object] = {"model": provenance.model_uri, "model_name": provenance.name,
            "model_version": provenance.version if provenance.version is not None else -1,
            "run_id": provenance.run_id, "origin": first - to_offset(freq)}
    front = out[[UNIQUE_ID, DS]].assign(**cols)  # type: ignore[arg-type]
    return pd.concat([front, out.drop(columns=[UNIQUE_ID, DS])], axis=1)


def _empty(forecaster: Forecaster) -> pd.DataFrame:
    return pd.DataFrame(columns=[UNIQUE_ID, DS, *PROVENANCE, *output_columns(forecaster)])


__all__ = ["PROVENANCE", "BatchSummary", "Provenance", "SeriesSkippedError", "forecast_chunk",
           "forecast_chunks"]
