"""A real ``mlflow server`` process group on 127.0.0.1 that can be stopped and restarted.

Used by the load benchmark (the tracking server goes away and comes back under load) and by the
topology tests (``tests/service/topology_helpers.py``). Importing it starts nothing and loads
neither MLflow nor TensorFlow.
"""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from benchmarks.serve_bench import BIN
from benchmarks.serve_bench import _free_port as free_port
from benchmarks.serve_bench import _wait as wait_until_ok

__all__ = ["TrackingServer"]


@dataclass
class TrackingServer:
    """A real ``mlflow server`` process group on 127.0.0.1 (restartable on the same port)."""

    backend: str
    artifacts: Path
    log: Path
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 120.0) -> None:
        """Start and wait (bounded) for /health; the first start creates the tables."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NEARCAST_", "MLFLOW_"))}
        # `mlflow server` execs uvicorn from the environment's bin/; the GenAI job runner is
        # not needed (8 more processes).
        env |= {"PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
                "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
        cmd = [str(BIN / "mlflow"), "server", "--backend-store-uri", self.backend,
               "--serve-artifacts", "--artifacts-destination", str(self.artifacts),
               "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"]
        self.starts += 1
        with self.log.open("ab") as log:
            log.write(f"--- start {self.starts}\n".encode())
            self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        try:
            wait_until_ok(self.proc, f"{self.url}/health", timeout, self.log)
        except RuntimeError as exc:
            tail = self.log.read_text(errors="replace")[-3000:]
            self.stop(signal.SIGKILL)
            raise RuntimeError(f"mlflow server did not start: {exc}\nits log:\n{tail}") from None

    def send(self, sig: int) -> None:
        """Send ``sig`` to the whole process group (server, uvicorn workers)."""
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> None:
        """Stop the process group (SIGKILL after ``timeout`` seconds); idempotent."""
        if self.proc is None:
            return
        try:
            self.send(signal.SIGCONT)  # a frozen group must run to handle SIGTERM
            self.send(sig)
            self.proc.wait(timeout)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            self.send(signal.SIGKILL)
            self.proc.wait(10)
        finally:
            try:  # leftovers of the group (workers whose parent died first)
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc = None

