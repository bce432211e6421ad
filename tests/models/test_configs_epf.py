"""Every committed job file reading files (the EPF markets) parses and trains one step.

The bundled-M4 configs and the README checks are in ``test_configs.py``; both use
:mod:`config_cases`.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from config_cases import ROOT, check_trains_one_step, committed

FILE_CONFIGS = committed(m4=False)


@pytest.mark.parametrize("path", FILE_CONFIGS, ids=[p.name for p in FILE_CONFIGS])
def test_config_parses_and_trains_one_step(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    check_trains_one_step(path)
