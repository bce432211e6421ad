"""Configuration of a forecaster, its training and its retraining, validated in one place.

Each class is the schema of one section of a job file (:class:`models.jobconfig.JobConfig`).
"""

from __future__ import annotations

from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from nearcast.pipelines.calendar import CalendarRule
from nearcast.pipelines.grid import GridRule, same_freq
from nearcast.pipelines.scaling_rules import ScalingRule
from nearcast.pipelines.window_runs import WindowSpec

Cell = Literal["lstm", "gru", "simple_rnn"]
Head = Literal["direct", "autoregressive"]
Loss = Literal["mae", "mse", "pinball"]
Combiner = Literal["median", "mean"]
"""How an ensemble's member forecasts become one."""
Metric = Literal["smape", "mase", "owa", "mae", "rmse"]
"""The accuracy metrics every method is scored on (lower is better)."""
METRICS: tuple[Metric, ...] = get_args(Metric)
"""The metric names, in the order score tables show them."""
Baseline = Literal["naive", "seasonal_naive", "naive2"]


class ModelConfig(BaseModel):
    """What the network is and how it sees the data.

    ``freq`` is the frequency of the data's grid (:class:`pipelines.grid.GridRule`): a job
    gives it once, as ``data.freq``, and :meth:`on_grid` sets it here. ``fold`` consecutive
    points become one timestep ("shorten the sequence"); ``scaling`` is a rule from
    :mod:`pipelines.scaling`; with ``seasonal_skip`` the network learns a correction added to
    seasonal naive in the scaled space.
    """

    model_config = ConfigDict(extra="forbid")

    cell: Cell = "lstm"
    units: int = Field(64, ge=1, le=4096)
    layers: int = Field(1, ge=1, le=8)
    bidirectional: bool = False
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    head: Head = "direct"
    freq: str = "h"
    season: int = Field(24, ge=1)
    input_size: int = Field(168, ge=1)
    horizon: int = Field(48, ge=1)
    fold: int = Field(24, ge=1)
    min_history: int | None = Field(None, ge=1)
    scaling: ScalingRule = "log_level"
    seasonal_skip: bool = True
    quantiles: list[float] = Field(default_factory=list)
    calendar: CalendarRule | None = Field(
        None, description="Calendar features computed from the timestamps (off: none, as for "
        "data with synthetic timestamps)."
    )
    embedding: int = Field(0, ge=0, le=256, description="Size of the learned series-ID "
                           "embedding; 0: none.")

    @model_validator(mode="after")
    def _check(self) -> ModelConfig:
        if self.input_size % self.fold:
            raise ValueError(f"input_size {self.input_size} must be a multiple of fold {self.fold}")
        if self.season > self.shortest_history:
            raise ValueError(
                f"season {self.season} exceeds the shortest history {self.shortest_history}"
            )
        if self.quantiles:
            qs = sorted(set(self.quantiles))
            if any(not 0.0 < q < 1.0 for q in qs):
                raise ValueError(f"quantiles must lie in (0, 1), got {self.quantiles}")
            self.quantiles = sorted(set(qs) | {0.5})
        self.window_spec()  # raises on inconsistent geometry
        return self

    def on_grid(self, grid: GridRule) -> ModelConfig:
        """This config at the frequency of the grid its data is on.

        Raises:
            ValueError: ``freq`` was given here, as another frequency than the grid's (the
                message names both keys), or the grid has no frequency.
        """
        if grid.freq is None:
            raise ValueError("the data's grid has no frequency (data.freq); read the data first")
        if "freq" in self.model_fields_set and not same_freq(self.freq, grid.freq):
            raise ValueError(f"model.freq {self.freq!r} differs from data.freq {grid.freq!r}: "
                             "give the grid frequency once, as data.freq")
        return self.model_copy(update={"freq": grid.freq})

    @property
    def shortest_history(self) -> int:
        """Shortest real history the model accepts."""
        return self.input_size if self.min_history is None else self.min_history

    @property
    def output_names(self) -> list[str]:
        """Names of the last output axis: ``["point"]`` or one ``qX`` per quantile."""
        return [f"q{q:g}" for q in self.quantiles] if self.quantiles else ["point"]

    @property
    def point_index(self) -> int:
        """Position of the point forecast (the median for quantile models)."""
        return self.quantiles.index(0.5) if self.quantiles else 0

    def window_spec(self, stride: int = 1) -> WindowSpec:
        """Window geometry implied by this config."""
        return WindowSpec(
            input_size=self.input_size,
            horizon=self.horizon,
            stride=stride,
            fold=self.fold,
            min_history=self.shortest_history,
        )


class TrainConfig(BaseModel):
    """How a forecaster is trained."""

    model_config = ConfigDict(extra="forbid")

    loss: Loss = "mae"
    learning_rate: float = Field(1e-3, gt=0.0)
    lr_decay: float = Field(1.0, gt=0.0, le=1.0)
    clipnorm: float | None = Field(1.0, gt=0.0)
    batch_size: int = Field(256, ge=1)
    epochs: int = Field(20, ge=1)
    steps_per_epoch: int = Field(100, ge=1)
    max_seconds: float | None = Field(None, gt=0.0)
    patience: int = Field(5, ge=1)
    val_windows: int = Field(
        1, ge=1, le=1000,
        description="Newest windows per series, one horizon apart, that early stopping scores "
        "(before the holdout). 1 suits many series; a single series (an EPF market) needs "
        "more for a steady validation loss.",
    )
    seed: int = 0
    jit_compile: bool = Field(
        True,
        description="Compile the training step with XLA. Measured on 2 shared cores: the "
        "joint 4-member step 1.14x the samples/s without XLA (benchmarks/ensemble_training.py), "
        "a single LSTM no faster (benchmarks/training_bench.py); costs about 20 s of compiling "
        "for the ensemble and about 200 MiB more peak memory.",
    )
    refit: bool = Field(
        False,
        description="After selection on the holdout, retrain from the same seeds on all the "
        "data (holdout included) for the selected number of steps and serve that model; the "
        "run's holdout scores are those of the selected model (models.refit).",
    )
    verbose: bool = True


class EnsembleConfig(BaseModel):
    """N members trained by one run and served as one model.

    Each member is the job's ``model`` config with the member's overrides (any
    :class:`ModelConfig` field) and its own ``seed`` (default: the train seed + its index).
    With ``joint`` (the default) the members train together, one step updating all
    (:mod:`models.joint`), within :meth:`budget` for the whole ensemble: ``max_seconds``, or
    ``train.max_seconds`` x members (the total an old config's per-member budget adds up to),
    the smaller when both are set. Sequentially (``joint: false``, and always under
    data-parallel training) each member has an equal share of it.
    """

    model_config = ConfigDict(extra="forbid")

    members: list[dict[str, Any]] = Field(..., min_length=1)
    combine: Combiner = "median"
    interval_coverage: float | None = Field(
        0.8, gt=0.0, lt=1.0,
        description="Widen quantile intervals on validation windows to this coverage.",
    )
    interval_windows: int = Field(
        8, ge=1, le=1000,
        description="Newest windows per series, one horizon apart, before the holdout, on "
        "which the widening factor is fitted (the newest is early stopping's; more windows "
        "steady the factor: one window of each M4 Hourly series missed 80% by 3 points on "
        "the holdout, eight by under 1).",
    )
    joint: bool = Field(True, description="Train the members together in one step.")
    max_seconds: float | None = Field(
        None, gt=0.0, description="Training budget of the whole ensemble (wall clock); "
        "default train.max_seconds x members.")

    def budget(self, train: TrainConfig) -> float | None:
        """Seconds the whole ensemble may train (None: no budget).

        The smaller of ``max_seconds`` and ``train.max_seconds`` x members, of those set.
        """
        given = [b for b in (self.max_seconds, None if train.max_seconds is None
                             else train.max_seconds * len(self.members)) if b is not None]
        return min(given) if given else None

    def member_configs(
        self, model: ModelConfig, train: TrainConfig
    ) -> list[tuple[ModelConfig, TrainConfig]]:
        """Resolved (model, train) config per member.

        Raises:
            ValueError: naming the member and the unknown field.
        """
        total = self.budget(train)  # sequentially, each member has its share
        share = None if total is None else total / len(self.members)
        out = []
        for i, overrides in enumerate(self.members):
            fields = dict(overrides)
            seed = int(fields.pop("seed", train.seed + i))
            if "freq" in fields:
                raise ValueError(f"ensemble.members[{i}].freq: every member is on the data's "
                                 "grid; give the frequency once, as data.freq")
            unknown = sorted(set(fields) - set(ModelConfig.model_fields))
            if unknown:
                raise ValueError(f"ensemble.members[{i}]: unknown model fields {unknown}")
            member = ModelConfig.model_validate(model.model_dump() | fields)
            out.append((member, train.model_copy(update={"seed": seed, "max_seconds": share})))
        return out


class LockConfig(BaseModel):
    """How concurrent retrainings of one model are kept apart (see :mod:`service.retraining.lock`).

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


class Scheduled(BaseModel):
    """A section run by ``nearcast scheduler`` on a cron schedule (``retrain:``, ``monitor:``)."""

    model_config = ConfigDict(extra="forbid")

    schedule: str | None = Field(
        None, description="Cron expression for `nearcast scheduler` (5 fields, or 6 with "
                          "leading seconds)."
    )
    timezone: str = "UTC"
    misfire_grace_seconds: int = Field(
        600, ge=1, description="A run late by more than this (scheduler down) is skipped."
    )

    @field_validator("schedule")
    @classmethod
    def _cron_fields(cls, value: str | None) -> str | None:
        if value is not None and len(value.split()) not in (5, 6):
            raise ValueError(f"cron expression {value!r} needs 5 fields (minute hour day month "
                             "weekday) or 6 (seconds first)")
        return value


class RetrainConfig(Scheduled):
    """The ``retrain:`` section: the champion/challenger gate, the schedule and the lock.

    The gate itself is :func:`service.retraining.gate.decide`.
    """

    metric: Metric = "mase"
    margin: float = Field(
        0.0, ge=0.0, lt=1.0,
        description="Relative improvement needed: challenger < champion * (1 - margin).",
    )
    baseline: Baseline = Field(
        "seasonal_naive", description="With no champion yet, the challenger must beat this."
    )
    warm_start: bool = Field(False, description="Start from the champion's weights.")
    lock: LockConfig = Field(default_factory=LockConfig)


LiveMetric = Literal["mase", "smape", "mae"]
"""The metrics ``nearcast monitor`` compares with the holdout."""


class MonitorConfig(Scheduled):
    """The ``monitor:`` section: live accuracy against the holdout, alarms and the action.

    A day (UTC day of the forecast targets) is degraded when the live ``metric`` exceeds
    ``max_ratio`` times the version's holdout score, or the coverage of the central
    ``interval`` leaves ``coverage_band``; ``days`` degraded days in a row raise an alarm.
    See :mod:`service.monitor_job`.
    """

    metric: LiveMetric = "mase"
    max_ratio: float = Field(1.5, gt=0.0, description="Live metric / holdout metric beyond "
                             "which a day is degraded.")
    interval: float = Field(0.8, gt=0.0, lt=1.0, description="Central interval checked: "
                            "quantiles (1 - interval)/2 and (1 + interval)/2.")
    coverage_band: tuple[float, float] = Field(
        (0.7, 0.9), description="Coverage outside [low, high] makes a day degraded.")
    days: int = Field(1, ge=1, le=365, description="Degraded days in a row before an alarm.")
    lookback_days: int = Field(28, ge=1, le=3650, description="Days scored, counted back "
                               "from the newest day with actuals.")
    actuals_from_data: bool = Field(False, description="Read actuals from the job's data: "
                                    "source and store them first.")
    retrain_on_alarm: bool = Field(False, description="Start `nearcast retrain` with this job "
                                   "file on an alarm (the gate still decides).")
    worst_series: int = Field(6, ge=1, le=50, description="Series in the worst-series plot.")

    @field_validator("coverage_band")
    @classmethod
    def _band(cls, value: tuple[float, float]) -> tuple[float, float]:
        low, high = value
        if not 0.0 <= low <= high <= 1.0:
            raise ValueError(f"needs 0 <= low <= high <= 1, got [{low}, {high}]")
        return value

    @model_validator(mode="after")
    def _lookback_holds_the_days(self) -> MonitorConfig:
        if self.lookback_days < self.days:
            raise ValueError(f"lookback_days {self.lookback_days} is shorter than days "
                             f"{self.days}: an alarm could never be raised")
        return self


__all__ = ["METRICS", "Baseline", "Cell", "Combiner", "EnsembleConfig", "Head", "LiveMetric",
           "LockConfig", "Loss", "Metric", "ModelConfig", "MonitorConfig", "RetrainConfig",
           "Scheduled", "TrainConfig"]
