"""Every committed job file reading the bundled M4 data parses and trains one step; the README's
config names match the folder and what the accuracy benchmark measures.

The configs reading other sources (the EPF files) are in ``test_configs_epf.py``; both use
:mod:`config_cases`.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from config_cases import COMMITTED, M4_SERIES, ROOT, check_trains_one_step, committed, shrunk

from benchmarks.accuracy_bench import CONFIGS as MEASURED
from nearcast.models.jobconfig import JobConfig
from nearcast.pipelines.schema import UNIQUE_ID

README = (ROOT / "README.md").read_text()
M4_CONFIGS = committed(m4=True)


@pytest.mark.parametrize("path", M4_CONFIGS, ids=[p.name for p in M4_CONFIGS])
def test_config_parses_and_trains_one_step(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    check_trains_one_step(path)


def test_every_committed_config_is_tested() -> None:
    assert {p.name for p in committed(m4=True) + committed(m4=False)} == {
        p.name for p in COMMITTED}
    assert {"m4-hourly.yaml", "lstm.yaml", "gru.yaml"} <= {p.name for p in M4_CONFIGS}


def _named(text: str) -> set[str]:
    """``configs/<name>.yaml`` files a text names (``/app/configs/...`` is the image's path)."""
    return set(re.findall(r"configs/([\w.-]+\.ya?ml)", text))


def test_every_config_the_readme_names_exists() -> None:
    named = _named(README)
    assert named, "the README names no configs"
    missing = sorted(n for n in named if not (ROOT / "configs" / n).is_file())
    assert not missing, f"README names configs that are not committed: {missing}"


def test_the_readme_recommends_what_the_accuracy_benchmark_measures() -> None:
    start = README.index("### The recommended model")
    end = README.index("\n## ", start)
    recommended = _named(README[start:end])
    measured = {p.name for p in MEASURED}
    assert "m4-hourly.yaml" in recommended
    assert recommended == measured, (
        f"README's recommended-model section names {sorted(recommended)}; "
        f"benchmarks/accuracy_bench.py measures {sorted(measured)}")
    assert all(p.is_file() for p in MEASURED)


def test_the_shrunk_sources_are_small(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    m4 = shrunk(JobConfig.from_yaml(ROOT / "configs" / "lstm.yaml"))
    assert m4.frame[UNIQUE_ID].nunique() == M4_SERIES
    job = JobConfig.from_yaml(ROOT / "configs" / "epf-de.yaml")
    epf = shrunk(job)
    assert 0 < len(epf.frame) <= job.min_series_length() + 48
