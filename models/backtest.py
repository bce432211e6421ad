"""Rolling-origin backtests of a fixed forecaster next to the naive baselines.

The forecaster is never refitted: fold ``k`` cuts every series at its cutoff (the folds of
:func:`pipelines.splits.backtest_folds`: the last one ends at each series' end, each earlier one
``step`` rows before the next), forecasts from the history up to that cutoff and scores the next
``h`` points. The windows of many folds are cut from one table of the whole frame and forecast
in one batch; each fold is scored by :func:`models.evaluation.score_forecasts`, the scoring path
of the training holdout, so a one-fold backtest equals the holdout. Where the model runs over
the folds is pluggable (:data:`FoldOutputs`: here, or per bucket of whole series on Spark
executors); the series left out, the cutoffs and the scores are computed here either way.

A covariate model reads the same table's covariates: future-known ones over each fold's
horizon (they are known in advance), past ones and the target only up to the cutoff, static
ones and the series embedding per series; the scaling statistics are the model's own. A fold
that ends less than the model's horizon before the data's end (``h`` below the model's
horizon) repeats each series' last future-known values over the steps past the end.

A series too short for the folds (its history before the first cutoff would be under the
model's minimum) is left out and named in :attr:`Backtest.skipped`; the others are scored
exactly as a backtest on them alone would score them. ``strict=True`` raises instead.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from nearcast.models.config import METRICS
from nearcast.models.evaluation import REFERENCE, Evaluation, score_forecasts
from nearcast.models.forecaster import Forecaster
from nearcast.models.metrics import owa
from nearcast.pipelines.errors import DataValidationError, InputError, Problem
from nearcast.pipelines.padding import usable_length
from nearcast.pipelines.schema import DS, UNIQUE_ID
from nearcast.pipelines.series_table import SeriesTable, cut_index, gather_inputs

"""Metrics of a backtest, in display order."""


@dataclass(frozen=True)
class Backtest:
    """Scores of every fold and over all folds.

    Attributes:
        horizon: points scored per series and fold (``h``).
        step: rows between consecutive cutoffs.
        cutoffs: per fold (oldest first), each series' last history timestamp.
        folds: per fold, the evaluation (actuals ``(S, h)``, forecasts, scores).
        aggregate: method -> metric over all folds (see :func:`aggregate_scores`).
        skipped: series left out as too short for the folds -> why.
    """

    horizon: int
    step: int
    cutoffs: list[dict[str, pd.Timestamp]]
    folds: list[Evaluation]
    aggregate: dict[str, dict[str, float]]
    skipped: dict[str, str] = field(default_factory=dict)

    @property
    def n_scored(self) -> int:
        """Series scored in every fold."""
        return len(self.folds[0].ids)

    @property
    def methods(self) -> list[str]:
        """``model`` then the baselines."""
        return list(self.aggregate)

    def flat_metrics(self) -> dict[str, float]:
        """Aggregate ``{"<method>_<metric>": value}`` for logging."""
        return {f"{m}_{k}": v for m, s in self.aggregate.items() for k, v in s.items()}

    def table(self) -> pd.DataFrame:
        """Scores as a frame: one row per (fold, method), then the aggregate ``all`` rows.

        Columns: ``fold``, ``cutoff`` (the fold's latest series cutoff), ``method`` and
        :data:`METRICS`.
        """
        rows = []
        for k, (cut, ev) in enumerate(zip(self.cutoffs, self.folds, strict=True), 1):
            last = max(cut.values()).isoformat()
            rows += [{"fold": str(k), "cutoff": last, "method": m} | _pick(s)
                     for m, s in ev.scores.items()]
        rows += [{"fold": "all", "cutoff": "", "method": m} | _pick(s)
                 for m, s in self.aggregate.items()]
        return pd.DataFrame(rows)


    def summary(self) -> str:
        """A plain-text table: aggregate scores per method, then model vs baselines per fold."""
        head = f"{'method':16s}" + "".join(f"{_LABELS[k]:>9s}" for k in METRICS)
        lines = [f"all {len(self.folds)} folds x {self.horizon} points (step {self.step}, "
                 f"{self.n_scored} series scored, {len(self.skipped)} skipped)"]
        lines += [f"skipped {uid}: {why}" for uid, why in list(self.skipped.items())[:_SHOWN]]
        if len(self.skipped) > _SHOWN:
            lines.append(f"skipped ... and {len(self.skipped) - _SHOWN} more series")
        lines.append(head)
        lines += [f"{m:16s}" + "".join(f"{s[k]:9.3f}" for k in METRICS)
                  for m, s in self.aggregate.items()]
        lines.append(f"{'fold, cutoff':29s}" + "".join(f"{m:>17s}" for m in self.methods)
                     + "   (sMAPE / MASE)")
        n = len(self.folds)
        shown = range(n) if n <= 2 * _SHOWN else [*range(_SHOWN), *range(n - _SHOWN, n)]
        for k in shown:
            ev, cut = self.folds[k], self.cutoffs[k]
            if k == n - _SHOWN and n > 2 * _SHOWN:
                lines.append(f"... {n - 2 * _SHOWN} more folds (all of them: --log, or table())")
            cells = "".join(f"{ev.scores[m]['smape']:8.2f} /{ev.scores[m]['mase']:7.3f}"
                            for m in self.methods)
            lines.append(f"{k + 1:<3d} {max(cut.values()).isoformat():24s} {cells}")
        return "\n".join(lines)


_SHOWN = 10
_LABELS = {"smape": "sMAPE", "mase": "MASE", "owa": "OWA", "mae": "MAE", "rmse": "RMSE"}


def _pick(scores: dict[str, float]) -> dict[str, float]:
    return {k: scores[k] for k in METRICS}


class BacktestError(InputError, ValueError):
    """The backtest's arguments do not fit the model (e.g. a horizon beyond the model's)."""


@dataclass(frozen=True)
class Folds:
    """Where a backtest's folds lie in every series.

    Attributes:
        horizon: points scored per series and fold (``h``).
        step: rows between consecutive cutoffs.
        count: number of folds; the last one ends at each series' end.
    """

    horizon: int
    step: int
    count: int

    @property
    def span(self) -> int:
        """Rows from the first cutoff to each series' end."""
        return self.horizon + (self.count - 1) * self.step

    def ends(self, table: SeriesTable) -> list[np.ndarray]:
        """Per fold (oldest first), each series' history end (global positions in ``table``)."""
        first = table.offsets[1:] - self.span
        return [first + k * self.step for k in range(self.count)]


FoldOutputs = Callable[[Forecaster, SeriesTable, pd.DataFrame, Folds], np.ndarray]
"""Computes the model's outputs ``(folds, S, H, Q)`` for every fold of every series of a table
(made from the frame's rows): :func:`fold_outputs` in this process, the Spark engine
(:mod:`service.spark_evaluate`) on executors."""


@dataclass(frozen=True)
class BacktestEngine:
    """Where a backtest's model outputs are computed.

    Attributes:
        name: ``local`` or ``spark`` (tagged ``nearcast.engine`` on a logged run).
        outputs: the :data:`FoldOutputs` function.
    """

    name: str
    outputs: FoldOutputs


def backtest(
    forecaster: Forecaster, df: pd.DataFrame, n_folds: int, step: int | None = None,
    horizon: int | None = None, strict: bool = False, outputs: FoldOutputs | None = None,
) -> Backtest:
    """Score ``forecaster`` and the baselines on ``n_folds`` rolling-origin folds of ``df``.

    Args:
        forecaster: the fixed model.
        df: regular, gap-filled long frame ``(unique_id, ds, y)`` at the model's frequency.
        n_folds: number of folds (the last one ends at each series' end).
        step: rows between consecutive cutoffs; defaults to ``horizon`` (adjacent test windows).
        horizon: points scored per fold; defaults to the model's horizon (and may not exceed it).
        strict: raise on a series too short for the folds instead of leaving it out.
        outputs: where the model runs over the folds (default :func:`fold_outputs` here); the
            series left out, the cutoffs and the scores are this function's either way.

    Returns:
        Per-fold and aggregate scores, and the series left out.

    Raises:
        BacktestError: on a horizon outside ``1..model horizon``.
        DataValidationError: naming the series too short for the folds (their length and
            history before the first cutoff) when ``strict`` or when no series is long enough.
    """
    folds = check_folds(forecaster, n_folds, step, horizon)
    df, skipped = _long_enough(df, forecaster, folds, strict)
    table = series_table(forecaster, df)
    result = (outputs or _in_process)(forecaster, table, df, folds)
    stamps = list(pd.DatetimeIndex(df.sort_values([UNIQUE_ID, DS], kind="stable")[DS]))
    return score_folds(forecaster, table, stamps, folds, result, skipped)


def check_folds(forecaster: Forecaster, n_folds: int, step: int | None = None,
                horizon: int | None = None) -> Folds:
    """The folds of :func:`backtest`'s arguments.

    ``step`` defaults to the horizon, the horizon to the model's.

    Raises:
        BacktestError: on a horizon outside ``1..model horizon``, or folds or step under 1.
    """
    h = forecaster.config.horizon if horizon is None else horizon
    if not 1 <= h <= forecaster.config.horizon:
        raise BacktestError(f"horizon {h} is outside 1..{forecaster.config.horizon} "
                            "(the model's)")
    step = h if step is None else step
    if n_folds < 1 or step < 1:
        raise BacktestError(f"folds and step must be >= 1, got {n_folds} and {step}")
    return Folds(h, step, n_folds)


_BATCH_WINDOWS = 4096
"""Windows (series x folds) forecast in one call: bounds the memory of a long backtest."""


def series_table(forecaster: Forecaster, df: pd.DataFrame) -> SeriesTable:
    """The frame as one table, with the model's covariate inputs.

    Raises:
        DataValidationError: a covariate model's column missing from the frame or a static
            value the model cannot read (naming the covariate).
    """
    features = forecaster.meta.features if forecaster.meta.covariate_model else None
    if features is not None:
        missing = [n for n in features.covariates if n not in df.columns]
        if missing:
            raise DataValidationError([Problem(
                "covariates", None, [], f"the model reads covariates {missing}, which the data "
                "does not have; declare them in the data: section of the job file")])
    try:
        return SeriesTable.from_long(df, features)
    except ValueError as exc:  # a static value the model cannot read
        raise DataValidationError([Problem("covariates", None, [], str(exc))]) from None


def fold_outputs(forecaster: Forecaster, table: SeriesTable, folds: Folds) -> np.ndarray:
    """The model's outputs ``(folds, S, H, Q)`` at every fold of every series of ``table``.

    Up to :data:`_BATCH_WINDOWS` windows go through the model in one call. A series' outputs
    depend only on its own rows, so a table of some of the series gives theirs.
    """
    ends = folds.ends(table)
    per_batch = max(1, _BATCH_WINDOWS // len(table.ids))
    out = np.concatenate([_forecast_at(forecaster, table, ends[lo:lo + per_batch])
                          for lo in range(0, folds.count, per_batch)])
    return out.reshape(folds.count, len(table.ids), *out.shape[1:])


def _in_process(forecaster: Forecaster, table: SeriesTable, df: pd.DataFrame, folds: Folds
                ) -> np.ndarray:
    """:func:`fold_outputs` as a :data:`FoldOutputs` (the frame is already in ``table``)."""
    return fold_outputs(forecaster, table, folds)


def score_folds(forecaster: Forecaster, table: SeriesTable, stamps: list[pd.Timestamp],
                folds: Folds, outputs: np.ndarray, skipped: dict[str, str]) -> Backtest:
    """Score every fold of ``table`` from the model's ``outputs`` ``(folds, S, H, Q)``.

    Args:
        forecaster: the model (its season, point and quantile positions).
        table: the series scored.
        stamps: the timestamp of each of the table's rows.
        folds: where the folds lie.
        outputs: :func:`fold_outputs` of ``table``, wherever it was computed.
        skipped: series left out -> why (kept in the result).
    """
    cutoffs: list[dict[str, pd.Timestamp]] = []
    evaluations: list[Evaluation] = []
    for end, result in zip(folds.ends(table), outputs, strict=True):
        cutoffs.append({str(uid): stamps[e - 1] for uid, e in zip(table.ids, end, strict=True)})
        evaluations.append(_score_fold(forecaster, table, end, folds.horizon, result))
    return Backtest(folds.horizon, folds.step, cutoffs, evaluations,
                    aggregate_scores(evaluations), skipped)


def _forecast_at(forecaster: Forecaster, table: SeriesTable, ends: list[np.ndarray]
                 ) -> np.ndarray:
    """The model's outputs ``(len(ends) * S, H, Q)`` for windows ending at each of ``ends``."""
    spec = forecaster.config.window_spec()
    index = np.concatenate([cut_index(table, end, spec) for end in ends])
    return forecaster.predict_inputs(gather_inputs(table, index, spec))


def _score_fold(forecaster: Forecaster, table: SeriesTable, ends: np.ndarray, h: int,
                result: np.ndarray) -> Evaluation:
    """Score one fold: histories up to ``ends`` (global positions), the next ``h`` points."""
    starts = table.offsets[:-1]
    insample = [table.values[s:e].astype(np.float64) for s, e in zip(starts, ends, strict=True)]
    actual = table.values[ends[:, None] + np.arange(h)].astype(np.float64)
    return score_forecasts(forecaster, table.ids, insample, actual, result)


def _long_enough(
    df: pd.DataFrame, forecaster: Forecaster, folds: Folds, strict: bool
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Leave out the series whose history before the first cutoff is under the model's minimum.

    Returns:
        The frame of the other series (rows in their original order) and, per series left out,
        why.
    """
    spec = forecaster.config.window_spec()
    scored, n_folds = folds.span, folds.count  # points from the first cutoff to the end
    lengths = df.groupby(UNIQUE_ID, sort=True)[DS].size()
    history = lengths - scored
    usable = history.map(lambda n: usable_length(n, spec) if n > 0 else 0)
    short = lengths[usable < spec.shortest_history]
    if short.empty:
        return df, {}
    why = {str(uid): _too_short(df, str(uid), int(n), int(n) - scored, n_folds, spec.fold,
                                spec.shortest_history) for uid, n in short.items()}
    if strict or len(short) == len(lengths):
        hint = ("" if strict else "no series is long enough; ") + \
            "use fewer folds or a smaller step" + (", or leave out --strict" if strict else "")
        raise DataValidationError(
            Problem("too_short", uid, [], f"{reason}; {hint}") for uid, reason in why.items()
        )
    return df[~df[UNIQUE_ID].isin(short.index)], why


def _too_short(df: pd.DataFrame, uid: str, n: int, history: int, n_folds: int, fold: int,
               shortest: int) -> str:
    """Why series ``uid`` (``n`` points) cannot take ``n_folds`` folds."""
    if history <= 0:
        return f"{n} points, no history left before the first of {n_folds} folds"
    stamps = df.loc[df[UNIQUE_ID] == uid, DS].sort_values()
    cutoff = pd.Timestamp(stamps.iloc[history - 1]).isoformat()
    return (f"{n} points, {history} up to the first cutoff {cutoff} of {n_folds} folds; the "
            f"model needs at least {shortest} (in multiples of {fold})")


def aggregate_scores(folds: list[Evaluation]) -> dict[str, dict[str, float]]:
    """Scores over all folds, as if every fold's points were pooled.

    Every fold scores the same series over the same horizon, so pooled MAE, sMAPE and MASE
    (MASE keeps each fold's own in-sample scale) are the means of the fold values, and pooled
    RMSE is the root of the mean of squared fold RMSEs. OWA is recomputed from the aggregate
    sMAPE and MASE relative to Naive2's; interval coverages (quantile models) are averaged.
    """
    methods = list(folds[0].scores)
    out: dict[str, dict[str, float]] = {}
    for m in methods:
        per = {k: np.array([ev.scores[m][k] for ev in folds]) for k in ("mae", "smape", "mase")}
        out[m] = {k: float(v.mean()) for k, v in per.items()}
        rmse = np.array([ev.scores[m]["rmse"] for ev in folds])
        out[m]["rmse"] = float(np.sqrt(np.mean(rmse**2)))
    ref = out[REFERENCE]
    for s in out.values():
        s["owa"] = owa(s["smape"], s["mase"], ref["smape"], ref["mase"])
    for key in folds[0].intervals:
        out["model"][key] = float(np.mean([ev.intervals[key] for ev in folds]))
    return out


__all__ = ["Backtest", "BacktestEngine", "BacktestError", "FoldOutputs", "Folds",
           "aggregate_scores", "backtest", "check_folds", "fold_outputs", "score_folds",
           "series_table"]
