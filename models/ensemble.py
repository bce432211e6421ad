"""Ensembles as one model: members joined in a single Keras graph, combined by median or mean.

The joined graph takes the widest member window; each member reads the newest points it was
built for, so the service runs all members in one batched call and the artifact, pyfunc and
fast path are those of any single forecaster.
"""

from __future__ import annotations

import keras
import numpy as np

from nearcast.models.architectures.builder import covariate_inputs
from nearcast.models.architectures.combine import Combine, TakeLast, WidenIntervals
from nearcast.models.config import Combiner, ModelConfig
from nearcast.models.monitoring.calibration import conformal_factor, scores
from nearcast.pipelines.features import FeatureSpec

WINDOWED_INPUTS = ("history", "mask", "past")
"""Inputs over the window, cut to each member's newest ``input_size`` points."""


def ensemble_config(configs: list[ModelConfig]) -> ModelConfig:
    """Config the joined model presents: widest window, shared horizon/frequency/quantiles.

    Raises:
        ValueError: naming the field when members disagree on what must be shared.
    """
    for field in ("horizon", "freq", "fold", "season", "quantiles"):
        values = {str(getattr(c, field)) for c in configs}
        if len(values) > 1:
            raise ValueError(f"ensemble members disagree on {field}: {sorted(values)}")
    widest = max(configs, key=lambda c: c.input_size)
    shortest = max(c.shortest_history for c in configs)
    return widest.model_copy(update={"min_history": shortest})


def join_members(
    members: list[keras.Model], configs: list[ModelConfig], how: Combiner = "median",
    interval_factor: float | None = None, features: FeatureSpec | None = None,
) -> keras.Model:
    """One graph over all members.

    Inputs ``{"history": (B, T), "mask": (B, T)}`` and a covariate model's further inputs
    (``past`` is cut to each member's window like the history); output
    ``{"forecast": (B, H, K)}``.
    """
    joined = ensemble_config(configs)
    graph_inputs = {"history": keras.Input((None,), name="history"),
                    "mask": keras.Input((None,), name="mask")}
    graph_inputs |= covariate_inputs(features, joined.horizon)
    outputs = []
    for i, (member, cfg) in enumerate(zip(members, configs, strict=True)):
        inputs = {k: TakeLast(cfg.input_size, name=f"{k}_{i}")(v) if k in WINDOWED_INPUTS else v
                  for k, v in graph_inputs.items()}
        outputs.append(member(inputs)["forecast"])
    forecast = Combine(how, name="combine")(outputs) if len(outputs) > 1 else outputs[0]
    if interval_factor is not None:
        forecast = WidenIntervals(interval_factor, joined.point_index, name="widen")(forecast)
    return keras.Model(graph_inputs, {"forecast": forecast}, name="nearcast_ensemble")


def interval_factor(
    forecasts: np.ndarray, actual: np.ndarray, config: ModelConfig, target: float
) -> float:
    """Widening factor giving the outermost central interval ``target`` coverage.

    Split conformal, as the served calibration (:mod:`models.monitoring.calibration`): each
    point's score is the factor its interval (around the point forecast) needed to hold the
    actual, and the factor is the ``ceil((n + 1) target)``-th smallest of the ``n`` scores, so
    it covers at least ``target`` of the points it was fitted on.

    Args:
        forecasts: validation forecasts, shape ``(N, H, K)``.
        actual: validation actuals, shape ``(N, H)``.
        config: the model's config (quantiles, point index).
        target: wanted coverage, e.g. 0.8.

    Returns:
        The factor.
    """
    lo, hi, p = 0, len(config.quantiles) - 1, config.point_index
    needed = scores(actual, forecasts[:, :, p], forecasts[:, :, lo], forecasts[:, :, hi])
    return conformal_factor(needed.ravel(), target)


__all__ = ["WINDOWED_INPUTS", "ensemble_config", "interval_factor", "join_members"]
