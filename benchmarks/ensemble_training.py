"""Ensemble training: members one after another vs together in one step, and batch sizes.

The members of ``configs/m4-hourly.yaml`` (LSTM/GRU 128x2, input 168/336) train on the bundled
M4 Hourly series for a fixed number of epochs (no budget, no early stopping) in each variant:
``sequential`` (:func:`models.training.fit` per member, as ``ensemble.joint: false``) and
``joint`` (:func:`models.joint.fit_joint`, one XLA step updating every member on one batch of
the widest window) at batch 256 and larger, and (``--nojit``) joint without XLA. Variants run
in one process, in turn (with ``--repeats 2`` in the order A B C D D C B A), on one machine.

Reported per variant: member-samples/s (members x batch x steps over the median epoch time
after the first, compiling, epoch; validation included), the first epoch's seconds (XLA
compile), and the mean over members of the validation loss after each epoch (pinball, scaled
space) with the seconds elapsed, so curves can be compared at equal epochs and equal time.

Run: ``python -m benchmarks.ensemble_training [--quick] [--epochs N] [--batches 256 512]``;
writes ``benchmarks/results/ensemble_training.json``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from benchmarks.common import machine_info, result_path, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "m4-hourly.yaml"


def _members(quick: bool) -> tuple[Any, list[tuple[Any, Any]], Any]:
    from nearcast.models.jobconfig import JobConfig
    from nearcast.pipelines.dataset import load_dataset

    job = JobConfig.from_yaml(CONFIG)
    data_cfg = job.data.model_copy(update={"n_series": 40} if quick else {})
    data = load_dataset(data_cfg)
    config = job.model.on_grid(data.grid)
    assert job.ensemble is not None
    return data.frame, job.ensemble.member_configs(config, job.train), job.train


def run_variant(frame: Any, pairs: list[tuple[Any, Any]], train: Any, mode: str, batch: int,
                epochs: int) -> dict[str, Any]:
    """Train every member for ``epochs`` epochs one way; returns its speed and curve."""
    import keras

    from nearcast.models.architectures import build_model
    from nearcast.models.ensemble import ensemble_config
    from nearcast.models.fitting import split_for_training
    from nearcast.models.joint import fit_joint
    from nearcast.models.training import fit

    cfg = train.model_copy(update={"epochs": epochs, "patience": epochs + 1, "max_seconds": None,
                                   "batch_size": batch, "verbose": False,
                                   "jit_compile": not mode.endswith("-nojit")})
    configs = [c for c, _ in pairs]
    models = []
    for i, (member_cfg, member_train) in enumerate(pairs):
        keras.utils.set_random_seed(member_train.seed)
        models.append(build_model(member_cfg, name=f"member_{i}"))
    t0 = time.perf_counter()
    if mode.startswith("joint"):
        data, _ = split_for_training(frame, ensemble_config(configs), None)
        results = fit_joint(models, configs, cfg, data, None)
        epoch_seconds = [log.seconds for log in results[0].epochs]
        steady = float(np.median(epoch_seconds[1:]))
        first = epoch_seconds[0]
    else:
        results, steady, first = [], 0.0, 0.0
        for model, (member_cfg, member_train) in zip(models, pairs, strict=True):
            data, _ = split_for_training(frame, member_cfg, None)
            res = fit(model, member_cfg, cfg.model_copy(update={"seed": member_train.seed}), data)
            results.append(res)
            steady += float(np.median([log.seconds for log in res.epochs[1:]]))
            first += res.epochs[0].seconds
    wall = time.perf_counter() - t0
    samples = len(models) * batch * cfg.steps_per_epoch
    val = np.mean([[log.val_loss for log in r.epochs] for r in results], axis=0)
    if mode.startswith("joint"):
        elapsed = [log.elapsed for log in results[0].epochs]
    else:  # members in turn: member m's epoch e ends after members < m and its own e epochs
        per_epoch = np.mean([[log.seconds for log in r.epochs] for r in results], axis=0)
        elapsed = list(np.cumsum(per_epoch * len(results)))
    print(f"{mode} b{batch}: {samples / steady:,.0f} member-samples/s, val {val[-1]:.4f} "
          f"after {epochs} epochs ({wall:.0f} s)", flush=True)
    return {"mode": mode, "batch": batch, "members": len(models), "epochs": epochs,
            "steps_per_epoch": cfg.steps_per_epoch, "samples_per_s": samples / steady,
            "steady_epoch_seconds": steady, "first_epoch_seconds": first, "wall_seconds": wall,
            "val_loss": [float(v) for v in val], "elapsed": [float(e) for e in elapsed],
            "best_val_loss": float(np.min(val))}


def print_table(runs: list[dict[str, Any]]) -> None:
    """Speed and curve per variant."""
    print(f"\n{'variant':18s}{'samples/s':>11s}{'epoch s':>9s}{'first s':>9s}"
          f"{'val@1':>9s}{'val@last':>10s}{'elapsed':>9s}")
    for r in runs:
        name = f"{r['mode']} b{r['batch']}"
        print(f"{name:18s}{r['samples_per_s']:11,.0f}{r['steady_epoch_seconds']:9.2f}"
              f"{r['first_epoch_seconds']:9.1f}{r['val_loss'][0]:9.4f}{r['val_loss'][-1]:10.4f}"
              f"{r['elapsed'][-1]:9.0f}")
    base = next((r for r in runs if r["mode"] == "sequential" and r["batch"] == 256), None)
    if base is not None:
        for r in runs:
            print(f"  {r['mode']} b{r['batch']} / sequential b256 samples/s: "
                  f"{r['samples_per_s'] / base['samples_per_s']:.2f}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run the variants, print the table, write the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 series, 3 epochs")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--batches", type=int, nargs="+", default=[256, 512, 1024],
                        help="joint batch sizes (sequential runs at 256)")
    parser.add_argument("--nojit", action="store_true",
                        help="also joint at batch 256 without XLA")
    parser.add_argument("--repeats", type=int, default=1, choices=(1, 2))
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    epochs = 3 if args.quick else args.epochs
    frame, pairs, train = _members(args.quick)
    variants = [("sequential", 256)] + [("joint", b) for b in args.batches]
    variants += [("joint-nojit", 256)] if args.nojit else []
    order = variants if args.repeats == 1 else variants + variants[::-1]
    load_start = os.getloadavg()
    runs = [run_variant(frame, pairs, train, mode, batch, epochs) for mode, batch in order]
    print_table(runs)
    result = {"benchmark": "ensemble_training", "machine": machine_info(),
              "load_average": {"start": load_start, "end": os.getloadavg()},
              "config": str(CONFIG.relative_to(ROOT)), "runs": runs}
    out = args.out or result_path("ensemble_training", args.quick)
    write_json(out, result)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
