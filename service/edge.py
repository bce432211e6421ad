"""Who may reach the API and how: the bind guard, the Host header check and the body type.

Light on purpose (no TensorFlow, no model code): ``nearcast serve`` runs :func:`check_bind`
before it imports anything heavy, so a refused configuration fails in about a second.

- :func:`check_bind`: without API keys, only a loopback bind is allowed, unless
  ``NEARCAST_AUTH=off`` says so explicitly (``NEARCAST_AUTH=on`` requires keys anywhere).
- :class:`TrustedHosts`: Starlette's ``TrustedHostMiddleware`` with the API's JSON error body
  and IPv6-literal hosts; the names come from ``NEARCAST_ALLOWED_HOSTS`` (default: loopback
  names plus the bind host).
- :class:`JsonBodyOnly`: a POST/PUT/PATCH that carries a body must say ``application/json``
  (UTF-8), else 415 before the body is read.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from nearcast.service.asgi import header, refuse
from nearcast.service.settings import ApiSettings

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_HOW = ("set NEARCAST_API_KEYS (and NEARCAST_ADMIN_KEYS for reload; a JSON list or k1,k2) so "
        "clients must send 'Authorization: Bearer <key>'")


class AuthConfigError(ValueError):
    """The auth settings do not allow serving on the configured host."""


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    name = host.strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def check_bind(settings: ApiSettings) -> str:
    """Refuse a bind the auth settings do not cover; otherwise describe the auth mode.

    Returns:
        One line saying which mode the server runs in (log it at start).

    Raises:
        AuthConfigError: no keys on a non-loopback host without ``NEARCAST_AUTH=off``, or
            ``NEARCAST_AUTH=on`` without keys; the message names the settings that fix it.
    """
    host = settings.host
    if settings.auth_enabled:
        return (f"auth: API keys required on /v1 and the API docs ({len(settings.api_keys)} API "
                f"keys, {len(settings.admin_keys)} admin keys)")
    if settings.auth == "on":
        raise AuthConfigError(f"NEARCAST_AUTH=on but no API key is configured: {_HOW}")
    if settings.auth == "off":
        return (f"auth: OFF (NEARCAST_AUTH=off) on {host}: anyone who reaches port "
                f"{settings.port} can forecast and reload models")
    if not is_loopback(host):
        raise AuthConfigError(f"refusing to serve on {host} without API keys: {_HOW}, or set "
                              "NEARCAST_AUTH=off to serve without auth")
    return (f"auth: off (no API keys), allowed because the bind host {host} is loopback; set "
            "NEARCAST_API_KEYS before binding another address")


def _host_name(header: str) -> str:
    """``[::1]:8000`` -> ``::1``; ``Example.com:80`` -> ``example.com``."""
    if header.startswith("["):
        return header[1:].partition("]")[0].lower()
    return header.rpartition(":")[0].lower() if header.count(":") == 1 else header.lower()


class TrustedHosts(TrustedHostMiddleware):
    """Starlette's ``TrustedHostMiddleware``: unknown Host headers get a JSON 400."""

    def __init__(self, app: ASGIApp, allowed_hosts: Sequence[str]) -> None:
        super().__init__(app, [h.strip("[]").lower() for h in allowed_hosts], www_redirect=False)
        self.exact = frozenset(h for h in self.allowed_hosts if not h.startswith("*"))
        self.suffixes = tuple(h[1:] for h in self.allowed_hosts if h.startswith("*"))

    def _allowed(self, host: str) -> bool:
        return host in self.exact or (bool(self.suffixes) and host.endswith(self.suffixes))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass requests whose Host header names an allowed host; refuse the rest."""
        if self.allow_any or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        raw = header(scope, b"host")
        host = _host_name(raw.decode("latin-1")) if raw else ""
        if host and self._allowed(host):
            await self.app(scope, receive, send)
            return
        await refuse(send, 400, "host", f"Host header {host or '(none)'!r} is not served here; "
                     "the server accepts the names in its NEARCAST_ALLOWED_HOSTS")  # not listed


def _has_body(scope: Scope) -> bool:
    length = header(scope, b"content-length")
    if length is not None:
        return length.strip() not in (b"0", b"")
    return header(scope, b"transfer-encoding") is not None


def _json_type(value: bytes) -> bool:
    media, _, params = value.decode("latin-1").partition(";")
    if media.strip().lower() != "application/json":
        return False
    for param in params.split(";"):
        key, _, val = param.partition("=")
        if key.strip().lower() == "charset" and val.strip().strip('"').lower() not in (
                "utf-8", "utf8"):
            return False
    return True


class JsonBodyOnly:
    """A request body must be ``application/json`` (UTF-8): 415 otherwise, before reading it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Refuse a body-carrying POST/PUT/PATCH of another content type."""
        if scope["type"] == "http" and scope["method"] in _BODY_METHODS and _has_body(scope):
            sent = header(scope, b"content-type")
            if sent is None or not _json_type(sent):
                what = repr(sent.decode("latin-1")[:100]) if sent else "missing"
                await refuse(send, 415, "content-type",  # the body stays unread
                             f"{what}; send the body as 'application/json' (UTF-8)")
                return
        await self.app(scope, receive, send)


__all__ = ["AuthConfigError", "JsonBodyOnly", "TrustedHosts", "check_bind", "is_loopback"]
