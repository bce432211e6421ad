"""Timestamps of the forecast API: the supported range and the one timestamp type.

Every time of a request, given or forecast, lies in ``[TIME_MIN, TIME_END)`` UTC: a range
wide enough for any real history and far from the limits of Python's and pandas' datetimes,
so no conversion or step arithmetic can overflow. A timestamp is checked for its shape and year
before it is parsed, converted to UTC after; ``TIMESTAMP_PATTERN`` states the same in the
OpenAPI document.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, WithJsonSchema

#: Supported time range (UTC): every timestamp of a request, given or forecast, lies in
#: ``[TIME_MIN, TIME_END)``.
TIME_MIN = datetime(1900, 1, 1, tzinfo=UTC)
TIME_END = datetime(2200, 1, 1, tzinfo=UTC)
TIME_RANGE = "from 1900-01-01T00:00:00Z (inclusive) to 2200-01-01T00:00:00Z (exclusive)"

# RFC 3339 date-times of the years 1900-2199 (real calendar days, leap days included; a bare
# date is midnight), with an optional UTC offset (naive = UTC) and fractional seconds (kept to
# microseconds): what the server accepts (its shape check, year check and calendar-aware parser
# together), so the document and the server agree on what a timestamp is.
_YEAR = r"(?:19\d\d|2[01]\d\d)"
_MONTH_DAY = (r"(?:(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8])|(?:0[13-9]|1[0-2])-(?:29|30)"
              r"|(?:0[13578]|1[02])-31)")
_LEAP_DAY = r"(?:(?:19|2[01])(?:0[48]|[2468][048]|[13579][26])|2000)-02-29"
_TIME = r"T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d(?:\.\d+)?(?:Z|[+-](?:[01]\d|2[0-3]):[0-5]\d)?"
TIMESTAMP_PATTERN = rf"^(?:{_YEAR}-{_MONTH_DAY}|{_LEAP_DAY})(?:{_TIME})?$"
# The server checks the shape; the parser then names a bad month, day or hour precisely.
_SHAPE_RE = re.compile(r"\d{4}-\d\d-\d\d(?:T\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?)?")
_DAY = timedelta(days=1)
_NAIVE_MIN, _NAIVE_END = TIME_MIN.replace(tzinfo=None), TIME_END.replace(tzinfo=None)


def _iso_string(value: Any) -> Any:
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or _SHAPE_RE.fullmatch(value) is None:
        raise ValueError("timestamps must be ISO 8601 date-times such as "
                         f"'2024-01-01T00:00:00Z' (seconds required) or dates, {TIME_RANGE}")
    if not 1900 <= int(value[:4]) < 2200:
        raise ValueError(f"year {value[:4]} is outside the supported time range {TIME_RANGE}")
    return value


def to_utc(ts: datetime) -> datetime:
    """``ts`` in UTC (naive = UTC) when inside the supported range, else ValueError."""
    naive = ts.replace(tzinfo=None)
    # Offsets are under a day: this test keeps astimezone() away from year 1 and 9999.
    if not _NAIVE_MIN - _DAY <= naive < _NAIVE_END + _DAY:
        raise ValueError(f"{naive.isoformat()} is outside the supported time range {TIME_RANGE}")
    out = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    if not TIME_MIN <= out < TIME_END:
        raise ValueError(f"{out.isoformat()} (UTC) is outside the supported time range "
                         f"{TIME_RANGE}")
    return out


def _timestamp_schema() -> dict[str, Any]:
    # No examples here: tools would combine a one-item example into a one-timestamp list.
    return {"type": "string", "pattern": TIMESTAMP_PATTERN,
            "description": f"ISO 8601 date-time or date {TIME_RANGE} (naive = UTC)."}


Timestamp = Annotated[datetime, BeforeValidator(_iso_string), AfterValidator(to_utc),
                      WithJsonSchema(_timestamp_schema())]


__all__ = ["TIMESTAMP_PATTERN", "TIME_END", "TIME_MIN", "TIME_RANGE", "Timestamp", "to_utc"]
