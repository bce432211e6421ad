import numpy as np
import pytest

from nearcast.models.metrics import (
    evaluate_forecasts,
    interval_coverage,
    mae,
    mase,
    mase_by_step,
    mase_scales,
    owa,
    rmse,
    smape,
    smape_by_step,
)

# Two series, horizon 3.
Y_TRUE = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
Y_PRED = np.array([[2.0, 2.0, 1.0], [4.0, 8.0, 6.0]])
# errors y - f:   [[-1, 0, 2], [0, -3, 0]]


def test_mae_overall() -> None:
    # |errors| = [[1, 0, 2], [0, 3, 0]]; sum = 6 over 6 points -> 1.0
    assert mae(Y_TRUE, Y_PRED) == pytest.approx(1.0)


def test_rmse_pools_all_points() -> None:
    # squared errors = [[1, 0, 4], [0, 9, 0]]; mean = 14/6 -> sqrt(7/3)
    assert rmse(Y_TRUE, Y_PRED) == pytest.approx(np.sqrt(14 / 6))
    # not the mean of per-series RMSEs: (sqrt(5/3) + sqrt(9/3)) / 2 = 1.5115...
    assert rmse(Y_TRUE, Y_PRED) != pytest.approx((np.sqrt(5 / 3) + np.sqrt(3)) / 2)


def test_smape_zero_over_zero_counts_as_zero() -> None:
    y = np.array([[0.0, 2.0, 4.0]])
    f = np.array([[0.0, 1.0, 0.0]])
    # terms: 0/0 -> 0 ; |2-1|/(2+1) = 1/3 ; |4-0|/(4+0) = 1
    # 200 * (0 + 1/3 + 1) / 3 = 800/9 = 88.888...
    assert smape(y, f) == pytest.approx(800 / 9)
    np.testing.assert_allclose(smape_by_step(y, f), [0.0, 200 / 3, 200.0])


def test_smape_by_step_two_series_and_overall_mean() -> None:
    y = np.array([[1.0, 3.0], [2.0, 0.0]])
    f = np.array([[3.0, 3.0], [2.0, -1.0]])
    # terms (x200): [[2/4, 0], [0, 1/1]] -> [[100, 0], [0, 200]]
    # per step: (100 + 0)/2 = 50, (0 + 200)/2 = 100; overall: 300/4 = 75
    np.testing.assert_allclose(smape_by_step(y, f), [50.0, 100.0])
    assert smape(y, f) == pytest.approx(75.0)


def test_smape_is_in_percent_from_0_to_200() -> None:
    # opposite signs: |1 - (-1)| / (1 + 1) = 1 -> 200 %; equal values -> 0 %
    assert smape([[1.0, 5.0]], [[-1.0, 5.0]]) == pytest.approx(100.0)
    np.testing.assert_allclose(smape_by_step([[1.0, 5.0]], [[-1.0, 5.0]]), [200.0, 0.0])


# MASE fixture, season 2.
# series 0 in-sample [1, 3, 2, 6, 4, 8]: lag-2 diffs |2-1|, |6-3|, |4-2|, |8-6| = 1, 3, 2, 2
#   -> scale 8/4 = 2
# series 1 in-sample [0, 1, 4, 5]: lag-2 diffs |4-0|, |5-1| = 4, 4 -> scale 4
MASE_INSAMPLE = [np.array([1.0, 3.0, 2.0, 6.0, 4.0, 8.0]), np.array([0.0, 1.0, 4.0, 5.0])]
MASE_TRUE = np.array([[10.0, 12.0], [5.0, 5.0]])
MASE_PRED = np.array([[11.0, 8.0], [7.0, 11.0]])
# |errors| = [[1, 4], [2, 6]]; scaled = [[0.5, 2.0], [0.5, 1.5]]


def test_mase_seasonal_scale() -> None:
    np.testing.assert_allclose(mase_scales(MASE_INSAMPLE, season=2), [2.0, 4.0])


def test_mase_overall_is_mean_of_per_series_mase() -> None:
    # per series: (0.5 + 2.0)/2 = 1.25 and (0.5 + 1.5)/2 = 1.0 -> mean 1.125
    assert mase(MASE_TRUE, MASE_PRED, MASE_INSAMPLE, season=2) == pytest.approx(1.125)


def test_mase_by_step() -> None:
    # per step: (0.5 + 0.5)/2 = 0.5 ; (2.0 + 1.5)/2 = 1.75
    np.testing.assert_allclose(
        mase_by_step(MASE_TRUE, MASE_PRED, MASE_INSAMPLE, season=2), [0.5, 1.75]
    )


def test_mase_lag_one_scale_differs_from_seasonal_scale() -> None:
    # series 0 at lag 1: |3-1|, |2-3|, |6-2|, |4-6|, |8-4| = 2, 1, 4, 2, 4 -> 13/5 = 2.6
    np.testing.assert_allclose(mase_scales(MASE_INSAMPLE[:1], season=1), [2.6])


def test_mase_falls_back_to_lag_one_for_short_series() -> None:
    # length 3 < season + 1 = 5 -> lag 1: |5-2|, |3-5| = 3, 2 -> scale 2.5
    insample = [np.array([2.0, 5.0, 3.0])]
    np.testing.assert_allclose(mase_scales(insample, season=4), [2.5])
    # |10 - 5| / 2.5 = 2
    assert mase([[10.0]], [[5.0]], insample, season=4) == pytest.approx(2.0)


def test_mase_zero_scale_names_series_index() -> None:
    insample = [np.array([1.0, 2.0, 3.0]), np.array([3.0, 7.0, 3.0, 7.0])]
    # series 1 has lag-2 differences 0, 0 -> zero scale
    with pytest.raises(ValueError, match="series 1"):
        mase([[1.0], [2.0]], [[1.0], [2.0]], insample, season=2)


def test_mase_errors_on_count_mismatch_and_too_short_series() -> None:
    with pytest.raises(ValueError, match=r"insample has 1 series but y_true has shape \(2, 2\)"):
        mase(MASE_TRUE, MASE_PRED, MASE_INSAMPLE[:1], season=2)
    with pytest.raises(ValueError, match=r"insample\[0\] has 1 point"):
        mase_scales([np.array([4.0])], season=2)
    with pytest.raises(ValueError, match="season"):
        mase_scales(MASE_INSAMPLE, season=0)


def test_owa_arithmetic() -> None:
    # 0.5 * (10/20 + 1.5/1.0) = 0.5 * (0.5 + 1.5) = 1.0
    assert owa(10.0, 1.5, 20.0, 1.0) == pytest.approx(1.0)
    # 0.5 * (12/16 + 0.9/1.2) = 0.5 * (0.75 + 0.75) = 0.75
    assert owa(12.0, 0.9, 16.0, 1.2) == pytest.approx(0.75)


def test_owa_rejects_bad_reference() -> None:
    with pytest.raises(ValueError, match="smape_ref"):
        owa(10.0, 1.0, 0.0, 1.0)
    with pytest.raises(ValueError, match="mase_model"):
        owa(10.0, float("nan"), 10.0, 1.0)


def test_interval_coverage_by_hand() -> None:
    y = np.array([[1.0, 5.0, 3.0], [2.0, 2.0, 9.0]])
    lower = np.array([[0.0, 6.0, 3.0], [2.0, 0.0, 0.0]])
    upper = np.array([[2.0, 7.0, 4.0], [3.0, 1.0, 8.0]])
    # inside: [[1 in [0,2] yes, 5 in [6,7] no, 3 in [3,4] yes (closed)],
    #          [2 in [2,3] yes (closed), 2 in [0,1] no, 9 in [0,8] no]]
    # overall 3/6 = 0.5
    assert interval_coverage(y, lower, upper) == pytest.approx(0.5)


def test_interval_coverage_errors() -> None:
    with pytest.raises(ValueError, match="lower exceeds upper at 1 point"):
        interval_coverage([[1.0, 1.0]], [[0.0, 3.0]], [[2.0, 2.0]])
    with pytest.raises(ValueError, match=r"\(1, 2\), \(1, 2\) and \(1, 1\)"):
        interval_coverage([[1.0, 1.0]], [[0.0, 0.0]], [[2.0]])


def test_nan_raises() -> None:
    bad = Y_PRED.copy()
    bad[1, 2] = np.nan
    with pytest.raises(ValueError, match="y_pred contains NaN"):
        mae(Y_TRUE, bad)
    with pytest.raises(ValueError, match="y_true contains NaN"):
        smape(bad, Y_PRED)
    with pytest.raises(ValueError, match=r"insample\[1\] contains NaN"):
        mase(MASE_TRUE, MASE_PRED, [MASE_INSAMPLE[0], np.array([1.0, np.nan, 3.0])], 2)


def test_shape_mismatch_names_shapes() -> None:
    with pytest.raises(ValueError, match=r"got \(2, 3\) and \(2, 2\)"):
        rmse(Y_TRUE, Y_PRED[:, :2])
    with pytest.raises(ValueError, match=r"must be 2-D .* got shape \(3,\)"):
        mae([1.0, 2.0, 3.0], [1.0, 2.0, 3.0])


def test_evaluate_forecasts() -> None:
    result = evaluate_forecasts(MASE_TRUE, MASE_PRED, MASE_INSAMPLE, season=2)
    assert set(result) == {"mae", "rmse", "smape", "mase"}
    # |errors| = [[1, 4], [2, 6]] -> MAE 13/4 ; squared 1+16+4+36 = 57 -> RMSE sqrt(57/4)
    assert result["mae"] == pytest.approx(13 / 4)
    assert result["rmse"] == pytest.approx(np.sqrt(57 / 4))
    # sMAPE terms: 1/21, 4/20, 2/12, 6/16 -> 200 * mean
    assert result["smape"] == pytest.approx(200 * (1 / 21 + 4 / 20 + 2 / 12 + 6 / 16) / 4)
    assert result["mase"] == pytest.approx(1.125)


def test_library_backed_metrics_match_their_definitions() -> None:
    """Oracle: the utilsforecast-backed metrics equal the definitions computed with numpy."""
    rng = np.random.default_rng(0)
    for n_series, horizon in [(1, 1), (3, 7), (40, 24)]:
        y = rng.normal(size=(n_series, horizon)) * 100
        f = y + rng.normal(size=(n_series, horizon)) * 10
        y[0, 0] = f[0, 0] = 0.0  # a 0/0 sMAPE term counts as 0
        err = y - f
        terms = 200 * np.abs(err) / np.maximum(np.abs(y) + np.abs(f), 1e-300)
        insample = [rng.normal(size=int(rng.integers(2, 60))) for _ in range(n_series)]
        scales = mase_scales(insample, season=4)
        lower, upper = f - 5.0, f + 5.0
        assert mae(y, f) == pytest.approx(np.mean(np.abs(err)), rel=1e-12)
        assert rmse(y, f) == pytest.approx(np.sqrt(np.mean(err**2)), rel=1e-12)
        assert smape(y, f) == pytest.approx(np.mean(terms), rel=1e-12)
        np.testing.assert_allclose(smape_by_step(y, f), terms.mean(axis=0), rtol=1e-12)
        expected_mase = np.mean(np.abs(err) / scales[:, None])
        assert mase(y, f, insample, 4) == pytest.approx(expected_mase, rel=1e-12)
        inside = (y >= lower) & (y <= upper)
        assert interval_coverage(y, lower, upper) == pytest.approx(inside.mean(), rel=1e-12)
