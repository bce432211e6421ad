"""Error type raised when input data cannot be used as it is.

A :class:`DataValidationError` carries every :class:`Problem` found in one pass, so a user can
fix all of them at once instead of discovering them one run at a time. Its ``str()`` names, for
the first few problems, the series, the offending rows or timestamps and what is wrong.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field

__all__ = ["MAX_PROBLEMS_SHOWN", "DataValidationError", "Problem"]

MAX_PROBLEMS_SHOWN = 10
"""How many problems ``str(DataValidationError)`` spells out before summarising the rest."""

_MAX_ROWS_SHOWN = 5


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the input data.

    Attributes:
        kind: Short machine-readable category, e.g. ``"duplicate"`` or ``"non_numeric"``.
        unique_id: The series concerned, or ``None`` when the problem is not tied to one series
            (a missing column, for instance).
        rows: The offending row index labels or timestamps (may be empty).
        message: Human-readable explanation of what is wrong.
    """

    kind: str
    unique_id: str | None
    rows: list[Hashable] = field(default_factory=list)
    message: str = ""

    def describe(self) -> str:
        """Return a one-line description naming the series, the rows and what is wrong.

        Returns:
            Text such as ``"[duplicate] series 'a', rows [3, 4]: 2 rows share ds ..."``.
        """
        where: list[str] = []
        if self.unique_id is not None:
            where.append(f"series {self.unique_id!r}")
        if self.rows:
            where.append(f"rows {_format_rows(self.rows)}")
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


class DataValidationError(ValueError):
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
        """Build the message: the first problems spelled out, then a count of the rest."""
        count = len(self.problems)
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
