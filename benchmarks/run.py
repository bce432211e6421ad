"""Run every benchmark back to back, collect their JSON and write BENCHMARKS.md.

Each benchmark runs as ``python -m benchmarks.<module> [--quick] [--out PATH]`` in its own
process group with a time limit; its output is shown and kept in ``benchmarks/results/tmp/logs``.
A benchmark that is missing, fails or runs out of time is reported (in the console, in
``run.json`` and in the report) and the suite carries on.

Full mode writes ``benchmarks/results/<name>.json`` and ``BENCHMARKS.md`` (committed). Quick
mode writes ``benchmarks/results/quick/<name>.json`` and ``benchmarks/results/quick/
BENCHMARKS.quick.md`` so it never overwrites the committed figures (``--write-report`` renders
``BENCHMARKS.md`` anyway). A benchmark without an ``--out`` option has its default file moved
into ``quick/`` and the previous full file put back.

Run: ``python -m benchmarks.run [--quick] [--only NAME ...] [--skip NAME ...]
[--render-only] [--write-report]`` (``make bench`` / ``make bench-quick``).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from benchmarks.common import (
    QUICK_DIR,
    RESULTS,
    ROOT,
    git_commit,
    machine_info,
    print_table,
    read_json,
    result_path,
    write_json,
)

REPORT = ROOT / "BENCHMARKS.md"
QUICK_REPORT = QUICK_DIR / "BENCHMARKS.quick.md"
LOGS = RESULTS / "tmp" / "logs"


@dataclass(frozen=True)
class Bench:
    """One benchmark script: ``benchmarks/<module>.py`` writing ``<name>.json``."""

    name: str
    module: str
    timeout: float
    quick_timeout: float


# Time limits (s), full and quick: about twice what each took on 2 shared cores.
BENCHES = (
    Bench("accuracy", "accuracy_bench", 2700, 300),
    Bench("peers", "peers", 1200, 180),
    Bench("training", "training_bench", 900, 180),
    Bench("pipeline", "pipeline_bench", 2400, 180),
    Bench("serve", "serve_bench", 1200, 600),  # 2 servers compile the ensemble ladder
    Bench("ensemble", "ensemble_latency", 600, 240),
    Bench("load", "load_bench", 900, 300),
    Bench("epf", "epf_bench", 2400, 600),
    Bench("scale", "scale_bench", 1800, 600),
    Bench("forecast_log", "forecast_log_bench", 400, 200),
)


def _display(cmd: list[str]) -> str:
    """The command as someone would type it from the repository root."""
    parts = []
    for part in cmd:
        path = Path(part)
        if path.is_absolute() and path.is_relative_to(ROOT):
            part = str(path.relative_to(ROOT))
        parts.append(part)
    return " ".join(parts)


def _supports_out(bench: Bench) -> bool:
    """Whether the script declares an ``--out PATH`` option (read from its source)."""
    source = (ROOT / "benchmarks" / f"{bench.module}.py").read_text()
    return "add_argument(\"--out\"" in source


def _pump(stream: IO[str], log: IO[str]) -> None:
    for line in stream:
        sys.stdout.write(line)
        sys.stdout.flush()
        log.write(line)


def _stop(proc: subprocess.Popen[str]) -> None:
    """End the benchmark's own process group (it was started in a new session)."""
    for sig, grace in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=grace)
            return
        except subprocess.TimeoutExpired:
            continue


def _execute(cmd: list[str], log_path: Path, timeout: float) -> int | None:
    """Run ``cmd`` showing and logging its output; None when it ran out of time."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONUNBUFFERED="1")
    with log_path.open("w") as log:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, text=True, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, start_new_session=True)
        assert proc.stdout is not None
        reader = threading.Thread(target=_pump, args=(proc.stdout, log), daemon=True)
        reader.start()
        try:
            code: int | None = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _stop(proc)
            code = None
        reader.join(timeout=10)
    return code


def _tail(path: Path, lines: int = 12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def run_bench(bench: Bench, quick: bool) -> dict[str, Any]:
    """Run one benchmark; returns what happened (status, command, time, JSON path)."""
    target = result_path(bench.name, quick)
    record: dict[str, Any] = {"name": bench.name, "module": f"benchmarks.{bench.module}",
                              "json": str(target.relative_to(ROOT))}
    if not (ROOT / "benchmarks" / f"{bench.module}.py").exists():
        return record | {"status": "missing", "command": None, "seconds": 0.0,
                         "error": f"benchmarks/{bench.module}.py does not exist"}
    cmd = [sys.executable, "-m", f"benchmarks.{bench.module}"] + (["--quick"] if quick else [])
    with_out = _supports_out(bench)
    default = result_path(bench.name, False)
    saved = default.read_bytes() if quick and not with_out and default.exists() else None
    if with_out:
        cmd += ["--out", str(target)]
    log = LOGS / ("quick" if quick else "full") / f"{bench.name}.log"
    print(f"\n=== {bench.name}: {_display(cmd)}", flush=True)
    t0, started = time.perf_counter(), time.time()
    code = _execute(cmd, log, bench.quick_timeout if quick else bench.timeout)
    seconds = time.perf_counter() - t0
    written = with_out or not quick
    if not with_out and quick and default.exists() and default.stat().st_mtime >= started:
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(default, target)
        written = True
    if saved is not None:
        default.write_bytes(saved)  # the committed full figures stay as they were
    fresh = written and target.exists() and target.stat().st_mtime >= started
    status = ("timeout" if code is None else "failed" if code != 0
              else "ok" if fresh else "no-json")
    record |= {"status": status, "command": _display(cmd), "seconds": round(seconds, 1),
               "returncode": code, "log": str(log.relative_to(ROOT)),
               "finished": time.strftime("%Y-%m-%d %H:%M %Z"), "git": git_commit()}
    if status != "ok":
        record["error"] = _tail(log) or f"exit code {code}"
        print(f"=== {bench.name}: {status.upper()} after {seconds:.0f}s (see {record['log']})")
    return record


def _select(only: list[str] | None, skip: list[str] | None) -> list[Bench]:
    names = {b.name for b in BENCHES}
    unknown = sorted((set(only or []) | set(skip or [])) - names)
    if unknown:
        raise SystemExit(f"unknown benchmark(s) {unknown}; known: {sorted(names)}")
    return [b for b in BENCHES if (not only or b.name in only) and b.name not in (skip or [])]


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="every benchmark in quick mode; results under results/quick/")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these")
    parser.add_argument("--skip", nargs="+", metavar="NAME", help="leave these out")
    parser.add_argument("--render-only", action="store_true",
                        help="run nothing; render the report from the JSON files present")
    parser.add_argument("--write-report", action="store_true",
                        help="with --quick, write BENCHMARKS.md instead of the quick report")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the selected benchmarks, write ``run.json`` and render the report."""
    from benchmarks.report import render

    args = _parse(argv)
    run_file = result_path("run", args.quick)
    if args.render_only:
        run = read_json(run_file) or {"quick": args.quick, "benches": []}
    else:
        t0, machine = time.perf_counter(), machine_info()
        records = [run_bench(b, args.quick) for b in _select(args.only, args.skip)]
        previous = {r["name"]: r for r in (read_json(run_file) or {}).get("benches", [])}
        previous.update({r["name"]: r for r in records})
        benches = [previous[b.name] for b in BENCHES if b.name in previous]
        # With --only/--skip the suite's time is that of the latest run of each bench.
        run = {"quick": args.quick, "machine": machine,
               "finished": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
               "wall_seconds": round(sum(float(r.get("seconds") or 0) for r in benches), 1),
               "this_run_seconds": round(time.perf_counter() - t0, 1),
               "command": "python -m benchmarks.run" + (" --quick" if args.quick else ""),
               "benches": benches,
               "this_run": [r["name"] for r in records]}
        write_json(run_file, run)
        print_table(records, ["name", "status", "seconds", "command"], title="benchmarks")
    report = QUICK_REPORT if args.quick and not args.write_report else REPORT
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(render(run, QUICK_DIR if args.quick else RESULTS))
    print(f"wrote {report.relative_to(ROOT)}"
          + (f" (suite {run.get('wall_seconds', 0) / 60:.1f} min)" if "wall_seconds" in run
             else ""))
    return 0 if all(r.get("status") == "ok" for r in run["benches"]) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
