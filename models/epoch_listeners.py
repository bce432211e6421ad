"""Who hears about each training epoch: listeners set by a caller around a training job.

A caller (the command line's progress display) follows training that runs deep inside a job
without threading a callback through it: every verbose :func:`models.training.fit` inside an
:func:`epoch_listener` block reports each :class:`models.training.EpochLog` to the listener.
This module does not import TensorFlow, so a command can set a listener before it loads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nearcast.models.training import EpochLog

EpochListener = Callable[["EpochLog"], None]
_listeners: ContextVar[tuple[EpochListener, ...]] = ContextVar("epoch_listeners", default=())


@contextmanager
def epoch_listener(listener: EpochListener) -> Iterator[None]:
    """Within the block, every verbose training run reports each epoch to ``listener``."""
    token = _listeners.set((*_listeners.get(), listener))
    try:
        yield
    finally:
        _listeners.reset(token)


def current_listeners() -> tuple[EpochListener, ...]:
    """The listeners of the blocks the caller is in (innermost last)."""
    return _listeners.get()


__all__ = ["EpochListener", "current_listeners", "epoch_listener"]
