"""The champion/challenger gate: does the challenger become ``champion``?

Pure logic over scores: :func:`decide` takes the challenger's, the champion's and the baselines'
scores on the same most-recent windows and says whether the challenger becomes ``champion``.
Nothing here trains, loads or registers a model, and importing it loads neither TensorFlow nor
MLflow. Its settings are the job file's ``retrain:`` section
(:class:`models.config.RetrainConfig`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from nearcast.models.config import RetrainConfig

TAG_PREFIX = "nearcast.retrain."
"""Prefix of every tag the retraining writes on runs and model versions."""


@dataclass(frozen=True)
class Decision:
    """Whether the challenger is promoted, and why.

    Attributes:
        promote: True when the challenger becomes ``champion``.
        metric: the metric compared (lower is better).
        challenger: the challenger's score.
        reference: the score it had to beat (the champion's, or the baseline's on a first run).
        reference_name: ``champion`` or the baseline's name.
        threshold: the challenger had to score strictly below this.
        reason: one sentence for people (logs, tags, the MLflow UI).
    """

    promote: bool
    metric: str
    challenger: float
    reference: float
    reference_name: str
    threshold: float
    reason: str

    @property
    def outcome(self) -> str:
        """``promoted`` or ``kept``."""
        return "promoted" if self.promote else "kept"

    @property
    def improvement(self) -> float:
        """Relative improvement of the challenger over the reference (negative: worse)."""
        if not (math.isfinite(self.reference) and math.isfinite(self.challenger)):
            return math.nan
        return (self.reference - self.challenger) / self.reference if self.reference else 0.0

    def tags(self) -> dict[str, str]:
        """Decision tags for the retraining run and the challenger's model version."""
        return {f"{TAG_PREFIX}decision": self.outcome, f"{TAG_PREFIX}reason": self.reason,
                f"{TAG_PREFIX}metric": self.metric,
                f"{TAG_PREFIX}reference": self.reference_name,
                f"{TAG_PREFIX}challenger_score": f"{self.challenger:.6g}",
                f"{TAG_PREFIX}reference_score": f"{self.reference:.6g}"}


def decide(
    cfg: RetrainConfig,
    challenger: Mapping[str, float],
    champion: Mapping[str, float] | None,
    baselines: Mapping[str, Mapping[str, float]],
) -> Decision:
    """Apply the gate to scores measured on the same windows.

    Args:
        cfg: metric, margin and first-run baseline.
        challenger: the challenger's scores, metric name -> value.
        champion: the champion's scores, or None when there is no champion yet.
        baselines: baseline name -> scores (must hold ``cfg.baseline``).

    Returns:
        Promote when the challenger scores below ``champion * (1 - margin)``; with no champion
        (or a champion whose score is not finite), when it scores below the baseline. A
        non-finite challenger score is never promoted.
    """
    m, label = cfg.metric, cfg.metric.upper()
    score = float(challenger[m])
    held = math.nan if champion is None else float(champion[m])
    if math.isfinite(held):
        ref, name, threshold = held, "champion", held * (1.0 - cfg.margin)
        verdict = "beats" if score < threshold else "does not beat"
        reason = (f"challenger {label} {score:.4g} {verdict} champion {label} {ref:.4g} by the "
                  f"margin {cfg.margin:.1%} (needs < {threshold:.4g})")
    else:  # no champion yet (or one that cannot be scored): the baseline is the bar
        ref = threshold = float(baselines[cfg.baseline][m])
        name = cfg.baseline
        head = "no champion yet" if champion is None else f"champion {label} is {held}"
        verdict = "beats" if score < threshold else "does not beat"
        reason = f"{head}; challenger {label} {score:.4g} {verdict} {name} {label} {ref:.4g}"
    if not math.isfinite(score):
        reason = f"challenger {label} is {score}; a non-finite score is never promoted"
    return Decision(math.isfinite(score) and score < threshold, m, score, ref, name, threshold,
                    reason)


__all__ = ["TAG_PREFIX", "Decision", "decide"]
