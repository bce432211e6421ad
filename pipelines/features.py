"""What a covariate model reads besides the target, and how it becomes model inputs (numpy).

A :class:`FeatureSpec` is fitted once on the training frame and stored in the model. It turns
a regular long frame (target plus covariate columns, :mod:`pipelines.covariates`) into:

- a *time matrix* ``(N, C)`` aligned with the series values: the past and future-known
  covariates, standardised by statistics of the training frame, then the calendar features
  (:mod:`pipelines.calendar`) computed from the timestamps by the stored rule. The encoder
  reads its columns over the input window; the head reads the future-known columns
  (:meth:`FeatureSpec.future_columns`) over the horizon.
- a *static matrix* ``(S, D)`` per series: numeric statics standardised, categorical ones
  one-hot over the training vocabulary (an unseen value is an error naming it);
- *series codes* ``(S,)`` for the learned series embedding: ``1..n`` for the training series,
  ``0`` (a shared vector) for any other.

Nothing here looks at the target: the statistics are of the covariates, so no value of the
target after a forecast origin can reach a forecast.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from nearcast.pipelines.calendar import CalendarRule, calendar_features
from nearcast.pipelines.covariates import Covariate, future_names, static_names, time_varying
from nearcast.pipelines.schema import DS, UNIQUE_ID

_MIN_STD = 1e-6


class FeatureSpec(BaseModel):
    """Covariates, calendar and series vocabulary of one model, with the fitted statistics.

    Attributes:
        covariates: name -> declaration (role, kind, bucket aggregation, gap policy).
        calendar: the calendar rule, or None for no calendar features.
        series_ids: training series in code order (code ``i + 1``); empty without an
            embedding.
        stats: numeric covariate -> ``[mean, std]`` of the training frame.
        categories: categorical static covariate -> the training values, in one-hot order.
    """

    model_config = ConfigDict(extra="forbid")

    covariates: dict[str, Covariate] = Field(default_factory=dict)
    calendar: CalendarRule | None = None
    series_ids: list[str] = Field(default_factory=list)
    stats: dict[str, list[float]] = Field(default_factory=dict)
    categories: dict[str, list[str]] = Field(default_factory=dict)

    @classmethod
    def fit(
        cls, frame: pd.DataFrame, covariates: Mapping[str, Covariate],
        calendar: CalendarRule | None, embed_series: bool,
    ) -> FeatureSpec:
        """Fit the statistics and vocabularies on a regular training frame."""
        stats, categories = {}, {}
        for name, cov in covariates.items():
            column = frame[name]
            if cov.kind == "categorical":
                categories[name] = sorted({str(v) for v in column.unique()})
                continue
            values = (column.groupby(frame[UNIQUE_ID]).first() if cov.role == "static"
                      else column).to_numpy(np.float64)
            std = float(np.std(values)) if values.size else 1.0
            stats[name] = [float(np.mean(values)) if values.size else 0.0, max(std, _MIN_STD)]
        ids = sorted({str(u) for u in frame[UNIQUE_ID].unique()}) if embed_series else []
        return cls(covariates=dict(covariates), calendar=calendar, series_ids=ids, stats=stats,
                   categories=categories)

    @property
    def active(self) -> bool:
        """True when the model reads anything besides the target."""
        return bool(self.covariates or self.calendar_width or self.series_ids)

    @property
    def calendar_width(self) -> int:
        """Calendar feature columns (0 without a calendar)."""
        return self.calendar.width if self.calendar is not None else 0

    def input_widths(self) -> dict[str, int]:
        """The model inputs this spec feeds, by name, with their widths (absent when 0).

        ``past``: time-matrix columns; ``future``: future-known columns; ``static``: static
        columns; ``series``: training series (the embedding has one more row, code 0).
        """
        widths = {"past": len(self.time_columns()), "future": len(self.future_columns()),
                  "static": len(self.static_columns()), "series": len(self.series_ids)}
        return {k: v for k, v in widths.items() if v}

    def input_shapes(self, horizon: int, window: int | None = None
                     ) -> dict[str, tuple[tuple[int | None, ...], str]]:
        """Shape (without the batch axis) and dtype of each model input this spec feeds.

        The one definition the graph's inputs, the compiled path and the training datasets
        use. ``window`` is the history length (None: any).
        """
        widths = self.input_widths()
        shapes: dict[str, tuple[tuple[int | None, ...], str]] = {
            "past": ((window, widths.get("past", 0)), "float32"),
            "future": ((horizon, widths.get("future", 0)), "float32"),
            "static": ((widths.get("static", 0),), "float32"),
            "series": ((), "int32"),
        }
        return {key: shapes[key] for key in widths}

    def time_columns(self) -> list[str]:
        """Columns of the time matrix: past and future covariates, then the calendar."""
        return time_varying(self.covariates) + (self.calendar.names() if self.calendar else [])

    def future_columns(self) -> list[int]:
        """Positions in the time matrix known over the horizon (future covariates, calendar)."""
        future = set(future_names(self.covariates))
        names = time_varying(self.covariates)
        known = [i for i, n in enumerate(names) if n in future]
        return known + list(range(len(names), len(names) + self.calendar_width))

    def static_columns(self) -> list[str]:
        """Columns of the static matrix (one per numeric, one per category value)."""
        out = []
        for name in static_names(self.covariates):
            if name in self.categories:
                out += [f"{name}={v}" for v in self.categories[name]]
            else:
                out.append(name)
        return out

    def time_matrix(self, frame: pd.DataFrame) -> np.ndarray:
        """The time matrix of a regular long frame, in the frame's row order, float32."""
        parts = [self._standard(name, frame[name].to_numpy(np.float64))
                 for name in time_varying(self.covariates)]
        if self.calendar is not None:
            parts.append(calendar_features(pd.DatetimeIndex(frame[DS]), self.calendar))
        if not parts:
            return np.zeros((len(frame), 0), np.float32)
        return np.column_stack(parts).astype(np.float32)

    def static_matrix(self, values: Sequence[Mapping[str, object]]) -> np.ndarray:
        """Static inputs of each series from ``{name: value}``, shape ``(S, D)``, float32.

        Raises:
            ValueError: a missing static covariate, a non-numeric value for a numeric one or a
                categorical value not seen in training (the message names it).
        """
        out = np.zeros((len(values), len(self.static_columns())), np.float32)
        for i, row in enumerate(values):
            col = 0
            for name in static_names(self.covariates):
                if name not in row:
                    raise ValueError(f"static covariate {name!r} is missing")
                value = self.check_static(name, row[name])
                if isinstance(value, str):
                    vocab = self.categories[name]
                    out[i, col + vocab.index(value)] = 1.0
                    col += len(vocab)
                else:
                    out[i, col] = self._standard(name, np.asarray([value]))[0]
                    col += 1
        return out

    def check_static(self, name: str, value: object) -> float | str:
        """A static covariate's value as the model reads it: a finite number or a category.

        Raises:
            ValueError: a string for a numeric covariate, a non-string for a categorical one,
                or a category not seen in training (the message says which).
        """
        if name not in self.categories:
            if isinstance(value, str):
                raise ValueError(f"static covariate {name!r} is numeric; got the string "
                                 f"{value!r}")
            return _number(name, value)
        vocab = self.categories[name]
        if not isinstance(value, str):
            raise ValueError(f"static covariate {name!r} is categorical; give one of "
                             f"{vocab[:10]} as a string, not {value!r}")
        if value not in vocab:
            raise ValueError(f"static covariate {name!r}: value {value!r} was not seen in "
                             f"training; known: {vocab[:10]}")
        return value

    def statics_of(self, frame: pd.DataFrame, ids: Sequence[str]) -> np.ndarray:
        """The static matrix of the series ``ids`` of a long frame (first row of each)."""
        names = static_names(self.covariates)
        first = frame.groupby(frame[UNIQUE_ID].astype(str), sort=False)[names].first()
        rows = [dict(first.loc[str(u)]) if names else {} for u in ids]
        return self.static_matrix(rows)

    def series_codes(self, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Embedding codes ``(S,)`` int32 (0: the shared vector) and which ids were unseen."""
        lookup = {uid: i + 1 for i, uid in enumerate(self.series_ids)}
        codes = np.asarray([lookup.get(str(u), 0) for u in ids], np.int32)
        return codes, (codes == 0) & bool(self.series_ids)

    def _standard(self, name: str, values: np.ndarray) -> np.ndarray:
        mean, std = self.stats[name]
        return (values - mean) / std

    def describe(self) -> list[dict[str, object]]:
        """What a caller must send, one entry per covariate (for ``GET /v1/models``)."""
        out: list[dict[str, object]] = []
        for name, cov in self.covariates.items():
            entry: dict[str, object] = {"name": name, "role": cov.role, "kind": cov.kind}
            if name in self.categories:
                entry["categories"] = self.categories[name]
            out.append(entry)
        return out


def _number(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.number):
        raise ValueError(f"static covariate {name!r} must be a number, got {value!r}")
    number = float(value)
    if not np.isfinite(number):
        raise ValueError(f"static covariate {name!r} must be finite, got {value!r}")
    return number


__all__ = ["FeatureSpec"]
