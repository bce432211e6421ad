"""The log formats and the process-wide logging setup (no server: records in, lines out)."""

from __future__ import annotations

import io
import json
import logging
import sys
from collections.abc import Iterator

import pytest

from nearcast.service.logs import (
    REQUEST_ID,
    JsonFormatter,
    LogSettings,
    StderrHandler,
    TextFormatter,
    configure_logging,
)


def _record(message: str, *args: object, exc: bool = False, **extra: object) -> logging.LogRecord:
    info = None
    if exc:
        try:
            raise ValueError("bad\nvalue")
        except ValueError:
            info = sys.exc_info()
    record = logging.LogRecord("nearcast.test", logging.WARNING, __file__, 1, message, args, info)
    record.__dict__.update(extra)
    return record


@pytest.fixture
def request_id() -> Iterator[str]:
    token = REQUEST_ID.set("req-1")
    yield "req-1"
    REQUEST_ID.reset(token)


def test_json_lines_carry_fields_request_id_and_one_line_tracebacks(request_id: str) -> None:
    line = JsonFormatter().format(_record("served %s v%d", "tiny", 3, exc=True, model="tiny",
                                          version=3, when=object))
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["time"].endswith("+00:00") and entry["time"][:2] == "20"
    assert {k: entry[k] for k in ("level", "logger", "message", "request_id", "model",
                                  "version")} == {
        "level": "WARNING", "logger": "nearcast.test", "message": "served tiny v3",
        "request_id": request_id, "model": "tiny", "version": 3}
    assert entry["when"] == str(object)  # anything else as its string
    assert entry["exception"].startswith("Traceback (most recent call last):")
    assert entry["exception"].endswith("ValueError: bad\nvalue")


def test_text_lines_have_the_same_content(request_id: str) -> None:
    line = TextFormatter().format(_record("served %s", "tiny", model="tiny"))
    assert line.endswith(" WARNING nearcast.test: served tiny [request_id=req-1 model=tiny]")
    REQUEST_ID.set(None)
    assert TextFormatter().format(_record("plain")).endswith(" WARNING nearcast.test: plain")


def test_configure_logging_keeps_other_handlers_and_replaces_its_own(
    capsys: pytest.CaptureFixture[str]
) -> None:
    root, nearcast = logging.getLogger(), logging.getLogger("nearcast")
    saved = (root.level, list(root.handlers), nearcast.level, nearcast.propagate)
    foreign = logging.StreamHandler(io.StringIO())
    root.addHandler(foreign)
    try:
        configure_logging(LogSettings(log_format="text"))
        configure_logging(LogSettings(log_format="json", log_level="INFO"))
        ours = [h for h in root.handlers if isinstance(h, StderrHandler)]
        assert len(ours) == 1 and isinstance(ours[0].formatter, JsonFormatter)
        assert foreign in root.handlers and not foreign.stream.closed
        logging.getLogger("nearcast.store").info("loaded", extra={"model": "m"})
        logging.getLogger("mlflow").info("below WARNING: dropped")
        logging.getLogger("mlflow").warning("library warning")
        lines = [json.loads(x) for x in capsys.readouterr().err.splitlines()]
        assert [(x["logger"], x["message"]) for x in lines] == [
            ("nearcast.store", "loaded"), ("mlflow", "library warning")]
        assert lines[0]["model"] == "m"
        assert foreign.stream.getvalue() == "loaded\nlibrary warning\n"  # type: ignore[attr-defined]
    finally:
        logging.captureWarnings(False)
        root.handlers[:] = saved[1]
        root.setLevel(saved[0])
        nearcast.setLevel(saved[2])
        nearcast.propagate = saved[3]
