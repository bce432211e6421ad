"""A cheap structural pre-check of large forecast bodies, with the configured limits.

Full validation of an 8 MB body can cost seconds and gigabytes when it lists a problem per
bad item: the lists fail fast (:mod:`service.schemas`), but unknown keys are reported one by
one. So a body above :data:`PRECHECK_BYTES` is first parsed as plain JSON (the bytes are
bounded by the body limit) and walked once: object root, known keys, at most ``max_series``
series and ``max_points`` values or timestamps each. Only a body that passes is validated in
full; its problems are then bounded by about ``max_series`` times the fields of a series.
"""

from __future__ import annotations

from typing import Any

from pydantic_core import from_json

from nearcast.service.errors import ApiError, json_path, summarize
from nearcast.service.schemas import MAX_LISTED_PROBLEMS, ForecastRequest, SeriesIn

#: Bodies above this size get the pre-check (smaller ones cannot hold many problems).
PRECHECK_BYTES = 32 * 1024
_TOP_KEYS = frozenset(ForecastRequest.model_fields)
_SERIES_KEYS = frozenset(SeriesIn.model_fields)


def loose_json(body: bytes) -> Any:
    """The body as plain JSON, or None when it is not JSON (depth and size are bounded)."""
    try:
        return from_json(body, cache_strings=False)
    except ValueError:
        return None


class _Problems:
    """The first problems found, and how many in all."""

    def __init__(self, doc: Any) -> None:
        self.doc = doc
        self.listed: list[dict[str, str]] = []
        self.total = 0

    def add(self, loc: tuple[int | str, ...], problem: str) -> None:
        self.total += 1
        if len(self.listed) < MAX_LISTED_PROBLEMS:
            self.listed.append({"field": json_path(loc, self.doc), "problem": problem})


def _extra_keys(out: _Problems, loc: tuple[int | str, ...], obj: dict[str, Any],
                known: frozenset[str]) -> None:
    extra = len(obj) - len(known.intersection(obj))  # counted in C: 100,000s of keys are cheap
    if not extra:
        return
    listed = 0
    for key in obj:
        if key not in known:
            out.add((*loc, key), "Extra inputs are not permitted")
            listed += 1
            if listed == MAX_LISTED_PROBLEMS:
                break
    out.total += extra - listed


def _series(out: _Problems, i: int, item: Any, max_points: int) -> None:
    if not isinstance(item, dict):
        return  # validation names it
    _extra_keys(out, ("series", i), item, _SERIES_KEYS)
    for name in ("values", "timestamps"):
        seq = item.get(name)
        if isinstance(seq, list) and len(seq) > max_points:
            out.add(("series", i, name), f"{len(seq)} items; the limit is {max_points}")


def check_shape(doc: Any, max_series: int, max_points: int) -> ApiError | None:
    """A 422 naming the shape problems of ``doc`` (at most 20 listed), or None."""
    out = _Problems(doc)
    if not isinstance(doc, dict):
        return None  # validation says what the body should be
    _extra_keys(out, (), doc, _TOP_KEYS)
    series = doc.get("series")
    if isinstance(series, list):
        if len(series) > max_series:
            out.add(("series",), f"{len(series)} items; the limit is {max_series}")
        else:
            for i, item in enumerate(series):
                _series(out, i, item, max_points)
    if out.total == 0:
        return None
    return summarize(out.listed, out.total)


__all__ = ["PRECHECK_BYTES", "check_shape", "loose_json"]
