"""A trained forecaster with everything needed to turn raw history into a forecast.

:class:`Forecaster` couples the Keras network with its :class:`ModelMeta` (config, grid rule,
data digest) and exposes the fast array path the service calls: a ``tf.function`` with a
fixed-rank input signature, traced once; or, with ``jit_compile``, a
:class:`models.compiled.CompiledLadder` of XLA-compiled batch sizes, all compiled by
:meth:`Forecaster.warmup`.
"""

from __future__ import annotations

import json
import time
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
from nearcast.models.compiled import DEFAULT_LIMIT, CompiledLadder, example_inputs, ladder_sizes
from nearcast.models.config import ModelConfig
from nearcast.pipelines.feature_windows import CovariateBatch
from nearcast.pipelines.features import FeatureSpec
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
    features: FeatureSpec | None = Field(
        None, description="Covariates, calendar and series vocabulary (None: the target only)."
    )

    @property
    def covariate_model(self) -> bool:
        """True when the model reads anything besides the target's history."""
        return self.features is not None and self.features.active

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
        unseen: per series, True when the series embedding fell back to the shared vector.
    """

    values: np.ndarray
    fit: FitResult
    unseen: np.ndarray | None = None


class Forecaster:
    """Keras network + metadata + compiled prediction function.

    Args:
        model: the Keras network (inputs by name, ``{"forecast": (B, H, K)}`` out).
        meta: its metadata.
        jit_compile: predict through an XLA :class:`CompiledLadder` (compiled by
            :meth:`warmup`) instead of the plain ``tf.function``.
        batch_sizes: the ladder's batch sizes (default: powers of two up to 256).
    """

    def __init__(self, model: keras.Model, meta: ModelMeta, jit_compile: bool = False,
                 batch_sizes: Sequence[int] | None = None) -> None:
        self.model, self.meta = model, meta
        self.input_specs = input_specs(meta)

        def _predict(inputs: dict[str, tf.Tensor]) -> tf.Tensor:
            return model(inputs, training=False)["forecast"]

        self._predict = tf.function(_predict, input_signature=[self.input_specs])
        self.ladder = (CompiledLadder(_predict, self.input_specs,
                                      batch_sizes or ladder_sizes(DEFAULT_LIMIT))
                       if jit_compile else None)

    @property
    def compiles(self) -> int:
        """Traces of the prediction function so far (XLA: one per compiled batch size)."""
        if self.ladder is not None:
            return self.ladder.compiles
        return int(self._predict.experimental_get_tracing_count())

    @property
    def config(self) -> ModelConfig:
        """The model config."""
        return self.meta.config

    def predict_arrays(self, history: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Forecast fitted windows of a target-only model: ``(B, L)`` twice in, ``(B, H, K)``."""
        return self.predict_inputs({"history": history, "mask": mask})

    def predict_inputs(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Forecast fitted windows with every input the model has, ``(B, H, K)`` out.

        Raises:
            ValueError: an input of the model is missing (naming it).
        """
        missing = sorted(set(self.input_specs) - set(inputs))
        if missing:
            raise ValueError(f"the model needs inputs {missing} (covariates); got "
                             f"{sorted(inputs)}")
        if self.ladder is not None:
            return self.ladder(inputs)
        feed = {k: tf.convert_to_tensor(inputs[k], dtype=spec.dtype)
                for k, spec in self.input_specs.items()}
        return np.asarray(self._predict(feed))

    def forecast(
        self, histories: Sequence[np.ndarray], covariates: CovariateBatch | None = None
    ) -> Forecast:
        """Forecast raw 1-D histories of any length (cut or padded to the window).

        A covariate model also needs ``covariates`` (:func:`pipelines.feature_windows.
        covariate_batch` of the same series).
        """
        fitted = fit_histories(histories, self.config.window_spec())
        inputs = {"history": fitted.history, "mask": fitted.mask}
        inputs |= covariates.inputs if covariates is not None else {}
        return Forecast(values=self.predict_inputs(inputs), fit=fitted,
                        unseen=None if covariates is None else covariates.unseen)

    def warmup(self) -> float:
        """Trace (XLA: compile every ladder size) now so no request waits; returns seconds."""
        if self.ladder is not None:
            return self.ladder.compile()
        started = time.perf_counter()
        self.predict_inputs(example_inputs(self.input_specs, 1))
        return time.perf_counter() - started

    def regularize(self, df: pd.DataFrame) -> Regularized:
        """Put raw long observations on the model's grid by its own rule (freq, agg, gaps).

        A covariate model's covariate columns go through the same steps, by their own rules.
        """
        features = self.meta.features
        return regularize(df, self.meta.grid,
                          covariates=features.covariates if features is not None else None)

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
    def load(cls, directory: str | Path, jit_compile: bool = False,
             batch_sizes: Sequence[int] | None = None) -> Forecaster:
        """Load a saved forecaster (Keras ``safe_mode=True``: no pickled code); see the class."""
        path = Path(directory)
        meta = ModelMeta.model_validate(json.loads((path / META_FILE).read_text()))
        model = keras.saving.load_model(path / MODEL_FILE, safe_mode=True, compile=False)
        return cls(model, meta, jit_compile=jit_compile, batch_sizes=batch_sizes)

    def describe(self) -> dict[str, Any]:
        """Public facts about the model (for listings and provenance)."""
        c, g, f = self.config, self.meta.grid, self.meta.features
        return {
            "freq": c.freq, "horizon": c.horizon, "input_size": c.input_size,
            "min_history": c.shortest_history, "quantiles": c.quantiles, "cell": c.cell,
            "scaling": c.scaling, "agg": g.agg, "gap_policy": g.gap_policy,
            "max_gap": g.max_gap, "timezone": g.timezone,
            "covariates": f.describe() if f is not None else [],
            "calendar": f.calendar.model_dump() if f is not None and f.calendar else None,
            "series_embedding": bool(f is not None and f.series_ids),
        }


def input_specs(meta: ModelMeta) -> dict[str, tf.TensorSpec]:
    """The ``TensorSpec`` of each input of the model's compiled path, by name."""
    size = meta.config.input_size
    specs = {n: tf.TensorSpec((None, size), tf.float32, name=n) for n in ("history", "mask")}
    if meta.features is not None:
        shapes = meta.features.input_shapes(meta.config.horizon, window=size)
        specs |= {key: tf.TensorSpec((None, *shape), dtype, name=key)
                  for key, (shape, dtype) in shapes.items()}
    return specs


__all__ = ["META_FILE", "MODEL_FILE", "Forecast", "Forecaster", "ModelMeta", "example_inputs",
           "input_specs"]
