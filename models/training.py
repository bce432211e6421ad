"""Train a forecaster on windows with a custom step: clipping, budget, early stopping.

The step is one ``tf.function`` (forward, loss, gradient, global norm, update) so it can later
run under a ``tf.distribute`` strategy unchanged.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import keras
import numpy as np
import tensorflow as tf

from nearcast.models.config import ModelConfig, TrainConfig
from nearcast.models.epoch_listeners import current_listeners
from nearcast.models.losses import LossFn, make_loss
from nearcast.pipelines.windows import SeriesTable, balanced_stream


@dataclass(frozen=True)
class EpochLog:
    """What one epoch did (losses are in the scaled space).

    ``epochs`` is the number planned, ``elapsed`` the seconds since training began,
    ``budget_left`` the seconds left of ``train.max_seconds`` (None without a budget) and
    ``stop`` why training stops after this epoch (empty when it goes on).
    """

    epoch: int
    train_loss: float
    val_loss: float
    grad_norm: float
    learning_rate: float
    seconds: float
    epochs: int = 0
    elapsed: float = 0.0
    budget_left: float | None = None
    stop: str = ""


def _report(log: EpochLog, verbose: bool) -> None:
    """Hand the epoch to the listeners (:mod:`models.epoch_listeners`), else print it."""
    if not verbose:
        return
    listeners = current_listeners()
    for listener in listeners:
        listener(log)
    if not listeners:
        print(f"epoch {log.epoch:3d}  train {log.train_loss:.4f}  val {log.val_loss:.4f}  "
              f"grad_norm {log.grad_norm:.3f}  {log.seconds:.1f}s", flush=True)


@dataclass
class TrainResult:
    """Outcome of :func:`fit`; ``model`` holds the best weights seen on validation."""

    model: keras.Model
    epochs: list[EpochLog] = field(default_factory=list)
    best_epoch: int = 0
    best_val_loss: float = math.inf
    stop_reason: str = "epochs"
    seconds: float = 0.0

    @property
    def diverged(self) -> bool:
        """True when training hit a NaN/inf loss."""
        return self.stop_reason == "diverged"


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class TrainData:
    """Training windows source and fixed validation windows.

    Attributes:
        table: series the training windows come from.
        val_inputs: ``{"history": (V, L), "mask": (V, L)}``.
        val_target: shape ``(V, H)``.
    """

    table: SeriesTable
    val_inputs: dict[str, np.ndarray]
    val_target: np.ndarray


def _optimizer(cfg: TrainConfig) -> keras.optimizers.Optimizer:
    schedule = keras.optimizers.schedules.ExponentialDecay(
        cfg.learning_rate, decay_steps=cfg.steps_per_epoch, decay_rate=cfg.lr_decay, staircase=True
    )
    return keras.optimizers.Adam(learning_rate=schedule, global_clipnorm=cfg.clipnorm)


StepFn = Callable[[dict[str, tf.Tensor], tf.Tensor], tuple[tf.Tensor, tf.Tensor]]


def _train_step(
    model: keras.Model, loss_fn: LossFn, opt: keras.optimizers.Optimizer, jit_compile: bool
) -> StepFn:
    @tf.function(jit_compile=jit_compile)  # type: ignore[untyped-decorator]
    def step(inputs: dict[str, tf.Tensor], target: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            loss = loss_fn(target, model(inputs, training=True))
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss, tf.linalg.global_norm(grads)

    return step  # type: ignore[no-any-return]


def _val_loss_fn(model: keras.Model, loss_fn: LossFn) -> Callable[[TrainData, int], float]:
    @tf.function(reduce_retracing=True)  # type: ignore[untyped-decorator]
    def batch_loss(inputs: dict[str, tf.Tensor], target: tf.Tensor) -> tf.Tensor:
        return loss_fn(target, model(inputs, training=False))

    def val_loss(data: TrainData, batch: int) -> float:
        total, n = 0.0, len(data.val_target)
        for i in range(0, n, batch):
            inputs = {k: v[i : i + batch] for k, v in data.val_inputs.items()}
            target = data.val_target[i : i + batch]
            total += float(batch_loss(inputs, target)) * len(target)
        return total / max(n, 1)

    return val_loss


def fit(
    model: keras.Model,
    config: ModelConfig,
    cfg: TrainConfig,
    data: TrainData,
    on_epoch: Callable[[EpochLog], None] | None = None,
) -> TrainResult:
    """Train ``model`` on balanced windows of ``data.table``; keep the best validation weights.

    Stops on ``cfg.epochs``, ``cfg.max_seconds`` (wall clock), ``cfg.patience`` epochs without
    validation improvement, or a non-finite loss (``stop_reason == "diverged"``). ``on_epoch``
    gets every epoch; with ``cfg.verbose`` each epoch also goes to the listeners of
    :mod:`models.epoch_listeners` (the CLI's progress display), or is printed when none is set.
    """
    keras.utils.set_random_seed(cfg.seed)
    loss_fn, opt = make_loss(config, cfg.loss), _optimizer(cfg)
    step, val_loss = _train_step(model, loss_fn, opt, cfg.jit_compile), _val_loss_fn(model, loss_fn)
    batches = iter(balanced_stream(data.table, config.window_spec(), cfg.batch_size,
                                   cfg.steps_per_epoch, cfg.seed))
    result, t0 = TrainResult(model=model), time.monotonic()
    best_weights, stale = model.get_weights(), 0
    for epoch in range(1, cfg.epochs + 1):
        losses, norms, e0 = [], [], time.monotonic()
        for _ in range(cfg.steps_per_epoch):
            loss, norm = step(*next(batches))
            losses.append(float(loss))
            norms.append(float(norm))
            if not math.isfinite(losses[-1]) or _out_of_time(cfg, t0):
                break
        if not all(math.isfinite(v) for v in losses):
            result.stop_reason = "diverged"
            break
        val = val_loss(data, cfg.batch_size)
        if val < result.best_val_loss:
            result.best_val_loss, result.best_epoch, stale = val, epoch, 0
            best_weights = model.get_weights()
        else:
            stale += 1
        reason, now = _stop_reason(cfg, t0, stale), time.monotonic()
        log = EpochLog(epoch, float(np.mean(losses)), val, float(np.mean(norms)),
                       float(opt.learning_rate), now - e0, epochs=cfg.epochs, elapsed=now - t0,
                       budget_left=None if cfg.max_seconds is None
                       else max(cfg.max_seconds - (now - t0), 0.0),
                       stop=reason or ("epochs" if epoch == cfg.epochs else ""))
        result.epochs.append(log)
        if on_epoch is not None:
            on_epoch(log)
        _report(log, cfg.verbose)
        if reason:
            result.stop_reason = reason
            break
    model.set_weights(best_weights)
    result.seconds = time.monotonic() - t0
    return result


def _out_of_time(cfg: TrainConfig, t0: float) -> bool:
    return cfg.max_seconds is not None and time.monotonic() - t0 > cfg.max_seconds


def _stop_reason(cfg: TrainConfig, t0: float, stale: int) -> str:
    if stale >= cfg.patience:
        return "early_stopping"
    if _out_of_time(cfg, t0):
        return "time_budget"
    return ""


__all__ = ["EpochLog", "TrainData", "TrainResult", "TrainingDivergedError", "fit"]
