"""The grid rule: how raw observations become one regular series, given once and kept.

A :class:`GridRule` (frequency, bucket aggregation, gap policy, longest gap filled, time zone)
is read from a job file's ``data:`` section, stored in the trained model's metadata and applied
by everything that later reads raw observations for that model (the API, ``nearcast
evaluate``, retraining and the MLflow pyfunc), so they all see the series it was trained on.
"""

from __future__ import annotations

from typing import Literal

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator

Aggregation = Literal["mean", "sum", "last", "first", "min", "max"]
"""How the observations falling into one grid bucket become its value (all skip NaN)."""

GapPolicy = Literal["ffill", "linear", "zero"]
"""How a grid point without a value is filled (``keep``, leaving it empty, is not a rule a
model can be trained or served with)."""

TimeZone = Literal["UTC"]
"""Naive timestamps are read as UTC, aware ones converted to UTC; buckets (days too) are UTC."""


class GridRule(BaseModel):
    """Frequency, aggregation, gap filling and time zone of a model's series.

    ``freq`` is a pandas alias (``"h"``, ``"15min"``, ``"D"``, ``"W-MON"``, ``"MS"``); ``None``
    (only when reading data) infers it from the timestamps. A trained model's rule always has
    one.
    """

    model_config = ConfigDict(extra="forbid")

    freq: str | None = Field("h", description="Grid frequency; null infers it.")
    agg: Aggregation = Field("mean", description="Aggregation of the points in a bucket.")
    gap_policy: GapPolicy = Field("linear", description="How empty grid points are filled.")
    max_gap: int | None = Field(None, ge=1, description="Longest run of empty points filled.")
    timezone: TimeZone = Field("UTC", description="Time zone of the grid (UTC only).")

    @field_validator("freq")
    @classmethod
    def _known_freq(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                pd.tseries.frequencies.to_offset(value)
            except ValueError:
                raise ValueError(f"unknown frequency {value!r} (e.g. 'h', '15min', 'D', "
                                 "'W-MON', 'MS')") from None
        return value

    def rule(self) -> GridRule:
        """Only the grid rule's fields (of a subclass such as a data config, too)."""
        return GridRule.model_validate(self.model_dump(include=set(GridRule.model_fields)))

    def differences(self, other: GridRule) -> dict[str, tuple[object, object]]:
        """The keys given in this rule (not defaulted) whose value differs from ``other``'s.

        Returns:
            ``{key: (ours, theirs)}`` in field order. Frequencies compare as offsets
            (``"60min"`` equals ``"h"``); a frequency left to inference (None) differs from none.
        """
        out: dict[str, tuple[object, object]] = {}
        for key in [k for k in GridRule.model_fields if k in self.model_fields_set]:
            ours, theirs = getattr(self, key), getattr(other, key)
            if key == "freq" and (ours is None or (theirs is not None and same_freq(ours, theirs))):
                continue  # no frequency asked for, or the same offset spelled otherwise
            if ours != theirs:
                out[key] = (ours, theirs)
        return out


def same_freq(a: str, b: str) -> bool:
    """True when two pandas frequency aliases name the same offset."""
    return bool(pd.tseries.frequencies.to_offset(a) == pd.tseries.frequencies.to_offset(b))


__all__ = ["Aggregation", "GapPolicy", "GridRule", "TimeZone", "same_freq"]
