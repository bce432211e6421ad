"""``nearcast forecast``: every series of a source forecast by a stored model, written out.

The data is read and the output checked first, then MLflow and the model load (so a missing
file or an existing output is reported within a second or two). Series go through the model in
chunks of whole series (:func:`pipelines.series_chunks.series_chunks`) by the API's rules
(:mod:`models.batch`); each chunk is written as it is done, so memory follows the chunk, not
the number of series. The output is complete or, on a failure, not there (see
:mod:`pipelines.sinks`). :func:`forecast_to` takes the chunks from any iterable instead (series
made on the fly, e.g. by ``benchmarks/scale_bench.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd

from nearcast.models.batch import BatchSummary, Provenance, forecast_chunks
from nearcast.models.evaluate_job import EvaluationData, on_model_rules, version_of
from nearcast.pipelines.series_chunks import series_chunks
from nearcast.pipelines.sinks import Sink, open_sink

if TYPE_CHECKING:
    from nearcast.models.forecaster import Forecaster, ModelMeta
    from nearcast.models.settings import MlflowSettings

CHUNK_SERIES = 2000
"""Series per chunk: large enough for batched model calls, small enough to stream."""


@dataclass(frozen=True)
class ForecastJobResult:
    """What ``nearcast forecast`` wrote."""

    model_uri: str
    provenance: Provenance
    out: str
    summary: BatchSummary
    seconds: float


Engine = Callable[["Forecaster", Iterable[pd.DataFrame], Provenance, int | None, bool],
                  Iterator[tuple[pd.DataFrame, dict[str, str], int]]]
"""Runs the chunks through the model: :func:`models.batch.forecast_chunks` in this process;
the Spark engine (:mod:`service.spark_batch`) on executors."""


ChunkHook = Callable[[pd.DataFrame], None]
"""Called with each chunk's forecast frame once it is written (e.g. the forecast log)."""


Chunks = Callable[["ModelMeta"], Iterable[pd.DataFrame]]
"""The series to forecast as long frames of whole series, given the model's metadata (a source
is read by the model's rules); an iterator streams: one chunk is held at a time."""


def run_forecast_job(
    model_uri: str, read: EvaluationData, settings: MlflowSettings, out: str, *,
    table: str | None = None, horizon: int | None = None, strict: bool = False,
    replace: bool = False, append: bool = False, chunk_series: int = CHUNK_SERIES,
    engine: Engine | None = None, on_chunk: ChunkHook | None = None,
) -> ForecastJobResult:
    """Forecast every series of ``read`` with ``model_uri`` and write them to ``out``.

    ``on_chunk`` is called with each chunk's frame once it is written (the forecast log).

    Raises:
        InputError: the model, the data or the output cannot be used (naming which), a problem
            of the whole source, or (``strict``) a series left out.
    """

    def chunks(meta: ModelMeta) -> Iterator[pd.DataFrame]:
        return series_chunks(on_model_rules(read, meta)[1].frame, chunk_series)

    return forecast_to(model_uri, chunks, settings, out, table=table, horizon=horizon,
                       strict=strict, replace=replace, append=append, engine=engine,
                       on_chunk=on_chunk)


def forecast_to(
    model_uri: str, chunks: Chunks, settings: MlflowSettings, out: str, *,
    table: str | None = None, horizon: int | None = None, strict: bool = False,
    replace: bool = False, append: bool = False, engine: Engine | None = None,
    on_chunk: ChunkHook | None = None,
) -> ForecastJobResult:
    """:func:`run_forecast_job` of the series ``chunks`` yields (e.g. made on the fly).

    Raises:
        InputError: as :func:`run_forecast_job`.
    """
    sink = open_sink(out, table, replace=replace, append=append)
    try:
        result = _run(model_uri, chunks, settings, sink, horizon, strict, engine, on_chunk)
    except BaseException:
        sink.abort()
        raise
    sink.commit()
    return result


def job_model(model_uri: str, settings: MlflowSettings, horizon: int | None
              ) -> tuple[Forecaster, Provenance]:
    """The model of a batch forecast and the provenance its rows carry.

    Raises:
        InputError: no registered version behind ``model_uri``.
        ValueError: ``horizon`` outside the model's.
    """
    from nearcast.models.artifact import load_forecaster

    ref = version_of(settings.connect(), model_uri)
    forecaster = load_forecaster(model_uri)
    if horizon is not None:
        from nearcast.models.inference import check_horizon

        check_horizon(forecaster, horizon)
    return forecaster, Provenance(model_uri, ref.name if ref else "",
                                  ref.version if ref else None, ref.run_id if ref else "")


def _run(model_uri: str, chunks: Chunks, settings: MlflowSettings, sink: Sink,
         horizon: int | None, strict: bool, engine: Engine | None,
         on_chunk: ChunkHook | None = None) -> ForecastJobResult:
    started = time.perf_counter()
    forecaster, provenance = job_model(model_uri, settings, horizon)
    summary = BatchSummary()
    run = engine or forecast_chunks
    for frame, skipped, read_n in run(forecaster, chunks(forecaster.meta), provenance, horizon,
                                      strict):
        if len(frame):
            sink.write(frame)
            if on_chunk is not None:
                on_chunk(frame)
        summary.add(read_n, frame, skipped)
    return ForecastJobResult(model_uri, provenance, sink.where, summary,
                             time.perf_counter() - started)


__all__ = ["CHUNK_SERIES", "ChunkHook", "Chunks", "Engine", "ForecastJobResult", "forecast_to",
           "job_model", "run_forecast_job"]
