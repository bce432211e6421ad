"""Where a long frame is written chunk by chunk: a Parquet file, a folder of parts, a SQL table.

``open_sink(out, table)`` picks the sink from ``out``:

* a database URL (``sqlite:///forecasts.db``, ``postgresql+psycopg2://...``): rows appended to
  ``table`` (SQLAlchemy, ``pandas.DataFrame.to_sql``);
* a path ending in ``.parquet``: one file, one row group per chunk (written to a temporary name
  and moved into place when closed, so a failed job leaves the old file as it was);
* any other path: a folder of ``part-00000.parquet``, ``part-00001.parquet``, ... (staged in
  a hidden subfolder and moved in when closed).

A sink never overwrites what is there unless ``replace`` says so: an existing file, a folder
holding parts, or an existing table is an error naming it (a table may be appended to with
``append``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import pandas as pd

from nearcast.pipelines.errors import InputError

if TYPE_CHECKING:
    import pyarrow as pa
    import pyarrow.parquet as pq

__all__ = ["ParquetFolder", "Sink", "SinkError", "open_folder", "open_sink"]


class SinkError(InputError, ValueError):
    """The output cannot be written (the message names it and why)."""


class Sink(Protocol):
    """Takes chunks of one long frame, then is closed (``commit``) or dropped (``abort``)."""

    where: str

    def write(self, frame: pd.DataFrame) -> None:
        """Write one chunk."""

    def commit(self) -> None:
        """Finish: the output is complete."""

    def abort(self) -> None:
        """Give up: leave what was there before, as far as the sink can."""


def open_sink(out: str, table: str | None = None, *, replace: bool = False,
              append: bool = False) -> Sink:
    """The sink for ``out`` (see the module docstring).

    Raises:
        SinkError: the output exists and neither ``replace`` nor (for a table) ``append`` is
            given, the folder cannot be created, or ``table`` is missing for a database.
    """
    if "://" in out:
        if not table:
            raise SinkError(f"{_safe(out)}: name the table to write (--table)")
        return _SqlSink(out, table, replace=replace, append=append)
    path = Path(out)
    if path.suffix.lower() == ".parquet":
        if path.exists() and not replace:
            raise SinkError(f"{out}: the file exists; give --replace to overwrite it")
        if not path.parent.exists():
            raise SinkError(f"{out}: folder {path.parent} does not exist")
        return _ParquetFile(path)
    return ParquetFolder(path, replace=replace)


def _safe(url: str) -> str:
    """A database URL without its password."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - any unparsable URL is shown as given
        return url


class _ParquetFile:
    def __init__(self, path: Path) -> None:
        self.path, self.where = path, str(path)
        self._tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        self._writer: pq.ParquetWriter | None = None  # once the first chunk is in

    def write(self, frame: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        data = pa.Table.from_pandas(frame, preserve_index=False)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._tmp, data.schema)
        self._writer.write_table(data.cast(self._writer.schema))

    def commit(self) -> None:
        if self._writer is None:
            return  # nothing forecast: no file
        self._writer.close()
        self._tmp.replace(self.path)

    def abort(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._tmp.unlink(missing_ok=True)


def open_folder(out: str, *, replace: bool = False) -> ParquetFolder:
    """The folder sink for ``out``, for a writer that fills it with part files of its own.

    Raises:
        SinkError: ``out`` is a database URL or a ``.parquet`` file name, or as
            :func:`open_sink` for a folder.
    """
    if "://" in out or Path(out).suffix.lower() == ".parquet":
        raise SinkError(f"{_safe(out) if '://' in out else out}: this writes a folder of part "
                        "files; give a folder")
    return ParquetFolder(Path(out), replace=replace)


class ParquetFolder:
    """Parts are written into a hidden staging folder and moved in by :meth:`commit`.

    Another writer (Spark's) may fill a folder inside the staging folder (:meth:`scratch`);
    :meth:`adopt` takes its part files in as the next parts.
    """

    def __init__(self, path: Path, replace: bool) -> None:
        self.path, self.where, self._parts = path, str(path), 0
        if path.exists() and not path.is_dir():
            raise SinkError(f"{path}: not a folder (a single file's name ends in .parquet)")
        if path.exists() and any(path.glob("part-*.parquet")) and not replace:
            raise SinkError(f"{path}: the folder holds part files; give --replace to "
                            "overwrite them, or another folder")
        self._stage = path / f".staging-{os.getpid()}"
        try:
            self._stage.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise SinkError(f"{path}: cannot create the folder ({exc.strerror})") from None
        self._schema: pa.Schema | None = None

    def write(self, frame: pd.DataFrame) -> None:
        """Write one chunk as the next part."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        data = pa.Table.from_pandas(frame, preserve_index=False)
        self._schema = self._schema or data.schema
        pq.write_table(data.cast(self._schema), self._next_part())

    def scratch(self, name: str) -> Path:
        """A path inside the staging folder for another writer to create and fill."""
        return self._stage / name

    def adopt(self, folder: Path) -> int:
        """Take in the part files another writer left in ``folder``; the rows they hold.

        Parts without rows are dropped; ``folder`` is removed with what else it holds.
        """
        import pyarrow.parquet as pq

        rows = 0
        for part in sorted(folder.glob("part-*.parquet")):
            n = pq.ParquetFile(part).metadata.num_rows
            if n:
                part.replace(self._next_part())
                rows += n
        shutil.rmtree(folder)
        return rows

    def _next_part(self) -> Path:
        self._parts += 1
        return self._stage / f"part-{self._parts - 1:05d}.parquet"

    def commit(self) -> None:
        """Replace the folder's part files by the staged ones."""
        for old in self.path.glob("part-*.parquet"):
            old.unlink()
        for part in sorted(self._stage.glob("part-*.parquet")):
            part.replace(self.path / part.name)
        shutil.rmtree(self._stage)

    def abort(self) -> None:
        """Drop the staged parts; the folder's own are left as they were."""
        shutil.rmtree(self._stage, ignore_errors=True)


class _SqlSink:
    def __init__(self, url: str, table: str, replace: bool, append: bool) -> None:
        import sqlalchemy as sa

        self.where = f"{_safe(url)} table {table}"
        try:
            self._engine = sa.create_engine(url)
            exists = sa.inspect(self._engine).has_table(table)
        except Exception as exc:  # noqa: BLE001 - driver errors vary; name the database
            raise SinkError(f"{_safe(url)}: cannot open the database ({exc})") from None
        if exists and not (replace or append):
            raise SinkError(f"{self.where}: the table exists; give --append to add rows or "
                            "--replace to overwrite it")
        self._table = table
        self._mode: Literal["replace", "append"] = "replace" if replace else "append"
        self._conn = self._engine.connect()
        self._tx = self._conn.begin()  # one transaction: a failed job writes nothing

    def write(self, frame: pd.DataFrame) -> None:
        frame.to_sql(self._table, self._conn, if_exists=self._mode, index=False)
        self._mode = "append"

    def commit(self) -> None:
        self._tx.commit()
        self._conn.close()
        self._engine.dispose()

    def abort(self) -> None:
        self._tx.rollback()
        self._conn.close()
        self._engine.dispose()
