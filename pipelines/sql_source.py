"""Rows from a SQL table or query, with errors that name the database (never its password).

A bad URL, a driver that is not installed (a plain ``postgresql://`` URL means psycopg 3 to
SQLAlchemy 2.1; nearcast installs psycopg2), an unreachable or missing database, a missing table
(naming the tables there) or a failing query all raise
:class:`~pipelines.errors.DataSourceError` in one line.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd
import sqlalchemy as sa

from nearcast.pipelines.errors import DataSourceError, first_line

__all__ = ["masked_url", "read_rows"]

_TABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?")


def read_rows(url_or_engine: str | sa.Engine, table_or_query: str) -> pd.DataFrame:
    """Read every row of a table (optionally ``schema.table``) or of a query.

    Args:
        url_or_engine: A database URL (an engine is created and disposed of) or an engine.
        table_or_query: A table name or a SQL query.

    Returns:
        The rows, columns as the database names them.

    Raises:
        DataSourceError: If the URL, the driver, the database, the table or the query fails.
    """
    is_table = _TABLE_NAME.fullmatch(table_or_query.strip()) is not None
    owned = isinstance(url_or_engine, str)
    engine = _engine(url_or_engine) if isinstance(url_or_engine, str) else url_or_engine
    where = engine.url.render_as_string(hide_password=True)
    try:
        with engine.connect() as connection:
            statement = (
                _table_select(connection, table_or_query.strip(), where)
                if is_table
                else sa.text(table_or_query)
            )
            frame = pd.read_sql(statement, connection)
    except sa.exc.OperationalError as exc:
        raise DataSourceError(f"{where}: {first_line(exc.orig or exc)}") from None
    except sa.exc.DBAPIError as exc:
        raise DataSourceError(
            f"{where}: query {table_or_query.strip()!r} failed: {first_line(exc.orig or exc)}"
        ) from None
    except pd.errors.DatabaseError as exc:  # pandas wraps a failing query
        raise DataSourceError(f"{where}: {first_line(exc)}") from None
    finally:
        if owned:
            engine.dispose()
    return frame


def masked_url(url: str) -> str:
    """``url`` with its password hidden (``***``), or as given when it does not parse."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return url


def _engine(url: str) -> sa.Engine:
    """An engine for ``url``; a bad URL or a missing driver raises DataSourceError."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise DataSourceError(f"not a database URL: {url!r} (e.g. sqlite:///obs.db or "
                              "postgresql+psycopg2://user:password@host:5432/dbname)") from None
    where = parsed.render_as_string(hide_password=True)
    try:
        return sa.create_engine(parsed)
    except (ImportError, sa.exc.NoSuchModuleError) as exc:
        hint = ""
        if parsed.get_backend_name() == "postgresql":
            hint = ("; use postgresql+psycopg2://... (nearcast installs psycopg2; a plain "
                    "postgresql:// URL means the psycopg 3 driver to SQLAlchemy 2.1)")
        raise DataSourceError(f"{where}: the database driver {parsed.drivername!r} is not "
                              f"available ({first_line(exc)}){hint}") from None


def _table_select(connection: sa.Connection, name: str, where: str) -> sa.Select[Any]:
    """Return ``SELECT * FROM name`` for a table reflected from the database."""
    schema, _, table = name.rpartition(".")
    try:
        reflected = sa.Table(table, sa.MetaData(), schema=schema or None,
                             autoload_with=connection)
    except sa.exc.NoSuchTableError:
        tables = sa.inspect(connection).get_table_names(schema=schema or None)
        shown = ", ".join(tables[:20]) + (", ..." if len(tables) > 20 else "")
        raise DataSourceError(f"{where}: no table {name!r} (tables there: {shown or 'none'})") \
            from None
    return sa.select(reflected)
