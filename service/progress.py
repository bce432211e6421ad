"""Training progress on the terminal: epoch, train/validation loss, time left in the budget.

``nearcast train``, ``retrain`` and ``quickstart`` run the job inside
:func:`training_progress`, which listens to every epoch
(:func:`models.epoch_listeners.epoch_listener`; TensorFlow is not loaded by entering it). On a
terminal one live line is redrawn in place; otherwise (a log file, a pipe, a scheduler) each
epoch is one plain line with no carriage return. Losses are in the scaled space the model trains in.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TextIO

from nearcast.models.epoch_listeners import epoch_listener

if TYPE_CHECKING:  # importing the training loop loads TensorFlow
    from nearcast.models.training import EpochLog

BAR_WIDTH = 20


_STOPS = {"early_stopping": "stopped early: the validation loss stopped improving",
          "time_budget": "stopped: the time budget is used up"}


def describe_epoch(log: EpochLog) -> str:
    """``epoch 2/5  train 0.0537  val 0.0490  12s elapsed, 48s of the budget left``."""
    of = f"/{log.epochs}" if log.epochs else ""
    left = "" if log.budget_left is None else f", {log.budget_left:.0f}s of the budget left"
    stop = f"  ({_STOPS[log.stop]})" if log.stop in _STOPS else ""
    return (f"epoch {log.epoch}{of}  train {log.train_loss:.4f}  val {log.val_loss:.4f}  "
            f"{log.elapsed:.0f}s elapsed{left}{stop}")


class EpochProgress:
    """Writes each epoch to ``stream``: a live bar on a terminal, plain lines elsewhere.

    Args:
        stream: where to write (stderr by default).
        live: redraw one line in place (default: when ``stream`` is a terminal).
    """

    def __init__(self, stream: TextIO | None = None, live: bool | None = None) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.live = self.stream.isatty() if live is None else live
        self._open = False  # a live line is drawn and not yet ended

    def __call__(self, log: EpochLog) -> None:
        """Show one epoch."""
        if not self.live:
            self.stream.write(describe_epoch(log) + "\n")
        else:
            done = log.epoch / log.epochs if log.epochs else 0.0
            filled = round(BAR_WIDTH * min(done, 1.0))
            bar = "[" + "#" * filled + "." * (BAR_WIDTH - filled) + "] "
            self.stream.write("\r" + bar + describe_epoch(log) + "\x1b[K")
            self._open = True
            if log.stop:
                self.close()
        self.stream.flush()

    def close(self) -> None:
        """End a live line that is still open (training stopped without a last epoch)."""
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False


@contextmanager
def training_progress(stream: TextIO | None = None) -> Iterator[EpochProgress]:
    """Show the progress of every verbose training run inside the block (see the module)."""
    progress = EpochProgress(stream)
    try:
        with epoch_listener(progress):
            yield progress
    finally:
        progress.close()


__all__ = ["EpochProgress", "describe_epoch", "training_progress"]
