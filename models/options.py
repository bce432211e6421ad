"""What ``nearcast.Nearcast(...)`` is given: networks, and keyword options by section.

:func:`job_from_options` turns the constructor's arguments into the :class:`JobConfig` a job
file would give, so the Python API and the YAML always mean the same by a field.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from nearcast.models.config import EnsembleConfig, ModelConfig, TrainConfig
from nearcast.models.jobconfig import JobConfig
from nearcast.pipelines.dataset import DataConfig
from nearcast.pipelines.grid import GridRule

_GRID_KEYS = (set(GridRule.model_fields) - {"freq"}) | {"covariates"}
"""Options of the data section: the grid rule and the covariate declarations."""
_ENSEMBLE_KEYS = set(EnsembleConfig.model_fields) - {"members"}


@dataclass(frozen=True)
class Network:
    """A recurrent network's shape: any :class:`~nearcast.models.config.ModelConfig` fields."""

    fields: Mapping[str, Any]


def _network(cell: str, units: int, layers: int, options: dict[str, Any]) -> Network:
    return Network({"cell": cell, "units": units, "layers": layers} | options)


def LSTM(units: int = 64, layers: int = 1, **options: Any) -> Network:  # noqa: N802
    """An LSTM network (``bidirectional``, ``dropout``, ``head`` and other model fields)."""
    return _network("lstm", units, layers, options)


def GRU(units: int = 64, layers: int = 1, **options: Any) -> Network:  # noqa: N802
    """A GRU network (``bidirectional``, ``dropout``, ``head`` and other model fields)."""
    return _network("gru", units, layers, options)


def RNN(units: int = 64, layers: int = 1, **options: Any) -> Network:  # noqa: N802
    """A SimpleRNN network (``bidirectional``, ``dropout``, ``head`` and other model fields)."""
    return _network("simple_rnn", units, layers, options)


def _route(options: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Split keyword options into the model, grid, train and ensemble fields they name."""
    sections: dict[str, dict[str, Any]] = {"model": {}, "grid": {}, "train": {}, "ensemble": {}}
    known = {"model": set(ModelConfig.model_fields) - {"freq"}, "grid": _GRID_KEYS,
             "train": set(TrainConfig.model_fields), "ensemble": _ENSEMBLE_KEYS}
    for key, value in options.items():
        section = next((s for s, keys in known.items() if key in keys), None)
        if section is None:
            every = sorted(set().union(*known.values()))
            close = difflib.get_close_matches(key, every, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TypeError(f"Nearcast() got an unknown option {key!r}{hint}; options are the "
                            f"fields of the model, grid, train and ensemble sections: {every}")
        sections[section][key] = value
    return sections


def job_from_options(model: Network | Sequence[Network] | None, freq: str | None,
                     horizon: int, train: TrainConfig | Mapping[str, Any] | None,
                     name: str | None, options: dict[str, Any]) -> JobConfig:
    """The job config of ``Nearcast(model, freq=, horizon=, train=, name=, **options)``.

    Raises:
        TypeError: an unknown option (naming the closest known one).
        pydantic.ValidationError: a value out of range (naming the field).
    """
    parts = _route(options)
    nets = [model] if isinstance(model, Network) else list(model or [LSTM()])
    first = dict(nets[0].fields)
    seed = first.pop("seed", None)  # a network's seed is its training seed
    base = first | parts["model"] | {"horizon": horizon}
    train_fields = (train.model_dump(exclude_unset=True) if isinstance(train, TrainConfig)
                    else dict(train or {})) | parts["train"]
    if seed is not None and len(nets) == 1:
        train_fields["seed"] = seed
    ensemble = None
    if len(nets) > 1:
        members = [{k: v for k, v in n.fields.items() if base.get(k) != v} for n in nets]
        ensemble = EnsembleConfig(members=members, **parts["ensemble"])
    return JobConfig(data=DataConfig(freq=freq, **parts["grid"]), model=ModelConfig(**base),
                     train=TrainConfig(**train_fields), ensemble=ensemble, model_name=name)


__all__ = ["GRU", "LSTM", "RNN", "Network", "job_from_options"]
