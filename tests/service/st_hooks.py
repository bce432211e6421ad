"""schemathesis hooks (loaded by tests/service/test_schemathesis.py via SCHEMATHESIS_HOOKS).

The OpenAPI document states everything JSON Schema can say about a forecast request: the
fields, the ``oneOf`` of ``start`` and ``timestamps``, the configured limits, the float32
range and the time range. Some rules cannot be stated in JSON Schema, and the document states
them in prose: relations between fields (one timestamp per value, strictly increasing; unique
series ids; the grid span and the forecast end inside the time range) and the served model's
own limits, which GET /v1/models lists (horizon, quantiles, min_history, log scaling needs
values > 0, a forecast must stay finite in float32, a gap rule cannot fill a missing first or
last value).

Before each *positive* (schema-valid) forecast request is sent, :func:`before_call` bends the
generated body to those prose rules, keeping it schema-valid, so that valid requests reach the
forecasting path and the positive-data check means what it says; positive actuals bodies
(``POST /v1/actuals``, the same series) get times on the model's hourly grid. Negative cases go
out as generated.
"""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

import httpx
import schemathesis

HOUR = timedelta(hours=1)
EARLIEST = datetime(1900, 1, 2, tzinfo=UTC)
LATEST = datetime(2199, 12, 1, tzinfo=UTC)  # leaves room for a history and its forecast
BIGGEST = 1e30  # the tiny model's forecast stays finite in float32 below this


@cache
def served() -> dict[str, Any]:
    """The served model's facts (GET /v1/models), and this server's limits."""
    url = os.environ["NEARCAST_ST_URL"]
    (model,) = httpx.get(f"{url}/v1/models", timeout=10).json()
    return model | {"max_span": int(os.environ["NEARCAST_ST_MAX_SPAN"])}


def _time(text: Any) -> datetime:
    try:
        ts = datetime.fromisoformat(str(text))
    except ValueError:
        return datetime(2024, 1, 1, tzinfo=UTC)
    ts = ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)
    return min(max(ts, EARLIEST), LATEST)


def _iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def _value(v: Any, fallback: float) -> float | None:
    if v is None:
        return None
    x = abs(float(v))
    if not math.isfinite(x) or x < 1e-30:
        return fallback
    return min(x, BIGGEST)


def _series(item: dict[str, Any], model: dict[str, Any], index: int) -> dict[str, Any]:
    raw = list(item.get("values") or [1.0])
    values = [_value(v, 1.0 + index) for v in raw]
    if values[0] is None:
        values[0] = 1.0
    if values[-1] is None:
        values[-1] = 2.0
    while len(values) < model["min_history"]:  # the model's shortest history, padded at front
        values = [values[0], *values]
    out: dict[str, Any] = {"id": item.get("id", f"s{index}"), "values": values}
    if "timestamps" in item:
        first = _time((item["timestamps"] or [None])[0])
        # Irregular but increasing: each value 1 h (+ a few minutes) after the previous one,
        # within the grid span limit.
        step = HOUR if len(values) * 1.1 > model["max_span"] else HOUR + timedelta(minutes=5)
        out["timestamps"] = [_iso(first + step * k) for k in range(len(values))]
    else:
        out["start"] = _iso(_time(item.get("start")))
    return out


def fit(body: dict[str, Any]) -> dict[str, Any]:
    """``body`` changed only where the prose rules (model, relations) demand."""
    model = served()
    out = dict(body)
    if out.get("model") is not None and out["model"] != model["name"]:
        out["model"] = model["name"]
    if isinstance(out.get("horizon"), int | float):  # 24.0 is an integer in JSON Schema
        out["horizon"] = min(out["horizon"], model["horizon"])
    if out.get("quantiles") is not None:
        out["quantiles"] = [q for q in out["quantiles"] if q in model["quantiles"]]
    series, ids = [], set()
    for i, item in enumerate(out.get("series") or []):
        fitted = _series(item, model, i)
        if fitted["id"] in ids:  # ids are unique within a request
            fitted["id"] = f"{fitted['id'][:190]}~{i}"
        ids.add(fitted["id"])
        series.append(fitted)
    out["series"] = series
    return out


def fit_actuals(body: dict[str, Any]) -> dict[str, Any]:
    """An actuals body changed only where the prose rules demand: the served model, unique
    ids, times on the model's hourly grid, no covariate fields."""
    model = served()
    out = dict(body)
    if out.get("model") is not None and out["model"] != model["name"]:
        out["model"] = model["name"]
    series, ids = [], set()
    for i, item in enumerate(out.get("series") or []):
        values = list(item.get("values") or [1.0])
        fitted: dict[str, Any] = {"id": item.get("id", f"s{i}"), "values": values}
        if fitted["id"] in ids:
            fitted["id"] = f"{fitted['id'][:190]}~{i}"
        ids.add(fitted["id"])
        if "timestamps" in item:
            first = _time((item["timestamps"] or [None])[0]).replace(minute=0, second=0,
                                                                     microsecond=0)
            fitted["timestamps"] = [_iso(first + HOUR * k) for k in range(len(values))]
        else:
            fitted["start"] = _iso(_time(item.get("start")).replace(minute=0, second=0,
                                                                     microsecond=0))
        series.append(fitted)
    out["series"] = series
    return out


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """Fit positive forecast and actuals bodies to the prose rules (see the module docstring)."""
    meta = case.meta
    if (case.method.upper() != "POST" or meta is None or not meta.generation.mode.is_positive
            or not isinstance(case.body, dict)):
        return
    if case.path == "/v1/forecast":
        case.body = fit(case.body)
    elif case.path == "/v1/actuals":
        case.body = fit_actuals(case.body)
