"""The MLflow model artifact: a pyfunc wrapping a saved :class:`Forecaster`.

``mlflow.pyfunc.load_model(uri).predict(long_df, params={"horizon": h})`` returns a long
forecast frame; ``load_forecaster(uri)`` gives the fast array path used by the service.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from mlflow.models.model import ModelInfo
from mlflow.pyfunc.model import PythonModel

from nearcast.models.forecaster import Forecaster
from nearcast.models.inference import forecast_frame

ARTIFACT_KEY = "forecaster"
_REQUIREMENTS = [
    "tensorflow-cpu>=2.21,<2.22; sys_platform == 'linux' and platform_machine == 'x86_64'",
    "tensorflow>=2.21,<2.22; sys_platform != 'linux' or platform_machine != 'x86_64'",
    "keras>=3.15,<4",
    "mlflow>=3.17,<3.18",
    "pandas>=2.2",
    "numpy>=2.0",
]


class NearcastPyfunc(PythonModel):
    """Pyfunc flavor: long observations in, long forecasts out."""

    def load_context(self, context: Any) -> None:
        """Load the Keras network and metadata from the logged artifact folder."""
        self.forecaster = Forecaster.load(context.artifacts[ARTIFACT_KEY])

    def predict(
        self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None
    ) -> pd.DataFrame:
        """Forecast every series in ``model_input`` (columns ``unique_id``, ``ds``, ``y``).

        A covariate model also reads its covariate columns; each series' rows after its last
        observed ``y`` (``y`` missing) give the future-known covariates of the horizon.

        MLflow's signature types timestamps as naive: ``ds`` in and out is naive UTC.
        ``params``: ``horizon`` (int, at most the model's) — the default is the model's.
        """
        horizon = int((params or {}).get("horizon") or self.forecaster.config.horizon)
        frame = forecast_frame(self.forecaster, model_input, horizon).frame
        return frame.assign(ds=frame["ds"].dt.tz_convert("UTC").dt.tz_localize(None))


def _example(forecaster: Forecaster) -> tuple[pd.DataFrame, pd.DataFrame]:
    """An input example and its forecast.

    A covariate model's example carries its covariates and, after the history, the horizon's
    rows with the future-known ones (``y`` missing).
    """
    size, c = forecaster.config.input_size, forecaster.config
    n = size + (c.horizon if forecaster.meta.covariate_model else 0)
    ds = pd.date_range("2000-01-01", periods=n, freq=c.freq, tz="UTC")
    values = 100.0 + 10.0 * np.sin(np.arange(n) * 2 * np.pi / c.season)
    example = pd.DataFrame({"unique_id": "example", "ds": ds, "y": values})
    features = forecaster.meta.features
    if features is not None and forecaster.meta.covariate_model:
        example.loc[size:, "y"] = np.nan
        for name, cov in features.covariates.items():
            if cov.role == "static":
                example[name] = (features.categories[name][0] if name in features.categories
                                 else features.stats[name][0])
            else:
                mean, std = features.stats[name]
                example[name] = mean + std * np.cos(np.arange(n) * 2 * np.pi / c.season)
        if c.embedding and features.series_ids:
            example["unique_id"] = features.series_ids[0]
    return example, forecast_frame(forecaster, example, c.horizon).frame


def log_forecaster(forecaster: Forecaster, name: str = "model") -> ModelInfo:
    """Log ``forecaster`` as a pyfunc model in the active run, with signature and example."""
    example, output = _example(forecaster)
    # Naive timestamps in the signature: nearcast reads naive ``ds`` as UTC.
    example = example.assign(ds=example["ds"].dt.tz_localize(None))
    params = {"horizon": forecaster.config.horizon}
    signature = infer_signature(example, output.assign(ds=output["ds"].dt.tz_localize(None)),
                                params=params)
    with tempfile.TemporaryDirectory() as tmp:
        folder = forecaster.save(Path(tmp) / ARTIFACT_KEY)
        info: ModelInfo = mlflow.pyfunc.log_model(
            name=name,
            python_model=str(Path(__file__).with_name("pyfunc_entry.py")),
            artifacts={ARTIFACT_KEY: str(folder)},
            signature=signature,
            input_example=(example, params),
            pip_requirements=_REQUIREMENTS,
        )
    return info


def load_forecaster(model_uri: str, jit_compile: bool = False,
                    batch_sizes: Sequence[int] | None = None) -> Forecaster:
    """Download a logged nearcast model and load its fast path (no pandas round-trips).

    ``jit_compile``/``batch_sizes``: see :class:`~nearcast.models.forecaster.Forecaster`.
    """
    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp)
        return Forecaster.load(Path(local) / "artifacts" / ARTIFACT_KEY, jit_compile=jit_compile,
                               batch_sizes=batch_sizes)


__all__ = ["ARTIFACT_KEY", "NearcastPyfunc", "load_forecaster", "log_forecaster"]
