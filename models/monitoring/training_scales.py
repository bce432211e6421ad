"""Each series' MASE scale on its training split: written by training, read by the monitor.

A training run stores, as the artifact :data:`SCALES_ARTIFACT`, the in-sample seasonal scale
(:func:`models.mase.mase_scales`) of every series on the points before its holdout: the scale
the holdout MASE was computed with. Live MASE divides by the same numbers, so a live score and
the holdout score of a version are on one scale.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from nearcast.models.mase import mase_scales

SCALES_ARTIFACT = "evaluation/mase_scales.json"
"""Where a training run keeps its series' MASE scales: ``{season, unique_id: [], scale: []}``."""


def scales_record(ids: Iterable[Any], histories: Sequence[npt.ArrayLike], season: int
                  ) -> dict[str, Any]:
    """The artifact's content: the season and, per series id, its in-sample MASE scale.

    Raises:
        ValueError: as :func:`models.mase.mase_scales` (a zero scale names the series).
    """
    scales = mase_scales(histories, season)
    return {"season": int(season), "unique_id": [str(i) for i in ids],
            "scale": [float(s) for s in np.asarray(scales, dtype=np.float64)]}


def read_training_scales(client: MlflowClient, run_id: str) -> dict[str, float] | None:
    """Series id -> training MASE scale of a training run; None when the run has none.

    Runs logged before the artifact existed (or whose artifact cannot be read) give None.
    """
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = client.download_artifacts(run_id, SCALES_ARTIFACT, tmp)
            body = json.loads(Path(local).read_text())
        except (MlflowException, OSError, ValueError):
            return None
    ids, scales = body.get("unique_id"), body.get("scale")
    if not isinstance(ids, list) or not isinstance(scales, list) or len(ids) != len(scales):
        return None
    return {str(i): float(s) for i, s in zip(ids, scales, strict=True)}


__all__ = ["SCALES_ARTIFACT", "read_training_scales", "scales_record"]
