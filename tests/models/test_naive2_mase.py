"""The one scoring path (score_methods) on two hand-made series: Naive2, MASE, sMAPE, OWA.

test_baselines.py checks each baseline and test_metrics.py each metric on its own; this checks
the function the training holdout, backtests and the peers benchmark all score through.
"""

import numpy as np
import pytest

from nearcast.models.baselines import BASELINES
from nearcast.models.evaluation import score_methods

SEASON, H = 4, 4
# Series A: seasonal (0.8, 0.8, 0.8, 1.6) x 50 with the last value raised from 80 to 88;
# Naive2 = [44, 6688/153, 44, 88] (derived in test_baselines.py).
# Series B: a trend, not seasonal, so Naive2 is plain naive.
INSAMPLE = [np.array([40.0, 40.0, 40.0, 80.0] * 3 + [40.0, 40.0, 40.0, 88.0]),
            np.arange(1.0, 17.0)]
ACTUAL = np.array([[44.0, 44.0, 44.0, 88.0], [17.0, 18.0, 19.0, 20.0]])


def _by_hand() -> dict[str, dict[str, float]]:
    # MASE scales (mean |x_t - x_{t-4}|): A: only t = 15 differs (88 - 80) -> 8/12; B: 4.
    scale = np.array([8.0 / 12.0, 4.0])
    fc = {"naive": np.array([[88.0] * 4, [16.0] * 4]),
          "seasonal_naive": np.array([[40.0, 40.0, 40.0, 88.0], [13.0, 14.0, 15.0, 16.0]]),
          "naive2": np.array([[44.0, 6688.0 / 153.0, 44.0, 88.0], [16.0] * 4])}
    out = {}
    for name, f in fc.items():
        err = np.abs(ACTUAL - f)
        smape = np.mean(2.0 * err / (np.abs(ACTUAL) + np.abs(f))) * 100.0
        out[name] = {"smape": smape, "mase": np.mean(err.mean(axis=1) / scale)}
    return out


def test_naive2_mase_and_owa_through_score_methods() -> None:
    forecasts = {name: BASELINES[name](INSAMPLE, H, SEASON) for name in BASELINES}
    np.testing.assert_allclose(forecasts["naive2"], [[44.0, 6688 / 153, 44.0, 88.0], [16.0] * 4])
    scores = score_methods(forecasts, ACTUAL, INSAMPLE, SEASON)
    expected = _by_hand()
    # Naive2 on A misses only step 2, by 44 - 6688/153 = 44/153; B misses by 1, 2, 3, 4.
    assert expected["naive2"]["mase"] == pytest.approx(0.5 * (11 / 102 + 2.5 / 4))
    for name, exp in expected.items():
        assert scores[name]["smape"] == pytest.approx(exp["smape"], rel=1e-12)
        assert scores[name]["mase"] == pytest.approx(exp["mase"], rel=1e-12)
        owa = 0.5 * (exp["smape"] / expected["naive2"]["smape"]
                     + exp["mase"] / expected["naive2"]["mase"])
        assert scores[name]["owa"] == pytest.approx(owa, rel=1e-12)
    assert scores["naive2"]["owa"] == pytest.approx(1.0)
    assert 1.0 < scores["seasonal_naive"]["owa"] < scores["naive"]["owa"]


def test_score_methods_needs_naive2_as_reference() -> None:
    with pytest.raises(KeyError, match="naive2"):
        score_methods({"naive": BASELINES["naive"](INSAMPLE, H, SEASON)}, ACTUAL, INSAMPLE, SEASON)
