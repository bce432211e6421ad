import numpy as np
import pytest

from nearcast.models.baselines import (
    BASELINES,
    acf,
    is_seasonal,
    naive,
    naive2,
    seasonal_indices,
    seasonal_naive,
)

# Season 4, 16 points, multiplicative pattern (level 50, factors 0.8, 0.8, 0.8, 1.6) with the
# very last value raised from 80 to 88 so that Naive2 differs from naive and seasonal naive.
SEASONAL16 = np.array([40.0, 40.0, 40.0, 80.0] * 3 + [40.0, 40.0, 40.0, 88.0])


def test_naive_repeats_last_value_for_series_of_different_lengths() -> None:
    out = naive([np.array([1.0, 2.0, 3.0]), np.array([7.0])], h=3)
    assert out.shape == (2, 3)
    np.testing.assert_array_equal(out, [[3.0, 3.0, 3.0], [7.0, 7.0, 7.0]])


def test_seasonal_naive_matches_direct_index_computation() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0])
    season, h = 3, 7
    out = seasonal_naive([x], h=h, season=season)
    # last season values: x[4:7] = [5, 6, 7], repeated cyclically
    expected = [x[len(x) - season + k % season] for k in range(h)]
    np.testing.assert_array_equal(out[0], expected)
    np.testing.assert_array_equal(out[0], [5.0, 6.0, 7.0, 5.0, 6.0, 7.0, 5.0])


def test_seasonal_naive_short_series_falls_back_to_naive() -> None:
    out = seasonal_naive([np.array([1.0, 9.0]), np.array([1.0, 2.0, 3.0, 4.0])], h=2, season=4)
    # series 0 shorter than season -> naive; series 1 exactly one season -> x[0], x[1]
    np.testing.assert_array_equal(out, [[9.0, 9.0], [1.0, 2.0]])


def test_acf_by_hand() -> None:
    # deviations from mean 10: [-1, -1, -1, 3] x 4 ; sum of squares = 4 * 12 = 48
    # lag 1 products: per cycle (1, 1, -3) = -1 over 4 cycles plus 3 boundaries (3 * -1) = -13
    # lag 2: alternating 1, -3 over 14 terms = -14 ; lag 3: 3 * (-3+1+1-3) + (3 * -1) = -15
    # lag 4: 12 terms of d^2 = 3 * 12 = 36
    x = 10.0 + np.array([-1.0, -1.0, -1.0, 3.0] * 4)
    np.testing.assert_allclose(acf(x, 4) * 48, [48.0, -13.0, -14.0, -15.0, 36.0])


def test_seasonality_test_limit() -> None:
    x = 10.0 + np.array([-1.0, -1.0, -1.0, 3.0] * 4)
    # limit = 1.645 * sqrt((1 + 2 * ((13/48)^2 + (14/48)^2 + (15/48)^2)) / 16) ~= 0.5057
    # |acf[4]| = 36/48 = 0.75 > 0.5056 -> seasonal
    assert is_seasonal(x, 4)
    # linear trend 1..16: acf = 1, 0.8125, 0.628, 0.449, 0.279
    # limit = 1.645 * sqrt((1 + 2 * (0.660 + 0.394 + 0.202)) / 16) ~= 0.771 > 0.279 -> not seasonal
    np.testing.assert_allclose(acf(np.arange(1.0, 17.0), 1), [1.0, 0.8125])
    assert not is_seasonal(np.arange(1.0, 17.0), 4)
    # constant series: undefined autocorrelation -> not seasonal
    assert not is_seasonal(np.full(16, 5.0), 4)


def test_seasonality_test_squares_lag_one_autocorrelation() -> None:
    # x = 10 + [1, -1] * 6 (12 points = 3 * season 4); d^2 sums to 12
    # acf[1..4] = -11/12, 10/12, -9/12, 8/12
    x = 10.0 + np.array([1.0, -1.0] * 6)
    np.testing.assert_allclose(acf(x, 4) * 12, [12.0, -11.0, 10.0, -9.0, 8.0])
    # R benchmark (acf1 squared): S = (121 + 100 + 81)/144 = 302/144
    #   limit = 1.645 * sqrt((1 + 2 * 302/144) / 12) ~= 1.082 > 8/12 -> not seasonal
    # (M4's Python script adds acf1 unsquared: S = -11/12 + 181/144 = 49/144,
    #   limit ~= 0.616 < 8/12 -> it would call this series seasonal)
    assert not is_seasonal(x, 4)
    np.testing.assert_allclose(naive2([x], h=2, season=4), [[9.0, 9.0]])


def test_seasonal_indices_even_season_two_by_four_ma() -> None:
    # 2x4 centred MA (weights .5,1,1,1,.5 / 4) is defined at t = 2..13 and equals 50 except
    # t = 13: (0.5*80 + 40 + 40 + 40 + 0.5*88) / 4 = 204/4 = 51.
    # ratios x/MA by position t % 4 (NaN at t = 0, 1, 14, 15 skipped):
    #   pos 0: t=4,8,12 -> 0.8, 0.8, 0.8                  -> 0.8
    #   pos 1: t=5,9,13 -> 0.8, 0.8, 40/51               -> (1.6 + 40/51)/3 = 121.6/153
    #   pos 2: t=2,6,10 -> 0.8, 0.8, 0.8                  -> 0.8
    #   pos 3: t=3,7,11 -> 1.6, 1.6, 1.6                  -> 1.6
    raw = np.array([0.8, 121.6 / 153, 0.8, 1.6])
    si = seasonal_indices(SEASONAL16, 4)
    np.testing.assert_allclose(si, raw / raw.mean())
    assert si.mean() == pytest.approx(1.0)


def test_seasonal_indices_odd_season_simple_ma() -> None:
    # 3-point centred MA of [20, 10, 30] x 4 is 20 wherever defined -> ratios 1, 0.5, 1.5
    x = np.array([20.0, 10.0, 30.0] * 4)
    np.testing.assert_allclose(seasonal_indices(x, 3), [1.0, 0.5, 1.5])


def test_naive2_on_seasonal_series_matches_manual_computation() -> None:
    assert is_seasonal(SEASONAL16, 4)
    raw = np.array([0.8, 121.6 / 153, 0.8, 1.6])
    si = raw / raw.mean()
    # deseasonalised last value: x[15] / si[15 % 4] = 88 / si[3]
    level = 88.0 / si[3]
    assert level == pytest.approx(55.0 * raw.mean())  # 88 / (1.6 / mean) = 55 * mean
    # forecast steps t = 16..20 -> positions 0, 1, 2, 3, 0 ; level * si = 55 * raw
    # = [44, 55*121.6/153 = 6688/153, 44, 88, 44]
    out = naive2([SEASONAL16], h=5, season=4)
    np.testing.assert_allclose(out[0], [44.0, 6688 / 153, 44.0, 88.0, 44.0])
    np.testing.assert_allclose(out[0], level * si[[0, 1, 2, 3, 0]])
    # differs from naive (88, ...) and seasonal naive (40, 40, 40, 88, 40)
    assert not np.allclose(out, naive([SEASONAL16], 5))
    assert not np.allclose(out, seasonal_naive([SEASONAL16], 5, 4))


def test_naive2_reseasonalises_from_the_position_after_the_last_point() -> None:
    # drop the first point: n = 15, positions (counted from the first point) shift by one;
    # the last point (88) is at position 14 % 4 = 2, the forecast starts at 15 % 4 = 3
    x = SEASONAL16[1:]
    assert is_seasonal(x, 4)
    si = seasonal_indices(x, 4)
    # the 2x4 MA is still used although n is odd (M4's Python script checks n's parity
    # instead): defined at i = 2..12 (i = original t - 1), 50 except i = 12 -> 51, so
    #   pos 0: i=4,8,12 -> 0.8, 0.8, 40/51 -> 121.6/153 ; pos 1: i=5,9 -> 0.8
    #   pos 2: i=2,6,10 -> 1.6             ; pos 3: i=3,7,11 -> 0.8
    raw = np.array([121.6 / 153, 0.8, 1.6, 0.8])
    np.testing.assert_allclose(si, raw / raw.mean())
    level = x[-1] / si[2]
    out = naive2([x], h=4, season=4)
    np.testing.assert_allclose(out[0], level * si[[3, 0, 1, 2]])
    # = 88 * raw[[3, 0, 1, 2]] / 1.6 = 55 * [0.8, 121.6/153, 0.8, 1.6]; one full cycle after
    # the last point, the same phase returns the last value (88) exactly
    np.testing.assert_allclose(out[0], [44.0, 6688 / 153, 44.0, 88.0])


def test_naive2_falls_back_to_naive() -> None:
    short = np.array([40.0, 40.0, 40.0, 80.0] * 2)  # 8 points < 3 * 4 -> no test, naive
    trend = np.arange(1.0, 17.0)  # not seasonal (see test_seasonality_test_limit)
    out = naive2([short, trend, SEASONAL16], h=2, season=4)
    np.testing.assert_allclose(out[:2], [[80.0, 80.0], [16.0, 16.0]])
    np.testing.assert_allclose(out[2], [44.0, 6688 / 153])
    # season 1 -> plain naive even for the seasonal series
    np.testing.assert_allclose(naive2([SEASONAL16], h=2, season=1), [[88.0, 88.0]])


def test_baselines_registry_common_signature() -> None:
    assert set(BASELINES) == {"naive", "seasonal_naive", "naive2"}
    hist = [SEASONAL16]
    np.testing.assert_allclose(BASELINES["naive"](hist, 2, 4), [[88.0, 88.0]])
    np.testing.assert_allclose(BASELINES["seasonal_naive"](hist, 2, 4), [[40.0, 40.0]])
    np.testing.assert_allclose(BASELINES["naive2"](hist, 2, 4), [[44.0, 6688 / 153]])


def test_baseline_input_errors() -> None:
    with pytest.raises(ValueError, match="history 1 contains NaN"):
        naive([np.array([1.0]), np.array([1.0, np.nan])], 2)
    with pytest.raises(ValueError, match="history 0 is empty"):
        naive2([np.array([])], 2, 4)
    with pytest.raises(ValueError, match="h must be an integer >= 1"):
        naive([np.array([1.0])], 0)
    with pytest.raises(ValueError, match="season must be an integer >= 1"):
        seasonal_naive([np.array([1.0])], 2, 0)
