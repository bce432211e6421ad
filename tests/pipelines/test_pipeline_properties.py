from __future__ import annotations

import numpy as np
import pandas as pd
import tensorflow as tf
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from nearcast.pipelines.bucketing import bucket
from nearcast.pipelines.gaps import fill_gaps
from nearcast.pipelines.schema import DS, UNIQUE_ID, Y
from nearcast.pipelines.validation import validate_long
from nearcast.pipelines.windows import SeriesTable, WindowSpec, gather_windows, window_index

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
    known = grid.sort_values([UNIQUE_ID, DS])[Y].to_numpy()  # observed values are never changed
    seen = ~np.isnan(known)
    assert (filled[Y].to_numpy()[seen] == known[seen]).all()
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


@st.composite
def window_specs(draw: st.DrawFn) -> WindowSpec:
    """Small window geometries: input 1..4 folds, horizon 1..3, stride 1..3, any min history."""
    fold = draw(st.integers(min_value=1, max_value=3))
    size = fold * draw(st.integers(min_value=1, max_value=4))
    shortest = fold * draw(st.integers(min_value=1, max_value=size // fold))
    return WindowSpec(
        input_size=size,
        horizon=draw(st.integers(min_value=1, max_value=3)),
        stride=draw(st.integers(min_value=1, max_value=3)),
        fold=fold,
        min_history=shortest,
    )


def check_rows(
    batch: tuple[dict[str, tf.Tensor], tf.Tensor],
    rows: np.ndarray,
    lengths: np.ndarray,
    table: SeriesTable,
    own: dict[str, np.ndarray],
) -> None:
    """Nothing is NaN or inf; each window holds ``lengths`` real points, padded with zeros at
    the start; its real history and target are its own series' values right before and right
    after its end."""
    history, mask = np.asarray(batch[0]["history"]), np.asarray(batch[0]["mask"])
    target = np.asarray(batch[1])
    assert np.isfinite(history).all() and np.isfinite(target).all()
    assert mask.sum(axis=1).tolist() == lengths.tolist()
    assert set(np.unique(mask).tolist()) <= {0.0, 1.0}
    assert (np.diff(mask, axis=1) >= 0).all() and (history[mask == 0] == 0).all()
    series = np.searchsorted(table.offsets, rows[:, 1], side="right") - 1
    size = history.shape[1]
    for i, (end, start) in enumerate(rows):
        values = own[str(table.ids[series[i]])]
        local, real = int(end - start), int(lengths[i])
        assert 0 < real <= local
        np.testing.assert_array_equal(history[i, size - real :], values[local - real : local])
        np.testing.assert_array_equal(target[i], values[local : local + target.shape[1]])


@PROPERTY_SETTINGS
@given(irregular_series(), window_specs())
def test_bucket_fill_and_windows_keep_inputs_finite_and_series_apart(
    df: pd.DataFrame, spec: WindowSpec
) -> None:
    grid, _ = bucket(df, "h")
    filled, _ = fill_gaps(grid, "linear")
    regular = filled.dropna(subset=[Y])  # only a leading gap can stay NaN; it has no value
    assume(not regular.empty)
    table = SeriesTable.from_long(regular)
    own = {
        str(uid): rows.sort_values(DS)[Y].to_numpy(dtype=np.float32)
        for uid, rows in regular.groupby(UNIQUE_ID)
    }
    index, counts = window_index(table, spec)
    assert counts.sum() == len(index)
    if len(index) == 0:
        return
    values = table.values
    have = np.minimum(index[:, 0] - index[:, 1], spec.input_size)
    check_rows(gather_windows(values, index, spec), index, have, table, own)
