"""The batch forecast's fast path (series already on the grid) equals the pipeline's path."""

from __future__ import annotations

import numpy as np
import pandas as pd

from conftest import Champion
from nearcast.models.batch import Provenance, forecast_chunk
from nearcast.pipelines.on_grid import on_grid

PROVENANCE = Provenance("models:/tiny@champion", "tiny", 3, "run-1")


def _through_the_pipeline(chunk: pd.DataFrame) -> pd.DataFrame:
    """``chunk`` with ``y`` as Python objects: the same numbers, but not the fast path's dtype."""
    return chunk.astype({"y": object})


def test_a_regular_chunk_takes_the_fast_path_with_the_pipelines_rows_and_skips(
    champion: Champion, tiny_df: pd.DataFrame
) -> None:
    fc = champion.job.forecaster
    first = tiny_df[tiny_df["unique_id"] == "H1"]
    extra = pd.concat([first.head(30).assign(unique_id="SHORT"),  # too short: 30 < 48
                       first.head(96).assign(unique_id="ZERO", y=0.0)])  # log scaling: <= 0
    chunk = pd.concat([tiny_df, extra]).sample(frac=1.0, random_state=0)  # rows in any order
    assert on_grid(chunk, fc.meta.grid) is not None
    assert on_grid(_through_the_pipeline(chunk), fc.meta.grid) is None

    fast, fast_skipped = forecast_chunk(fc, chunk, PROVENANCE, 24)
    full, full_skipped = forecast_chunk(fc, _through_the_pipeline(chunk), PROVENANCE, 24)
    pd.testing.assert_frame_equal(fast, full, check_exact=False, atol=1e-6, rtol=0)
    assert fast_skipped == full_skipped
    assert list(fast_skipped) == ["SHORT", "ZERO"]
    assert fast_skipped["SHORT"].startswith("[too_short] 30 points on the model's grid")
    assert fast_skipped["ZERO"].startswith("[not_positive] a value <= 0 (0)")
    assert fast["unique_id"].unique().tolist() == sorted(tiny_df["unique_id"].unique())
    assert (fast.groupby("unique_id").size() == 24).all()
    # the forecasts of the series the model takes are the ones it gives alone, in one call
    alone = forecast_chunk(fc, tiny_df[tiny_df["unique_id"] == "H3"], PROVENANCE, 24)[0]
    np.testing.assert_allclose(fast.loc[fast["unique_id"] == "H3", "forecast"], alone["forecast"],
                               atol=1e-5)


def test_a_chunk_off_the_grid_goes_through_the_pipeline(
    champion: Champion, tiny_df: pd.DataFrame
) -> None:
    fc = champion.job.forecaster
    gap = tiny_df[tiny_df["unique_id"] == "H1"]
    gap = gap.drop(index=gap.index[[100, 101, 150]])
    late = tiny_df[tiny_df["unique_id"] == "H2"].assign(
        ds=lambda f: f["ds"] + pd.Timedelta(minutes=30))  # between grid points
    doubled = tiny_df[tiny_df["unique_id"] == "H4"]
    doubled = pd.concat([doubled, doubled.tail(1).assign(y=lambda f: f["y"] + 2.0)])
    rest = tiny_df[~tiny_df["unique_id"].isin(["H1", "H2", "H4"])]
    for odd in (gap, late, doubled):
        assert on_grid(pd.concat([rest, odd]), fc.meta.grid) is None
    raw = pd.concat([rest, gap, late, doubled])

    full, skipped = forecast_chunk(fc, raw, PROVENANCE, 24)
    # the pipeline's output (gap filled, buckets merged) is on the grid: the fast path's input
    regular = fc.regularize(raw).frame
    assert on_grid(regular, fc.meta.grid) is not None
    fast, fast_skipped = forecast_chunk(fc, regular, PROVENANCE, 24)
    assert skipped == fast_skipped == {}
    pd.testing.assert_frame_equal(full, fast, check_exact=False, atol=1e-6, rtol=0)
    assert sorted(full["unique_id"].unique()) == sorted(tiny_df["unique_id"].unique())
