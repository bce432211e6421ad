"""Train a forecaster on windows with a custom step: clipping, budget, early stopping.

The step is one ``tf.function`` (forward, loss, gradient, global norm, update). Under
:func:`models.distributed.data_parallel` the same loop runs on every worker of a cluster: each
worker feeds ``batch_size / N`` windows of its own series, the step sums the gradients across
workers before clipping them, and the epoch's validation loss and time budget are agreed on by
all workers, so they take the same steps and stop together.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import keras
import numpy as np
import tensorflow as tf

from nearcast.models import distributed
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
    """Outcome of :func:`fit`; ``model`` holds the best weights seen on validation.

    ``best_step`` is the number of steps taken when those weights were seen (what a refit on
    all the data repeats, :mod:`models.refit`).
    """

    model: keras.Model
    epochs: list[EpochLog] = field(default_factory=list)
    best_epoch: int = 0
    best_step: int = 0
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


def _optimizer(cfg: TrainConfig, pre_reduced: bool = False) -> keras.optimizers.Optimizer:
    """Adam on the decay schedule.

    ``pre_reduced``: for gradients the step has summed and clipped across workers already.
    """
    schedule = keras.optimizers.schedules.ExponentialDecay(
        cfg.learning_rate, decay_steps=cfg.steps_per_epoch, decay_rate=cfg.lr_decay, staircase=True
    )
    if pre_reduced:
        return _PreReducedAdam(learning_rate=schedule, name="adam")
    return keras.optimizers.Adam(learning_rate=schedule, global_clipnorm=cfg.clipnorm)


class _PreReducedAdam(keras.optimizers.Adam):  # type: ignore[misc]
    """Adam that applies the gradients it is given on each worker as they are.

    Keras sums gradients across workers inside ``apply_gradients`` and clips them before that
    sum, by each worker's own norm. The data-parallel step instead sums them first and clips by
    the global norm (as one process would), so the second sum is skipped here.
    """

    def _all_reduce_sum_gradients(self, grads_and_vars):  # type: ignore[no-untyped-def]
        return list(grads_and_vars)


T = TypeVar("T")
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


def _data_parallel_step(
    model: keras.Model, loss_fn: LossFn, opt: keras.optimizers.Optimizer,
    dp: distributed.DataParallel, clipnorm: float | None
) -> StepFn:
    """The step on every worker of a data-parallel fit.

    Local gradients of ``loss / N``, summed over the workers (the mean over the global batch),
    clipped by their global norm, applied. Returns the global batch's loss and the gradients'
    global norm, the same on every worker.
    """
    strategy, n = dp.strategy, float(dp.cluster.count)

    def replica_step(inputs: dict[str, tf.Tensor], target: tf.Tensor
                     ) -> tuple[tf.Tensor, tf.Tensor]:
        with tf.GradientTape() as tape:
            loss = loss_fn(target, model(inputs, training=True)) / n
        grads = tape.gradient(loss, model.trainable_variables)
        grads = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, grads)
        norm = tf.linalg.global_norm(grads)
        if clipnorm is not None:
            grads, _ = tf.clip_by_global_norm(grads, clipnorm, use_norm=norm)
        opt.apply_gradients(zip(grads, model.trainable_variables, strict=True))
        return loss, norm

    @tf.function  # type: ignore[untyped-decorator]
    def step(inputs: dict[str, tf.Tensor], target: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        loss, norm = strategy.run(replica_step, args=(inputs, target))
        return (strategy.reduce(tf.distribute.ReduceOp.SUM, loss, axis=None),
                strategy.reduce(tf.distribute.ReduceOp.MEAN, norm, axis=None))

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
        dp = distributed.current()
        if dp is not None:  # the mean over every worker's validation windows
            total, count = (float(v) for v in _collective(dp.all_sum, [total, float(n)]))
            return total / max(count, 1.0)
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
    loss_fn, dp = make_loss(config, cfg.loss), distributed.current()
    if dp is None:
        opt = _optimizer(cfg)
        step = _train_step(model, loss_fn, opt, cfg.jit_compile)
        batch, stream_seed = cfg.batch_size, cfg.seed
    else:  # the model was built in the strategy's scope (models.fitting)
        with dp.strategy.scope():
            opt = _optimizer(cfg, pre_reduced=True)
        step = _data_parallel_step(model, loss_fn, opt, dp, cfg.clipnorm)
        batch, stream_seed = dp.cluster.local_batch(cfg.batch_size), cfg.seed + dp.cluster.rank
    val_loss = _val_loss_fn(model, loss_fn)
    batches = iter(balanced_stream(data.table, config.window_spec(), batch,
                                   cfg.steps_per_epoch, stream_seed))
    result, t0 = TrainResult(model=model), time.monotonic()
    best_weights, stale, steps_done = model.get_weights(), 0, 0
    for epoch in range(1, cfg.epochs + 1):
        losses, norms, e0 = [], [], time.monotonic()
        for _ in range(cfg.steps_per_epoch):
            loss, norm = _collective(step, *next(batches)) if dp else step(*next(batches))
            losses.append(float(loss))
            norms.append(float(norm))
            # Workers agree on the time budget at the epoch's end only (_stop_reason).
            if not math.isfinite(losses[-1]) or (dp is None and _out_of_time(cfg, t0)):
                break
        steps_done += len(losses)
        if not all(math.isfinite(v) for v in losses):
            result.stop_reason = "diverged"
            break
        val = val_loss(data, cfg.batch_size)
        if val < result.best_val_loss:
            result.best_val_loss, result.best_epoch, stale = val, epoch, 0
            result.best_step = steps_done
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
    dp = distributed.current()
    late = _out_of_time(cfg, t0)
    if dp is not None and cfg.max_seconds is not None:  # any worker out of time stops all
        late = bool(_collective(dp.all_sum, [float(late)])[0] > 0)
    return "time_budget" if late else ""


def _collective(fn: Callable[..., T], *args: object) -> T:
    """Run a step that talks to the other workers.

    Raises:
        WorkerLostError: another worker stopped or did not answer.
    """
    try:
        return fn(*args)
    except (tf.errors.UnavailableError, tf.errors.DeadlineExceededError,
            tf.errors.CancelledError, tf.errors.AbortedError, tf.errors.InternalError,
            tf.errors.UnknownError) as exc:
        first = next((line for line in str(exc.message).splitlines() if line.strip()), "")
        raise distributed.WorkerLostError(
            f"another training worker stopped or did not answer: {first.strip()[:300]}"
        ) from None


__all__ = ["EpochLog", "TrainData", "TrainResult", "TrainingDivergedError", "fit"]
