"""The YAML file behind ``nearcast train``: data, model, training."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field

from models.config import ModelConfig, TrainConfig
from pipelines.dataset import DataConfig


class JobConfig(BaseModel):
    """A complete training job."""

    model_config = ConfigDict(extra="forbid")

    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    model_name: str | None = Field(None, description="Registered model name override.")

    @classmethod
    def from_yaml(cls, path: str | Path) -> JobConfig:
        """Read and validate a YAML job file (errors name the file and the field)."""
        text = Path(path).read_text()
        raw = yaml.safe_load(text) or {}
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a mapping at the top level")
        return cls.model_validate(raw)


__all__ = ["JobConfig"]
