"""Baseline forecasters (pure numpy): naive, seasonal naive and the M4 competition's Naive2.

Every forecaster takes ``histories``, a sequence of 1-D arrays (one per series, varying
lengths), and a horizon ``h``, and returns an array of shape ``(n_series, h)``.
:data:`BASELINES` maps names to forecasters sharing the signature ``(histories, h, season)``.

Naive2 follows the M4 benchmark (R script ``Benchmarks and Evaluation.R`` / Python
``ML_benchmarks.py`` of the ``M4-methods`` repository): a 90% autocorrelation seasonality test at
lag ``season`` (only for series of at least ``3 * season`` points), classical multiplicative
decomposition when seasonal, naive on the deseasonalised series, reseasonalised forecast.
Where the two reference scripts differ, the R statistical benchmarks are followed: lag-1
autocorrelation squared in the test limit, and a 2x``season`` moving average whenever ``season``
is even (the Python script tests the series length's parity instead, a documented bug).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import numpy.typing as npt

__all__ = [
    "BASELINES",
    "BaselineForecaster",
    "acf",
    "is_seasonal",
    "naive",
    "naive2",
    "seasonal_indices",
    "seasonal_naive",
]

FloatArray = npt.NDArray[np.float64]

BaselineForecaster = Callable[[Sequence[npt.ArrayLike], int, int], FloatArray]
"""Common signature of the registered baselines: ``(histories, h, season) -> (n_series, h)``."""

_TCRIT = 1.645  # one-sided 95% / two-sided 90% normal quantile used by the M4 seasonality test


# --------------------------------------------------------------------------- validation helpers


def _check_positive_int(name: str, value: int) -> int:
    """Return ``value`` as ``int`` if it is an integer >= 1, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def _as_series(values: npt.ArrayLike, index: int) -> FloatArray:
    """Convert one history to a finite, non-empty 1-D float array."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"history {index} must be 1-D, got shape {x.shape}")
    if x.size == 0:
        raise ValueError(f"history {index} is empty")
    if not np.isfinite(x).all():
        raise ValueError(f"history {index} contains NaN or infinite values")
    return x


def _forecast_each(
    histories: Sequence[npt.ArrayLike], h: int, one: Callable[[FloatArray, int], FloatArray]
) -> FloatArray:
    """Apply a single-series forecaster to every history and stack to (n_series, h)."""
    horizon = _check_positive_int("h", h)
    out = np.empty((len(histories), horizon), dtype=np.float64)
    for i, values in enumerate(histories):
        out[i] = one(_as_series(values, i), horizon)
    return out


# --------------------------------------------------------------------------- naive forecasters


def _naive_one(x: FloatArray, h: int) -> FloatArray:
    """Repeat the last value ``h`` times."""
    return np.full(h, x[-1])


def _seasonal_naive_one(x: FloatArray, h: int, season: int) -> FloatArray:
    """Repeat the last ``season`` values cyclically; naive if the series is shorter."""
    if x.size < season:
        return _naive_one(x, h)
    return x[x.size - season + np.arange(h) % season]


def naive(histories: Sequence[npt.ArrayLike], h: int) -> FloatArray:
    """Naive forecast: repeat each series' last observed value.

    Args:
        histories: One 1-D array per series (varying lengths, non-empty, finite).
        h: Forecast horizon, >= 1.

    Returns:
        Array of shape (n_series, h).

    Raises:
        ValueError: On a bad horizon or an empty / non-1-D / non-finite history.
    """
    return _forecast_each(histories, h, _naive_one)


def seasonal_naive(histories: Sequence[npt.ArrayLike], h: int, season: int) -> FloatArray:
    """Seasonal naive forecast: repeat each series' last ``season`` values cyclically.

    Step ``k`` (0-based) of a series ``x`` of length ``n`` is ``x[n - season + k % season]``.
    A series shorter than ``season`` falls back to :func:`naive`.

    Args:
        histories: One 1-D array per series (varying lengths, non-empty, finite).
        h: Forecast horizon, >= 1.
        season: Seasonal period, >= 1.

    Returns:
        Array of shape (n_series, h).

    Raises:
        ValueError: On a bad horizon/season or an empty / non-1-D / non-finite history.
    """
    period = _check_positive_int("season", season)
    return _forecast_each(histories, h, lambda x, k: _seasonal_naive_one(x, k, period))


# --------------------------------------------------------------------------- Naive2 (M4)


def acf(x: npt.ArrayLike, max_lag: int) -> FloatArray:
    """Sample autocorrelations at lags 0..max_lag, as in R's ``acf`` and the M4 code.

    ``acf[k] = sum_{t>=k} (x[t] - m) * (x[t-k] - m) / sum_t (x[t] - m) ** 2`` with ``m`` the mean.

    Args:
        x: 1-D series.
        max_lag: Largest lag, >= 0 (lags at or beyond the series length give 0).

    Returns:
        Array of shape (max_lag + 1,); all NaN if the series is constant (zero variance).

    Raises:
        ValueError: If ``x`` is not 1-D or ``max_lag`` is negative.
    """
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1 or max_lag < 0:
        raise ValueError(f"need a 1-D series and max_lag >= 0, got {arr.shape}, {max_lag}")
    dev = arr - arr.mean()
    denom = float(np.dot(dev, dev))
    if denom == 0.0:
        return np.full(max_lag + 1, np.nan)
    # einsum, not np.dot: a BLAS call per lag wakes BLAS threads, which on busy cores cost
    # milliseconds each (a year of daily backtest folds ran 100x slower).
    num = [float(np.einsum("i,i->", dev[k:], dev[: dev.size - k])) for k in range(max_lag + 1)]
    return np.asarray(num, dtype=np.float64) / denom


def is_seasonal(x: npt.ArrayLike, season: int) -> bool:
    """M4 seasonality test at lag ``season`` with 90% confidence.

    Seasonal iff ``len(x) >= 3 * season``, ``season > 1`` and
    ``|acf[season]| > 1.645 * sqrt((1 + 2 * sum(acf[1:season] ** 2)) / len(x))``.
    A constant series (undefined autocorrelation) is not seasonal.

    Args:
        x: 1-D series.
        season: Seasonal period to test.

    Returns:
        Whether the series is seasonal.
    """
    arr = np.asarray(x, dtype=np.float64)
    if season <= 1 or arr.size < 3 * season:
        return False
    r = acf(arr, season)
    if np.isnan(r).any():
        return False
    limit = _TCRIT * np.sqrt((1.0 + 2.0 * np.sum(r[1:season] ** 2)) / arr.size)
    return bool(abs(r[season]) > limit)


def _centered_moving_average(x: FloatArray, season: int) -> FloatArray:
    """Centred MA of order ``season`` (2x``season`` MA if even); NaN where undefined."""
    if season % 2 == 0:
        weights = np.r_[0.5, np.ones(season - 1), 0.5] / season
    else:
        weights = np.ones(season) / season
    half = (weights.size - 1) // 2
    trend = np.full(x.size, np.nan)
    trend[half : x.size - half] = np.convolve(x, weights, mode="valid")
    return trend


def seasonal_indices(x: npt.ArrayLike, season: int) -> FloatArray:
    """Multiplicative seasonal indices of classical decomposition (R ``decompose``).

    Ratios ``x / centred_MA`` are averaged per position ``t % season`` (positions counted from
    the first observation, undefined ratios skipped) and normalised to average 1.

    Args:
        x: 1-D series with at least ``2 * season`` points (Naive2 only uses ``3 * season``+).
        season: Seasonal period, >= 2.

    Returns:
        Array of shape (season,); index ``j`` applies to time steps ``t`` with ``t % season == j``.

    Raises:
        ValueError: If the series has fewer than ``2 * season`` points or ``season < 2``.
    """
    arr = np.asarray(x, dtype=np.float64)
    if season < 2 or arr.size < 2 * season:
        raise ValueError(f"need season >= 2 and >= 2 * season points, got {season}, {arr.size}")
    ratios = arr / _centered_moving_average(arr, season)
    padded = np.full(-(-arr.size // season) * season, np.nan)
    padded[: arr.size] = ratios
    figure = np.nanmean(padded.reshape(-1, season), axis=0)
    return np.asarray(figure / figure.mean(), dtype=np.float64)


def _naive2_one(x: FloatArray, h: int, season: int) -> FloatArray:
    """Naive2 for one series (plain naive when not seasonal or indices unusable)."""
    if not is_seasonal(x, season):
        return _naive_one(x, h)
    with np.errstate(divide="ignore", invalid="ignore"):
        si = seasonal_indices(x, season)
    if not (np.isfinite(si).all() and (si > 0).all()):
        return _naive_one(x, h)  # e.g. zero/negative data: multiplicative model undefined
    level = x[-1] / si[(x.size - 1) % season]
    return np.asarray(level * si[(x.size + np.arange(h)) % season], dtype=np.float64)


def naive2(histories: Sequence[npt.ArrayLike], h: int, season: int) -> FloatArray:
    """M4 Naive2: naive forecast on the seasonally adjusted series, reseasonalised.

    For each series, if :func:`is_seasonal` (needs ``>= 3 * season`` points), the multiplicative
    :func:`seasonal_indices` ``si`` are estimated, the last value is deseasonalised
    (``x[n-1] / si[(n-1) % season]``) and step ``k`` is ``that * si[(n + k) % season]``.
    Otherwise (or if the indices are not finite and positive, e.g. data with zeros or negative
    values around the trend) the forecast is plain naive.

    Args:
        histories: One 1-D array per series (varying lengths, non-empty, finite).
        h: Forecast horizon, >= 1.
        season: Seasonal period, >= 1 (1 means plain naive).

    Returns:
        Array of shape (n_series, h).

    Raises:
        ValueError: On a bad horizon/season or an empty / non-1-D / non-finite history.
    """
    period = _check_positive_int("season", season)
    return _forecast_each(histories, h, lambda x, k: _naive2_one(x, k, period))


def _naive_any_season(histories: Sequence[npt.ArrayLike], h: int, season: int) -> FloatArray:
    """:func:`naive` with the common ``(histories, h, season)`` signature (season ignored)."""
    _check_positive_int("season", season)
    return naive(histories, h)


BASELINES: dict[str, BaselineForecaster] = {
    "naive": _naive_any_season,
    "seasonal_naive": seasonal_naive,
    "naive2": naive2,
}
"""Registry of baseline forecasters by name, all with signature ``(histories, h, season)``."""
