"""Training speed and memory: nearcast's training pipeline vs a TensorFlow-tutorial-style loop.

Both sides train the SAME network, :func:`models.architectures.build_model` of the
``configs/lstm.yaml`` model (LSTM 128 x 2 layers, 336 points folded into 14 steps of 24,
48-step direct head on a seasonal-naive skip, log-level scaling), with the same optimizer
(Adam, the config's learning rate, decay per epoch and global clipnorm), batch size, loss (MAE
in the scaled space, :func:`models.losses.make_loss`) and validation windows (the newest window
before the 48 held-out points of each series, scored after every epoch), for the same fixed
number of epochs x steps:

* ``nearcast``: :func:`models.training.fit` on :func:`models.fitting.split_for_training` windows:
  series kept once in memory, every batch gathered on the fly (``pipelines.windows``), windows
  drawn so every series weighs the same, custom ``tf.function`` step;
* ``tutorial``: every training window of every series materialised up front as numpy arrays
  (``history (N, 336)``, ``mask (N, 336)``, ``target (N, 48)``, float32: the same windows
  nearcast draws from), then Keras ``model.fit(x, y, shuffle=True)`` on a thin wrapper model
  whose ``compute_loss`` is the same scaled-space loss.

Each side runs in a fresh subprocess. Reported: time to prepare the data, time per epoch (median
of the epochs after the first, which traces the step), samples/s (= steps x batch / that time),
samples per CPU second (the same over the process' CPU time per epoch, all threads: the work
a sample costs, steadier than wall time on a shared machine),
the validation loss after the last epoch (both sides must learn), and memory: the peak resident
set added on top of the process after the data frame is loaded (``VmHWM`` reset there) and the
process' lifetime peak (``ru_maxrss``). Ratios are nearcast / tutorial for speed and
tutorial / nearcast for memory.

Run: ``python -m benchmarks.training_bench [--quick] [--config configs/gru.yaml] [--out PATH]``;
writes ``benchmarks/results/training.json`` (``results/quick/training.json`` with ``--quick``:
40 series, 3 epochs of 10 steps).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from benchmarks.common import (  # noqa: E402
    ROOT,
    machine_info,
    max_rss_bytes,
    print_table,
    reset_peak_rss,
    result_path,
    rss_bytes,
    write_json,
)

CONFIG = ROOT / "configs" / "lstm.yaml"
SIDES = ("nearcast", "tutorial")
FULL = {"n_series": None, "epochs": 5, "steps": 50}
QUICK = {"n_series": 40, "epochs": 3, "steps": 10}
_CHUNK = 16384
MIB = 2**20


# ----------------------------------------------------------------------------- shared setup
def _setup(config_path: Path, plan: dict[str, Any]) -> tuple[Any, Any, Any]:
    """Load the frame and configs; returns ``(frame, model config, train config)``."""
    from nearcast.models.jobconfig import JobConfig
    from nearcast.pipelines.dataset import load_dataset

    job = JobConfig.from_yaml(config_path)
    frame = load_dataset(job.data.model_copy(update={"n_series": plan["n_series"]})).frame
    train_cfg = job.train.model_copy(update={
        "epochs": plan["epochs"], "steps_per_epoch": plan["steps"], "max_seconds": None,
        "patience": plan["epochs"] + 1, "verbose": False})
    return frame, job.model, train_cfg


def _optimizer(cfg: Any) -> Any:
    """The optimizer nearcast's fit builds (Adam, staircase decay per epoch, global clipnorm)."""
    import keras

    schedule = keras.optimizers.schedules.ExponentialDecay(
        cfg.learning_rate, decay_steps=cfg.steps_per_epoch, decay_rate=cfg.lr_decay,
        staircase=True)
    return keras.optimizers.Adam(learning_rate=schedule, global_clipnorm=cfg.clipnorm)


# ----------------------------------------------------------------------------- nearcast side
def run_nearcast(frame: Any, model_cfg: Any, train_cfg: Any) -> dict[str, Any]:
    """Train through ``models.training.fit``; returns timings and the last validation loss."""
    import keras

    from nearcast.models.architectures import build_model
    from nearcast.models.fitting import split_for_training
    from nearcast.models.training import fit

    t0 = time.perf_counter()
    data, _ = split_for_training(frame, model_cfg)
    prepare = time.perf_counter() - t0
    keras.utils.set_random_seed(train_cfg.seed)
    model = build_model(model_cfg)
    cpu = [time.process_time()]
    result = fit(model, model_cfg, train_cfg, data, lambda log: cpu.append(time.process_time()))
    return {"prepare_seconds": prepare, "epoch_seconds": [e.seconds for e in result.epochs],
            "epoch_cpu_seconds": [b - a for a, b in zip(cpu, cpu[1:], strict=False)],
            "val_loss": result.epochs[-1].val_loss, "windows_available": None,
            "train_seconds": result.seconds}


# ----------------------------------------------------------------------------- tutorial side
def materialise(table: Any, spec: Any) -> dict[str, np.ndarray]:
    """Every window of every series as numpy arrays (the tutorial way).

    Returns:
        ``{"history": (N, L), "mask": (N, L), "target": (N, H)}`` float32; padded history
        positions hold 0 and mask 0, as nearcast's windows do (same gather, in chunks).
    """
    from nearcast.pipelines.windows import gather_windows, window_index

    index, _ = window_index(table, spec)
    n = len(index)
    out = {"history": np.empty((n, spec.input_size), np.float32),
           "mask": np.empty((n, spec.input_size), np.float32),
           "target": np.empty((n, spec.horizon), np.float32)}
    for i in range(0, n, _CHUNK):
        inputs, target = gather_windows(table.values, index[i : i + _CHUNK], spec)
        out["history"][i : i + len(target)] = inputs["history"]
        out["mask"][i : i + len(target)] = inputs["mask"]
        out["target"][i : i + len(target)] = target
    return out


def _wrapper(inner: Any, loss_fn: Any) -> Any:
    """A Keras model around ``inner`` whose ``compute_loss`` is nearcast's scaled loss."""
    import keras

    class ScaledLossModel(keras.Model):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.inner = inner

        def call(self, inputs: Any, training: bool = False) -> Any:
            return self.inner(inputs, training=training)

        def compute_loss(self, x: Any = None, y: Any = None, y_pred: Any = None,
                         sample_weight: Any = None, training: bool = True) -> Any:
            return loss_fn(y, y_pred)

    return ScaledLossModel()


def run_tutorial(frame: Any, model_cfg: Any, train_cfg: Any) -> dict[str, Any]:
    """Materialise every window, then ``model.fit``; returns timings and the last val loss."""
    import keras

    from nearcast.models.architectures import build_model
    from nearcast.models.fitting import split_for_training
    from nearcast.models.losses import make_loss

    t0 = time.perf_counter()
    data, _ = split_for_training(frame, model_cfg)  # the training part and validation windows
    arrays = materialise(data.table, model_cfg.window_spec())
    prepare = time.perf_counter() - t0
    keras.utils.set_random_seed(train_cfg.seed)
    model = _wrapper(build_model(model_cfg), make_loss(model_cfg, train_cfg.loss))
    model.compile(optimizer=_optimizer(train_cfg))
    stamps: list[tuple[float, float]] = []
    timer = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: stamps.append((time.perf_counter(),
                                                          time.process_time())),
        on_epoch_end=lambda epoch, logs: stamps.append((time.perf_counter(),
                                                        time.process_time())))
    t0 = time.perf_counter()
    history = model.fit({"history": arrays["history"], "mask": arrays["mask"]},
                        arrays["target"], batch_size=train_cfg.batch_size,
                        epochs=train_cfg.epochs, steps_per_epoch=train_cfg.steps_per_epoch,
                        shuffle=True, validation_data=(data.val_inputs, data.val_target),
                        verbose=0, callbacks=[timer])
    train = time.perf_counter() - t0
    pairs = list(zip(stamps[::2], stamps[1::2], strict=True))
    return {"prepare_seconds": prepare, "epoch_seconds": [b[0] - a[0] for a, b in pairs],
            "epoch_cpu_seconds": [b[1] - a[1] for a, b in pairs],
            "val_loss": float(history.history["val_loss"][-1]),
            "windows_available": len(arrays["target"]),
            "windows_bytes": int(sum(a.nbytes for a in arrays.values())),
            "train_seconds": train}


# ----------------------------------------------------------------------------- worker / driver
def worker(side: str, config_path: Path, quick: bool) -> dict[str, Any]:
    """Measure one side (in a fresh process); memory counted from after the frame is loaded."""
    import tensorflow as tf

    plan = QUICK if quick else FULL
    frame, model_cfg, train_cfg = _setup(config_path, plan)
    base, reset = rss_bytes(), reset_peak_rss()
    run = run_nearcast if side == "nearcast" else run_tutorial
    out = run(frame, model_cfg, train_cfg)
    peak = max_rss_bytes()
    later = out["epoch_seconds"][1:] or out["epoch_seconds"]
    epoch = statistics.median(later)
    cpu = statistics.median(out["epoch_cpu_seconds"][1:] or out["epoch_cpu_seconds"])
    samples = train_cfg.steps_per_epoch * train_cfg.batch_size
    return {"side": side, **out, "epoch_median_seconds": epoch, "samples_per_s": samples / epoch,
            "epoch_median_cpu_seconds": cpu, "samples_per_cpu_s": samples / cpu,
            "samples_per_epoch": samples, "steps_per_epoch": train_cfg.steps_per_epoch,
            "epochs": train_cfg.epochs, "batch_size": train_cfg.batch_size,
            "series": int(frame["unique_id"].nunique()), "rss_before_mib": base / MIB,
            "peak_added_mib": (peak - base) / MIB if reset else None,
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "tensorflow": tf.__version__}


def spawn(side: str, config_path: Path, quick: bool) -> dict[str, Any]:
    """Run one side in a fresh interpreter; its result is the last stdout line (JSON)."""
    cmd = [sys.executable, "-m", "benchmarks.training_bench", "--worker", side,
           "--config", str(config_path)] + (["--quick"] if quick else [])
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(cmd, cwd=ROOT, env=env, check=True, capture_output=True, text=True,
                          timeout=1800)
    return dict(json.loads(proc.stdout.strip().splitlines()[-1]))


def _ratios(rows: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    near, tut = rows["nearcast"], rows["tutorial"]
    added = near["peak_added_mib"], tut["peak_added_mib"]
    return {"samples_per_s_nearcast_over_tutorial": near["samples_per_s"] / tut["samples_per_s"],
            "samples_per_cpu_s_nearcast_over_tutorial":
                near["samples_per_cpu_s"] / tut["samples_per_cpu_s"],
            "epoch_seconds_tutorial_over_nearcast":
                tut["epoch_median_seconds"] / near["epoch_median_seconds"],
            "prepare_seconds_tutorial_over_nearcast":
                tut["prepare_seconds"] / max(near["prepare_seconds"], 1e-9),
            "peak_added_tutorial_over_nearcast":
                added[1] / added[0] if None not in added and added[0] > 0 else None,
            "peak_rss_tutorial_over_nearcast": tut["peak_rss_mib"] / near["peak_rss_mib"]}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run both sides back to back, print the table and write the JSON results."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 series, 3 epochs x 10 steps")
    parser.add_argument("--config", type=Path, default=CONFIG, help="job YAML (model + train)")
    parser.add_argument("--out", type=Path, default=None, help="JSON output path")
    parser.add_argument("--worker", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    config_path = args.config.resolve()
    if args.worker:
        print(json.dumps(worker(args.worker, config_path, args.quick), default=float))
        return {}
    conditions = machine_info()
    rows = {side: spawn(side, config_path, args.quick) for side in SIDES}
    print_table(list(rows.values()), ["side", "prepare_seconds", "epoch_median_seconds",
                                      "samples_per_s", "samples_per_cpu_s", "val_loss",
                                      "peak_added_mib", "peak_rss_mib"],
                title="training: same model, same steps; nearcast pipeline vs numpy + model.fit")
    ratios = _ratios(rows)
    for key, value in ratios.items():
        print(f"{key}: {value:.2f}" if value is not None else f"{key}: n/a")
    plan = QUICK if args.quick else FULL
    path = config_path.relative_to(ROOT) if config_path.is_relative_to(ROOT) else config_path
    result = {"benchmark": "training", "quick": args.quick, "conditions": conditions,
              "config": str(path), "plan": plan, "runs": list(rows.values()), "ratios": ratios}
    write_json(args.out or result_path("training", args.quick), result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
