"""``nearcast scheduler``: cron parsing, job loading, and real scheduled retraining runs."""

from __future__ import annotations

import json
import re
import signal
from datetime import UTC, datetime
from pathlib import Path

import pytest
from retrain_helpers import champion_version, cli_env, start_cli, tiny_frame, write_job

from conftest import make_settings
from nearcast.service.retraining.schedule import (
    Runner,
    build_scheduler,
    cron_trigger,
    crontab_weekdays,
    load_jobs,
)


def _record(line: str) -> dict[str, object]:
    """A JSON log line as a dict (any other line as its message)."""
    try:
        record = json.loads(line)
    except ValueError:
        return {"message": line}
    return record if isinstance(record, dict) else {"message": line}


MONDAY = datetime(2024, 1, 1, 12, 0, 30, tzinfo=UTC)  # 2024-01-01 was a Monday


@pytest.mark.parametrize(("field", "days"), [
    ("*", "*"), ("0", "sun"), ("7", "sun"), ("1-5", "mon,tue,wed,thu,fri"),
    ("*/2", "sun,tue,thu,sat"), ("5-7", "sun,fri,sat"), ("SAT,sun", "sun,sat"),
    ("mon-wed,fri", "mon,tue,wed,fri"), ("1-5/2", "mon,wed,fri"),
])
def test_crontab_weekdays_keep_crontab_numbering(field: str, days: str) -> None:
    assert crontab_weekdays(field) == days


@pytest.mark.parametrize("field", ["8", "fri-mon", "funday", "1-"])
def test_bad_weekdays_are_rejected(field: str) -> None:
    with pytest.raises(ValueError):
        crontab_weekdays(field)


def test_cron_trigger_fires_like_crontab() -> None:
    every_minute = cron_trigger("* * * * *")
    assert every_minute.get_next_fire_time(None, MONDAY) == datetime(2024, 1, 1, 12, 1,
                                                                     tzinfo=UTC)
    sunday = cron_trigger("30 3 * * 0")  # crontab: 0 is Sunday (APScheduler's own 0 is Monday)
    assert sunday.get_next_fire_time(None, MONDAY) == datetime(2024, 1, 7, 3, 30, tzinfo=UTC)
    seconds = cron_trigger("*/10 * * * * *")
    assert seconds.get_next_fire_time(None, MONDAY) == datetime(2024, 1, 1, 12, 0, 30,
                                                                tzinfo=UTC)
    berlin = cron_trigger("0 3 * * *", "Europe/Berlin")
    assert berlin.get_next_fire_time(None, MONDAY) == datetime(2024, 1, 2, 2, 0, tzinfo=UTC)
    with pytest.raises(ValueError, match=r"job.yaml: invalid cron expression '61 \* \* \* \*'"):
        cron_trigger("61 * * * *", where="job.yaml")


def test_load_jobs_needs_a_valid_schedule(tmp_path: Path) -> None:
    data = tmp_path / "d.csv"
    good = write_job(tmp_path / "good.yaml", data, "m1",
                     retrain={"schedule": "0 3 * * 1-5", "misfire_grace_seconds": 60})
    none = write_job(tmp_path / "none.yaml", data, "m1")
    bad = write_job(tmp_path / "bad.yaml", data, "m1", retrain={"schedule": "0 25 * * *"})
    (job,) = load_jobs([good])
    assert job.model == "m1" and job.label == "good.yaml (m1)"
    with pytest.raises(ValueError, match=r"none.yaml: retrain.schedule is not set"):
        load_jobs([good, none])
    with pytest.raises(ValueError, match=r"bad.yaml: invalid cron expression '0 25 \* \* \*'"):
        load_jobs([bad])
    scheduler = build_scheduler([job], Runner())
    (added,) = scheduler.get_jobs()
    assert (added.max_instances, added.coalesce, added.misfire_grace_time) == (1, True, 60)


@pytest.mark.slow
def test_scheduler_runs_retrains_on_cron_without_overlap(tmp_path: Path) -> None:
    """One scheduler, two job files: a one-minute cron, and a 2-second cron whose run (tens
    of seconds) must not be started again while it is still going."""
    settings = make_settings(tmp_path)
    data = tmp_path / "data.csv"
    tiny_frame().to_csv(data, index=False)
    minute = write_job(tmp_path / "minute.yaml", data, "every-minute",
                       retrain={"schedule": "* * * * *"})
    often = write_job(tmp_path / "often.yaml", data, "every-2s",
                      retrain={"schedule": "*/2 * * * * *"})
    proc = start_cli(["scheduler", "--config", str(minute), "--config", str(often)],
                     cli_env(settings))
    try:
        done = {"minute.yaml": False, "often.yaml": False}
        while not all(done.values()):
            line = proc.wait_for(lambda s: "retrain finished" in s, timeout=240)
            assert line is not None, proc.text
            done |= {k: True for k in done if f"{k} (" in line}
        proc.popen.send_signal(signal.SIGTERM)
    finally:
        code = proc.finish(120)
    assert code == 0, proc.text
    records = [_record(line) for line in proc.lines]  # the scheduler logs JSON lines
    text = "\n".join(str(r["message"]) for r in records)
    assert "scheduler stopped" in text
    finished = [r for r in records if r.get("event") == "finished"
                and r.get("job") == "minute.yaml (every-minute)"]
    assert finished and str(finished[0]["outcome"]).startswith("promoted: "), finished

    # The one-minute cron fired on a minute boundary and its run promoted a first champion.
    fired = re.search(r'Running job "minute.yaml \(every-minute\).*scheduled at '
                      r'\d{4}-\d\d-\d\d \d\d:\d\d:(\d\d)', text)
    assert fired is not None and fired.group(1) == "00", text
    assert re.search(r"minute.yaml \(every-minute\): retrain finished: promoted: every-minute v1 "
                     r"is champion .*\(exit 0, ", text), text
    assert champion_version(settings, "every-minute") == 1

    # The 2-second cron: while its first run was going, no second one started.
    label = "often.yaml (every-2s)"
    events = [(m.group(1)) for m in re.finditer(
        rf"{re.escape(label)}: (retrain started|retrain finished|not started at)", text)]
    first_end = events.index("retrain finished")
    assert events[:first_end].count("retrain started") == 1, events
    assert events[:first_end].count("not started at") >= 1, events
    assert champion_version(settings, "every-2s") == 1
