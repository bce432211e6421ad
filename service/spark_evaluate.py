"""The backtest on Spark: every series' folds forecast whole on one executor, scored here.

``nearcast evaluate --engine spark [--master local[*]]`` runs :func:`models.backtest.backtest`
with its model outputs computed on Spark, like the Spark batch forecast
(:mod:`service.spark_batch`, whose bucketing it uses): the rows of the series long enough for
the folds go to Spark with a bucket key (a hash of the series id), so every series lands whole
in one bucket, and ``groupBy(bucket).applyInPandas`` runs :func:`models.backtest.
fold_outputs`, the one-process backtest's own function, on each bucket: it cuts every fold's
window of each series and runs the model over them. Each Python worker loads the registered
model once through MLflow (the tracking URI travels with the function).

Everything else stays on the driver and is the one-process backtest's own code: the fold
checks, the series left out as too short (the same names and messages; ``--strict`` fails
before Spark starts), the cutoffs and the scores (:func:`models.backtest.score_folds`, the
baselines and metrics of :mod:`models.evaluation`), so the result is the local one: the same
skipped series and cutoffs, the same scores up to the float32 rounding of the model's outputs
(TensorFlow may round a window's outputs in the last bit in a batch of another size; the
scores then differ by some 1e-8 relative, and not at all on the tests' model).

Limit: the driver receives every model output, ``series x folds x horizon x outputs`` float32
values, and holds them next to what a :class:`models.backtest.Backtest` holds anyway (each
fold's actuals and every method's point forecasts, float64); the baselines are computed on
the driver too. Spark spreads the model calls, not the driver's memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from nearcast.models.backtest import BacktestEngine, Folds, fold_outputs, series_table
from nearcast.pipelines.schema import DS, UNIQUE_ID, Y
from nearcast.service.spark_batch import (
    _BUCKET,
    _bucket_forecasts,
    _BucketJob,
    _plain_strings,
    pinned,
    spark_session,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from nearcast.models.forecaster import Forecaster
    from nearcast.models.settings import MlflowSettings
    from nearcast.pipelines.series_table import SeriesTable

_OUTPUTS = "_outputs"


def spark_backtest(model_uri: str, settings: MlflowSettings, master: str | None
                   ) -> BacktestEngine:
    """The :class:`models.backtest.BacktestEngine` that runs the model on Spark (``spark``)."""
    tracking_uri = settings.resolved_tracking_uri()

    def outputs(forecaster: Forecaster, table: SeriesTable, frame: pd.DataFrame, folds: Folds
                ) -> np.ndarray:
        features = forecaster.meta.features if forecaster.meta.covariate_model else None
        columns = [UNIQUE_ID, DS, Y, *(features.covariates if features is not None else ())]
        return outputs_on_spark(spark_session(master), frame[columns], model_uri, tracking_uri,
                                folds, table.ids, forecaster.config.horizon)

    return BacktestEngine("spark", outputs)


def outputs_on_spark(spark: SparkSession, frame: pd.DataFrame, model_uri: str,
                     tracking_uri: str, folds: Folds, ids: np.ndarray, steps: int
                     ) -> np.ndarray:
    """The model's outputs ``(folds, S, steps, Q)`` for the series ``ids`` of ``frame``.

    ``ids`` gives the order, ``steps`` is the model's horizon; each bucket of whole series is
    computed on an executor.

    Raises:
        RuntimeError: an executor returned no outputs for some series (naming the first).
    """
    from pyspark.sql import types as T

    keyed = frame.assign(**{UNIQUE_ID: frame[UNIQUE_ID].astype(str)})
    rows = spark.createDataFrame(_plain_strings(keyed))
    schema = T.StructType([T.StructField(UNIQUE_ID, T.StringType()),
                           T.StructField(_OUTPUTS, T.BinaryType())])
    job = _FoldJob(model_uri, tracking_uri, folds)
    out = _bucket_forecasts(rows, job, schema, len(ids)).toPandas()  # the forecast's buckets
    where = pd.Index(out[UNIQUE_ID]).get_indexer(ids.astype(str))
    if (where < 0).any():
        raise RuntimeError(f"Spark returned no backtest outputs for series "
                           f"{ids[where < 0][0]!r}")
    blobs = out[_OUTPUTS].to_numpy()
    return np.stack([np.frombuffer(blobs[i], np.float32).reshape(folds.count, steps, -1)
                     for i in where], axis=1)


class _FoldJob(_BucketJob):
    """The function each executor runs on one bucket: every fold's model outputs per series.

    :class:`service.spark_batch._BucketJob`'s model loading (once per Python worker); the
    outputs travel as float32 bytes of shape ``(folds, H, Q)``, one row per series.
    """

    def __init__(self, model_uri: str, tracking_uri: str, folds: Folds) -> None:
        self.model_uri, self.tracking_uri = pinned(model_uri, tracking_uri), tracking_uri
        self.folds = folds

    def __call__(self, bucket: pd.DataFrame) -> pd.DataFrame:
        forecaster = self._model()
        rows = bucket.drop(columns=[_BUCKET])
        rows[DS] = pd.to_datetime(rows[DS], utc=True)
        table = series_table(forecaster, rows)
        out = np.asarray(fold_outputs(forecaster, table, self.folds), np.float32)
        return pd.DataFrame({UNIQUE_ID: table.ids.astype(object),
                             _OUTPUTS: [np.ascontiguousarray(out[:, i]).tobytes()
                                        for i in range(len(table.ids))]})


__all__ = ["outputs_on_spark", "spark_backtest"]
