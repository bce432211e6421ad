from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.bucketing import bucket
from pipelines.gaps import fill_gaps
from pipelines.schema import DS, OBSERVED, UNIQUE_ID, Y
from pipelines.validation import validate_long

START = pd.Timestamp("2024-03-30 20:00", tz="UTC")
PROPERTY_SETTINGS = settings(
    max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@st.composite
def irregular_series(draw: st.DrawFn) -> pd.DataFrame:
    """Several series of roughly hourly points with jitter, gaps and missing values."""
    frames = []
    n_series = draw(st.integers(min_value=1, max_value=4))
    for i in range(n_series):
        n = draw(st.integers(min_value=1, max_value=25))
        steps = draw(st.lists(st.integers(min_value=0, max_value=5), min_size=n, max_size=n))
        jitter = draw(st.lists(st.integers(-1_800, 1_800), min_size=n, max_size=n))
        offset = draw(st.integers(min_value=0, max_value=48))
        hours = offset + np.cumsum(steps)
        seconds = hours * 3_600 + np.array(jitter)
        level = draw(st.floats(min_value=-1e3, max_value=1e3))
        y = draw(
            st.lists(
                st.one_of(st.floats(min_value=-10, max_value=10), st.just(float("nan"))),
                min_size=n,
                max_size=n,
            )
        )
        frames.append(
            pd.DataFrame(
                {
                    UNIQUE_ID: f"s{i}",
                    DS: START + pd.to_timedelta(seconds, unit="s"),
                    Y: level + np.array(y, dtype="float64"),
                }
            )
        )
    return pd.concat(frames, ignore_index=True)


@PROPERTY_SETTINGS
@given(irregular_series())
def test_bucket_then_linear_fill_keeps_series_apart(df: pd.DataFrame) -> None:
    grid, bucket_report = bucket(df, "h")
    filled, gap_report = fill_gaps(grid, "linear")

    assert bucket_report.totals.rows_in == len(df)  # every input row went into some bucket
    assert set(filled[UNIQUE_ID]) == set(df[UNIQUE_ID])
    assert len(filled) == len(grid)
    assert np.isfinite(filled[Y].dropna()).all()
    assert (filled[OBSERVED] == grid[Y].notna().astype(float)).all()
    assert gap_report.totals.unfilled == int(filled[Y].isna().sum())

    for uid, rows in filled.groupby(UNIQUE_ID):
        diffs = rows[DS].diff().dropna()
        assert (diffs == pd.Timedelta("1h")).all()  # a regular grid
        observed = df.loc[df[UNIQUE_ID] == uid, Y].dropna()
        values = rows[Y].to_numpy()
        missing = np.isnan(values)
        if observed.empty:
            assert missing.all()
            continue
        # NaN may only remain before the first observed value (a leading gap).
        first = int(np.argmax(~missing))
        assert not missing[first:].any()
        assert missing[:first].all()
        # Values never leave the range of their own series' observations.
        tolerance = 1e-9 * max(1.0, float(observed.abs().max()))
        assert values[first:].min() >= observed.min() - tolerance
        assert values[first:].max() <= observed.max() + tolerance


@PROPERTY_SETTINGS
@given(irregular_series(), st.integers(min_value=0, max_value=4))
def test_validation_accounts_for_every_row(df: pd.DataFrame, n_copies: int) -> None:
    # Duplicate a few rows exactly and shift the zone: nothing may be dropped silently.
    doubled = pd.concat([df, df.iloc[:n_copies]], ignore_index=True)
    doubled[DS] = doubled[DS].dt.tz_convert("America/Sao_Paulo").astype(str)
    out, report = validate_long(doubled, duplicates="aggregate", agg="sum")
    assert report.rows_in == len(doubled)
    assert report.rows_in == report.rows_out + report.rows_aggregated_away
    assert report.rows_out == len(out) == len(df.drop_duplicates([UNIQUE_ID, DS]))
    expected_keys = set(zip(df[UNIQUE_ID], df[DS].dt.as_unit("ns"), strict=True))
    assert set(zip(out[UNIQUE_ID], out[DS], strict=True)) == expected_keys
    assert sum(s["rows_in"] for s in report.per_series.values()) == len(doubled)
