"""Raw ASGI helpers of the pure middleware: read a request header, refuse with a JSON body.

Light on purpose (no web framework): :mod:`service.logs` is imported by ``retrain`` and the
scheduler, :mod:`service.edge` before ``nearcast serve`` imports anything heavy.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from starlette.types import Scope, Send


def header(scope: Scope, name: bytes) -> bytes | None:
    """The first value of request header ``name`` (lower-case bytes), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


async def send_json(send: Send, status: int, body: object,
                    headers: Mapping[str, str] | None = None) -> None:
    """Answer before the app with a JSON ``body``; the connection closes (a body stays unread)."""
    payload = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"),
           (b"content-length", str(len(payload)).encode()),
           (b"connection", b"close")]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})


async def refuse(send: Send, status: int, field: str, problem: str) -> None:
    """Answer before the app with the API's error body for one problem (see service.errors)."""
    await send_json(send, status, {"error": f"{field}: {problem}",
                                   "detail": [{"field": field, "problem": problem}]})


__all__ = ["header", "refuse", "send_json"]
