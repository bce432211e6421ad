"""Actuals read from a job's ``data:`` source, as training reads it, for the forecast log.

The source is read (:func:`pipelines.dataset.read_raw`), validated and bucketed onto the job's
grid by the stages training runs first (:func:`pipelines.validation.validate_long`,
:func:`pipelines.bucketing.bucket`), and not gap-filled: an imputed value is no observation.
Only the target is read (covariate columns are not needed here).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from nearcast.pipelines.bucketing import bucket
from nearcast.pipelines.dataset import DataConfig, read_raw
from nearcast.pipelines.errors import DataSourceError, DataValidationError
from nearcast.pipelines.schema import DS, UNIQUE_ID, Y
from nearcast.pipelines.validation import validate_long


def actuals_from_data(data: DataConfig) -> pd.DataFrame:
    """``unique_id``, ``ds`` (UTC), ``y`` of every observed grid point of the source.

    Raises:
        InputError: the source cannot be read or validated (naming file and line).
    """
    raw = read_raw(data.model_copy(update={"covariates": {}}))
    try:
        valid, _ = validate_long(raw.frame, duplicates="aggregate", agg=data.agg)
        frame, _ = bucket(valid, data.freq, agg=data.agg)
    except DataValidationError as exc:
        raise raw.origin.locate(exc) from exc
    except ValueError as exc:  # bucketing: e.g. no frequency can be inferred from the data
        raise DataSourceError(f"{raw.origin.label}: {exc}") from exc
    observed: pd.DataFrame = frame[np.isfinite(frame[Y].to_numpy(dtype=np.float64))]
    return observed[[UNIQUE_ID, DS, Y]].reset_index(drop=True)


__all__ = ["actuals_from_data"]
