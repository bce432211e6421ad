"""Column names of the long data format, defined once for the whole project.

Inside nearcast every frame of observations is long: one row per (series, timestamp) with
columns ``unique_id`` (series key, string), ``ds`` (timestamp, UTC) and ``y`` (float target);
validation drops any other column.
"""

from __future__ import annotations

UNIQUE_ID = "unique_id"
DS = "ds"
Y = "y"

LONG_COLUMNS: tuple[str, str, str] = (UNIQUE_ID, DS, Y)

__all__ = ["DS", "LONG_COLUMNS", "UNIQUE_ID", "Y"]
