"""Train an ensemble's members together: one compiled step updates every member on one batch.

The members (which may differ in cell, size and ``input_size``, not in horizon or quantiles)
read the same batch of the widest window, each its newest ``input_size`` points as the joined
serving graph does (:func:`models.ensemble.join_members`). One ``tf.function`` (XLA by
``train.jit_compile``) runs every active member's forward pass, loss and gradient and applies
each member's own Adam (clipped by its own global norm, on its own decay schedule), so a step
does what one sequential step per member would, in one call. The verbose progress line of an
epoch (:mod:`models.epoch_listeners`) shows the active members' mean losses.

Each member keeps its seed-initialised weights, its own validation loss, best weights and
patience; a member that runs out of patience stops updating (the step is retraced without it)
and the ensemble stops when every member has, or when the ensemble's budget is spent.
:func:`train_steps` is the same loop without validation for a refit (:mod:`models.refit`):
each member trains for its own number of steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import keras
import numpy as np
import tensorflow as tf

from nearcast.models.config import ModelConfig, TrainConfig
from nearcast.models.ensemble import WINDOWED_INPUTS, ensemble_config
from nearcast.models.losses import make_loss
from nearcast.models.training import EpochLog, TrainData, TrainResult, _optimizer, _report
from nearcast.pipelines.windows import SeriesTable, balanced_stream

OnMemberEpoch = Callable[[int, EpochLog], None]
Batch = tuple[dict[str, tf.Tensor], tf.Tensor]


def member_inputs(inputs: dict[str, tf.Tensor], config: ModelConfig) -> dict[str, tf.Tensor]:
    """What a member reads of a wider window: its newest ``input_size`` points."""
    return {k: v[:, -config.input_size:] if k in WINDOWED_INPUTS else v
            for k, v in inputs.items()}


class JointSteps:
    """The members, their optimizers and the compiled step over the active ones.

    ``active`` lists the members the step updates; changing it retraces the step once.
    """

    def __init__(self, models: list[keras.Model], configs: list[ModelConfig],
                 cfg: TrainConfig) -> None:
        self.models, self.configs, self.cfg = models, configs, cfg
        self.losses = [make_loss(c, cfg.loss) for c in configs]
        self.opts = [_optimizer(cfg) for _ in models]
        self.active = list(range(len(models)))
        self._steps: dict[tuple[int, ...], Callable[..., tuple[tf.Tensor, tf.Tensor]]] = {}
        self.val = self._val_fn()

    def _step_fn(self, active: tuple[int, ...]) -> Callable[..., tuple[tf.Tensor, tf.Tensor]]:
        models = [self.models[i] for i in active]
        configs = [self.configs[i] for i in active]
        losses = [self.losses[i] for i in active]
        opts = [self.opts[i] for i in active]

        @tf.function(jit_compile=self.cfg.jit_compile)  # type: ignore[untyped-decorator]
        def step(inputs: dict[str, tf.Tensor], target: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
            variables = [m.trainable_variables for m in models]
            with tf.GradientTape() as tape:
                each = [fn(target, m(member_inputs(inputs, c), training=True))
                        for m, c, fn in zip(models, configs, losses, strict=True)]
                total = tf.add_n(each)
            grads = tape.gradient(total, [v for vs in variables for v in vs])
            norms, at = [], 0
            for opt, vs in zip(opts, variables, strict=True):
                own = grads[at: at + len(vs)]
                at += len(vs)
                opt.apply_gradients(zip(own, vs, strict=True))
                norms.append(tf.linalg.global_norm(own))
            return tf.stack(each), tf.stack(norms)

        return step  # type: ignore[no-any-return]

    def _val_fn(self) -> Callable[[TrainData], np.ndarray]:
        @tf.function(reduce_retracing=True)  # type: ignore[untyped-decorator]
        def batch_losses(inputs: dict[str, tf.Tensor], target: tf.Tensor) -> tf.Tensor:
            return tf.stack([fn(target, m(member_inputs(inputs, c), training=False))
                             for m, c, fn in zip(self.models, self.configs, self.losses,
                                                 strict=True)])

        def val(data: TrainData) -> np.ndarray:
            total, n, batch = np.zeros(len(self.models)), len(data.val_target), self.cfg.batch_size
            for i in range(0, n, batch):
                inputs = {k: v[i: i + batch] for k, v in data.val_inputs.items()}
                target = data.val_target[i: i + batch]
                total += np.asarray(batch_losses(inputs, target)) * len(target)
            return np.asarray(total / max(n, 1))

        return val

    def run(self, batches: Iterator[Batch], steps: int, deadline: float | None
            ) -> tuple[np.ndarray, np.ndarray]:
        """``steps`` steps of the active members (fewer past ``deadline`` or on a NaN).

        Returns:
            Losses and gradient norms, shape ``(steps run, active members)``.
        """
        key = tuple(self.active)
        if key not in self._steps:
            self._steps[key] = self._step_fn(key)
        step, losses, norms = self._steps[key], [], []
        for _ in range(steps):
            loss, norm = step(*next(batches))
            losses.append(np.asarray(loss))
            norms.append(np.asarray(norm))
            if not np.isfinite(losses[-1]).all() or (
                    deadline is not None and time.monotonic() > deadline):
                break
        return np.stack(losses), np.stack(norms)


def _stream(table: SeriesTable, configs: list[ModelConfig], cfg: TrainConfig
            ) -> Iterator[Batch]:
    keras.utils.set_random_seed(cfg.seed)
    spec = ensemble_config(configs).window_spec()
    return iter(balanced_stream(table, spec, cfg.batch_size, cfg.steps_per_epoch, cfg.seed))


def fit_joint(models: list[keras.Model], configs: list[ModelConfig], cfg: TrainConfig,
              data: TrainData, max_seconds: float | None,
              on_epoch: OnMemberEpoch | None = None) -> list[TrainResult]:
    """Train the members together on ``data`` (windows of the widest member); best weights kept.

    Stops on ``cfg.epochs``, ``max_seconds`` (the whole ensemble's wall clock), every member
    out of patience, or a member's non-finite loss (its ``stop_reason`` is ``diverged``, the
    others' ``stopped``). A member's ``seconds`` is the time until it stopped.
    """
    joint = JointSteps(models, configs, cfg)
    batches = _stream(data.table, configs, cfg)
    results = [TrainResult(model=m) for m in models]
    best = [m.get_weights() for m in models]
    stale, steps_done = [0] * len(models), 0
    t0 = time.monotonic()
    deadline = None if max_seconds is None else t0 + max_seconds
    for epoch in range(1, cfg.epochs + 1):
        e0, active = time.monotonic(), list(joint.active)
        losses, norms = joint.run(batches, cfg.steps_per_epoch, deadline)
        steps_done += len(losses)
        bad = [i for j, i in enumerate(active) if not np.isfinite(losses[:, j]).all()]
        if bad:
            for i in active:
                results[i].stop_reason = "diverged" if i in bad else "stopped"
            break
        vals, now = joint.val(data), time.monotonic()
        late = deadline is not None and now > deadline
        reason = "time_budget" if late else ("epochs" if epoch == cfg.epochs else "")
        for j, i in enumerate(active):
            res = results[i]
            if vals[i] < res.best_val_loss:
                res.best_val_loss, res.best_epoch, res.best_step = float(vals[i]), epoch, \
                    steps_done
                best[i], stale[i] = models[i].get_weights(), 0
            else:
                stale[i] += 1
            stop = "early_stopping" if stale[i] >= cfg.patience else reason
            log = EpochLog(epoch, float(np.mean(losses[:, j])), float(vals[i]),
                           float(np.mean(norms[:, j])), float(joint.opts[i].learning_rate),
                           now - e0, epochs=cfg.epochs, elapsed=now - t0,
                           budget_left=None if deadline is None else max(deadline - now, 0.0),
                           stop=stop)
            res.epochs.append(log)
            if stop:
                res.stop_reason, res.seconds = stop, now - t0
            if on_epoch is not None:
                on_epoch(i, log)
        joint.active = [i for i in active if not results[i].epochs[-1].stop]
        _report(EpochLog(epoch, float(np.mean(losses)), float(np.mean(vals[active])),
                         float(np.mean(norms)), float(joint.opts[active[0]].learning_rate),
                         now - e0, epochs=cfg.epochs, elapsed=now - t0,
                         budget_left=None if deadline is None else max(deadline - now, 0.0),
                         stop=(reason or "early_stopping") if not joint.active else ""),
                cfg.verbose)
        if not joint.active:
            break
    for model, weights, res in zip(models, best, results, strict=True):
        model.set_weights(weights)
        res.seconds = res.seconds or time.monotonic() - t0
    return results


def train_steps(models: list[keras.Model], configs: list[ModelConfig], cfg: TrainConfig,
                table: SeriesTable, steps: list[int]) -> float:
    """Train each member for its own number of ``steps`` on ``table`` (no validation).

    Members train together until the one with the fewest steps is done, then the others go
    on without it. Returns the seconds taken.
    """
    joint = JointSteps(models, configs, cfg)
    batches, done, t0 = _stream(table, configs, cfg), 0, time.monotonic()
    joint.active = [i for i in range(len(models)) if steps[i] > 0]
    while joint.active:
        todo = min(steps[i] for i in joint.active) - done
        while todo > 0:
            losses, _ = joint.run(batches, min(todo, cfg.steps_per_epoch), None)
            if not np.isfinite(losses).all():
                raise FloatingPointError("the refit's loss became NaN or infinite")
            done, todo = done + len(losses), todo - len(losses)
        joint.active = [i for i in joint.active if steps[i] > done]
    return time.monotonic() - t0


__all__ = ["JointSteps", "OnMemberEpoch", "fit_joint", "member_inputs", "train_steps"]
