"""Helpers shared by the benchmark scripts: machine facts, memory, JSON files, tables.

Nothing here imports TensorFlow: versions are read from the installed distributions, so a
runner that only collects results stays light.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import subprocess
import time
from collections.abc import Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = [
    "QUICK_DIR",
    "RESULTS",
    "ROOT",
    "format_value",
    "git_commit",
    "machine_info",
    "markdown_table",
    "max_rss_bytes",
    "print_table",
    "read_json",
    "reset_peak_rss",
    "result_path",
    "rss_bytes",
    "write_json",
]

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
QUICK_DIR = RESULTS / "quick"
PACKAGES = ("tensorflow-cpu", "tensorflow", "keras", "mlflow", "numpy", "pandas", "fastapi",
            "uvicorn", "statsforecast")


# ----------------------------------------------------------------------------- machine
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip('"') + f" (kernel {platform.release()})"
    except OSError:
        pass
    return platform.platform()


def _versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def git_commit() -> str | None:
    """Short commit of the checkout, marked when tracked files (other than benchmark results)
    have uncommitted changes."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, timeout=10, check=True).stdout.strip()
        # the benchmarks' own outputs do not count as changes to what was measured
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--",
                                ".", ":!benchmarks/results", ":!BENCHMARKS.md"],
                               cwd=ROOT, text=True, capture_output=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return head + (" (uncommitted changes)" if dirty.strip() else "")


def machine_info() -> dict[str, Any]:
    """CPU model, cores, RAM, OS, Python and library versions, load, date and git commit."""
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "cpu": _cpu_model(),
        "cores": os.cpu_count(), "cores_usable": affinity, "ram_gib": _ram_gib(),
        "os": _os_name(), "python": platform.python_version(), "packages": _versions(),
        "load_average": [round(x, 2) for x in os.getloadavg()], "git": git_commit(),
    }


# ----------------------------------------------------------------------------- memory
def _status_bytes(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def rss_bytes() -> int:
    """Resident set size of this process now."""
    return _status_bytes("VmRSS")


def max_rss_bytes() -> int:
    """Resident high-water mark: since :func:`reset_peak_rss` when that worked (``VmHWM``),
    else since the process started (``ru_maxrss``)."""
    try:
        return _status_bytes("VmHWM")
    except (OSError, RuntimeError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def reset_peak_rss() -> bool:
    """Reset the resident high-water mark (Linux >= 4.0); False when not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


# ----------------------------------------------------------------------------- files
def result_path(name: str, quick: bool) -> Path:
    """Where a bench writes its JSON: ``results/<name>.json``, or ``results/quick/`` if quick."""
    return (QUICK_DIR if quick else RESULTS) / f"{name}.json"


def write_json(path: Path, data: Mapping[str, Any]) -> Path:
    """Write ``data`` as indented JSON (numpy scalars and paths as strings) and say so."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, default=_jsonable) + "\n")
    shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
    print(f"wrote {shown}", flush=True)
    return path


def _jsonable(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object in ``path``, or None when missing or unreadable."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


# ----------------------------------------------------------------------------- tables
def format_value(value: Any) -> str:
    """Compact text for a table cell: floats to 4 significant digits (3 decimals if large)."""
    if isinstance(value, bool) or value is None:
        return "" if value is None else str(value).lower()
    if isinstance(value, float):
        if value != value:  # NaN
            return "nan"
        if abs(value) >= 1000:
            return f"{value:,.0f}"
        if abs(value) >= 100:
            return f"{value:.1f}"
        return f"{value:.3f}" if abs(value) >= 1 else f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}" if abs(value) >= 10000 else str(value)
    if isinstance(value, list | tuple):
        return ", ".join(format_value(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={format_value(v)}" for k, v in value.items())
    return str(value).replace("|", "\\|").replace("\n", " ")


def _columns(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None) -> list[str]:
    if columns is not None:
        return list(columns)
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(row))
    return list(seen)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
                   headers: Sequence[str] | None = None) -> str:
    """Rows of dicts as a GitHub markdown table (missing cells left empty)."""
    cols = _columns(rows, columns)
    head = list(headers) if headers is not None else cols
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        lines.append("| " + " | ".join(format_value(row.get(c)) for c in cols) + " |")
    return "\n".join(lines)


def print_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None,
                title: str | None = None) -> None:
    """Print rows of dicts as an aligned plain-text table."""
    cols = _columns(rows, columns)
    cells = [[format_value(row.get(c)) for c in cols] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(cols)]
    if title:
        print(f"\n{title}")
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in cells:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)))
    print(flush=True)
