"""The batch forecast on Spark: series grouped into buckets, each bucket forecast on an executor.

``nearcast forecast --engine spark [--master local[*]]`` (or the same under ``spark-submit``)
gives every series a bucket (a hash of its id), so every series lands whole in one bucket, and
runs :func:`models.batch.forecast_chunk`, the one-process job's own function, on each bucket.
Each Python worker loads the registered model once through MLflow (the tracking URI travels
with the function). Grouping by bucket, not by single series, keeps the per-call cost of a
Keras model off every series: one model call per bucket.

Rows travel packed: :func:`pack_rows` cuts long rows by bucket into LZ4-compressed Arrow IPC
blobs, so Spark shuffles a few large binary values (``groupBy(bucket).applyInArrow``) instead of
a row per point. The executors pack what Spark reads or makes (:func:`forecast_rows_on_spark`:
a Parquet source read by ``spark.read.parquet``, or rows made in Spark); the driver packs a
frame it holds (:func:`spark_engine`, for the other sources). Series left out come back through
an accumulator and are reported like the local job's. With a Parquet source and a folder
output (:func:`forecast_parquet_on_spark`), Spark writes the forecasts too, into the folder
sink's staging folder: nothing but the series left out passes through the driver.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, cast

import numpy as np
import pandas as pd
import pyarrow as pa

from nearcast.models.batch import BatchSummary, Provenance, SeriesSkippedError, forecast_chunk
from nearcast.models.forecast_job import ForecastJobResult, job_model
from nearcast.models.inference import output_columns
from nearcast.pipelines.errors import InputError
from nearcast.pipelines.schema import DS, UNIQUE_ID, Y
from nearcast.pipelines.sinks import open_folder

if TYPE_CHECKING:
    from pyspark import Accumulator
    from pyspark.accumulators import AccumulatorParam
    from pyspark.sql import DataFrame as SparkFrame
    from pyspark.sql import SparkSession
    from pyspark.sql.types import StructType

    from nearcast.models.forecast_job import Engine
    from nearcast.models.forecaster import Forecaster
    from nearcast.models.settings import MlflowSettings

SERIES_PER_BUCKET = 1000
"""Series per bucket: one model call each (at least one bucket per core)."""
PACK_ROWS = 500_000
"""Long rows an executor packs at once (:class:`_PackRows`)."""

_BUCKET = "_bucket"
_ROWS = "_rows"
PACKED = f"{_BUCKET} bigint, {_ROWS} binary"
"""The Spark schema of packed rows (:func:`pack_rows`)."""
_LOADED: dict[str, Forecaster] = {}  # per Python worker: "<tracking URI> <model URI>" -> model


def spark_session(master: str | None = None) -> SparkSession:
    """A Spark session on ``master``, with Arrow and UTC timestamps.

    ``master`` None: the one ``spark-submit`` set when it launched this process, else
    ``local[*]``. A local master binds the driver to loopback.

    Raises:
        RuntimeError: pyspark is not installed or Java is not found (the message says which).
    """
    try:
        from pyspark.sql import SparkSession
    except ImportError:  # pragma: no cover - the spark extra is part of make test
        raise RuntimeError("--engine spark needs pyspark: pip install 'nearcast[spark]'") from None
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ  # spark-submit started this process
    if master is None and not submitted:
        master = "local[*]"
    builder = SparkSession.builder.appName("nearcast forecast")
    if master is not None:
        builder = builder.master(master)
    if master is not None and master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        builder = (builder.config("spark.driver.host", "127.0.0.1")
                   .config("spark.driver.bindAddress", "127.0.0.1")
                   .config("spark.ui.enabled", "false"))
    return (builder.config("spark.sql.session.timeZone", "UTC")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .getOrCreate())


def spark_engine(model_uri: str, settings: MlflowSettings, master: str | None) -> Engine:
    """The :data:`models.forecast_job.Engine` that runs the chunks on Spark."""

    def run(forecaster: Forecaster, chunks: Iterable[pd.DataFrame], provenance: Provenance,
            horizon: int | None, strict: bool
            ) -> Iterator[tuple[pd.DataFrame, dict[str, str], int]]:
        frame = pd.concat(list(chunks), ignore_index=True)
        steps = forecaster.config.horizon if horizon is None else horizon
        out, skipped = forecast_on_spark(spark_session(master), frame, model_uri,
                                         settings.resolved_tracking_uri(), provenance, steps,
                                         output_columns(forecaster))
        if strict and skipped:
            uid, why = next(iter(skipped.items()))
            raise SeriesSkippedError(f"series {uid!r}: {why} (--strict)")
        rows = out.sort_values([UNIQUE_ID, DS], kind="stable", ignore_index=True)
        yield rows, skipped, int(frame[UNIQUE_ID].nunique())

    return run


def reads_itself(data: str | None, out: str) -> bool:
    """Whether Spark reads ``data`` and writes ``out`` itself (:func:`forecast_parquet_on_spark`).

    True for a ``.parquet`` file or a folder of them, written to a folder (not a ``.parquet``
    file, not a database).
    """
    if data is None or "://" in out or Path(out).suffix.lower() == ".parquet":
        return False
    path = Path(data)
    return (path.is_file() and path.suffix.lower() == ".parquet") or (
        path.is_dir() and any(path.glob("*.parquet")))


def forecast_parquet_on_spark(model_uri: str, data: str, settings: MlflowSettings, out: str,
                              master: str | None, *, horizon: int | None = None,
                              strict: bool = False, replace: bool = False) -> ForecastJobResult:
    """``nearcast forecast --engine spark`` of Parquet read by Spark, written by Spark.

    The rows never reach the driver: ``spark.read.parquet(data)``, then
    :func:`forecast_rows_on_spark` into the folder ``out``.

    Raises:
        InputError: the model, the data (a column missing) or the output cannot be used, or
            (``strict``) a series left out.
    """
    started = time.perf_counter()
    sink_check = open_folder(out, replace=replace)  # refused before Spark and the model start
    sink_check.abort()
    forecaster, provenance = job_model(model_uri, settings, horizon)
    rows = spark_session(master).read.parquet(data)
    missing = [c for c in (UNIQUE_ID, DS, Y) if c not in rows.columns]
    if missing:
        raise SourceColumnsError(f"{data}: missing column(s) {missing}; columns present: "
                                 f"{rows.columns}")
    steps = forecaster.config.horizon if horizon is None else horizon
    summary = forecast_rows_on_spark(rows, model_uri, settings.resolved_tracking_uri(),
                                     provenance, steps, output_columns(forecaster), out,
                                     replace=replace, strict=strict)
    return ForecastJobResult(model_uri, provenance, out, summary, time.perf_counter() - started)


class SourceColumnsError(InputError, ValueError):
    """The source read by Spark lacks a required column (the message names it)."""


def forecast_on_spark(spark: SparkSession, frame: pd.DataFrame, model_uri: str,
                      tracking_uri: str, provenance: Provenance, horizon: int,
                      values: list[str]) -> tuple[pd.DataFrame, dict[str, str]]:
    """Forecast every series of ``frame`` on ``spark``: the forecasts and the series left out.

    The rows are packed into buckets here (:func:`pack_rows`) and reach Spark as one row per
    bucket.
    """
    buckets = bucket_count(spark.sparkContext.defaultParallelism,
                           int(frame[UNIQUE_ID].nunique()))
    packed = spark.createDataFrame(pack_rows(pa.Table.from_pandas(frame, preserve_index=False),
                                             buckets))
    job = _ArrowBucket(model_uri, tracking_uri, provenance, horizon, _output_fields(values))
    result, skipped = _forecast_buckets(packed, job, buckets)
    out = result.toPandas()
    for col in (DS, "origin"):
        out[col] = pd.to_datetime(out[col], utc=True)
    return out, dict(skipped.value)


def forecast_rows_on_spark(rows: SparkFrame, model_uri: str, tracking_uri: str,
                           provenance: Provenance, horizon: int, values: list[str], out: str,
                           *, replace: bool = False, strict: bool = False,
                           series: int | None = None) -> BatchSummary:
    """Forecast the long rows of a Spark DataFrame (e.g. ``spark.read.parquet``), written by Spark.

    ``rows`` (``unique_id``, ``ds``, ``y``, a covariate model's columns) are packed into
    buckets on the executors (:class:`_PackRows`), then go the way of
    :func:`forecast_packed_on_spark`. ``series`` (or Spark's approximate count of distinct
    ids) sizes the buckets.

    Raises:
        SinkError, SeriesSkippedError: as :func:`forecast_packed_on_spark`.
    """
    from pyspark.sql import functions as F

    if series is None:
        series = int(rows.select(F.approx_count_distinct(UNIQUE_ID)).first()[0])  # type: ignore[index]
    buckets = bucket_count(rows.sparkSession.sparkContext.defaultParallelism, series)
    packed = rows.mapInArrow(_PackRows(buckets), PACKED)
    return forecast_packed_on_spark(packed, model_uri, tracking_uri, provenance, horizon,
                                    values, out, buckets=buckets, replace=replace, strict=strict)


def forecast_packed_on_spark(packed: SparkFrame, model_uri: str, tracking_uri: str,
                             provenance: Provenance, horizon: int, values: list[str], out: str,
                             *, buckets: int, replace: bool = False, strict: bool = False
                             ) -> BatchSummary:
    """Forecast rows packed by :func:`pack_rows` and write the forecasts with Spark.

    One pass: the executors write the forecasts to Parquet (into the staging folder of
    :class:`pipelines.sinks.ParquetFolder`, moved into ``out`` as ``part-*.parquet`` at the
    end) and report the series they left out to the driver (an accumulator); nothing else
    comes back.

    Raises:
        SinkError: ``out`` is not a folder, or holds part files and ``replace`` is not given.
        SeriesSkippedError: ``strict`` and a series left out (``out`` is left as it was).
    """
    sink = open_folder(out, replace=replace)
    try:
        job = _ArrowBucket(model_uri, tracking_uri, provenance, horizon, _output_fields(values))
        result, left_out = _forecast_buckets(packed, job, buckets)
        written = sink.scratch("spark")
        packed.sparkSession.conf.set("spark.sql.parquet.outputTimestampType", "TIMESTAMP_MICROS")
        result.write.parquet(str(written))
        rows = sink.adopt(written)
        skipped = dict(sorted(left_out.value.items()))
        if strict and skipped:
            uid, why = next(iter(skipped.items()))
            raise SeriesSkippedError(f"series {uid!r}: {why} (--strict)")
    except BaseException:
        sink.abort()
        raise
    sink.commit()
    return BatchSummary(rows // horizon + len(skipped), rows // horizon, rows, skipped)


def bucket_count(cores: int, series: int) -> int:
    """Buckets for ``series`` series: :data:`SERIES_PER_BUCKET` each, at least one per core."""
    return max(cores, -(-series // SERIES_PER_BUCKET))


def pack_rows(table: pa.Table, buckets: int) -> pa.Table:
    """Long rows packed by bucket: one row ``(_bucket, _rows)`` per bucket present.

    A series' bucket is a hash of its id (as text) modulo ``buckets``, the same in every
    process, so all of a series' rows meet in one bucket whichever rows are packed together;
    ``_rows`` holds the bucket's rows, every column as given, as an LZ4-compressed Arrow IPC
    stream. Spark then moves a few large binary values instead of a row per point.
    """
    ids = table.column(UNIQUE_ID).cast(pa.string())
    starts = _run_starts(ids)  # runs of rows of one series (usually: each series one run)
    ends = np.append(starts[1:], len(ids))
    names = ids.take(pa.array(starts)).to_numpy(zero_copy_only=False).astype(object)
    of_run = (pd.util.hash_array(names) % np.uint64(buckets)).astype(np.int64)
    order = np.argsort(of_run, kind="stable")
    keys, first = np.unique(of_run[order], return_index=True)
    groups = np.split(order, first[1:])
    blobs = [_ipc(pa.concat_tables([table.slice(starts[i], ends[i] - starts[i])
                                    for i in runs]).combine_chunks()) for runs in groups]
    return pa.table({_BUCKET: pa.array(keys, pa.int64()), _ROWS: pa.array(blobs, pa.binary())})


def _run_starts(ids: pa.ChunkedArray) -> np.ndarray:
    """Where each run of equal ids starts (a missing id starts a run of its own)."""
    import pyarrow.compute as pc

    flat = ids.combine_chunks()
    new = np.ones(len(flat), dtype=bool)
    if len(flat) > 1:
        differs = pc.not_equal(flat.slice(1), flat.slice(0, len(flat) - 1)).fill_null(True)
        new[1:] = differs.to_numpy(zero_copy_only=False)
    return np.flatnonzero(new)


def _ipc(table: pa.Table) -> bytes:
    """``table`` as the bytes of an LZ4-compressed Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    options = pa.ipc.IpcWriteOptions(compression="lz4")
    with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
        writer.write_table(table)
    return bytes(sink.getvalue())


def unpack_rows(packed: pa.Table) -> pa.Table:
    """The long rows of one bucket's packed rows (:func:`pack_rows`), in one table."""
    tables = [pa.ipc.open_stream(blob.as_buffer()).read_all()  # the bytes are not copied
              for chunk in packed.column(_ROWS).chunks for blob in chunk]
    return pa.concat_tables(tables, promote_options="permissive")


class _PackRows:
    """``mapInArrow`` function: long rows in, :func:`pack_rows` out, :data:`PACK_ROWS` a time."""

    def __init__(self, buckets: int) -> None:
        self.buckets = buckets

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        held: list[pa.RecordBatch] = []
        for batch in batches:
            held.append(batch)
            if sum(b.num_rows for b in held) >= PACK_ROWS:
                yield from pack_rows(pa.Table.from_batches(held), self.buckets).to_batches()
                held = []
        if held:
            yield from pack_rows(pa.Table.from_batches(held), self.buckets).to_batches()


def _forecast_buckets(packed: SparkFrame, job: _ArrowBucket, buckets: int
                      ) -> tuple[SparkFrame, Accumulator[dict[str, str]]]:
    """Packed rows shuffled by bucket, each bucket forecast by ``job`` (``applyInArrow``).

    Returns the forecast rows and the accumulator that collects, as they run, the series the
    buckets left out (id -> why; read it once an action has run).
    """
    from pyspark.sql import functions as F

    ddl = ", ".join(f"`{name}` {kind}" for name, kind in job.fields if name not in _CONSTANT)
    p = job.provenance
    constant = {"model": p.model_uri, "model_name": p.name, "run_id": p.run_id,
                "model_version": p.version if p.version is not None else -1}
    param = cast("AccumulatorParam[dict[str, str]]", _Skipped())
    left_out = packed.sparkSession.sparkContext.accumulator({}, param)

    def one_bucket(table: pa.Table) -> pa.Table:  # pyspark reads the hints of a function
        rows, skipped = job(table)
        if skipped:
            left_out.add(skipped)
        return rows

    shuffled = packed.repartition(buckets, _BUCKET).groupBy(_BUCKET)
    rows = shuffled.applyInArrow(one_bucket, ddl)
    columns = [F.lit(constant[name]).cast(kind).alias(name) if name in _CONSTANT
               else F.col(f"`{name}`") for name, kind in job.fields]
    return rows.select(*columns), left_out


def _bucket_forecasts(rows: SparkFrame, job: Callable[[pd.DataFrame], pd.DataFrame],
                      schema: StructType, series: int) -> SparkFrame:
    """Long ``rows`` with a bucket key (a hash of the id), each bucket's rows given to ``job``.

    ``groupBy(bucket).applyInPandas``: every row crosses into Python as a row (slower than the
    packed rows of :func:`_forecast_buckets`); :mod:`service.spark_evaluate` runs its fold
    outputs this way.
    """
    from pyspark.sql import functions as F

    buckets = bucket_count(rows.sparkSession.sparkContext.defaultParallelism, series)

    def one_bucket(bucket: pd.DataFrame) -> pd.DataFrame:  # Spark counts its arguments
        return job(bucket)

    keyed = rows.withColumn(_BUCKET, F.pmod(F.xxhash64(UNIQUE_ID), F.lit(buckets)))
    return keyed.groupBy(_BUCKET).applyInPandas(one_bucket, schema)


class _Skipped:
    """Series left out, id -> why, merged from every task (a retried task adds the same).

    An ``AccumulatorParam`` by its two methods (pyspark asks for no more).
    """

    def zero(self, value: dict[str, str]) -> dict[str, str]:
        return {}

    def addInPlace(self, value1: dict[str, str], value2: dict[str, str]) -> dict[str, str]:
        value1.update(value2)
        return value1


_CONSTANT = ("model", "model_name", "model_version", "run_id")
"""Provenance columns, the same on every row: added by Spark, not sent from Python."""


def _output_fields(values: list[str]) -> list[tuple[str, str]]:
    """The columns of the forecast rows, ``(name, Spark type)``."""
    return [(UNIQUE_ID, "string"), (DS, "timestamp"), ("model", "string"),
            ("model_name", "string"), ("model_version", "bigint"), ("run_id", "string"),
            ("origin", "timestamp"), *((v, "double") for v in values)]


def _plain_strings(frame: pd.DataFrame) -> pd.DataFrame:
    """String columns as object arrays.

    pyspark's Arrow path does not take pandas 3's arrow-backed ``str`` columns (``Cannot
    convert pyarrow.lib.ChunkedArray``).
    """
    text = [c for c in frame.columns if pd.api.types.is_string_dtype(frame[c])]
    return frame.astype(dict.fromkeys(text, object)) if text else frame


class _BucketJob:
    """What a function run on one bucket needs: the model, loaded once per Python worker.

    Picklable: no closure over Spark. Subclasses are the functions (``__call__``).
    """

    def __init__(self, model_uri: str, tracking_uri: str, provenance: Provenance,
                 horizon: int, columns: list[str]) -> None:
        self.model_uri, self.tracking_uri = pinned(model_uri, tracking_uri), tracking_uri
        self.provenance, self.horizon, self.columns = provenance, horizon, columns

    def _model(self) -> Forecaster:
        key = f"{self.tracking_uri} {self.model_uri}"
        if key not in _LOADED:
            import mlflow

            from nearcast.models.artifact import load_forecaster

            mlflow.set_tracking_uri(self.tracking_uri)
            mlflow.set_registry_uri(self.tracking_uri)
            _LOADED[key] = load_forecaster(self.model_uri)
        return _LOADED[key]


def pinned(model_uri: str, tracking_uri: str) -> str:
    """``models:/name@alias`` as the version the alias names now (``models:/name/3``).

    Resolved once on the driver, so every executor loads the same version even if the alias
    moves during the job, and a reused Python worker never keeps serving an older one.
    """
    if not model_uri.startswith("models:/") or "@" not in model_uri:
        return model_uri
    from mlflow import MlflowClient

    name, alias = model_uri.removeprefix("models:/").split("@", 1)
    version = MlflowClient(tracking_uri, tracking_uri).get_model_version_by_alias(name, alias)
    return f"models:/{name}/{version.version}"


class _ArrowBucket(_BucketJob):
    """One bucket's packed rows -> its forecast rows and the series it left out.

    :func:`models.batch.forecast_chunk` of the bucket's series, the one-process job's own; the
    rows without the constant provenance columns (:data:`_CONSTANT`).
    """

    def __init__(self, model_uri: str, tracking_uri: str, provenance: Provenance,
                 horizon: int, fields: list[tuple[str, str]]) -> None:
        super().__init__(model_uri, tracking_uri, provenance, horizon, [n for n, _ in fields])
        self.fields = fields

    def __call__(self, packed: pa.Table) -> tuple[pa.Table, dict[str, str]]:
        kinds = {"string": pa.string(), "timestamp": pa.timestamp("us", tz="UTC"),
                 "bigint": pa.int64(), "double": pa.float64()}
        rows = unpack_rows(packed).to_pandas()
        frame, skipped = forecast_chunk(self._model(), rows, self.provenance, self.horizon)
        table = pa.table({name: pa.array(frame[name], type=kinds[kind], from_pandas=True)
                          for name, kind in self.fields if name not in _CONSTANT})
        return table, skipped


__all__ = ["PACKED", "PACK_ROWS", "SERIES_PER_BUCKET", "SourceColumnsError", "bucket_count",
           "forecast_on_spark", "forecast_packed_on_spark", "forecast_parquet_on_spark",
           "forecast_rows_on_spark", "pack_rows", "pinned", "reads_itself", "spark_engine",
           "spark_session", "unpack_rows"]
