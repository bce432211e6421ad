"""The YAML file behind ``nearcast train``/``retrain`` (data, model, training, retraining).

Also the data specs of ``nearcast evaluate``. Reading a file never needs TensorFlow, so a
mistake in it is reported within a second. Every error is a :class:`JobConfigError` naming the
file and the key, e.g. ``configs/x.yaml: data.pth: unknown key (did you mean 'path'?)``.
"""

from __future__ import annotations

import difflib
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from nearcast.models.config import (
    EnsembleConfig,
    ModelConfig,
    MonitorConfig,
    RetrainConfig,
    TrainConfig,
)
from nearcast.pipelines.dataset import DataConfig
from nearcast.pipelines.errors import InputError
from nearcast.pipelines.scaling_rules import refuse_non_positive
from nearcast.pipelines.validation import drop_short_series

if TYPE_CHECKING:  # the model (and TensorFlow) is not needed to read a job file
    from nearcast.models.forecaster import ModelMeta

_YAML_SUFFIXES = (".yaml", ".yml")
_Model = TypeVar("_Model", bound=BaseModel)


class JobConfigError(InputError, ValueError):
    """A job or data YAML file cannot be used; the message names the file and the key."""


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
    monitor: MonitorConfig = Field(
        default_factory=MonitorConfig, description="`nearcast monitor` / `nearcast scheduler`."
    )

    @model_validator(mode="after")
    def _one_frequency(self) -> JobConfig:
        """The grid frequency is given once: ``data.freq`` (``model.freq`` alone still works)."""
        data_freq_given = "freq" in self.data.model_fields_set and self.data.freq is not None
        if "freq" in self.model.model_fields_set and not data_freq_given:
            self.data = self.data.model_copy(update={"freq": self.model.freq})
        if self.data.freq is not None:  # None: inferred from the data when it is read
            self.model = self.model.on_grid(self.data)
        return self

    @model_validator(mode="after")
    def _members_resolve(self) -> JobConfig:
        if self.ensemble is not None:  # an unknown or invalid member field fails now, not later
            try:
                self.ensemble.member_configs(self.model, self.train)
            except ValidationError as exc:
                raise ValueError("ensemble.members: " + "; ".join(
                    _describe(error, ModelConfig, ()) for error in exc.errors())) from None
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> JobConfig:
        """Read and validate a YAML job file.

        Raises:
            JobConfigError: naming the file and the key (or the YAML line) of each problem.
        """
        return validate_in_file(cls, read_mapping(path), path)

    def member_configs(self) -> list[ModelConfig]:
        """The model config of every member (the model config alone without an ensemble)."""
        if self.ensemble is None:
            return [self.model]
        return [config for config, _ in self.ensemble.member_configs(self.model, self.train)]

    def min_series_length(self) -> int:
        """Fewest points a series needs to be trained on and scored.

        The last ``horizon`` points are the holdout; before them, one training window needs the
        shortest history plus ``horizon`` target points.
        """
        return max(2 * c.horizon + c.shortest_history for c in self.member_configs())

    def usable_for_training(
        self, frame: pd.DataFrame, strict: bool = False
    ) -> tuple[pd.DataFrame, dict[str, int]]:
        """Leave out the series too short to train on (:meth:`min_series_length`).

        Data a member's scaling rule cannot take (values <= 0 for ``log_level``) is refused,
        as the API refuses it for such a model.

        Args:
            frame: regular long frame.
            strict: raise instead of leaving series out.

        Returns:
            The frame of the other series and, per series left out, its number of points.

        Raises:
            DataValidationError: naming every short series when ``strict`` or when none is
                long enough; naming the series with values a scaling rule cannot take.
        """
        for rule in {c.scaling for c in self.member_configs()}:
            refuse_non_positive(frame, rule)
        need = self.min_series_length()
        why = (f"training needs at least {need} (the holdout, then one window: 2 x horizon + "
               "the shortest history)")
        return drop_short_series(frame, need, strict=strict, why=why)


def read_mapping(path: str | Path) -> dict[str, Any]:
    """Read a YAML file holding a mapping (an empty file is an empty mapping).

    Raises:
        JobConfigError: the file cannot be read, is not YAML (naming the line) or not a mapping.
    """
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise JobConfigError(f"{path}: cannot read the file: {reason}") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise JobConfigError(f"{path}: {where}not valid YAML: {problem}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise JobConfigError(f"{path}: expected a mapping of keys at the top level, "
                             f"got {type(raw).__name__}")
    return raw


def read_retrain_section(path: str | Path) -> tuple[str | None, RetrainConfig]:
    """The model name override and the ``retrain:`` section of a job file, read lightly.

    For the scheduler and the retraining lock, before the rest of the file is validated (by
    :class:`JobConfig`, once the lock is held).

    Raises:
        JobConfigError: naming the file when it is not YAML, not a mapping or the section is
            invalid.
    """
    return _read_section(path, "retrain", RetrainConfig)


def read_monitor_section(path: str | Path) -> tuple[str | None, MonitorConfig]:
    """The model name override and the ``monitor:`` section of a job file, read lightly.

    For the scheduler (see :func:`read_retrain_section`).

    Raises:
        JobConfigError: naming the file when it is not YAML, not a mapping or the section is
            invalid.
    """
    return _read_section(path, "monitor", MonitorConfig)


def _read_section(path: str | Path, key: str, cls: type[_Model]) -> tuple[str | None, _Model]:
    try:
        raw: Any = yaml.safe_load(Path(path).read_text()) or {}
    except yaml.YAMLError as exc:
        raise JobConfigError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise JobConfigError(f"{path}: expected a mapping at the top level")
    name = raw.get("model_name")
    try:
        cfg = cls.model_validate(raw.get(key) or {})
    except ValidationError as exc:
        problems = "; ".join(f"{key}.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in exc.errors())
        raise JobConfigError(f"{path}: invalid {key!r} section: {problems}") from exc
    return (str(name) if name else None), cfg


def validate_in_file(
    cls: type[_Model], raw: dict[str, Any], path: str | Path, prefix: tuple[str, ...] = ()
) -> _Model:
    """Validate ``raw`` as ``cls``; errors name the file and the dotted key.

    Args:
        cls: The pydantic model.
        raw: The mapping read from the file.
        path: The file (for messages).
        prefix: Keys above ``raw`` in the file (e.g. ``("data",)``), for messages.

    Raises:
        JobConfigError: One line: ``<file>: <key>: <what is wrong>`` for each problem, joined
            by ``"; "``.
    """
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(_describe(error, cls, prefix) for error in exc.errors())
        raise JobConfigError(f"{path}: {problems}") from exc


def _describe(error: Any, cls: type[BaseModel], prefix: tuple[str, ...]) -> str:
    """``key: message`` for one pydantic error, with a suggestion for a mistyped key."""
    loc = tuple(error["loc"])
    key = _dotted(prefix + loc)
    if error["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(loc[-1]), _fields_at(cls, loc[:-1]), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{key}: unknown key{hint}"
    message = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "missing":
        message = "required key is missing"
    elif error["type"] != "value_error" and not isinstance(error.get("input"), dict | list):
        message += f" (got {error['input']!r})"
    return f"{key}: {message}" if key else message


def _dotted(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _fields_at(cls: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The field names of the model found by following ``loc`` from ``cls`` (or none)."""
    model: type[BaseModel] | None = cls
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(str(part))
        model = _model_in(field.annotation) if field is not None else None
    return list(model.model_fields) if model is not None else []


def _model_in(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model in an annotation such as ``X``, ``X | None`` or ``list[X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def data_config_from_spec(spec: str) -> DataConfig:
    """The data named by ``nearcast evaluate --data``, before any model is loaded.

    Args:
        spec: ``m4_hourly`` (the bundled data); a YAML file holding a data config, or a job
            file whose ``data:`` section is used; or a data file, folder or glob (CSV/Parquet
            in the long format).

    Raises:
        JobConfigError: when a YAML file cannot be read or validated (naming file and key).
    """
    if spec == "m4_hourly":
        return DataConfig(source="m4_hourly")
    if not spec.lower().endswith(_YAML_SUFFIXES):
        return DataConfig(source="files", path=spec, freq=None)
    raw = read_mapping(spec)
    if isinstance(raw.get("data"), dict):
        return validate_in_file(DataConfig, raw["data"], spec, ("data",))
    return validate_in_file(DataConfig, raw, spec)


def with_model_rules(cfg: DataConfig, spec: str, meta: ModelMeta) -> DataConfig:
    """Put the data config from ``spec`` on a stored model's grid rule and covariates.

    The data is read by the model's rule (frequency, aggregation, gap policy, longest gap,
    time zone). A YAML file may repeat the rule's keys, but not change them. A covariate
    model's covariates are read by the model's declarations; the YAML may name their source
    columns (``column``) but not change their role, kind, aggregation or gap policy. A
    covariate the YAML does not declare is read from the column of its own name.

    Raises:
        JobConfigError: when a YAML file gives a grid key or a covariate's rule another value
            than the model's (naming the file, the keys and both values).
    """
    is_yaml = spec.lower().endswith(_YAML_SUFFIXES)
    clashes = {f"data {key}": pair for key, pair in cfg.differences(meta.grid).items()}
    covariates = {}
    for name, theirs in (meta.features.covariates.items() if meta.covariate_model
                         and meta.features is not None else ()):
        ours = cfg.covariates.get(name)
        covariates[name] = theirs.model_copy(update={"column": ours.column if ours else None})
        given = [] if ours is None else [k for k in ("role", "kind", "agg", "gap_policy")
                                         if k in ours.model_fields_set]
        for key in given:
            if getattr(ours, key) != getattr(theirs, key):
                clashes[f"covariate {name!r} {key}"] = (getattr(ours, key), getattr(theirs, key))
    if is_yaml and clashes:
        raise JobConfigError(f"{spec}: " + "; ".join(
            f"{key} {ours!r} differs from the model's {theirs!r}"
            for key, (ours, theirs) in clashes.items()))
    return cfg.model_copy(update=meta.grid.model_dump() | {"covariates": covariates})


def data_config_for(spec: str, meta: ModelMeta) -> DataConfig:
    """The data a stored model is evaluated on, read by the model's own grid rule.

    See :func:`data_config_from_spec` and :func:`with_model_rules`.
    """
    return with_model_rules(data_config_from_spec(spec), spec, meta)


__all__ = [
    "JobConfig",
    "JobConfigError",
    "data_config_for",
    "data_config_from_spec",
    "read_mapping",
    "read_monitor_section",
    "read_retrain_section",
    "validate_in_file",
    "with_model_rules",
]
