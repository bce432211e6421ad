"""What the monitor reads about a served model version from MLflow (no TensorFlow).

The version's training run holds its holdout scores (``model_<metric>``,
``seasonal_naive_<metric>``, ``coverage_<width>``: what :func:`models.tracking.log_evaluation`
logs, the numbers of ``ModelMeta.metrics``), the season and frequency it was trained at
(params ``model.season``, ``data.freq``) and each series' training MASE scale
(:mod:`.training_scales`).
"""

from __future__ import annotations

from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from nearcast.models.config import ModelConfig
from nearcast.models.monitoring.live_scores import POINT_METRICS, VersionInfo
from nearcast.models.monitoring.training_scales import read_training_scales


def holdout_scores(metrics: dict[str, float], interval: float) -> dict[str, float]:
    """The holdout scores of a training run's metrics, named as the live scores are."""
    out = {m: metrics[f"model_{m}"] for m in POINT_METRICS if f"model_{m}" in metrics}
    out |= {f"seasonal_naive_{m}": metrics[f"seasonal_naive_{m}"] for m in POINT_METRICS
            if f"seasonal_naive_{m}" in metrics}
    width = f"coverage_{round(interval * 100)}"
    if width in metrics:
        out["coverage"] = metrics[width]
    return out


def read_version_info(client: MlflowClient, name: str, version: int, fallback: ModelConfig,
                      interval: float) -> tuple[VersionInfo, list[str]]:
    """A version's :class:`VersionInfo`, and notes on what could not be read.

    A version (or run) MLflow does not know is scored with the job's season and frequency
    (``fallback``), without holdout scores or training scales.
    """
    try:
        run_id = str(client.get_model_version(name, str(version)).run_id or "")
        run = client.get_run(run_id)
    except MlflowException as exc:
        note = (f"v{version}: not found in the registry ({exc.error_code}): no holdout scores; "
                f"season {fallback.season} and freq {fallback.freq!r} from the job file")
        return VersionInfo(version, fallback.season, fallback.freq), [note]
    params, metrics = run.data.params, dict(run.data.metrics)
    season = int(params.get("model.season", fallback.season))
    freq = params.get("data.freq") or params.get("model.freq") or fallback.freq
    scales = read_training_scales(client, run_id)
    notes = [] if scales is not None else [
        f"v{version}: training run {run_id[:8]} has no MASE scales artifact: scales from the "
        "stored actuals"]
    holdout = holdout_scores(metrics, interval)
    if not holdout:
        notes.append(f"v{version}: training run {run_id[:8]} has no holdout scores: no ratios")
    return VersionInfo(version, season, str(freq), holdout, scales, run_id), notes


__all__ = ["holdout_scores", "read_version_info"]
