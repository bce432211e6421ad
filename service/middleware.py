"""Pure ASGI middleware (no per-request task or buffering): request metrics and the body gate.

The gate runs before a body is read: the body limit, then for forecasts the admission bound
(:mod:`service.admission`).
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nearcast.service.admission import Admission, Ticket, current_ticket
from nearcast.service.asgi import header, send_json
from nearcast.service.errors import ApiError
from nearcast.service.metrics import Metrics
from nearcast.service.settings import ApiSettings
from nearcast.service.shape import PRECHECK_BYTES

FORECAST_PATH = "/v1/forecast"


class MetricsMiddleware:
    """Counts requests and observes their latency by route template, method and status."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app, then record the route, method, status and duration."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client gets if the app raises before answering

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            labels = (route, str(scope.get("method", "")), str(status))
            self.metrics.requests.labels(*labels).inc()
            self.metrics.latency.labels(*labels).observe(time.perf_counter() - started)


def _content_length(scope: Scope) -> int | None:
    value = header(scope, b"content-length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


class BodyLimitMiddleware:
    """413 (JSON) above ``max_bytes``; then a forecast gets an admission ticket or a JSON 503.

    Bodies are counted as declared or as streamed (chunked). The admission limit is
    ``NEARCAST_MAX_CONCURRENT_REQUESTS`` of the app's settings (read at the first request),
    unless ``max_concurrent`` is given (:mod:`service.admission`).
    """

    def __init__(self, app: ASGIApp, max_bytes: int, max_concurrent: int | None = None) -> None:
        self.app, self.max_bytes = app, max_bytes
        self.admission = Admission(max_concurrent) if max_concurrent is not None else None

    def _error(self, size: str) -> ApiError:
        return ApiError(413, "body", f"{size} bytes; the limit is {self.max_bytes} bytes "
                                     "(send fewer series or split the request)")

    def _gate(self, scope: Scope) -> Admission:
        if self.admission is None:
            settings: ApiSettings = scope["app"].state.nearcast.settings
            self.admission = Admission(settings.max_concurrent_requests,
                                       settings.retry_after_seconds)
        return self.admission

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a declared oversize body at once; count a streamed one as it arrives."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None and length > self.max_bytes:
            await send_json(send, 413, self._error(str(length)).body())
            return
        if scope["path"] != FORECAST_PATH or scope["method"] != "POST":
            await self._limited(scope, receive, send, length)
            return
        gate = self._gate(scope)
        if gate.full:  # at once, the body unread
            busy = gate.busy()
            await send_json(send, 503, busy.body(), busy.headers)
            return
        ticket = Ticket(gate)
        if length is None or length > PRECHECK_BYTES:
            ticket.take()  # a large or streamed body holds its slot while it arrives
        token = current_ticket.set(ticket)
        try:
            await self._limited(scope, receive, send, length)
        finally:
            ticket.release()
            current_ticket.reset(token)

    async def _limited(self, scope: Scope, receive: Receive, send: Send,
                       length: int | None) -> None:
        if length is not None:
            await self.app(scope, receive, send)
            return
        total = 0

        async def counted() -> Message:
            nonlocal total
            message = await receive()
            if message["type"] == "http.request":
                total += len(message.get("body", b""))
                if total > self.max_bytes:
                    raise self._error(f"more than {total}")  # handled by the app: JSON 413
            return message

        await self.app(scope, counted, send)


__all__ = ["BodyLimitMiddleware", "MetricsMiddleware"]
