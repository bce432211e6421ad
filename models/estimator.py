"""The Python front door, ``nearcast.Nearcast``: fit and predict in memory, log when you like.

The CLI trains through it too (:mod:`nearcast.models.train`): a job file, a notebook and a
scheduled retraining train the same way (examples: the README's "Python API").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from nearcast.models.config import ModelConfig, TrainConfig
from nearcast.models.jobconfig import JobConfig
from nearcast.models.options import GRU, LSTM, RNN, Network, job_from_options
from nearcast.pipelines.covariates import Covariate
from nearcast.pipelines.dataset import DataConfig, LoadedData, load_dataset
from nearcast.pipelines.grid import GridRule
from nearcast.pipelines.prepare import regularize
from nearcast.pipelines.schema import DS, UNIQUE_ID

if TYPE_CHECKING:  # TensorFlow and MLflow load when a model is built, fitted or logged
    from nearcast.models.backtest import Backtest
    from nearcast.models.fitting import FitDivergedError, Fitted
    from nearcast.models.forecaster import Forecaster
    from nearcast.models.run_log import Logged, RunSpec
    from nearcast.models.settings import MlflowSettings


class NotFittedError(RuntimeError):
    """The model has not been fitted (or loaded) yet."""


class Nearcast:
    """A forecaster: configure, :meth:`fit` on a long frame, :meth:`predict`, :meth:`log`.

    Args:
        model: a network (:func:`LSTM`, :func:`GRU`, :func:`RNN`), or several: an ensemble
            trained as members and served as one model. Default: ``LSTM()``.
        freq: the grid frequency (a pandas alias such as ``"h"``, ``"15min"``, ``"D"``); None
            infers it from the data at :meth:`fit`.
        horizon: steps forecast.
        train: training settings (a :class:`~nearcast.models.config.TrainConfig` or a dict).
        name: registered model name used by :meth:`log` (default ``NEARCAST_MODEL_NAME``).
        **options: any other field of the model (``input_size``, ``fold``, ``season``,
            ``quantiles``, ``scaling``, ...), of the grid rule (``agg``, ``gap_policy``,
            ``max_gap``), of training (``epochs``, ``max_seconds``, ``seed``, ...) or of an
            ensemble (``combine``, ``interval_coverage``).

    Raises:
        TypeError: an unknown option (naming the closest known one).
        pydantic.ValidationError: a value out of range (naming the field).
    """

    def __init__(self, model: Network | Sequence[Network] | None = None, *,
                 freq: str | None = "h", horizon: int = 48,
                 train: TrainConfig | Mapping[str, Any] | None = None, name: str | None = None,
                 **options: Any) -> None:
        self._init(job_from_options(model, freq, horizon, train, name, options),
                   reads_data=False)

    def _init(self, job: JobConfig, reads_data: bool) -> None:
        self.job, self._reads_data = job, reads_data
        self._forecaster: Forecaster | None = None
        self.fitted: Fitted | None = None
        self.data: LoadedData | None = None
        self.skipped: dict[str, int] = {}
        self.logged: Logged | None = None

    @classmethod
    def from_job(cls, job: JobConfig) -> Nearcast:
        """The model of a job config; :meth:`fit` without a frame reads the job's ``data:``."""
        self = cls.__new__(cls)
        self._init(job, reads_data=True)
        return self

    @classmethod
    def from_yaml(cls, path: str | Path) -> Nearcast:
        """The model of a job file (``nearcast train --config``), e.g. ``configs/lstm.yaml``.

        Raises:
            JobConfigError: naming the file and the key of each problem.
        """
        return cls.from_job(JobConfig.from_yaml(path))

    @classmethod
    def from_forecaster(cls, forecaster: Forecaster) -> Nearcast:
        """Wrap a trained forecaster (its config and grid rule come from its metadata)."""
        self = cls.__new__(cls)
        self._init(JobConfig(data=DataConfig(**forecaster.meta.grid.model_dump()),
                             model=forecaster.meta.config), reads_data=False)
        self._forecaster = forecaster
        return self

    @property
    def forecaster(self) -> Forecaster:
        """The trained forecaster (network, metadata, compiled prediction)."""
        if self._forecaster is None:
            raise NotFittedError("this Nearcast is not fitted: call fit(df) or nearcast.load()")
        return self._forecaster

    @property
    def config(self) -> ModelConfig:
        """The model config (its ``freq`` is the grid's once fitted)."""
        return self._forecaster.config if self._forecaster else self.job.model

    @property
    def grid(self) -> GridRule:
        """The grid rule: frequency, aggregation, gap policy, longest gap, time zone."""
        return self._forecaster.meta.grid if self._forecaster else self.job.data.rule()

    def source_label(self, df: pd.DataFrame | LoadedData | None, source: str | None = None
                     ) -> str:
        """How runs name the data that ``fit(df, source=source)`` reads."""
        if isinstance(df, LoadedData):
            return df.source
        if df is not None:
            return source or "python:DataFrame"
        return self.data.source if self.data is not None else self.job.data.describe()

    def _regular(self, df: pd.DataFrame | LoadedData | None, source: str | None) -> LoadedData:
        """The data on the model's grid (a fitted model's rule, else the configured one)."""
        if isinstance(df, LoadedData):
            return df
        if df is None:
            if self.data is not None:
                return self.data
            if not self._reads_data:
                raise ValueError("no data: pass a long frame (unique_id, ds, y)")
            return load_dataset(self.job.data)
        prepared = regularize(df, self.grid, covariates=self.covariates)
        return LoadedData(prepared.frame, self.source_label(df, source), prepared)

    @property
    def covariates(self) -> dict[str, Covariate]:
        """The covariates the model reads (a fitted model's, else the configured ones)."""
        if self._forecaster is not None:
            features = self._forecaster.meta.features
            return dict(features.covariates) if features is not None else {}
        return dict(self.job.data.covariates)

    def fit(self, df: pd.DataFrame | LoadedData | None = None, *, strict: bool = False,
            warm_start: list[np.ndarray] | None = None, source: str | None = None) -> Nearcast:
        """Train on a long frame (``unique_id``, ``ds``, ``y``; raw timestamps are fine).

        The frame is validated, bucketed and gap-filled by the grid rule; series too short to
        train on are left out (listed in :attr:`skipped`; ``strict`` raises instead). The last
        ``horizon`` points of each series are held out: :attr:`fitted` has their scores.

        Args:
            df: observations; None reads the job's ``data:`` (from :meth:`from_yaml`).
            strict: fail on a series too short to train on.
            warm_start: initial weights (a single model of the same shape).
            source: a label for the data in logged runs (default ``python:DataFrame``).

        Raises:
            DataValidationError: naming series and rows of what is wrong in the data.
            FitDivergedError: the loss went NaN or infinite.
        """
        from nearcast.models.fitting import fit_forecaster

        data = self._regular(df, source)
        frame, self.skipped = self.job.usable_for_training(data.frame, strict)
        self.data = LoadedData(frame, data.source, data.prepared)
        config = self.job.model.on_grid(data.grid)
        self.fitted = fit_forecaster(frame, config, self.job.train, data.grid, self.job.ensemble,
                                     warm_start, covariates=self.job.data.covariates)
        self._forecaster, self.logged = self.fitted.forecaster, None
        return self

    def predict(self, df: pd.DataFrame | None = None, horizon: int | None = None,
                quantiles: Sequence[float] | None = None, future: pd.DataFrame | None = None
                ) -> pd.DataFrame:
        """Forecast after the end of every series of ``df`` (default: the data fitted on).

        A covariate model takes the future-known covariates of its horizon from ``future``
        (``unique_id``, ``ds``, one column each), or from the rows of ``df`` after each series'
        last observed ``y`` (``y`` missing).

        Returns:
            Long frame ``unique_id``, ``ds``, ``forecast`` and one ``q<level>`` column per
            quantile (all the model's, or those asked for), ``horizon`` rows per series.

        Raises:
            ValueError: a horizon beyond the model's, or a quantile the model does not have.
        """
        from nearcast.models.inference import forecast_frame

        forecaster = self.forecaster
        if df is None:
            if self.data is None:
                raise ValueError("no data: pass the history to forecast from")
            df = self.data.frame
        out = forecast_frame(forecaster, df, forecaster.config.horizon if horizon is None
                             else horizon, future).frame
        if quantiles is None:
            return out
        missing = [q for q in quantiles if f"q{q:g}" not in forecaster.config.output_names]
        if missing:
            raise ValueError(f"quantiles {missing} are not among the model's "
                             f"{forecaster.config.quantiles}")
        return out[[UNIQUE_ID, DS, "forecast", *(f"q{q:g}" for q in sorted(set(quantiles)))]]

    def cross_validation(self, df: pd.DataFrame | None = None, folds: int = 3,
                         step: int | None = None, horizon: int | None = None,
                         strict: bool = False) -> Backtest:
        """Rolling-origin backtest of the fitted model: the scores ``nearcast evaluate`` gives.

        Each fold cuts every series at its cutoff, forecasts from the history up to there and
        scores the next ``horizon`` points next to naive, seasonal naive and Naive2.
        """
        from nearcast.models.backtest import backtest

        return backtest(self.forecaster, self._regular(df, None).frame, folds, step, horizon,
                        strict)

    def _spec(self, run_name: str | None, tags: Mapping[str, str] | None) -> RunSpec:
        from nearcast.models.run_log import RunSpec

        if self.data is None:
            raise NotFittedError("nothing to log: call fit(df) first")
        data, skipped = self.data, {"nearcast.series_skipped": str(len(self.skipped))}
        return RunSpec(data.source, data.frame, data.grid, self.job.model.on_grid(data.grid),
                       self.job.train, self.job.ensemble, run_name, skipped | dict(tags or {}),
                       data.prepared.series_report(self.skipped))

    def _settings(self, experiment: str | None, register: bool | str,
                  settings: MlflowSettings | None) -> MlflowSettings:
        from nearcast.models.settings import get_mlflow_settings

        settings = settings or get_mlflow_settings()
        name = register if isinstance(register, str) else self.job.model_name
        update = {"experiment": experiment} if experiment else {}
        return settings.model_copy(update=update | ({"model_name": name} if name else {}))

    def open_run(self, source: str, experiment: str | None = None, *,
                 run_name: str | None = None, tags: Mapping[str, str] | None = None,
                 settings: MlflowSettings | None = None) -> str:
        """Create the training run before :meth:`fit` (pass its id to :meth:`log`).

        The run is then visible (RUNNING) while the fit runs; ``source`` labels the data.
        """
        from nearcast.models.run_log import open_run
        from nearcast.models.run_log import run_name as default_name

        name = run_name or default_name(self.job.model, self.job.ensemble, source)
        return open_run(self._settings(experiment, False, settings), source, name,
                        dict(tags or {}))

    def log(self, experiment: str | None = None, register: bool | str = True, *,
            run_name: str | None = None, tags: Mapping[str, str] | None = None,
            settings: MlflowSettings | None = None, run_id: str | None = None) -> Logged:
        """Record the fit as an MLflow run and register the model (alias ``challenger``).

        Args:
            experiment: experiment name (default ``NEARCAST_EXPERIMENT``).
            register: True registers under the model's name, a string under that name, False
                not at all.
            run_name: default ``train <architecture> <data>``.
            tags: added to the run's tags.
            settings: the MLflow store (default: from ``NEARCAST_*`` variables, the embedded
                SQLite store under ``NEARCAST_HOME``).
            run_id: record into this run (from :meth:`open_run`) instead of a new one.

        Raises:
            NotFittedError: nothing was fitted in this process.
            LoadCheckError: the new version does not load back in a fresh process; it stays
                without an alias and the run is FAILED.
        """
        from nearcast.models.run_log import log_fit

        if self.fitted is None:
            raise NotFittedError("nothing to log: call fit(df) first")
        spec = self._spec(run_name, tags)
        self.logged = log_fit(self.fitted, spec, self._settings(experiment, register, settings),
                              register=register is not False, run_id=run_id)
        return self.logged

    def log_failure(self, error: FitDivergedError, experiment: str | None = None, *,
                    run_name: str | None = None, tags: Mapping[str, str] | None = None,
                    settings: MlflowSettings | None = None, run_id: str | None = None) -> str:
        """Record a fit that diverged as a FAILED run (``run_id``'s, or a new one)."""
        from nearcast.models.run_log import log_failed_fit

        return log_failed_fit(error, self._spec(run_name, tags),
                              self._settings(experiment, False, settings), run_id)

    def save(self, directory: str | Path) -> Path:
        """Write the trained model to a folder that :func:`load` reads (no MLflow needed)."""
        return self.forecaster.save(directory)


def load(uri: str | Path, *, tracking_uri: str | None = None) -> Nearcast:
    """A trained model: ``models:/name@alias``, ``models:/name/3``, ``runs:/…`` or a folder.

    Registry URIs are read from the MLflow store of ``tracking_uri`` (default: the
    ``NEARCAST_*`` settings, the embedded SQLite store under ``NEARCAST_HOME``).
    """
    from nearcast.models.forecaster import Forecaster

    if Path(uri).is_dir():
        return Nearcast.from_forecaster(Forecaster.load(uri))
    from nearcast.models.artifact import load_forecaster
    from nearcast.models.settings import MlflowSettings, get_mlflow_settings

    settings = MlflowSettings(tracking_uri=tracking_uri) if tracking_uri else get_mlflow_settings()
    settings.connect()
    return Nearcast.from_forecaster(load_forecaster(str(uri)))


__all__ = ["GRU", "LSTM", "RNN", "Nearcast", "Network", "NotFittedError", "load"]
