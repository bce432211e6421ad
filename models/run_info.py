"""What every MLflow run of nearcast carries, without TensorFlow: tags, links, the note tag.

:mod:`models.tracking` re-exports these; the monitor imports them from here, so a ``nearcast
monitor`` run never loads TensorFlow.
"""

from __future__ import annotations

import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

NOTE = "mlflow.note.content"
"""The tag MLflow's UI shows (and edits) as a run's, experiment's or version's description."""


def nearcast_version() -> str:
    """Installed nearcast version, or ``unknown``."""
    try:
        return version("nearcast")
    except PackageNotFoundError:
        return "unknown"


def git_commit() -> str | None:
    """Commit of the working tree the code runs from, when it is a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5, cwd=Path(__file__).parent, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def run_link(experiment_id: str, run_id: str) -> str:
    """Markdown link to a run, relative to the MLflow UI (works in descriptions there)."""
    return f"[{run_id[:8]}](#/experiments/{experiment_id}/runs/{run_id})"


def run_tags(source: str, kind: str = "training") -> dict[str, str]:
    """Tags every run carries (``kind``: ``training``, ``backtest``, ``retrain``, ``monitor``)."""
    tags = {"nearcast.version": nearcast_version(), "nearcast.data_source": source,
            "nearcast.kind": kind}
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    return tags


__all__ = ["NOTE", "git_commit", "nearcast_version", "run_link", "run_tags"]
