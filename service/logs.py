"""Structured logs for ``serve``, ``retrain`` and ``scheduler``, and the request id.

Every line is one JSON object (``NEARCAST_LOG_FORMAT=json``, the default): ``time`` (UTC,
ISO 8601), ``level``, ``logger``, ``message``, ``request_id`` while a request is handled, any
fields passed as ``extra={...}`` and ``exception`` (the traceback as one string) when there is
one. ``NEARCAST_LOG_FORMAT=text`` gives plain lines with the same content. uvicorn's loggers go
through the same handler (:func:`configure_logging` runs in every worker: :func:`app_factory`).

:class:`RequestContext` gives every HTTP request an id: the client's ``X-Request-ID`` when it is
sane (1-128 characters of ``A-Z a-z 0-9 . _ : / + = -``), else a new one. It is echoed in the
response header and carried by every log line written while the request is handled. With
``NEARCAST_ACCESS_LOG=true`` it also logs one line per request (method, route, status,
duration).
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nearcast.service.asgi import header

if TYPE_CHECKING:  # retrain and the scheduler import this module; they need no web framework
    from fastapi import FastAPI

REQUEST_ID: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "nearcast_request_id", default=None)

_SANE_ID = re.compile(rb"[A-Za-z0-9._:/+=-]{1,128}")
_HEADER = b"x-request-id"
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message", "asctime", "color_message", "taskName"}
_OWN_LOGGERS = ("nearcast", "uvicorn", "uvicorn.error", "apscheduler")
_LIBRARY_LOGGERS = ("mlflow",)  # they install their own handlers; route them through ours

access_log = logging.getLogger("nearcast.access")


class LogSettings(BaseSettings):
    """How nearcast's processes log (env prefix ``NEARCAST_``)."""

    model_config = SettingsConfigDict(env_prefix="NEARCAST_", extra="ignore")

    log_format: Literal["json", "text"] = Field(
        "json", description="json: one JSON object per line; text: plain lines.")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Level of nearcast's, uvicorn's and the scheduler's loggers "
        "(other libraries log warnings and above).")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    out: dict[str, Any] = {}
    request_id = REQUEST_ID.get()
    if request_id is not None:
        out["request_id"] = request_id
    for key, value in record.__dict__.items():
        if key not in _STANDARD and not key.startswith("_"):
            out[key] = value
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per record: time, level, logger, message, request id, extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON (tracebacks inside a string, never raw newlines)."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
            **_fields(record)}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return json.dumps(entry, default=str, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    """Plain lines: ``time LEVEL logger: message key=value ...`` (traceback below)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The standard line plus the request id and extra fields."""
        line = super().format(record)
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        if not extra:
            return line
        head, sep, tail = line.partition("\n")
        return f"{head} [{extra}]{sep}{tail}"


class StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is at the time of the record (never a stale stream)."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        """The current ``sys.stderr``."""
        return sys.stderr

    @stream.setter
    def stream(self, _: Any) -> None:
        pass


def configure_logging(settings: LogSettings | None = None) -> None:
    """Send this process's log records through one stderr handler with our formatter.

    nearcast's, uvicorn's and APScheduler's loggers log at ``NEARCAST_LOG_LEVEL``; everything
    else (MLflow, TensorFlow, alembic, ...) reaches the same handler at WARNING and above;
    warnings become records too. All of them propagate to the handler on the root logger, so
    handlers a host adds there (a test runner) still see every record. uvicorn's plain access
    log is off: :class:`RequestContext` writes a better one.

    Not ``logging.config.dictConfig``: that closes every handler in the process, including
    ones that are not ours. Calling this again replaces only the handler it installed.
    """
    s = settings or LogSettings()
    handler = StderrHandler()
    handler.setFormatter(JsonFormatter() if s.log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, StderrHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    for name, level in [*((n, s.log_level) for n in _OWN_LOGGERS),
                        *((n, "WARNING") for n in _LIBRARY_LOGGERS)]:
        logger = logging.getLogger(name)
        logger.setLevel(level)
        logger.handlers = []
        logger.propagate = True
    access = logging.getLogger("uvicorn.access")
    access.handlers, access.propagate = [], False
    logging.captureWarnings(True)


def app_factory() -> FastAPI:
    """The app factory ``nearcast serve`` gives uvicorn (run in every worker process).

    Logging is applied again after the app's imports: MLflow installs its own handler when it
    is imported.
    """
    from nearcast.service.app import create_app  # service.app imports this module

    configure_logging()
    return create_app()


def _request_id(scope: Scope) -> str:
    value = header(scope, _HEADER)
    if value is not None and _SANE_ID.fullmatch(value):
        return value.decode("ascii")
    return os.urandom(16).hex()  # 128 random bits, like a uuid4, in a quarter of the time


class RequestContext:
    """Pure ASGI: a request id per HTTP request (context variable and response header)."""

    def __init__(self, app: ASGIApp, access: bool = False) -> None:
        self.app, self.access = app, access

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the request with its id set; echo the id; optionally log the request."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id(scope)
        header = (_HEADER, request_id.encode("ascii"))
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                message = {**message, "headers": [*message.get("headers", ()), header]}
            await send(message)

        # Each request runs in its own task, so the id is never seen by another request; it is
        # not reset when the app raises, so the server's traceback line carries it too.
        REQUEST_ID.set(request_id)
        await self.app(scope, receive, send_with_id)
        if self.access:
            _log_access(scope, status, time.perf_counter() - started)
        REQUEST_ID.set(None)


def _log_access(scope: Scope, status: int, seconds: float) -> None:
    route = getattr(scope.get("route"), "path", None) or scope["path"]
    client = scope.get("client")
    access_log.info("%s %s %d", scope["method"], route, status, extra={
        "method": scope["method"], "route": route, "status": status,
        "duration_ms": round(seconds * 1000, 3), "client": client[0] if client else None})


def install_request_context(app: FastAPI, access: bool) -> None:
    """Wrap ``app``'s whole middleware stack (also Starlette's 500 handler) in RequestContext."""
    build = app.build_middleware_stack

    def outermost() -> ASGIApp:
        return RequestContext(build(), access)

    app.build_middleware_stack = outermost  # type: ignore[method-assign]


__all__ = ["REQUEST_ID", "JsonFormatter", "LogSettings", "RequestContext", "StderrHandler",
           "TextFormatter", "app_factory", "configure_logging", "install_request_context"]
