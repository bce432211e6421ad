"""Bearer API keys: one scope to forecast and list, an admin scope to reload.

Auth is off when no key is configured (the embedded default, bound to 127.0.0.1). With
``NEARCAST_API_KEYS`` and/or ``NEARCAST_ADMIN_KEYS`` set, every ``/v1`` route needs
``Authorization: Bearer <key>``; admin keys work everywhere, ``POST /v1/models/{name}/reload``
accepts only admin keys. ``/healthz``, ``/readyz`` and ``/metrics`` stay open (probes and
scrapers run inside the deployment).
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from fastapi import Request

from service.errors import ApiError
from service.settings import ApiSettings
from service.state import State

_CHALLENGE = {"WWW-Authenticate": "Bearer"}


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _known(key: str, keys: Iterable[str]) -> bool:
    # Compare against every key in constant time so timing reveals nothing.
    found = False
    for candidate in keys:
        found |= hmac.compare_digest(key.encode(), candidate.encode())
    return found


def _presented(request: Request) -> str:
    key = _bearer(request)
    if key is None:
        raise ApiError(401, "authorization",
                       "missing API key: send the header 'Authorization: Bearer <key>'",
                       headers=_CHALLENGE)
    return key


def check_key(request: Request, settings: ApiSettings) -> None:
    """Accept any configured key (API or admin); open when no key is configured."""
    if not settings.auth_enabled:
        return
    if not _known(_presented(request), [*settings.api_keys, *settings.admin_keys]):
        raise ApiError(401, "authorization", "API key not accepted", headers=_CHALLENGE)


def check_admin(request: Request, settings: ApiSettings) -> None:
    """Accept admin keys only; open when no key is configured at all."""
    if not settings.auth_enabled:
        return
    key = _presented(request)
    if _known(key, settings.admin_keys):
        return
    if _known(key, settings.api_keys):
        raise ApiError(403, "authorization", "this key has no admin scope (reload needs an "
                                             "admin key)")
    raise ApiError(401, "authorization", "API key not accepted", headers=_CHALLENGE)


async def require_key(request: Request, state: State) -> None:
    """Dependency form of :func:`check_key`."""
    check_key(request, state.settings)


async def require_admin(request: Request, state: State) -> None:
    """Dependency form of :func:`check_admin`."""
    check_admin(request, state.settings)


__all__ = ["check_admin", "check_key", "require_admin", "require_key"]
