"""``nearcast scheduler``: run ``nearcast retrain`` / ``monitor`` for job files on their schedules.

Each ``retrain.schedule`` and each ``monitor.schedule`` of a job file is one APScheduler job. A
run is a ``nearcast retrain`` (or ``nearcast monitor``) subprocess: TensorFlow never lives in
the scheduler, a crash or leak in one run cannot take the scheduler down, and the retraining
lock still keeps out runs started elsewhere (cron, a Kubernetes CronJob, a person, a monitor's
alarm). Per job: at most one run at a time (a fire while a run is going is skipped and logged),
fires missed while the scheduler was busy or down are coalesced into one, and a fire later than
the section's ``misfire_grace_seconds`` is skipped. A monitor run that raises an alarm (exit 4)
has finished normally.

Cron expressions read like crontab (weekday 0 or 7 is Sunday) with one difference: when both
day-of-month and weekday are restricted, both must match (crontab runs when either does).
Six fields mean a leading seconds field.
"""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType

from apscheduler.events import (
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    JobExecutionEvent,
    JobSubmissionEvent,
)
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger

from nearcast.models.config import Scheduled
from nearcast.models.jobconfig import read_monitor_section, read_retrain_section
from nearcast.service.logs import configure_logging

log = logging.getLogger("nearcast.scheduler")

_DAYS = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"]
_EXIT_BUSY = 3  # job.EXIT_BUSY; not imported, to keep MLflow out of the scheduler
_EXIT_ALARM = 4  # monitor_job.EXIT_ALARM, likewise
_RESULT = {"retrain": "decision: ", "monitor": "monitor: "}
"""Per command, the start of the output line that says how a run ended."""


@dataclass(frozen=True)
class ScheduledJob:
    """A job file, the command it is run with (``retrain`` or ``monitor``) and its schedule."""

    config: Path
    model: str | None
    timing: Scheduled
    command: str = "retrain"

    @property
    def label(self) -> str:
        """How logs name the job: the file, the model when set in it, and a monitor's command."""
        name = f"{self.config.name} ({self.model})" if self.model else self.config.name
        return name if self.command == "retrain" else f"{name} {self.command}"


def load_jobs(configs: Sequence[Path]) -> list[ScheduledJob]:
    """Read each file's ``retrain:`` and ``monitor:`` sections; each file must set a schedule.

    Raises:
        ValueError: naming the file, when it is invalid, has no schedule or a bad cron field.
    """
    jobs = []
    for path in configs:
        model, retrain = read_retrain_section(path)
        _, monitor = read_monitor_section(path)
        if not retrain.schedule and not monitor.schedule:
            raise ValueError(f"{path}: retrain.schedule is not set, nor monitor.schedule "
                             "(e.g. '0 3 * * *')")
        for command, cfg in (("retrain", retrain), ("monitor", monitor)):
            if cfg.schedule:
                where = str(path) if command == "retrain" else f"{path}: monitor.schedule"
                cron_trigger(cfg.schedule, cfg.timezone, where=where)
                jobs.append(ScheduledJob(Path(path), model, cfg, command))
    return jobs


def cron_trigger(expr: str, timezone: str = "UTC", where: str = "schedule") -> CronTrigger:
    """A trigger from 5 crontab fields (or 6 with leading seconds).

    Raises:
        ValueError: naming ``where`` and the expression when a field is invalid.
    """
    fields = expr.split()
    if len(fields) == 5:
        fields = ["0", *fields]
    try:
        if len(fields) != 6:
            raise ValueError(f"expected 5 or 6 fields, got {len(fields)}")
        second, minute, hour, day, month, weekday = fields
        return CronTrigger(second=second, minute=minute, hour=hour, day=day, month=month,
                           day_of_week=crontab_weekdays(weekday), timezone=timezone)
    except (ValueError, LookupError) as exc:
        raise ValueError(f"{where}: invalid cron expression {expr!r}: {exc}") from exc


def crontab_weekdays(field: str) -> str:
    """Crontab weekdays (0 or 7 = Sunday, names allowed, ranges, lists, steps) as day names.

    APScheduler 3 counts 0 as Monday; spelling the days out keeps crontab's meaning.
    """
    if field == "*":
        return field
    days: set[int] = set()
    for part in field.lower().split(","):
        span, _, step = part.partition("/")
        if span == "*":
            lo, hi = 0, 6
        else:
            first, dash, last = span.partition("-")
            lo = _day(first)
            hi = _day(last) if dash else (6 if step else lo)
            hi = 7 if dash and hi == 0 else hi  # "6-0": Saturday to Sunday
        if hi < lo:
            raise ValueError(f"weekday range {span!r} runs backwards")
        days |= {d % 7 for d in range(lo, hi + 1, int(step) if step else 1)}
    return ",".join(_DAYS[d] for d in sorted(days))


def _day(token: str) -> int:
    if token in _DAYS:
        return _DAYS.index(token)
    if token.isdigit() and 0 <= int(token) <= 7:
        return int(token)
    raise ValueError(f"weekday {token!r} is not 0-7 or sun..sat")


class Runner:
    """Runs ``nearcast retrain`` / ``monitor`` subprocesses and stops them on shutdown."""

    def __init__(self, command: Sequence[str] | None = None) -> None:
        self.command = list(command or [sys.executable, "-m", "nearcast"])
        self.children: set[subprocess.Popen[str]] = set()
        self._lock = threading.Lock()
        self.stopping = False

    def run(self, job: ScheduledJob) -> int:
        """One run of the job's command; every output line is logged. Returns the exit code."""
        log.info("%s: %s started", job.label, job.command,
                 extra={"event": "fire", "job": job.label, "config": str(job.config)})
        t0, decision, result = time.monotonic(), "", _RESULT[job.command]
        proc = subprocess.Popen([*self.command, job.command, "--config", str(job.config)],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        with self._lock:
            self.children.add(proc)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                _relay(job.label, line.rstrip())
                if line.startswith(result):
                    decision = line.removeprefix(result).strip()
            code = proc.wait()
        finally:
            with self._lock:
                self.children.discard(proc)
        if code == 0 or (job.command == "monitor" and code == _EXIT_ALARM):
            outcome = decision or "done"
        elif self.stopping:
            outcome = "stopped by the scheduler's shutdown (run marked KILLED, champion kept)"
        else:
            outcome = "already running elsewhere" if code == _EXIT_BUSY else "failed"
        seconds = time.monotonic() - t0
        log.info("%s: %s finished: %s (exit %d, %.1f s)", job.label, job.command, outcome, code,
                 seconds,
                 extra={"event": "finished", "job": job.label, "outcome": outcome,
                        "exit_code": code, "seconds": round(seconds, 1)})
        return code

    def stop(self, grace: float = 30.0) -> None:
        """Ask running retrains to stop (SIGTERM: the run is marked KILLED, champion kept)."""
        self.stopping = True
        with self._lock:
            children = list(self.children)
        for proc in children:
            proc.terminate()
        for proc in children:
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()


def _relay(label: str, line: str) -> None:
    """Log one output line of a retrain run (its JSON log lines keep their fields)."""
    child: object = None
    if line.startswith("{"):
        try:
            child = json.loads(line)
        except ValueError:
            child = None
    if isinstance(child, dict):
        text = str(child.pop("message", ""))
        level = logging.getLevelNamesMapping().get(str(child.get("level")), logging.INFO)
        log.log(level, "%s | %s", label, text, extra={"job": label, "child": child})
    else:
        log.info("%s | %s", label, line, extra={"job": label})


def build_scheduler(jobs: Sequence[ScheduledJob], runner: Runner) -> BlockingScheduler:
    """A blocking scheduler with one cron job per schedule (no overlap, coalesced misfires)."""
    scheduler = BlockingScheduler(timezone="UTC")
    for job in jobs:
        assert job.timing.schedule is not None
        scheduler.add_job(runner.run, cron_trigger(job.timing.schedule, job.timing.timezone),
                          args=[job], id=_job_id(job), name=job.label, max_instances=1,
                          coalesce=True, misfire_grace_time=job.timing.misfire_grace_seconds)
    labels = {_job_id(job): job.label for job in jobs}

    def _skipped(event: JobSubmissionEvent | JobExecutionEvent) -> None:
        label = labels.get(event.job_id, event.job_id)
        if isinstance(event, JobSubmissionEvent):  # EVENT_JOB_MAX_INSTANCES
            due = ", ".join(str(t) for t in event.scheduled_run_times)
            log.warning("%s: not started at %s: the previous run is still going", label, due,
                        extra={"event": "skipped", "job": label})
        else:  # EVENT_JOB_MISSED
            log.warning("%s: missed the run due at %s (later than the misfire grace)", label,
                        event.scheduled_run_time, extra={"event": "missed", "job": label})

    scheduler.add_listener(_skipped, EVENT_JOB_MAX_INSTANCES | EVENT_JOB_MISSED)
    return scheduler


def _job_id(job: ScheduledJob) -> str:
    return str(job.config) if job.command == "retrain" else f"{job.config} {job.command}"


def run_scheduler(configs: Sequence[Path], command: Sequence[str] | None = None) -> int:
    """Schedule every job file and block until SIGTERM/SIGINT; returns the exit code."""
    configure_logging()  # JSON lines on stderr (NEARCAST_LOG_FORMAT=text: plain lines)
    jobs = load_jobs(configs)
    runner = Runner(command)
    scheduler = build_scheduler(jobs, runner)

    def _stop(signum: int, _: FrameType | None) -> None:
        log.info("signal %d: stopping the scheduler", signum)
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    now = datetime.now(UTC)
    for job in scheduler.get_jobs():
        log.info("scheduled %s: %s, first run %s", job.name, job.trigger,
                 job.trigger.get_next_fire_time(None, now))
    scheduler.start()  # blocks until a signal shuts it down
    runner.stop()  # running retrains get SIGTERM: their runs are marked KILLED, champion kept
    log.info("scheduler stopped")
    return 0


__all__ = ["Runner", "ScheduledJob", "build_scheduler", "cron_trigger", "crontab_weekdays",
           "load_jobs", "run_scheduler"]
