"""Bearer API keys: one scope to forecast and list, an admin scope to reload.

With ``NEARCAST_API_KEYS`` and/or ``NEARCAST_ADMIN_KEYS`` set, every ``/v1`` route and the API
documents (``/docs``, ``/redoc``, ``/openapi.json``) need ``Authorization: Bearer <key>``; admin
keys work everywhere, ``POST /v1/models/{name}/reload`` accepts only admin keys. ``/healthz``,
``/readyz`` and ``/metrics`` stay open (probes and scrapers run inside the deployment).

Without keys auth is off, which :func:`service.edge.check_bind` allows on a loopback bind
only, unless ``NEARCAST_AUTH=off`` opts out explicitly. Every refused request is logged (route
and reason, never key material).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Iterable

from fastapi import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from nearcast.service.asgi import header, send_json
from nearcast.service.errors import ApiError
from nearcast.service.settings import ApiSettings
from nearcast.service.state import State

log = logging.getLogger("nearcast.auth")

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _bearer(scope: Scope) -> str | None:
    value = header(scope, b"authorization")
    if value is None:
        return None
    scheme, _, token = value.decode("latin-1").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _known(key: str, keys: Iterable[str]) -> bool:
    # Compare against every key in constant time so timing reveals nothing.
    found = False
    for candidate in keys:
        found |= hmac.compare_digest(key.encode(), candidate.encode())
    return found


def _route(request: Request) -> str:
    route = getattr(request.scope.get("route"), "path", None)
    return str(route or request.url.path)


def _refuse(route: str, status: int, reason: str, problem: str) -> ApiError:
    log.warning("auth refused: %s on %s", reason, route,
                extra={"route": route, "status": status, "reason": reason})
    return ApiError(status, "authorization", problem,
                    headers=_CHALLENGE if status == 401 else None)


def _missing(route: str) -> ApiError:
    return _refuse(route, 401, "missing key",
                   "missing API key: send the header 'Authorization: Bearer <key>'")


def _verify(scope: Scope, route: str, settings: ApiSettings) -> None:
    key = _bearer(scope)
    if key is None:
        raise _missing(route)
    if not _known(key, [*settings.api_keys, *settings.admin_keys]):
        raise _refuse(route, 401, "unknown key", "API key not accepted")


def check_key(request: Request, settings: ApiSettings) -> None:
    """Accept any configured key (API or admin); open when no key is configured."""
    if settings.auth_enabled:
        _verify(request.scope, _route(request), settings)


def check_admin(request: Request, settings: ApiSettings) -> None:
    """Accept admin keys only; open when no key is configured at all."""
    if not settings.auth_enabled:
        return
    route = _route(request)
    key = _bearer(request.scope)
    if key is None:
        raise _missing(route)
    if _known(key, settings.admin_keys):
        return
    if _known(key, settings.api_keys):
        raise _refuse(route, 403, "no admin scope",
                      "this key has no admin scope (reload needs an admin key)")
    raise _refuse(route, 401, "unknown key", "API key not accepted")


async def require_key(request: Request, state: State) -> None:
    """Dependency form of :func:`check_key`."""
    check_key(request, state.settings)


async def require_admin(request: Request, state: State) -> None:
    """Dependency form of :func:`check_admin`."""
    check_admin(request, state.settings)


class DocsAuthMiddleware:
    """The API documents follow the API's rule: with keys configured they need one too."""

    def __init__(self, app: ASGIApp, settings: ApiSettings, paths: Iterable[str]) -> None:
        self.app, self.settings = app, settings
        self.paths = frozenset(paths) if settings.auth_enabled else frozenset()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Answer 401 (JSON) for a document path without an accepted key."""
        if scope["type"] == "http" and scope["path"] in self.paths:
            try:
                _verify(scope, scope["path"], self.settings)
            except ApiError as exc:
                await send_json(send, exc.status, exc.body(), exc.headers)
                return
        await self.app(scope, receive, send)


__all__ = ["DocsAuthMiddleware", "check_admin", "check_key", "require_admin", "require_key"]
