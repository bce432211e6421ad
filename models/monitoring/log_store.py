"""The forecast log: served forecasts, their actuals and the monitor's summaries (SQLAlchemy Core).

Three tables, created when missing: ``forecasts`` (one row per served forecast and series, the
steps as JSON arrays, :mod:`.log_frames`), ``actuals`` (key: model, series, epoch second) and
``monitor_summary``. Writes are idempotent: a forecast row is inserted once per
``(forecast_id, series_id)``; an actual sent again with the same value changes nothing, with
another value it is a correction.

Backends: SQLite (the default, a file under ``NEARCAST_HOME``) and PostgreSQL
(``postgresql+psycopg2://``), several processes writing at once (:mod:`.log_tables`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from nearcast.models.monitoring.log_frames import (
    LoggedForecast,
    actual_arrays,
    actuals_frame,
    forecast_record,
    long_forecasts,
)
from nearcast.models.monitoring.log_tables import (
    ACTUALS,
    FORECASTS,
    SUMMARY,
    insert_ignoring,
    open_engine,
    write_transaction,
)
from nearcast.pipelines.schema import DS, UNIQUE_ID, Y

if TYPE_CHECKING:
    from nearcast.models.settings import ForecastLogSettings

_CHUNK = 500  # series ids per IN (...) list
# A log written from a server's background thread holds the GIL while it builds JSON and binds
# rows; without a pause a request waits up to the interpreter's switch interval (5 ms). So the
# writes yield every _YIELD_ROWS rows and run as statements of _STATEMENT_ROWS rows.
_YIELD_ROWS = 16
_STATEMENT_ROWS = 256
_DAY = 86_400.0


@dataclass(frozen=True)
class ActualsWrite:
    """What one write of actuals did: new points, corrected points, points already stored."""

    inserted: int
    updated: int
    unchanged: int


def _columns(rows: Sequence[Sequence[Any]], width: int) -> list[Sequence[Any]]:
    """Result rows as ``width`` columns (zip, not a DataFrame of Row objects: 10x faster)."""
    return list(zip(*rows, strict=True)) if rows else [() for _ in range(width)]


class ForecastLog:
    """The store of served forecasts and actuals behind one SQLAlchemy URL.

    Args:
        url: ``sqlite:///<path>`` (the folder is created) or ``postgresql+psycopg2://...``.

    Raises:
        ValueError: a URL of another database.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = open_engine(url)

    @classmethod
    def from_settings(cls, settings: ForecastLogSettings | None = None) -> ForecastLog:
        """The log the settings name (the environment's by default)."""
        from nearcast.models.settings import get_forecast_log_settings

        return cls((settings or get_forecast_log_settings()).resolved_url())

    @property
    def display_url(self) -> str:
        """The URL without its password."""
        return self.display(self.url)

    @staticmethod
    def display(url: str) -> str:
        """``url`` without its password (an unparsable URL shows only its scheme)."""
        try:
            return sa.make_url(url).render_as_string(hide_password=True)
        except sa.exc.ArgumentError:
            return url.split(":", 1)[0] + ":..."

    def write_forecasts(self, rows: Sequence[LoggedForecast]) -> int:
        """Log served forecasts; a ``(forecast_id, series_id)`` already logged is skipped.

        Returns:
            The rows newly inserted.
        """
        records = []
        for i, row in enumerate(rows, 1):
            records.append(forecast_record(row))
            if i % _YIELD_ROWS == 0:
                time.sleep(0)  # hand the GIL to a thread serving requests now and then
        statement = insert_ignoring(self._engine, FORECASTS).returning(FORECASTS.c.forecast_id)
        inserted = 0
        with write_transaction(self._engine) as conn:
            for start in range(0, len(records), _STATEMENT_ROWS):
                part = records[start:start + _STATEMENT_ROWS]
                inserted += len(conn.execute(statement, part).all())
                time.sleep(0)
        return inserted

    def write_actuals(self, model: str, frame: pd.DataFrame, *, now: float | None = None
                      ) -> ActualsWrite:
        """Store actuals of ``model``: new points, corrections, and points already stored.

        Args:
            model: the registered model name the actuals belong to.
            frame: ``unique_id``, ``ds`` (UTC), ``y`` (finite), one row per series and time.
            now: when they were received (epoch seconds; default the clock): what retention
                counts from (:meth:`prune`).

        Raises:
            ValueError: naming the series and timestamp of a value not finite or given twice.
        """
        ids, ds, y = actual_arrays(frame)
        if not len(ids):
            return ActualsWrite(0, 0, 0)
        new = pd.DataFrame({UNIQUE_ID: ids, DS: ds, Y: y})
        now = time.time() if now is None else now
        with write_transaction(self._engine, lock=f"actuals:{model}") as conn:
            old = self._stored(conn, model, new)
            merged = new.merge(old, on=[UNIQUE_ID, DS], how="left", suffixes=("", "_old"))
            known = merged["y_old"].notna().to_numpy()
            changed = known & (merged[Y].to_numpy() != merged["y_old"].to_numpy())
            inserts = merged.loc[~known]
            if len(inserts):
                conn.execute(insert_ignoring(self._engine, ACTUALS), [
                    {"model": model, "unique_id": u, "ds": int(d), "y": float(v),
                     "received_at": now}
                    for u, d, v in zip(inserts[UNIQUE_ID], inserts[DS], inserts[Y], strict=True)])
            updates = merged.loc[changed]
            if len(updates):
                statement = (sa.update(ACTUALS).where(
                    ACTUALS.c.model == sa.bindparam("m"), ACTUALS.c.unique_id == sa.bindparam("u"),
                    ACTUALS.c.ds == sa.bindparam("d")).values(y=sa.bindparam("v"),
                                                              received_at=now))
                conn.execute(statement, [
                    {"m": model, "u": u, "d": int(d), "v": float(v)}
                    for u, d, v in zip(updates[UNIQUE_ID], updates[DS], updates[Y], strict=True)])
        return ActualsWrite(int(len(inserts)), int(changed.sum()), int(known.sum() - changed.sum()))

    @staticmethod
    def _stored(conn: sa.Connection, model: str, new: pd.DataFrame) -> pd.DataFrame:
        """The stored values at ``new``'s keys (``unique_id``, ``ds``, ``y_old``)."""
        parts: list[Any] = []
        spans = new.groupby(UNIQUE_ID, sort=False)[DS].agg(["min", "max"])
        lo, hi = int(spans["min"].min()), int(spans["max"].max())
        names = spans.index.tolist()
        for start in range(0, len(names), _CHUNK):
            query = sa.select(ACTUALS.c.unique_id, ACTUALS.c.ds, ACTUALS.c.y).where(
                ACTUALS.c.model == model, ACTUALS.c.unique_id.in_(names[start:start + _CHUNK]),
                ACTUALS.c.ds.between(lo, hi))
            parts.extend(conn.execute(query).all())
        ids, ds, y = _columns(parts, 3)
        return pd.DataFrame({UNIQUE_ID: np.asarray(ids, dtype=object),
                             DS: np.asarray(ds, dtype=np.int64),
                             "y_old": np.asarray(y, dtype=np.float64)})

    def forecasts(self, model: str, *, version: int | None = None, since: float | None = None
                  ) -> pd.DataFrame:
        """The logged forecasts of ``model``, long: one row per series and step.

        Columns: ``forecast_id``, ``request_id``, ``model``, ``version``, ``unique_id``,
        ``source``, ``origin`` and ``ds`` (UTC), ``step`` (1-based), ``point``, ``q<q>`` per raw
        quantile, ``served_q<q>`` per quantile (NaN where served raw), ``logged_at`` (epoch s).

        Args:
            model: the model name.
            version: only this version.
            since: only forecasts logged at or after this epoch second.
        """
        query = sa.select(FORECASTS).where(FORECASTS.c.model == model)
        if version is not None:
            query = query.where(FORECASTS.c.version == int(version))
        if since is not None:
            query = query.where(FORECASTS.c.logged_at >= float(since))
        query = query.order_by(FORECASTS.c.logged_at, FORECASTS.c.forecast_id,
                               FORECASTS.c.series_id)
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
        return long_forecasts(rows)

    def actuals(self, model: str, *, unique_ids: Collection[str] | None = None,
                since: pd.Timestamp | None = None) -> pd.DataFrame:
        """The actuals of ``model`` (``unique_id``, ``ds`` UTC, ``y``), by series and time."""
        query = sa.select(ACTUALS.c.unique_id, ACTUALS.c.ds, ACTUALS.c.y).where(
            ACTUALS.c.model == model)
        if since is not None:
            stamp = pd.Timestamp(since)
            stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp
            query = query.where(ACTUALS.c.ds >= int(stamp.timestamp()))
        wanted = None if unique_ids is None else sorted({str(u) for u in unique_ids})
        with self._engine.connect() as conn:
            if wanted is not None and len(wanted) <= _CHUNK:
                rows = conn.execute(query.where(ACTUALS.c.unique_id.in_(wanted))).all()
            else:
                rows = conn.execute(query).all()
        frame = actuals_frame(*_columns(rows, 3))
        if wanted is not None and len(wanted) > _CHUNK:
            frame = frame[frame[UNIQUE_ID].isin(wanted)].reset_index(drop=True)
        return frame

    def matched(self, model: str, *, version: int | None = None, since: float | None = None
                ) -> pd.DataFrame:
        """:meth:`forecasts` joined with their actuals on (``unique_id``, ``ds``), column ``y``.

        A step served several times for the same (version, series, origin, step) is kept once,
        the latest logged.
        """
        forecasts = self.forecasts(model, version=version, since=since)
        if forecasts.empty:
            return forecasts.assign(**{Y: pd.Series(dtype=np.float64)})
        actuals = self.actuals(model, unique_ids=forecasts[UNIQUE_ID].unique().tolist(),
                               since=forecasts[DS].min())
        joined = forecasts.merge(actuals, on=[UNIQUE_ID, DS], how="inner")
        joined = joined.sort_values("logged_at", kind="stable").drop_duplicates(
            ["version", UNIQUE_ID, "origin", "step"], keep="last")
        return joined.sort_values(["version", UNIQUE_ID, "origin", "step"],
                                  ignore_index=True)

    def count_forecasts(self, model: str | None = None) -> int:
        """Rows logged (one per forecast and series), of ``model`` or of all models."""
        query = sa.select(sa.func.count()).select_from(FORECASTS)
        if model is not None:
            query = query.where(FORECASTS.c.model == model)
        with self._engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def prune(self, retention_days: float, now: float | None = None) -> tuple[int, int]:
        """Remove forecasts logged, and actuals received, more than ``retention_days`` ago.

        Both count from when the log got them, not from the timestamps they are about, so
        actuals backfilled for old dates stay as long as the forecasts they are matched with.

        Returns:
            ``(forecast rows, actuals)`` removed (monitor summaries that old go too).
        """
        cutoff = (time.time() if now is None else now) - retention_days * _DAY
        with write_transaction(self._engine) as conn:
            forecasts = conn.execute(sa.delete(FORECASTS).where(FORECASTS.c.logged_at < cutoff))
            actuals = conn.execute(sa.delete(ACTUALS).where(ACTUALS.c.received_at < cutoff))
            conn.execute(sa.delete(SUMMARY).where(SUMMARY.c.computed_at < cutoff))
        return int(forecasts.rowcount), int(actuals.rowcount)

    def write_summary(self, model: str, body: dict[str, Any]) -> None:
        """Store the monitor's latest summary of ``model`` (JSON)."""
        with write_transaction(self._engine) as conn:
            conn.execute(sa.insert(SUMMARY), {"model": model, "computed_at": time.time(),
                                              "body": json.dumps(body)})

    def latest_summary(self, model: str) -> dict[str, Any] | None:
        """The newest summary :meth:`write_summary` stored for ``model``, or None."""
        query = (sa.select(SUMMARY.c.body).where(SUMMARY.c.model == model)
                 .order_by(SUMMARY.c.computed_at.desc(), SUMMARY.c.id.desc()).limit(1))
        with self._engine.connect() as conn:
            body = conn.execute(query).scalar()
        return None if body is None else dict(json.loads(body))

    def close(self) -> None:
        """Close the pooled connections."""
        self._engine.dispose()


__all__ = ["ACTUALS", "FORECASTS", "SUMMARY", "ActualsWrite", "ForecastLog", "LoggedForecast"]
