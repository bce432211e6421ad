"""The batch forecast on Spark: series grouped into buckets, each bucket forecast on an executor.

``nearcast forecast --engine spark [--master local[*]]`` (or the same under ``spark-submit``)
sends the source's rows to Spark with a bucket key (a hash of the series id), so every series
lands whole in one bucket; ``groupBy(bucket).applyInPandas`` runs :func:`models.batch.
forecast_chunk`, the one-process job's own function, on each bucket. Each Python worker loads
the registered model once through MLflow (the tracking URI travels with the function). Series
left out come back as rows with ``_skipped`` set and are reported like the local job's.

Grouping by bucket, not by single series, keeps the per-call cost of a Keras model off every
series: one model call per bucket instead of one per series.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING

import pandas as pd

from nearcast.models.batch import Provenance, SeriesSkippedError, forecast_chunk
from nearcast.models.inference import output_columns
from nearcast.pipelines.schema import DS, UNIQUE_ID

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from nearcast.models.forecast_job import Engine
    from nearcast.models.forecaster import Forecaster
    from nearcast.models.settings import MlflowSettings

SERIES_PER_BUCKET = 1000
"""Series per ``applyInPandas`` call (at least one bucket per core)."""

_SKIPPED = "_skipped"
_BUCKET = "_bucket"
_LOADED: dict[str, Forecaster] = {}  # per Python worker: model URI -> model


def spark_session(master: str) -> SparkSession:
    """A Spark session on ``master`` bound to loopback, with Arrow and UTC timestamps.

    Raises:
        RuntimeError: pyspark is not installed or Java is not found (the message says which).
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError:  # pragma: no cover - the spark extra is part of make test
        raise RuntimeError("--engine spark needs pyspark: pip install 'nearcast[spark]'") from None
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    return (SparkSession.builder.master(master).appName("nearcast forecast")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .getOrCreate())


def spark_engine(model_uri: str, settings: MlflowSettings, master: str) -> Engine:
    """The :data:`models.forecast_job.Engine` that runs the chunks on Spark."""

    def run(forecaster: Forecaster, chunks: Iterable[pd.DataFrame], provenance: Provenance,
            horizon: int | None, strict: bool
            ) -> Iterator[tuple[pd.DataFrame, dict[str, str], int]]:
        frame = pd.concat(list(chunks), ignore_index=True)
        steps = forecaster.config.horizon if horizon is None else horizon
        out = forecast_on_spark(spark_session(master), frame, model_uri,
                                settings.resolved_tracking_uri(), provenance, steps,
                                output_columns(forecaster))
        bad = out[_SKIPPED].notna()
        skipped = dict(zip(out.loc[bad, UNIQUE_ID], out.loc[bad, _SKIPPED], strict=True))
        if strict and skipped:
            uid, why = next(iter(skipped.items()))
            raise SeriesSkippedError(f"series {uid!r}: {why} (--strict)")
        rows = out[~bad].drop(columns=[_SKIPPED]).sort_values([UNIQUE_ID, DS], kind="stable")
        yield rows.reset_index(drop=True), skipped, int(frame[UNIQUE_ID].nunique())

    return run


def forecast_on_spark(spark: SparkSession, frame: pd.DataFrame, model_uri: str,
                      tracking_uri: str, provenance: Provenance, horizon: int,
                      values: list[str]) -> pd.DataFrame:
    """Forecast every series of ``frame`` on ``spark``; skipped series have ``_skipped`` set."""
    from pyspark.sql import types as T

    ids = frame[UNIQUE_ID].astype(str)
    n_series = ids.nunique()
    cores = spark.sparkContext.defaultParallelism
    buckets = max(cores, -(-n_series // SERIES_PER_BUCKET))
    source = _plain_strings(frame.assign(unique_id=ids))
    source[_BUCKET] = (pd.util.hash_array(ids.to_numpy()) % buckets).astype("int64")
    schema = T.StructType(
        [T.StructField(UNIQUE_ID, T.StringType()), T.StructField(DS, T.TimestampType()),
         T.StructField("model", T.StringType()), T.StructField("model_name", T.StringType()),
         T.StructField("model_version", T.LongType()), T.StructField("run_id", T.StringType()),
         T.StructField("origin", T.TimestampType())]
        + [T.StructField(v, T.DoubleType()) for v in values]
        + [T.StructField(_SKIPPED, T.StringType())])
    job = _BucketJob(model_uri, tracking_uri, provenance, horizon, schema.fieldNames())

    def one_bucket(bucket: pd.DataFrame) -> pd.DataFrame:  # Spark counts its arguments
        return job(bucket)

    result = spark.createDataFrame(source).groupBy(_BUCKET).applyInPandas(one_bucket, schema)
    out = result.toPandas()
    for col in (DS, "origin"):
        out[col] = pd.to_datetime(out[col], utc=True)
    return out


def _plain_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """String columns as object arrays.

    pyspark's Arrow path does not take pandas 3's arrow-backed ``str`` columns (``Cannot
    convert pyarrow.lib.ChunkedArray``).
    """
    text = [c for c in frame.columns if pd.api.types.is_string_dtype(frame[c])]
    return frame.astype(dict.fromkeys(text, object)) if text else frame


class _BucketJob:
    """The function each executor runs on one bucket (picklable: no closure over Spark)."""

    def __init__(self, model_uri: str, tracking_uri: str, provenance: Provenance,
                 horizon: int, columns: list[str]) -> None:
        self.model_uri, self.tracking_uri = model_uri, tracking_uri
        self.provenance, self.horizon, self.columns = provenance, horizon, columns

    def __call__(self, bucket: pd.DataFrame) -> pd.DataFrame:
        forecaster = self._model()
        rows = bucket.drop(columns=[_BUCKET])
        rows[DS] = pd.to_datetime(rows[DS], utc=True)
        frame, skipped = forecast_chunk(forecaster, rows, self.provenance, self.horizon)
        frame[_SKIPPED] = None
        if skipped:
            frame = pd.concat([frame, pd.DataFrame({UNIQUE_ID: list(skipped),
                                                    _SKIPPED: list(skipped.values())})])
        return _plain_strings(frame.reindex(columns=self.columns))

    def _model(self) -> Forecaster:
        if self.model_uri not in _LOADED:
            import mlflow

            from nearcast.models.artifact import load_forecaster

            mlflow.set_tracking_uri(self.tracking_uri)
            mlflow.set_registry_uri(self.tracking_uri)
            _LOADED[self.model_uri] = load_forecaster(self.model_uri)
        return _LOADED[self.model_uri]


__all__ = ["SERIES_PER_BUCKET", "forecast_on_spark", "spark_engine", "spark_session"]
