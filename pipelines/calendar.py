"""Calendar covariates computed from timestamps by a rule that a trained model stores.

A :class:`CalendarRule` names the features (time of day, day of week, day of year, public
holiday), the holiday calendar (a ``holidays`` country code and optional subdivision) and the
IANA time zone whose *local wall clock* the features describe. :func:`calendar_features` turns
timestamps into a ``float32`` matrix with one column per name in :meth:`CalendarRule.names`.

Timestamps follow the project's rule (:data:`pipelines.grid.TimeZone`,
:mod:`pipelines.timestamps`): naive ones are read as UTC, aware ones (any offset) are converted.
Everything after the time zone conversion is numpy on ``datetime64`` values; holidays are looked
up once per distinct local date in a calendar built once per (country, subdivision, years).
Holidays are the ``holidays`` package's public ones, observed days included (its defaults).
"""

from __future__ import annotations

import difflib
import importlib.metadata
import zoneinfo
from collections.abc import Sequence
from functools import lru_cache
from typing import Literal, get_args

import holidays
import numpy as np
import numpy.typing as npt
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["CalendarFeature", "CalendarRule", "calendar_features"]

CalendarFeature = Literal["hour", "weekday", "yearday", "holiday"]
"""Calendar feature families; each gives one or more columns (:meth:`CalendarRule.names`)."""

CALENDAR_FEATURES: tuple[CalendarFeature, ...] = get_args(CalendarFeature)

_COLUMNS: dict[CalendarFeature, tuple[str, ...]] = {
    "hour": ("hour_sin", "hour_cos"),
    "weekday": tuple(f"weekday_{day}" for day in range(7)),
    "yearday": ("yearday_sin", "yearday_cos"),
    "holiday": ("holiday",),
}

_DAYS_PER_YEAR = 365.25
_MINUTES_PER_DAY = 24 * 60
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)
_HOLIDAYS_VERSION = importlib.metadata.version("holidays")


@lru_cache(maxsize=1)
def _supported_countries() -> dict[str, list[str]]:
    """ISO 3166-1 alpha-2 codes the installed ``holidays`` knows, with their subdivisions."""
    return holidays.list_supported_countries(include_aliases=False)


class CalendarRule(BaseModel):
    """Which calendar features a model uses and in which time zone and holiday calendar.

    An empty ``features`` list turns calendar features off (width 0).
    """

    model_config = ConfigDict(extra="forbid")

    features: list[CalendarFeature] = Field(
        ["hour", "weekday", "yearday"], description="Feature families, in column order."
    )
    country: str | None = Field(
        None, description="holidays country code (ISO 3166-1 alpha-2); needed for 'holiday'."
    )
    subdivision: str | None = Field(
        None, description="holidays subdivision of the country (e.g. 'IL' for 'US')."
    )
    timezone: str = Field("UTC", description="IANA time zone whose local wall clock is described.")

    @field_validator("features")
    @classmethod
    def _no_duplicates(cls, value: list[CalendarFeature]) -> list[CalendarFeature]:
        repeated = sorted({name for name in value if value.count(name) > 1})
        if repeated:
            raise ValueError(f"calendar features listed more than once: {repeated}")
        return value

    @field_validator("country")
    @classmethod
    def _known_country(cls, value: str | None) -> str | None:
        if value is not None and value not in _supported_countries():
            raise ValueError(
                f"unknown holidays country {value!r}"
                f"{_suggestion(value, list(_supported_countries()))}; give an ISO 3166-1 "
                f"alpha-2 code supported by holidays {_HOLIDAYS_VERSION} "
                "(e.g. 'DE', 'NO', 'US'; see holidays.list_supported_countries())"
            )
        return value

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(
                f"unknown time zone {value!r}; give an IANA time zone name such as 'UTC', "
                "'Europe/Berlin' or 'America/Chicago'"
            ) from None
        return value

    @model_validator(mode="after")
    def _calendar_given(self) -> CalendarRule:
        if "holiday" in self.features and self.country is None:
            raise ValueError("calendar feature 'holiday' needs a country (e.g. country='DE')")
        if self.subdivision is not None:
            if self.country is None:
                raise ValueError(
                    f"subdivision {self.subdivision!r} needs a country (e.g. country='US')"
                )
            known = _supported_countries()[self.country]
            if self.subdivision not in known:
                raise ValueError(
                    f"unknown subdivision {self.subdivision!r} of holidays country "
                    f"{self.country!r}{_subdivision_hint(self.country, self.subdivision, known)}"
                )
        return self

    def names(self) -> list[str]:
        """Column names of :func:`calendar_features`' output, in order.

        Returns:
            For example ``["hour_sin", "hour_cos", "weekday_0", ..., "weekday_6",
            "yearday_sin", "yearday_cos", "holiday"]`` (Monday is ``weekday_0``).
        """
        return [column for feature in self.features for column in _COLUMNS[feature]]

    @property
    def width(self) -> int:
        """Number of feature columns (``len(names())``)."""
        return len(self.names())


def _suggestion(value: str, choices: Sequence[str]) -> str:
    """A ``" (did you mean ...?)"`` hint for a misspelt code, or an empty string."""
    if value.upper() in choices:
        return f" (did you mean {value.upper()!r}?)"
    close = difflib.get_close_matches(value.upper(), choices, n=3, cutoff=0.6)
    return f" (did you mean {', '.join(map(repr, close))}?)" if close else ""


def _subdivision_hint(country: str, value: str, known: list[str]) -> str:
    """Name the code of a subdivision given by its name, else list the codes."""
    aliases: dict[str, str] = getattr(
        holidays.country_holidays(country), "subdivisions_aliases", {}
    )
    for alias, code in aliases.items():
        if alias.casefold() == value.casefold():
            return f"; {value!r} is spelled {code!r}"
    if not known:
        return f"; {country!r} has no subdivisions in holidays {_HOLIDAYS_VERSION}"
    return f"{_suggestion(value, known)}; known: {', '.join(known)}"


def calendar_features(
    ds: pd.DatetimeIndex | pd.Series | np.ndarray, rule: CalendarRule
) -> npt.NDArray[np.float32]:
    """Calendar features of timestamps on the local wall clock of ``rule.timezone``.

    Columns (:meth:`CalendarRule.names`): ``hour`` gives sin/cos of
    ``2*pi*(hour + minute/60)/24``; ``weekday`` a one-hot of 7 (Monday = 0); ``yearday``
    sin/cos of ``2*pi*(dayofyear - 1)/365.25``; ``holiday`` 1.0 on a public holiday of the local
    date in the rule's country (and subdivision), else 0.0.

    Args:
        ds: Timestamps, one dimension: tz-aware with any offsets (converted) or naive (read
            as UTC); datetime values, or strings and timestamp objects that pandas parses.
        rule: The calendar rule.

    Returns:
        ``float32`` array of shape ``(len(ds), rule.width)``.

    Raises:
        TypeError: ``ds`` holds numbers rather than timestamps.
        ValueError: ``ds`` is not one-dimensional, cannot be parsed or has missing values.
    """
    utc = _as_utc(ds)
    out = np.empty((len(utc), rule.width), dtype=np.float32)
    if rule.width == 0:
        return out
    wall = utc.tz_convert(rule.timezone).tz_localize(None).to_numpy()
    days = wall.astype("datetime64[D]")
    day_numbers = days.astype(np.int64)
    column = 0
    for feature in rule.features:
        block = _feature(feature, wall, days, day_numbers, rule)
        out[:, column : column + block.shape[1]] = block
        column += block.shape[1]
    return out


def _feature(
    feature: CalendarFeature,
    wall: npt.NDArray[np.datetime64],
    days: npt.NDArray[np.datetime64],
    day_numbers: npt.NDArray[np.int64],
    rule: CalendarRule,
) -> npt.NDArray[np.float64]:
    """One feature family's columns from local wall-clock times and their dates."""
    if feature == "hour":
        minutes = wall.astype("datetime64[m]").astype(np.int64) - day_numbers * _MINUTES_PER_DAY
        return _circle(2 * np.pi * minutes / _MINUTES_PER_DAY)
    if feature == "weekday":
        weekday: npt.NDArray[np.int64] = (day_numbers + _EPOCH_WEEKDAY) % 7
        one_hot: npt.NDArray[np.bool_] = weekday[:, None] == np.arange(7)
        return one_hot.astype(np.float64)
    if feature == "yearday":
        year_start = days.astype("datetime64[Y]").astype("datetime64[D]")
        day_of_year = (days - year_start).astype(np.int64)  # 0 on January 1st
        return _circle(2 * np.pi * day_of_year / _DAYS_PER_YEAR)
    return _holidays(days, rule)[:, None]


def _circle(angle: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """Columns ``sin(angle)``, ``cos(angle)``."""
    return np.stack([np.sin(angle), np.cos(angle)], axis=1)


def _holidays(days: npt.NDArray[np.datetime64], rule: CalendarRule) -> npt.NDArray[np.float64]:
    """1.0 where the local date is a public holiday of the rule's calendar, else 0.0."""
    if rule.country is None:  # CalendarRule refuses "holiday" without a country
        raise ValueError("calendar feature 'holiday' needs a country")
    unique, inverse = np.unique(days, return_inverse=True)
    years = np.unique(unique.astype("datetime64[Y]").astype(np.int64) + 1970)
    calendar = _calendar(rule.country, rule.subdivision, tuple(int(year) for year in years))
    holiday_dates = np.array(sorted(calendar.keys()), dtype="datetime64[D]")
    flags = np.isin(unique, holiday_dates)
    return flags.astype(np.float64)[inverse.reshape(-1)]


@lru_cache(maxsize=64)
def _calendar(
    country: str, subdivision: str | None, years: tuple[int, ...]
) -> holidays.HolidayBase:
    """The public holidays of a country (and subdivision) in some years, built once."""
    return holidays.country_holidays(country, subdiv=subdivision, years=years, expand=False)


def _as_utc(ds: pd.DatetimeIndex | pd.Series | np.ndarray) -> pd.DatetimeIndex:
    """Timestamps as a UTC index: naive ones read as UTC, aware ones converted."""
    if isinstance(ds, np.ndarray) and ds.ndim != 1:
        raise ValueError(f"timestamps must be one-dimensional, got shape {ds.shape}")
    values = ds if isinstance(ds, pd.DatetimeIndex) else pd.Series(ds)
    if isinstance(values, pd.Series):
        if pd.api.types.is_datetime64_any_dtype(values):
            values = pd.DatetimeIndex(values)
        elif pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            raise TypeError(
                f"timestamps have numeric dtype {values.dtype}; convert them first "
                "(e.g. pd.to_datetime(values, unit='s') for epoch seconds)"
            )
        else:
            values = _parse(values)
    index = values.tz_localize("UTC") if values.tz is None else values.tz_convert("UTC")
    missing = np.flatnonzero(index.isna())
    if missing.size:
        raise ValueError(
            f"{missing.size} timestamp(s) are missing (NaT), first at position {missing[0]}"
        )
    return index


def _parse(values: pd.Series) -> pd.DatetimeIndex:
    """Parse strings or timestamp objects (naive as UTC, offsets converted)."""
    try:
        return pd.DatetimeIndex(pd.to_datetime(values, utc=True, format="ISO8601"))
    except (ValueError, TypeError, OverflowError):
        pass
    try:
        return pd.DatetimeIndex(pd.to_datetime(values, utc=True, format="mixed"))
    except (ValueError, TypeError, OverflowError) as error:
        raise ValueError(f"cannot parse the timestamps: {error}") from None
