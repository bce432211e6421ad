"""The champion/challenger gate: pure decisions over scores, and the retrain config section.

The gate is :mod:`service.retraining.gate`; the section's schema is in :mod:`models.config`.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from pydantic import ValidationError

from nearcast.models.config import METRICS, RetrainConfig
from nearcast.models.jobconfig import JobConfigError, read_retrain_section
from nearcast.service.retraining.gate import TAG_PREFIX, decide

BASELINES = {"seasonal_naive": {"mase": 0.92, "smape": 5.2}, "naive2": {"mase": 0.99, "smape": 5.4}}


def test_challenger_promoted_only_beyond_the_margin() -> None:
    cfg = RetrainConfig(margin=0.05)
    champion = {"mase": 1.0, "smape": 6.0}
    win = decide(cfg, {"mase": 0.949, "smape": 9.0}, champion, BASELINES)
    assert win.promote and win.outcome == "promoted"
    assert win.threshold == pytest.approx(0.95) and win.reference_name == "champion"
    assert win.improvement == pytest.approx(0.051)
    short = decide(cfg, {"mase": 0.951, "smape": 1.0}, champion, BASELINES)  # better, not enough
    assert not short.promote and short.outcome == "kept"
    assert "does not beat champion MASE 1 by the margin 5.0% (needs < 0.95)" in short.reason


def test_equal_scores_keep_the_champion_with_zero_margin() -> None:
    cfg = RetrainConfig()
    assert not decide(cfg, {"mase": 0.8}, {"mase": 0.8}, BASELINES).promote
    assert decide(cfg, {"mase": 0.7999}, {"mase": 0.8}, BASELINES).promote


def test_configured_metric_decides() -> None:
    cfg = RetrainConfig(metric="smape", margin=0.1)
    d = decide(cfg, {"mase": 2.0, "smape": 4.0}, {"mase": 0.5, "smape": 5.0}, BASELINES)
    assert d.promote and d.metric == "smape" and d.challenger == 4.0 and d.reference == 5.0


def test_first_run_must_beat_the_baseline() -> None:
    cfg = RetrainConfig(margin=0.5)  # the margin applies to champions, not to the baseline bar
    win = decide(cfg, {"mase": 0.91}, None, BASELINES)
    assert win.promote and win.reference_name == "seasonal_naive" and win.threshold == 0.92
    assert win.reason.startswith("no champion yet; challenger MASE 0.91 beats seasonal_naive")
    assert not decide(cfg, {"mase": 0.93}, None, BASELINES).promote
    naive2 = RetrainConfig(baseline="naive2")
    assert decide(naive2, {"mase": 0.95}, None, BASELINES).promote


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_challenger_is_never_promoted(bad: float) -> None:
    cfg = RetrainConfig()
    for champion in ({"mase": 5.0}, None):
        d = decide(cfg, {"mase": bad}, champion, BASELINES)
        assert not d.promote and "never promoted" in d.reason


def test_unscorable_champion_falls_back_to_the_baseline() -> None:
    d = decide(RetrainConfig(), {"mase": 0.9}, {"mase": math.nan}, BASELINES)
    assert d.promote and d.reference_name == "seasonal_naive"
    assert d.reason.startswith("champion MASE is nan; challenger MASE 0.9 beats")


def test_decision_tags_carry_both_scores() -> None:
    d = decide(RetrainConfig(margin=0.02), {"mase": 0.8}, {"mase": 1.0}, BASELINES)
    tags = d.tags()
    assert tags[f"{TAG_PREFIX}decision"] == "promoted"
    assert tags[f"{TAG_PREFIX}challenger_score"] == "0.8"
    assert tags[f"{TAG_PREFIX}reference_score"] == "1"
    assert tags[f"{TAG_PREFIX}reference"] == "champion"
    assert d.threshold == pytest.approx(0.98) and d.improvement == pytest.approx(0.2)


def test_config_validation_names_the_problem() -> None:
    with pytest.raises(ValidationError, match="needs 5 fields"):
        RetrainConfig(schedule="* * *")
    with pytest.raises(ValidationError, match="margin"):
        RetrainConfig(margin=1.5)
    with pytest.raises(ValidationError, match="metric"):
        RetrainConfig.model_validate({"metric": "accuracy"})
    assert RetrainConfig(schedule="*/5 * * * * *").schedule == "*/5 * * * * *"


def test_every_metric_can_be_the_gate_metric() -> None:
    assert METRICS == ("smape", "mase", "owa", "mae", "rmse")
    scores = dict.fromkeys(METRICS, 1.0)
    for metric in METRICS:
        d = decide(RetrainConfig(metric=metric), scores | {metric: 0.5}, scores, BASELINES)
        assert d.promote and d.metric == metric


def test_read_retrain_section(tmp_path: Path) -> None:
    job = tmp_path / "job.yaml"
    job.write_text("model_name: m1\nmodel: {units: 8}\nretrain: {margin: 0.03, schedule: "
                   "'0 3 * * *', lock: {timeout: 5}}\n")
    name, cfg = read_retrain_section(job)
    assert name == "m1" and cfg.margin == 0.03 and cfg.lock.timeout == 5.0
    assert cfg.schedule == "0 3 * * *" and cfg.metric == "mase"
    (tmp_path / "bare.yaml").write_text("model: {units: 8}\n")
    assert read_retrain_section(tmp_path / "bare.yaml") == (None, RetrainConfig())
    bad = tmp_path / "bad.yaml"
    bad.write_text("retrain: {margin: -1}\n")
    expected = "bad.yaml: invalid 'retrain' section: retrain.margin: Input should be greater"
    with pytest.raises(JobConfigError, match=expected):
        read_retrain_section(bad)
    bad.write_text("- a list\n")
    with pytest.raises(ValueError, match="bad.yaml: expected a mapping"):
        read_retrain_section(bad)
    bad.write_text("retrain: {margin: [\n")
    with pytest.raises(ValueError, match="bad.yaml: not valid YAML"):
        read_retrain_section(bad)
