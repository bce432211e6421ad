"""One error shape for every 4xx/5xx: ``{"error": "<where>: <problem>", "detail": [...]}``.

Messages name the field (a JSON path such as ``series[2] (id 'H7').values[5]``) and the
problem; they never carry stack traces, internal paths or echoed input. ``detail`` lists at
most the first 20 problems; ``error`` names the first and counts the rest (see
:class:`service.schemas.ErrorBody`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from nearcast.service.schemas import FLOAT32_MAX, MAX_LISTED_PROBLEMS

log = logging.getLogger("nearcast.errors")

_PREFIXES = ("Value error, ", "Assertion failed, ")


class ApiError(Exception):
    """An error answered as JSON with ``status``; ``field`` says where (``body`` if nowhere)."""

    def __init__(self, status: int, field: str, problem: str,
                 headers: dict[str, str] | None = None,
                 detail: list[dict[str, str]] | None = None) -> None:
        super().__init__(f"{field}: {problem}")
        self.status, self.field, self.problem, self.headers = status, field, problem, headers
        self.detail = detail if detail is not None else [{"field": field, "problem": problem}]

    def body(self) -> dict[str, Any]:
        """The JSON body."""
        return {"error": str(self), "detail": self.detail}


def _series_id(body: Any, index: int) -> str | None:
    try:
        sid = body["series"][index]["id"]
    except (KeyError, IndexError, TypeError):
        return None
    return sid if isinstance(sid, str) else None


def json_path(loc: Sequence[int | str], body: Any = None) -> str:
    """``("series", 0, "values", 3)`` -> ``series[0] (id 'H1').values[3]``."""
    out = ""
    for i, part in enumerate(loc):
        if isinstance(part, int):
            out += f"[{part}]"
            if i == 1 and loc[0] == "series" and (sid := _series_id(body, part)) is not None:
                out += f" (id {sid!r})"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def _problem(err: Any) -> str:
    kind, ctx = err.get("type"), err.get("ctx") or {}
    if kind == "too_long" and "max_length" in ctx:
        actual = ctx.get("actual_length")
        count = f"{actual} items" if actual is not None else "too many items"
        return f"{count}; the limit is {ctx['max_length']}"
    if kind in ("less_than_equal", "greater_than_equal") and abs(
            ctx.get("le", ctx.get("ge", 0))) == FLOAT32_MAX:
        return ("Input should be within the float32 range the model computes in "
                f"(-{FLOAT32_MAX:.7g} to {FLOAT32_MAX:.7g})")
    msg = str(err["msg"])
    for prefix in _PREFIXES:
        if msg.startswith(prefix):
            return msg[len(prefix):]
    return msg


def summarize(problems: Sequence[dict[str, str]], total: int | None = None,
              status: int = 422) -> ApiError:
    """An :class:`ApiError` for ``problems`` (first first): at most 20 listed, all counted.

    Args:
        problems: ``{"field", "problem"}`` entries, at least the first 20 found.
        total: how many problems were found in all (default ``len(problems)``).
        status: the HTTP status.
    """
    total = len(problems) if total is None else total
    detail = list(problems[:MAX_LISTED_PROBLEMS]) or [{"field": "body",
                                                        "problem": "invalid request"}]
    first = detail[0]
    more = ""
    if total > 1:
        listed = f", {len(detail)} listed" if total > len(detail) else ""
        more = f" (and {total - 1} more problems{listed})"
    return ApiError(status, first["field"], first["problem"] + more, detail=detail)


def from_errors(errors: Sequence[Any], body: Any = None, strip: tuple[str, ...] = ()) -> ApiError:
    """A 422 :class:`ApiError` listing pydantic ``errors`` (``strip``: leading loc parts)."""
    detail = []
    for err in errors[:MAX_LISTED_PROBLEMS]:
        loc = list(err.get("loc", ()))
        if loc and loc[0] in strip:
            loc = loc[1:]
        detail.append({"field": json_path(loc, body), "problem": _problem(err)})
    return summarize(detail, len(errors))


def from_validation(exc: ValidationError, body: Any = None) -> ApiError:
    """A 422 :class:`ApiError` from a pydantic ``ValidationError``."""
    return from_errors(exc.errors(include_url=False, include_input=False), body)


async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def _request_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
    err = from_errors(exc.errors(), exc.body, strip=("body",))
    return JSONResponse(err.body(), status_code=422)


async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
    field = "path" if exc.status_code in (404, 405) else "request"
    body = {"error": f"{field}: {exc.detail}", "detail": [{"field": field,
                                                            "problem": str(exc.detail)}]}
    return JSONResponse(body, status_code=exc.status_code, headers=getattr(exc, "headers", None))


async def _client_gone(_: Request, exc: ClientDisconnect) -> JSONResponse:
    # The client left before its body arrived: nobody reads this answer, nothing failed here.
    log.info("client disconnected before its request body arrived")
    body = {"error": "body: the client disconnected before the body arrived",
            "detail": [{"field": "body", "problem": "the client disconnected"}]}
    return JSONResponse(body, status_code=400)


async def _server_error(_: Request, exc: Exception) -> JSONResponse:
    # Logged with its traceback by the server; the client learns nothing internal.
    log.error("internal error: %s", type(exc).__name__)
    return JSONResponse({"error": "server: internal error", "detail": []}, status_code=500)


def install(app: FastAPI) -> None:
    """Register the JSON error handlers on ``app``."""
    app.add_exception_handler(ApiError, _api_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _request_validation)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(ClientDisconnect, _client_gone)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _server_error)


__all__ = ["ApiError", "from_errors", "from_validation", "install", "json_path", "summarize"]
