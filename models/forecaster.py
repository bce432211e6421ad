"""A trained forecaster with everything needed to turn raw history into a forecast.

:class:`Forecaster` couples the Keras network with its :class:`ModelMeta` (config, grid rule,
data digest) and exposes the fast array path the service calls: a ``tf.function``
with a fixed-rank input signature, traced once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pandas as pd
import tensorflow as tf
from pydantic import BaseModel, ConfigDict, Field, model_validator

import nearcast.models.architectures.registry  # noqa: F401  (registers every custom layer for loading)
from nearcast.models.config import ModelConfig
from nearcast.pipelines.grid import GridRule, same_freq
from nearcast.pipelines.padding import FitResult, fit_histories
from nearcast.pipelines.prepare import Regularized, regularize

MODEL_FILE, META_FILE = "model.keras", "meta.json"


class ModelMeta(BaseModel):
    """Metadata that travels inside the model artifact.

    ``grid`` is the rule the training data was put on (its frequency is the config's); whoever
    reads raw observations for this model applies it. Metadata written before the rule was
    stored (flat ``gap_policy``/``bucket_agg``) loads with those values and the defaults.
    """

    model_config = ConfigDict(extra="forbid")

    config: ModelConfig
    grid: GridRule
    data_digest: str = ""
    data_source: str = ""
    nearcast_version: str = ""
    train_series: int = 0
    metrics: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _grid_of_older_artifacts(cls, data: Any) -> Any:
        """Without ``grid``: the config's frequency and the flat fields older versions wrote."""
        if not isinstance(data, dict) or "grid" in data:
            return data
        out = dict(data)
        config = out.get("config")
        freq = config.freq if isinstance(config, ModelConfig) else (
            config.get("freq", "h") if isinstance(config, dict) else "h")
        out["grid"] = {"freq": freq, "gap_policy": out.pop("gap_policy", "linear"),
                       "agg": out.pop("bucket_agg", "mean")}
        return out

    @model_validator(mode="after")
    def _grid_at_model_freq(self) -> ModelMeta:
        if self.grid.freq is None or not same_freq(self.grid.freq, self.config.freq):
            raise ValueError(f"grid frequency {self.grid.freq!r} differs from the model's "
                             f"{self.config.freq!r}")
        return self


@dataclass(frozen=True)
class Forecast:
    """Forecasts for a batch of histories.

    Attributes:
        values: shape ``(B, H, K)``; the last axis follows ``meta.config.output_names``.
        fit: how each history was cut or padded to the window.
    """

    values: np.ndarray
    fit: FitResult


class Forecaster:
    """Keras network + metadata + compiled prediction function."""

    def __init__(self, model: keras.Model, meta: ModelMeta, jit_compile: bool = False) -> None:
        self.model, self.meta = model, meta
        size = meta.config.input_size
        spec = [tf.TensorSpec((None, size), tf.float32, name=n) for n in ("history", "mask")]

        def _predict(history: tf.Tensor, mask: tf.Tensor) -> tf.Tensor:
            return model({"history": history, "mask": mask}, training=False)["forecast"]

        self._predict = tf.function(_predict, input_signature=spec, jit_compile=jit_compile)

    @property
    def config(self) -> ModelConfig:
        """The model config."""
        return self.meta.config

    def predict_arrays(self, history: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Forecast fitted windows: ``(B, L)`` and ``(B, L)`` in, ``(B, H, K)`` out."""
        out = self._predict(tf.convert_to_tensor(history), tf.convert_to_tensor(mask))
        return np.asarray(out)

    def forecast(self, histories: Sequence[np.ndarray]) -> Forecast:
        """Forecast raw 1-D histories of any length (cut or padded to the window)."""
        fitted = fit_histories(histories, self.config.window_spec())
        return Forecast(values=self.predict_arrays(fitted.history, fitted.mask), fit=fitted)

    def warmup(self) -> None:
        """Trace the compiled function once so the first request pays nothing."""
        size = self.config.input_size
        self.predict_arrays(np.ones((1, size), np.float32), np.ones((1, size), np.float32))

    def regularize(self, df: pd.DataFrame) -> Regularized:
        """Put raw long observations on the model's grid by its own rule (freq, agg, gaps)."""
        return regularize(df, self.meta.grid)

    def future_index(self, last_ds: pd.Timestamp, horizon: int) -> pd.DatetimeIndex:
        """Timestamps of the ``horizon`` steps after ``last_ds`` at the model frequency."""
        return pd.date_range(last_ds, periods=horizon + 1, freq=self.config.freq)[1:]

    def save(self, directory: str | Path) -> Path:
        """Write ``model.keras`` and ``meta.json`` into ``directory``."""
        path = Path(directory)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save(path / MODEL_FILE)
        (path / META_FILE).write_text(self.meta.model_dump_json(indent=2))
        return path

    @classmethod
    def load(cls, directory: str | Path, jit_compile: bool = False) -> Forecaster:
        """Load a saved forecaster (Keras ``safe_mode=True``: no pickled code)."""
        path = Path(directory)
        meta = ModelMeta.model_validate(json.loads((path / META_FILE).read_text()))
        model = keras.saving.load_model(path / MODEL_FILE, safe_mode=True, compile=False)
        return cls(model, meta, jit_compile=jit_compile)

    def describe(self) -> dict[str, Any]:
        """Public facts about the model (for listings and provenance)."""
        c, g = self.config, self.meta.grid
        return {
            "freq": c.freq, "horizon": c.horizon, "input_size": c.input_size,
            "min_history": c.shortest_history, "quantiles": c.quantiles, "cell": c.cell,
            "scaling": c.scaling, "agg": g.agg, "gap_policy": g.gap_policy,
            "max_gap": g.max_gap, "timezone": g.timezone,
        }


__all__ = ["META_FILE", "MODEL_FILE", "Forecast", "Forecaster", "ModelMeta"]
