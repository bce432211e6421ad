"""A quiet first screen: TensorFlow's and MLflow's start-up chatter kept off the terminal.

TensorFlow logs through C++ absl, and what it logs before absl is initialised (``WARNING: All
log messages before absl::InitializeLog() is called are written to STDERR``, ``I0000 ...
oneDNN custom operations are on ...``) goes straight to file descriptor 2 whatever
``TF_CPP_MIN_LOG_LEVEL`` says. So :func:`quiet_tensorflow` sets ``TF_CPP_MIN_LOG_LEVEL=3`` (later
C++ messages) and lets the first ``import tensorflow`` of the process run with descriptor 2
pointed at ``/dev/null``; an exception raised by the import still propagates and is reported.
``TF_ENABLE_ONEDNN_OPTS`` is left alone: turning oneDNN off would change the numerics.
MLflow's INFO lines (database set-up, signature checks) and its artifact download bars are
turned off too. Every setting is a default: a variable already set in the environment wins.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from types import ModuleType

QUIET_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
"""Environment defaults of a quiet command (the process and the ones it starts)."""


@contextmanager
def stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 (C/C++ writes included) at ``/dev/null`` within the block."""
    sys.stderr.flush()
    saved, null = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


class _SilentLoader(importlib.abc.Loader):
    """Runs another loader's module code with descriptor 2 silenced."""

    def __init__(self, inner: importlib.abc.Loader) -> None:
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self.inner
        if module.__spec__ is not None:
            module.__spec__.loader = self.inner
        with stderr_silenced():
            self.inner.exec_module(module)


class _SilentImport(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` once, with a loader that silences its start-up output."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "tensorflow":
            return None
        sys.meta_path.remove(self)  # once; find the real module with the other finders
        spec = importlib.util.find_spec(fullname)
        if spec is not None and spec.loader is not None:
            spec.loader = _SilentLoader(spec.loader)
        return spec


def quiet_tensorflow() -> None:
    """Keep TensorFlow's and MLflow's start-up chatter off stderr (see the module)."""
    for key, value in QUIET_ENV.items():
        os.environ.setdefault(key, value)
    if "tensorflow" not in sys.modules and not any(
        isinstance(finder, _SilentImport) for finder in sys.meta_path
    ):
        sys.meta_path.insert(0, _SilentImport())


__all__ = ["QUIET_ENV", "quiet_tensorflow", "stderr_silenced"]
