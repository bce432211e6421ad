"""Score a forecaster on held-out points, next to the naive baselines, with one code path."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from nearcast.models.baselines import BASELINES
from nearcast.models.forecaster import Forecaster
from nearcast.models.metrics import (
    evaluate_forecasts,
    interval_coverage,
    mase_by_step,
    msis,
    owa,
    smape_by_step,
)
from nearcast.pipelines.feature_windows import CovariateBatch
from nearcast.pipelines.windows import SeriesTable, covariate_inputs, cut_index

REFERENCE = "naive2"


@dataclass
class Evaluation:
    """Holdout scores.

    Attributes:
        ids: series keys, shape ``(S,)``.
        actual: held-out values, shape ``(S, H)``.
        forecasts: method name -> point forecasts ``(S, H)`` (``model`` and each baseline).
        scores: method name -> metric name (:data:`models.config.METRICS`) -> value.
        by_step: ``{"smape": (H,), "mase": (H,)}`` for the model.
        intervals: for quantile models, per central interval of width ``w`` percent (a
            quantile pair ``q``, ``1 - q``): ``coverage_<w>`` and ``msis_<w>`` (M4's mean scaled
            interval score with ``alpha = 1 - w / 100``, :func:`models.mase.msis`).
    """

    ids: np.ndarray
    actual: np.ndarray
    forecasts: dict[str, np.ndarray]
    scores: dict[str, dict[str, float]]
    by_step: dict[str, np.ndarray]
    intervals: dict[str, float] = field(default_factory=dict)

    def flat_metrics(self) -> dict[str, float]:
        """``{"<method>_<metric>": value}`` for logging."""
        return {f"{m}_{k}": v for m, s in self.scores.items() for k, v in s.items()}


def score_methods(
    forecasts: dict[str, np.ndarray], actual: np.ndarray, insample: list[np.ndarray], season: int
) -> dict[str, dict[str, float]]:
    """Metrics for each method plus OWA relative to Naive2 (which must be among them)."""
    scores = {m: evaluate_forecasts(actual, f, insample, season) for m, f in forecasts.items()}
    ref = scores[REFERENCE]
    for s in scores.values():
        s["owa"] = owa(s["smape"], s["mase"], ref["smape"], ref["mase"])
    return scores


def holdout_evaluate(forecaster: Forecaster, table: SeriesTable, horizon: int) -> Evaluation:
    """Hold out the last ``horizon`` points of each series and score model and baselines.

    Args:
        forecaster: the model; its history window is filled from the points before the holdout.
        table: full regular series (each longer than ``horizon`` + the model's minimum history).
        horizon: held-out points per series (at most the model's horizon).
    """
    insample = [table.series(i)[:-horizon].astype(np.float64) for i in range(len(table.ids))]
    actual = np.stack([table.series(i)[-horizon:] for i in range(len(table.ids))]).astype(float)
    return evaluate_histories(forecaster, table.ids, insample, actual,
                              table_covariates(forecaster, table, table.offsets[1:] - horizon))


def table_covariates(forecaster: Forecaster, table: SeriesTable, ends: np.ndarray
                     ) -> CovariateBatch | None:
    """The covariate inputs of windows ending at ``ends`` (one per series), cut as served.

    None for a target-only model.
    """
    if table.features is None:
        return None
    spec = forecaster.config.window_spec()
    inputs = covariate_inputs(table, cut_index(table, ends, spec), spec)
    return CovariateBatch(inputs, np.zeros(len(table.ids), dtype=bool))


def evaluate_histories(
    forecaster: Forecaster, ids: np.ndarray, insample: list[np.ndarray], actual: np.ndarray,
    covariates: CovariateBatch | None = None,
) -> Evaluation:
    """Forecast from each history and score model and baselines against what came next.

    The one scoring path of nearcast: the training holdout and every backtest fold use it.

    Args:
        forecaster: the model (fixed; only the histories change).
        ids: series keys, shape ``(S,)``.
        insample: one 1-D history per series (oldest first), ending right before ``actual``;
            also the MASE scale and the baselines' input.
        actual: the values after each history, shape ``(S, h)`` with ``h`` at most the model's
            horizon.
        covariates: a covariate model's inputs for the same windows.

    Raises:
        ValueError: when ``h`` exceeds the model's horizon or the shapes disagree.
    """
    n_series, horizon = actual.shape
    if not 1 <= horizon <= forecaster.config.horizon or n_series != len(insample):
        raise ValueError(f"actual has shape {actual.shape} for {len(insample)} histories; the "
                         f"model forecasts 1..{forecaster.config.horizon} steps")
    insample = [np.asarray(s, dtype=np.float64) for s in insample]
    result = forecaster.forecast([s.astype(np.float32) for s in insample], covariates).values
    return score_forecasts(forecaster, ids, insample, actual, result)


def score_forecasts(
    forecaster: Forecaster, ids: np.ndarray, insample: list[np.ndarray], actual: np.ndarray,
    result: np.ndarray,
) -> Evaluation:
    """Score the model's outputs ``result`` ``(S, >= h, Q)`` and the baselines on ``actual``.

    ``insample`` (float64 histories ending right before ``actual``) is the baselines' input and
    the MASE scale; see :func:`evaluate_histories`.
    """
    season, horizon = forecaster.config.season, actual.shape[1]
    result = result[:, :horizon]
    forecasts = {"model": result[:, :, forecaster.config.point_index].astype(np.float64)}
    for name, method in BASELINES.items():
        forecasts[name] = method(insample, horizon, season)
    scores = score_methods(forecasts, actual, insample, season)
    by_step = {
        "smape": smape_by_step(actual, forecasts["model"]),
        "mase": mase_by_step(actual, forecasts["model"], insample, season),
    }
    return Evaluation(np.asarray(ids), actual, forecasts, scores, by_step,
                      interval_scores(forecaster.config.quantiles, result, actual, insample,
                                      season))


def interval_scores(quantiles: list[float], result: np.ndarray, actual: np.ndarray,
                    insample: list[np.ndarray], season: int) -> dict[str, float]:
    """``coverage_<w>`` and ``msis_<w>`` of each central interval of ``quantiles``.

    Args:
        quantiles: the model's output quantiles (the columns of ``result``).
        result: outputs ``(S, h, Q)``.
        actual: shape ``(S, h)``.
        insample: the histories before ``actual`` (MSIS's scale).
        season: the scale's seasonal lag.
    """
    out = {}
    for i, lo in enumerate(quantiles):
        hi_q = round(1.0 - lo, 6)
        if lo < 0.5 and hi_q in quantiles:
            width = round((hi_q - lo) * 100)
            lower, upper = result[:, :, i], result[:, :, quantiles.index(hi_q)]
            out[f"coverage_{width}"] = interval_coverage(actual, lower, upper)
            out[f"msis_{width}"] = msis(actual, lower, upper, insample, season,
                                         round(1.0 - width / 100, 6))
    return out


__all__ = ["REFERENCE", "Evaluation", "evaluate_histories", "holdout_evaluate", "interval_scores",
           "score_forecasts", "score_methods", "table_covariates"]
