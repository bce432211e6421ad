"""Admission before the expensive work: few forecast requests in parsing at once.

At most ``NEARCAST_MAX_CONCURRENT_REQUESTS`` are being received, parsed or prepared. Each
forecast request gets a :class:`Ticket` when it arrives (:mod:`service.middleware`). When every
slot is taken it is answered at once with a JSON 503 and ``Retry-After``, its body unread. A
large or streamed body takes its slot on arrival and holds it while it is received; a small one
(it arrives with its headers) takes it just before parsing. Either way the slot is held through
parsing and preparation and given back before the model call, which the batcher's queue bounds
separately. Everything runs on the event loop, so plain counters are enough.
"""

from __future__ import annotations

from contextvars import ContextVar

from nearcast.service.errors import ApiError


class Admission:
    """A counting gate of ``limit`` slots; ``retry_after`` goes into its 503."""

    def __init__(self, limit: int, retry_after: int = 1) -> None:
        self.limit, self.retry_after, self.active = limit, retry_after, 0

    @property
    def full(self) -> bool:
        """True when every slot is taken."""
        return self.active >= self.limit

    def busy(self) -> ApiError:
        """The 503 of a full gate."""
        return ApiError(503, "server", f"busy: {self.limit} forecast requests are being "
                        "received or prepared (NEARCAST_MAX_CONCURRENT_REQUESTS); retry later",
                        headers={"Retry-After": str(self.retry_after)})


class Ticket:
    """One request's claim on a gate: at most one slot, given back once."""

    __slots__ = ("gate", "holding")

    def __init__(self, gate: Admission) -> None:
        self.gate, self.holding = gate, False

    def take(self) -> None:
        """Take a slot (no-op when held); a 503 :class:`ApiError` when the gate is full."""
        if self.holding:
            return
        if self.gate.full:
            raise self.gate.busy()
        self.gate.active += 1
        self.holding = True

    def release(self) -> None:
        """Give the slot back, if held."""
        if self.holding:
            self.gate.active -= 1
            self.holding = False


#: The current request's ticket (set by the middleware for ``POST /v1/forecast``).
current_ticket: ContextVar[Ticket | None] = ContextVar("nearcast_admission", default=None)


def take_current() -> None:
    """Before parsing: take the current request's slot (503 when the gate is full)."""
    ticket = current_ticket.get()
    if ticket is not None:
        ticket.take()


def release_current() -> None:
    """After preparing: give the current request's slot back."""
    ticket = current_ticket.get()
    if ticket is not None:
        ticket.release()


__all__ = ["Admission", "Ticket", "current_ticket", "release_current", "take_current"]
