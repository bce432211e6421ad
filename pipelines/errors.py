"""Error types raised when the user's input (data, a data source, a config) cannot be used.

Every one derives from :class:`InputError`, so a command line can tell a user's mistake (one line
saying what and where) from a bug (a traceback). A :class:`DataValidationError` carries every
:class:`Problem` found in one pass, so a user can fix all of them at once instead of discovering
them one run at a time. Its ``str()`` names, for the first few problems, the series, the
offending rows (file lines when the data came from a file) or timestamps and what is wrong.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

__all__ = [
    "MAX_PROBLEMS_SHOWN",
    "DataNotFoundError",
    "DataSourceError",
    "DataValidationError",
    "InputError",
    "Problem",
    "first_line",
]

MAX_PROBLEMS_SHOWN = 10
"""How many problems ``str(DataValidationError)`` spells out before summarising the rest."""

_MAX_ROWS_SHOWN = 5


class InputError(Exception):
    """The user's input cannot be used; ``str()`` says what is wrong and where (file, key, row).

    Base class of every error a user fixes by changing their data, config or command line, as
    opposed to a bug in nearcast.
    """


class DataSourceError(InputError, ValueError):
    """A data source cannot be read: an empty or malformed file, a missing table, a bad URL."""


class DataNotFoundError(InputError, FileNotFoundError):
    """No data file matches the path, folder or glob the user gave."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none).

    Args:
        exc: Any exception, e.g. a driver's error with a multi-line message.

    Returns:
        One line of text.
    """
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input data.

    Attributes:
        kind: Short machine-readable category, e.g. ``"duplicate"`` or ``"non_numeric"``.
        unique_id: The series concerned, or ``None`` when the problem is not tied to one series
            (a missing column, for instance).
        rows: The offending row index labels or timestamps (may be empty); with ``file`` set,
            the file's line numbers (CSV) or 0-based row numbers (Parquet).
        message: Human-readable explanation of what is wrong.
        file: The file the problem is in, when known.
        unit: What ``rows`` count when ``file`` is set: ``"line"`` or ``"row"``.
        column: The column concerned, when the problem is about a covariate column (its name
            inside nearcast); ``None`` for the target and timestamps.
    """

    kind: str
    unique_id: str | None
    rows: list[Hashable] = field(default_factory=list)
    message: str = ""
    file: str | None = None
    unit: str = "line"
    column: str | None = None

    def describe(self) -> str:
        """Return a one-line description naming the series, the rows and what is wrong.

        Returns:
            Text such as ``"[duplicate] series 'a', rows [3, 4]: 2 rows share ds ..."``,
            ``"[non_numeric] series 'a', data.csv line 5: y is not numeric: 'x'"`` or
            ``"[non_numeric] series 'a', data.csv line 5, column 'load': ..."``.
        """
        where: list[str] = []
        if self.unique_id is not None:
            where.append(f"series {self.unique_id!r}")
        if self.file is not None and self.rows:
            many = len(self.rows) > 1
            rows = _format_rows(self.rows) if many else _format_row(self.rows[0])
            where.append(f"{self.file} {self.unit}{'s' if many else ''} {rows}")
        elif self.file is not None:
            where.append(self.file)
        elif self.rows:
            where.append(f"rows {_format_rows(self.rows)}")
        if self.column is not None:
            where.append(f"column {self.column!r}")
        if not where:
            return f"[{self.kind}] {self.message}"
        return f"[{self.kind}] {', '.join(where)}: {self.message}"


def _format_rows(rows: list[Hashable]) -> str:
    """Format at most a few row references, with a count of the rest."""
    shown = ", ".join(_format_row(row) for row in rows[:_MAX_ROWS_SHOWN])
    rest = len(rows) - _MAX_ROWS_SHOWN
    return f"[{shown}, ... and {rest} more]" if rest > 0 else f"[{shown}]"


def _format_row(row: Hashable) -> str:
    """Format one row reference; timestamps are shown in ISO format."""
    isoformat = getattr(row, "isoformat", None)
    if callable(isoformat):
        return str(isoformat())
    return repr(row)


class DataValidationError(InputError, ValueError):
    """Input data has one or more problems; ``problems`` lists all of them.

    Args:
        problems: Every problem found (at least one).

    Attributes:
        problems: The problems, in the order they were found.
    """

    def __init__(self, problems: Iterable[Problem]) -> None:
        self.problems: list[Problem] = list(problems)
        super().__init__(self._render())

    def kinds(self) -> set[str]:
        """Return the set of problem kinds present.

        Returns:
            The distinct ``Problem.kind`` values.
        """
        return {problem.kind for problem in self.problems}

    def _render(self) -> str:
        """Build the message: one line for one problem; else the first ones and a count."""
        count = len(self.problems)
        if count == 1:
            return f"data problem {self.problems[0].describe()}"
        lines = [f"{count} data problem{'s' if count != 1 else ''} found:"]
        lines += [f"  - {p.describe()}" for p in self.problems[:MAX_PROBLEMS_SHOWN]]
        rest = count - MAX_PROBLEMS_SHOWN
        if rest > 0:
            lines.append(f"  ... and {rest} more problem{'s' if rest != 1 else ''}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self._render()

    def __reduce__(self) -> tuple[type[DataValidationError], tuple[list[Problem]]]:
        return (DataValidationError, (self.problems,))
