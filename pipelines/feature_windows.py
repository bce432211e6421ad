"""Covariate inputs of a batch of forecast requests (the serving side of ``gather_batch``).

numpy and pandas only; :func:`pipelines.series_table.gather_batch` is the training side.

Each series comes as its regular history frame (``ds``, the covariate columns, its statics)
and the future-known covariates of the steps to forecast. The time matrix of the history is
cut or padded exactly as :func:`pipelines.padding.fit_histories` cuts or pads the values, so a
served window equals the training window that ends at the same point.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from nearcast.pipelines.covariates import future_names, past_names, static_names
from nearcast.pipelines.features import FeatureSpec
from nearcast.pipelines.padding import usable_length
from nearcast.pipelines.schema import DS
from nearcast.pipelines.window_runs import WindowSpec


class CovariateError(ValueError):
    """A series' covariates do not fit the model; ``index`` is its position in the batch."""

    def __init__(self, index: int, message: str) -> None:
        super().__init__(message)
        self.index = index


@dataclass(frozen=True)
class CovariateBatch:
    """The covariate inputs of a batch and which series the model did not see in training.

    Attributes:
        inputs: ``past``, ``future``, ``static``, ``series`` (those the model has).
        unseen: per series, True when the series embedding used the shared vector.
    """

    inputs: dict[str, np.ndarray]
    unseen: np.ndarray


def future_frame(
    ds: pd.DatetimeIndex, values: Mapping[str, Sequence[float] | np.ndarray] | None,
    spec: FeatureSpec,
    index: int,
) -> pd.DataFrame:
    """The frame of the forecast steps: timestamps and each future-known covariate.

    Raises:
        CovariateError: a future covariate missing, not named by the model, of another length
            than the steps, or not finite (naming it).
    """
    given = dict(values or {})
    wanted = future_names(spec.covariates)
    extra = sorted(set(given) - set(wanted))
    if extra:
        raise CovariateError(index, f"future: {extra} not future covariates of this model "
                             f"(it takes {wanted})")
    frame = pd.DataFrame({DS: ds})
    for name in wanted:
        if name not in given:
            raise CovariateError(index, f"future: covariate {name!r} is missing; the model "
                                 f"needs its {len(ds)} values over the horizon")
        column = np.asarray(given[name], dtype=np.float64)
        if column.shape != (len(ds),):
            raise CovariateError(index, f"future: covariate {name!r} has {column.size} values "
                                 f"for {len(ds)} forecast steps")
        if not np.isfinite(column).all():
            raise CovariateError(index, f"future: covariate {name!r} holds a missing or "
                                 "non-finite value")
        frame[name] = column
    for name in past_names(spec.covariates):
        frame[name] = 0.0  # never read: past-only covariates are not in the future columns
    return frame


def covariate_batch(
    spec: FeatureSpec, window: WindowSpec, histories: Sequence[pd.DataFrame],
    futures: Sequence[pd.DataFrame], ids: Sequence[str],
) -> CovariateBatch:
    """The covariate inputs of each series (its regular history and its future frame).

    Args:
        spec: the model's feature spec.
        window: the model's window geometry.
        histories: per series, its regular history (``ds``, the time-varying covariates and
            the statics), oldest first, as long as its values.
        futures: per series, :func:`future_frame` of at least ``window.horizon`` steps.
        ids: the series keys (for the embedding).

    Raises:
        CovariateError: a static covariate missing, of the wrong type or with an unseen
            category (naming it).
    """
    widths, size, horizon = spec.input_widths(), window.input_size, window.horizon
    out: dict[str, np.ndarray] = {}
    if "past" in widths:
        past = np.zeros((len(histories), size, widths["past"]), np.float32)
        for i, frame in enumerate(histories):
            keep = usable_length(len(frame), window)
            if keep:
                past[i, size - keep :] = spec.time_matrix(frame.iloc[len(frame) - keep :])
        out["past"] = past
    if "future" in widths:
        cols = spec.future_columns()
        out["future"] = np.stack([spec.time_matrix(f.iloc[:horizon])[:, cols] for f in futures])
    if "static" in widths:
        rows = []
        for i, frame in enumerate(histories):
            row = {n: frame[n].iloc[0] for n in static_names(spec.covariates) if n in frame}
            try:
                rows.append(spec.static_matrix([row])[0])
            except ValueError as exc:
                raise CovariateError(i, f"static: {exc}") from None
        out["static"] = np.stack(rows).astype(np.float32)
    codes, unseen = spec.series_codes(ids)
    if "series" in widths:
        out["series"] = codes
    return CovariateBatch(out, unseen)


__all__ = ["CovariateBatch", "CovariateError", "covariate_batch", "future_frame"]
