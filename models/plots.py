"""PNG figures a reviewer looks at in the MLflow run (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from nearcast.models.backtest import Backtest  # noqa: E402
from nearcast.models.evaluation import Evaluation  # noqa: E402
from nearcast.models.training import EpochLog  # noqa: E402


def loss_curves(epochs: list[EpochLog], path: Path) -> Path:
    """Train and validation loss per epoch."""
    fig, ax = plt.subplots(figsize=(7, 4))
    x = [e.epoch for e in epochs]
    ax.plot(x, [e.train_loss for e in epochs], label="train")
    ax.plot(x, [e.val_loss for e in epochs], label="validation")
    ax.set(xlabel="epoch", ylabel="loss (scaled space)", title="Loss curves")
    ax.legend()
    return _save(fig, path)


def error_by_step(ev: Evaluation, path: Path) -> Path:
    """Model sMAPE and MASE per horizon step."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, name in zip(axes, ("smape", "mase"), strict=True):
        values = ev.by_step[name]
        ax.plot(np.arange(1, len(values) + 1), values, marker=".")
        ax.set(xlabel="horizon step", ylabel=name, title=f"{name} by horizon step")
    return _save(fig, path)


def forecasts_vs_actual(ev: Evaluation, histories: list[np.ndarray], path: Path,
                        n: int = 6, context: int = 168) -> Path:
    """Forecasts of the model and seasonal naive against actuals for a sample of series."""
    n = min(n, len(ev.ids))
    fig, axes = plt.subplots(n, 1, figsize=(10, 2.4 * n), squeeze=False)
    for row, i in enumerate(np.linspace(0, len(ev.ids) - 1, n).astype(int)):
        ax, hist = axes[row][0], histories[i][-context:]
        h = ev.actual.shape[1]
        ax.plot(np.arange(-len(hist), 0), hist, color="grey", lw=0.8, label="history")
        ax.plot(np.arange(h), ev.actual[i], color="black", label="actual")
        ax.plot(np.arange(h), ev.forecasts["model"][i], label="model")
        ax.plot(np.arange(h), ev.forecasts["seasonal_naive"][i], ls="--", label="seasonal naive")
        ax.set_title(f"series {ev.ids[i]}", fontsize=9)
    axes[0][0].legend(fontsize=8, ncol=4)
    return _save(fig, path)


def backtest_by_fold(bt: Backtest, path: Path) -> Path:
    """Model and baseline sMAPE and MASE per backtest fold (oldest first)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    folds = np.arange(1, len(bt.folds) + 1)
    for ax, name in zip(axes, ("smape", "mase"), strict=True):
        for method in bt.methods:
            ax.plot(folds, [ev.scores[method][name] for ev in bt.folds], marker="o",
                    label=method, lw=2.0 if method == "model" else 1.0)
        ax.set(xlabel="fold (oldest first)", ylabel=name, title=f"{name} by fold", xticks=folds)
    axes[0].legend(fontsize=8)
    return _save(fig, path)


def _save(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


__all__ = ["backtest_by_fold", "error_by_step", "forecasts_vs_actual", "loss_curves"]
