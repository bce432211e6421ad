"""What a command acts on when given ``--config job.yaml``: the job's model and its data.

``nearcast promote``, ``rollback`` and ``evaluate`` take the registered model name from the job
file's ``model_name``, and ``evaluate`` reads a CSV/Parquet ``--data`` with the job's
``data.columns`` map (or, without ``--data``, the job's own data section). An explicit
``--name`` or ``--model`` wins over the job file. Reading the job file does not load TensorFlow
or MLflow; a mistake in it is a :class:`models.jobconfig.JobConfigError` naming file and key.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from nearcast.models.jobconfig import JobConfig, data_config_from_spec
from nearcast.pipelines.errors import InputError

if TYPE_CHECKING:
    from nearcast.models.evaluate_job import EvaluationData
    from nearcast.models.settings import MlflowSettings

_OWN_RULES = (".yaml", ".yml")  # a data or job YAML file brings its own column map


class NoDataError(InputError, ValueError):
    """``evaluate`` was given neither ``--data`` nor ``--config``."""


def read_job(config: Path | None) -> JobConfig | None:
    """The job file named by ``--config``, if any (validated, TensorFlow not loaded).

    Raises:
        JobConfigError: the file cannot be read or validated (naming the file and the key).
    """
    return None if config is None else JobConfig.from_yaml(config)


def model_name(name: str | None, job: JobConfig | None, settings: MlflowSettings) -> str:
    """``--name``, else the job's ``model_name``, else ``NEARCAST_MODEL_NAME``."""
    return name or (job.model_name if job else None) or settings.model_name


def model_uri(model: str | None, job: JobConfig | None, settings: MlflowSettings) -> str:
    """``--model``, else ``models:/<job's or default model name>@champion``."""
    return model or f"models:/{model_name(None, job, settings)}@champion"


def evaluation_data(data: str | None, job: JobConfig | None,
                    config: Path | None) -> EvaluationData:
    """Read the data ``evaluate`` scores on (before MLflow or the model load).

    Args:
        data: ``--data`` (see :func:`models.jobconfig.data_config_from_spec`), or None for the
            job's own data section.
        job: the job read from ``config``; a CSV/Parquet ``data`` is read with its
            ``data.columns`` map.
        config: the job file (for messages and the model's pipeline rules).

    Raises:
        NoDataError: neither ``data`` nor a job is given.
        InputError: the data cannot be read (naming what and where).
    """
    from nearcast.models.evaluate_job import EvaluationData, read_evaluation_data
    from nearcast.pipelines.dataset import read_raw

    if job is None or config is None:
        if data is None:
            raise NoDataError("give --data (or --config job.yaml to use the job's data)")
        return read_evaluation_data(data)
    if data is None:
        spec, cfg = str(config), job.data
    else:
        spec, cfg = data, data_config_from_spec(data)
        if data != "m4_hourly" and not data.lower().endswith(_OWN_RULES):
            cfg = cfg.model_copy(update={"columns": job.data.columns})
    return EvaluationData(spec, cfg, read_raw(cfg))


__all__ = ["NoDataError", "evaluation_data", "model_name", "model_uri", "read_job"]
