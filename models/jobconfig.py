"""The YAML file behind ``nearcast train`` (data, model, training), and evaluation data specs."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field

from models.config import EnsembleConfig, ModelConfig, TrainConfig
from models.retraining import RetrainConfig
from pipelines.dataset import DataConfig

if TYPE_CHECKING:  # the model (and TensorFlow) is not needed to read a job file
    from models.forecaster import ModelMeta

_YAML_SUFFIXES = (".yaml", ".yml")


class JobConfig(BaseModel):
    """A complete training job."""

    model_config = ConfigDict(extra="forbid")

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    model_name: str | None = Field(None, description="Registered model name override.")
    ensemble: EnsembleConfig | None = Field(
        None, description="Train several members and serve them as one model."
    )
    retrain: RetrainConfig = Field(
        default_factory=RetrainConfig, description="`nearcast retrain` / `nearcast scheduler`."
    )

    @classmethod
    def from_yaml(cls, path: str | Path) -> JobConfig:
        """Read and validate a YAML job file (errors name the file and the field)."""
        text = Path(path).read_text()
        raw = yaml.safe_load(text) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        return cls.model_validate(raw)


def data_config_for(spec: str, meta: ModelMeta) -> DataConfig:
    """The data a stored model is evaluated on, read by the model's own pipeline rules.

    Args:
        spec: ``m4_hourly`` (the bundled data); a YAML file holding a data config, or a job
            file whose ``data:`` section is used; or a data file, folder or glob (CSV/Parquet
            in the long format), read at the model's frequency, gap rule and aggregation.
        meta: the model's metadata.

    Raises:
        ValueError: when a YAML file is not a mapping or asks for another frequency than the
            model's (naming both).
    """
    rules = {"freq": meta.config.freq, "gap_policy": meta.gap_policy, "agg": meta.bucket_agg}
    if spec == "m4_hourly":
        return DataConfig(source="m4_hourly", **rules)
    if not spec.lower().endswith(_YAML_SUFFIXES):
        return DataConfig(source="files", path=spec, **rules)
    raw = yaml.safe_load(Path(spec).read_text()) or {}
    if isinstance(raw, dict) and isinstance(raw.get("data"), dict):
        raw = raw["data"]
    if not isinstance(raw, dict):
        raise ValueError(f"{spec}: expected a data config mapping (or a job file with 'data:')")
    cfg = DataConfig.model_validate(raw)
    if cfg.freq is None:
        return cfg.model_copy(update={"freq": meta.config.freq})
    if pd.tseries.frequencies.to_offset(cfg.freq) != pd.tseries.frequencies.to_offset(
        meta.config.freq
    ):
        raise ValueError(f"{spec}: data freq {cfg.freq!r} differs from the model's "
                         f"{meta.config.freq!r}")
    return cfg


__all__ = ["JobConfig", "data_config_for"]
