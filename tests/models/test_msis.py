"""MSIS (M4's mean scaled interval score): hand-computed values and what it is made of."""

import numpy as np
import pytest

from nearcast.models.evaluation import interval_scores
from nearcast.models.metrics import mase_scales, msis


def test_msis_by_hand() -> None:
    # One series, horizon 3, the interval [9, 11] at every step (width 2).
    # In-sample [1, 3, 1, 3, 1] at lag 1: |differences| all 2 -> scale 2.
    # alpha 0.2 (80%): step 1: y = 10 inside -> 2; step 2: y = 12 above by 1 -> 2 + 10 * 1 = 12;
    # step 3: y = 8 below by 1 -> 2 + 10 * 1 = 12. Mean 26 / 3, scaled: 13 / 3.
    y, lo, hi = [[10.0, 12.0, 8.0]], [[9.0, 9.0, 9.0]], [[11.0, 11.0, 11.0]]
    insample = [np.array([1.0, 3.0, 1.0, 3.0, 1.0])]
    assert msis(y, lo, hi, insample, 1, 0.2) == pytest.approx(13 / 3)
    # alpha 0.05 (M4's 95%): penalty 2 / 0.05 = 40 -> (2 + 42 + 42) / 3 / 2 = 43 / 3.
    assert msis(y, lo, hi, insample, 1, 0.05) == pytest.approx(43 / 3)


def test_msis_is_the_mean_of_per_series_scores_with_the_mase_scale() -> None:
    rng = np.random.default_rng(0)
    insample = [rng.normal(10, 2, 60), rng.normal(50, 9, 80)]
    y = rng.normal([[10.0], [50.0]], [[2.0], [9.0]], (2, 12))
    mid = y + rng.normal(0, 2, y.shape)
    lo, hi = mid - 2.5, mid + 2.5
    alpha, scales = 0.2, mase_scales(insample, 24)
    below, above = np.maximum(lo - y, 0), np.maximum(y - hi, 0)
    per_series = ((hi - lo) + 2 / alpha * (below + above)).mean(axis=1) / scales
    assert msis(y, lo, hi, insample, 24, alpha) == pytest.approx(per_series.mean(), rel=1e-12)


def test_msis_rewards_calibrated_intervals_over_too_wide_or_too_narrow() -> None:
    rng = np.random.default_rng(1)
    insample = [rng.normal(0, 1, 100) for _ in range(50)]
    y = rng.normal(0, 1, (50, 48))
    z80 = 1.2816  # N(0, 1): the 10% and 90% quantiles
    scores = {k: msis(y, -k * z80 * np.ones_like(y), k * z80 * np.ones_like(y), insample, 24, 0.2)
              for k in (0.3, 1.0, 3.0)}
    assert scores[1.0] < scores[0.3] and scores[1.0] < scores[3.0]


def test_msis_errors_name_the_problem() -> None:
    insample = [np.array([1.0, 2.0, 3.0])]
    with pytest.raises(ValueError, match="alpha must be in"):
        msis([[1.0]], [[0.0]], [[2.0]], insample, 1, 1.0)
    with pytest.raises(ValueError, match="lower exceeds upper"):
        msis([[1.0]], [[3.0]], [[2.0]], insample, 1, 0.2)
    with pytest.raises(ValueError, match="insample has 1 series"):
        msis([[1.0], [1.0]], [[0.0], [0.0]], [[2.0], [2.0]], insample, 1, 0.2)


def test_interval_scores_name_each_central_interval() -> None:
    quantiles = [0.1, 0.25, 0.5, 0.75, 0.9]
    y = np.array([[10.0, 12.0, 8.0]])
    result = np.stack([y - 2, y - 1, y, y + 1, y + 2], axis=-1)  # every point inside
    insample = [np.array([1.0, 3.0, 1.0, 3.0, 1.0])]
    out = interval_scores(quantiles, result, y, insample, 1)
    assert set(out) == {"coverage_80", "msis_80", "coverage_50", "msis_50"}
    assert out["coverage_80"] == out["coverage_50"] == 1.0
    assert out["msis_80"] == pytest.approx(4 / 2)  # width 4, scale 2, no misses
    assert out["msis_50"] == pytest.approx(2 / 2)


def test_msis_interval_score_is_utilsforecasts_winkler_score() -> None:
    from utilsforecast.losses import winkler_score

    from nearcast.models.metric_arrays import means

    rng = np.random.default_rng(2)
    y = rng.normal(0, 1, (5, 24))
    lo, hi = y + rng.normal(-1, 1, y.shape), y + rng.normal(1, 1, y.shape)
    lo, hi = np.minimum(lo, hi), np.maximum(lo, hi)
    insample = [np.array([0.0, 1.0] * 20)] * 5  # lag-1 scale 1: MSIS = the mean interval score
    per_series = means(lambda df, models: winkler_score(df, models, level=80), y,
                       {"f-lo-80": lo, "f-hi-80": hi}, "series")
    assert msis(y, lo, hi, insample, 1, 0.2) == pytest.approx(per_series.mean(), rel=1e-12)
