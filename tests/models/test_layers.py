"""The graph's own transformations: folding steps and the seasonal skip, checked by hand."""

from __future__ import annotations

import numpy as np

from nearcast.models.architectures.layers import FoldSteps, ScaleWindow, SeasonalSkip, Unscale


def test_fold_groups_consecutive_points_and_unfolds_exactly() -> None:
    z = np.arange(12, dtype=np.float32).reshape(1, 12)  # 0..11
    mask = np.array([[0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1]], np.float32)  # one padded fold
    steps, step_mask = FoldSteps(4)([z, mask])
    np.testing.assert_array_equal(steps[0], [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]])
    np.testing.assert_array_equal(step_mask, [[False, True, True]])
    np.testing.assert_array_equal(np.reshape(steps, (1, 12)), z)  # unfold = inverse reshape


def test_seasonal_skip_repeats_the_last_season() -> None:
    z = np.array([[9, 9, 1, 2, 3]], np.float32)
    np.testing.assert_array_equal(SeasonalSkip(3, 7)(z), [[1, 2, 3, 1, 2, 3, 1]])


def test_scale_then_unscale_round_trips_for_every_rule() -> None:
    history = np.array([[4.0, 8.0, 2.0, 6.0]], np.float32)
    mask = np.ones_like(history)
    for rule, level in (("log_level", 4.0), ("mean_abs", 5.0), ("none", 1.0)):
        z, lvl = ScaleWindow(rule, 2)([history, mask])
        np.testing.assert_allclose(lvl, [[level]])  # log_level: mean of the last 2 = 4
        back = Unscale(rule)([np.asarray(z)[:, :, None], lvl])
        np.testing.assert_allclose(np.asarray(back)[:, :, 0], history, rtol=1e-6)
