"""Rows packed for Spark's shuffle: every series in one bucket, every row back out."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa

from nearcast.service.spark_batch import pack_rows, unpack_rows


def test_packed_rows_keep_each_series_in_one_bucket_and_come_back_whole(
    tiny_df: pd.DataFrame
) -> None:
    rows = pa.Table.from_pandas(tiny_df.sample(frac=1.0, random_state=1), preserve_index=False)
    halves = [pack_rows(rows.slice(0, 1000), 3), pack_rows(rows.slice(1000), 3)]
    buckets: dict[str, set[int]] = {}
    for packed in halves:  # packed apart, as two executors would
        for key in packed.column("_bucket").to_pylist():
            one = packed.filter(pa.compute.equal(packed.column("_bucket"), key))
            for uid in set(unpack_rows(one).column("unique_id").to_pylist()):
                buckets.setdefault(uid, set()).add(key)
    assert set(buckets) == set(tiny_df["unique_id"])
    assert all(len(keys) == 1 for keys in buckets.values())
    back = unpack_rows(pa.concat_tables(halves)).to_pandas()
    key = ["unique_id", "ds"]
    pd.testing.assert_frame_equal(back.sort_values(key, ignore_index=True),
                                  tiny_df.sort_values(key, ignore_index=True))
