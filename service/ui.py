"""``nearcast ui``: the MLflow UI on nearcast's store, stopped whole when nearcast stops.

``mlflow ui`` starts a server process that starts its own workers (and, unless told not to, a
GenAI job runner of about a dozen processes nearcast never uses). Here the server runs in its
own process group, with ``MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false`` and one worker; SIGINT or
SIGTERM to ``nearcast ui`` sends SIGTERM to the whole group, waits for every member to exit, and
kills what is left after a grace period, so nothing outlives the command.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from types import FrameType

log = logging.getLogger("nearcast.ui")

#: Environment of the MLflow server: no job runner (nearcast submits no MLflow jobs).
UI_ENV = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def ui_command(python: str, tracking_uri: str, artifact_root: str | None, port: int
               ) -> list[str]:
    """The ``mlflow ui`` command line: loopback only, one worker."""
    cmd = [python, "-m", "mlflow", "ui", "--backend-store-uri", tracking_uri,
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    if artifact_root:
        cmd += ["--default-artifact-root", artifact_root]
    return cmd


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a member we cannot signal is still a member
        return True
    return True


def stop_group(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM the process group led by ``proc``, wait up to ``grace`` s, then SIGKILL it."""
    pgid = proc.pid
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            if proc.poll() is not None and not _group_alive(pgid):
                return
            time.sleep(0.1)
        log.warning("MLflow UI process group %d still running after %.0f s: %s", pgid, grace,
                    "killing it" if sig == signal.SIGTERM else "giving up")
    proc.wait(1)


def run_ui(cmd: Sequence[str]) -> int:
    """Run ``cmd`` in its own process group until it exits or SIGINT/SIGTERM arrives.

    Returns:
        The server's exit code, or 0 after a requested stop.
    """
    stopping: list[int] = []

    def _stop(signum: int, _: FrameType | None) -> None:
        stopping.append(signum)

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        proc = subprocess.Popen(list(cmd), env=os.environ | UI_ENV, start_new_session=True)
        try:
            while not stopping and proc.poll() is None:
                time.sleep(0.2)
        finally:
            stop_group(proc)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0 if stopping else int(proc.returncode)


__all__ = ["UI_ENV", "run_ui", "stop_group", "ui_command"]
