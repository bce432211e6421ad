"""Where the rows of a long frame came from, so that problems name file lines, not positions.

:func:`pipelines.sources.read_files_located` concatenates files; validation reports problems by row
position in that concatenation. :meth:`RowOrigin.locate` turns those positions back into the
file and its line number (CSV: the header is line 1, so data row ``i`` of a file is line
``i + 2``) or its 0-based row (Parquet), which is what a user can look up in an editor.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Hashable
from dataclasses import dataclass, replace
from itertools import accumulate

import numpy as np

from nearcast.pipelines.errors import DataValidationError, Problem

__all__ = ["FileRows", "RowOrigin"]


@dataclass(frozen=True)
class FileRows:
    """One file's share of the rows, in concatenation order.

    Attributes:
        path: The file, as the user can find it.
        rows: Data rows read from it.
        first: File line (CSV: 2, after the header) or row number (Parquet: 0) of its first row.
        unit: ``"line"`` (CSV) or ``"row"`` (Parquet).
    """

    path: str
    rows: int
    first: int = 2
    unit: str = "line"


@dataclass(frozen=True)
class RowOrigin:
    """The source of a frame: a label and, for files, which rows came from which file.

    Attributes:
        label: What the user named, e.g. ``"data/*.csv"`` or ``"sqlite:///obs.db obs"``.
        files: The files in concatenation order; empty for a non-file source (rows keep their
            0-based positions).
    """

    label: str
    files: tuple[FileRows, ...] = ()

    def locate(self, error: DataValidationError) -> DataValidationError:
        """Return ``error`` with row positions replaced by file lines (files only).

        A problem whose rows span several files becomes one problem per file. A problem without
        rows or series (a missing column, no rows at all) names the file when there is only one,
        or the label otherwise (a glob, a database and table). Problems whose
        rows are not positions (timestamps) are kept as they are.

        Args:
            error: Raised while validating the frame this origin describes.

        Returns:
            A new error.
        """
        if not self.files:
            return DataValidationError(
                replace(p, file=self.label) if not p.rows and p.unique_id is None else p
                for p in error.problems
            )
        located: list[Problem] = []
        for problem in error.problems:
            located += self._locate(problem)
        return DataValidationError(located)

    def _locate(self, problem: Problem) -> list[Problem]:
        if problem.file is not None:
            return [problem]
        if not problem.rows:
            if problem.unique_id is not None:
                return [problem]  # about a whole series (e.g. too short), not a place in a file
            name = self.files[0].path if len(self.files) == 1 else self.label
            return [replace(problem, file=name)]
        positions = [int(r) for r in problem.rows if isinstance(r, int | np.integer)]
        if len(positions) != len(problem.rows):
            return [problem]  # timestamps, not positions
        ends = list(accumulate(f.rows for f in self.files))
        per_file: dict[int, list[Hashable]] = {}
        for row in positions:
            index = bisect_right(ends, row)
            if index >= len(self.files):
                return [problem]  # not a position in this frame
            start = ends[index - 1] if index else 0
            per_file.setdefault(index, []).append(self.files[index].first + row - start)
        return [
            replace(problem, rows=rows, file=self.files[i].path, unit=self.files[i].unit)
            for i, rows in per_file.items()
        ]
