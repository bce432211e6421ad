"""The champion/challenger gate: retraining settings and the promotion decision.

Pure logic over scores: :func:`decide` takes the challenger's, the champion's and the baselines'
scores on the same most-recent windows and says whether the challenger becomes ``champion``.
Nothing here trains, loads or registers a model, and importing it does not load TensorFlow (the
scheduler and the retraining lock read the ``retrain:`` section with :func:`read_retrain_section`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

Metric = Literal["mase", "smape", "owa", "mae", "rmse"]
Baseline = Literal["naive", "seasonal_naive", "naive2"]

TAG_PREFIX = "nearcast.retrain."
"""Prefix of every tag the gate writes on runs and model versions."""


class LockConfig(BaseModel):
    """How concurrent retrainings of one model are kept apart (see :mod:`service.locks`).

    ``auto`` takes a PostgreSQL advisory lock when the lock URL (default: the tracking URI) is
    ``postgresql…``, else a file lock under ``<NEARCAST_HOME>/locks`` (one machine only). Both
    are released by the operating system or the database when the process dies. The model's
    alias lock (taken around the promotion, and by ``promote``/``rollback``) uses the same
    backend; ``timeout`` is the wait for the retraining lock only (the alias lock waits 30 s).
    """

    model_config = ConfigDict(extra="forbid")

    backend: Literal["auto", "file", "postgres"] = "auto"
    url: str | None = Field(None, description="PostgreSQL URL; default the tracking URI.")
    directory: str | None = Field(None, description="Folder of lock files; default HOME/locks.")
    timeout: float = Field(0.0, ge=0.0, description="Seconds to wait; 0 fails at once.")


class RetrainConfig(BaseModel):
    """The ``retrain:`` section of a job file."""

    model_config = ConfigDict(extra="forbid")

    metric: Metric = "mase"
    margin: float = Field(
        0.0, ge=0.0, lt=1.0,
        description="Relative improvement needed: challenger < champion * (1 - margin).",
    )
    baseline: Baseline = Field(
        "seasonal_naive", description="With no champion yet, the challenger must beat this."
    )
    warm_start: bool = Field(False, description="Start from the champion's weights.")
    schedule: str | None = Field(
        None, description="Cron expression for `nearcast scheduler` (5 fields, or 6 with "
                          "leading seconds)."
    )
    timezone: str = "UTC"
    misfire_grace_seconds: int = Field(
        600, ge=1, description="A run late by more than this (scheduler down) is skipped."
    )
    lock: LockConfig = Field(default_factory=LockConfig)

    @field_validator("schedule")
    @classmethod
    def _cron_fields(cls, value: str | None) -> str | None:
        if value is not None and len(value.split()) not in (5, 6):
            raise ValueError(f"cron expression {value!r} needs 5 fields (minute hour day month "
                             "weekday) or 6 (seconds first)")
        return value


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


def read_retrain_section(path: str | Path) -> tuple[str | None, RetrainConfig]:
    """The model name override and the ``retrain:`` section of a job file, read lightly.

    The rest of the file is validated by :class:`models.jobconfig.JobConfig` when the job runs.

    Raises:
        ValueError: naming the file when it is not YAML, not a mapping or the section is invalid.
    """
    try:
        raw: Any = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    name = raw.get("model_name")
    try:
        cfg = RetrainConfig.model_validate(raw.get("retrain") or {})
    except ValidationError as exc:
        problems = "; ".join(f"retrain.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in exc.errors())
        raise ValueError(f"{path}: invalid 'retrain' section: {problems}") from exc
    return (str(name) if name else None), cfg


__all__ = ["TAG_PREFIX", "Baseline", "Decision", "LockConfig", "Metric", "RetrainConfig",
           "decide", "read_retrain_section"]
