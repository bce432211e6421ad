"""The figures of one load of :mod:`benchmarks.load_bench`, from what the client saw.

Failed: any answer but 200 and any connection error. Swaps observed: changes of the answering
version (``model.version``) in the order the answers arrived. An alias move is followed when an
answer by its version arrives before the next move; a swap's lag is the time from the latest
move to its version until the first answer by that version.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["Sample", "log_problems", "summarize"]

# (sent, seconds taken, status or 0 on a connection error, version or 0, failure kind: "" when
# it succeeded), sent counted from the start of the load
Sample = tuple[float, float, int, int, str]
# TensorFlow C++ log lines ("I0000 00:00:...") and absl's note about them
TF_NOISE = re.compile(r"^([IWEF]\d{4} |WARNING: All log messages before absl)")


def _transitions(samples: list[Sample]) -> list[tuple[float, int]]:
    """(answer time, version) at each change of the answering version, in answer order."""
    answered = sorted((s[0] + s[1], s[3]) for s in samples if not s[4])
    out: list[tuple[float, int]] = []
    for when, version in answered:
        if not out or version != out[-1][1]:
            out.append((when, version))
    return out


def _follow(moves: list[tuple[float, int]], changes: list[tuple[float, int]], end: float
            ) -> dict[str, Any]:
    """Alias moves followed before the next move; per observed swap, the lag from the latest
    move to its version until the first answer by it."""
    followed = 0
    for i, (moved, version) in enumerate(moves):
        until = moves[i + 1][0] if i + 1 < len(moves) else end
        followed += any(v == version and moved <= when < until for when, v in changes)
    lags = [when - max(m for m, mv in moves if mv == v and m <= when)
            for when, v in changes[1:] if any(mv == v and m <= when for m, mv in moves)]
    return {"alias_moves": len(moves), "moves_followed": followed,
            "swap_lag_p50_s": float(np.median(lags)) if lags else None,
            "swap_lag_max_s": max(lags) if lags else None}


def _unreachable(ready: list[tuple[float, bool | None]]) -> list[float] | None:
    """[first, last] time /readyz said the registry was unreachable (None: never)."""
    down = [t for t, ok in ready if ok is False]
    return [round(down[0], 1), round(down[-1], 1)] if down else None


def summarize(name: str, samples: list[Sample], took: float,
              ready: list[tuple[float, bool | None]], facts: dict[str, Any]) -> dict[str, Any]:
    """The figures of one load."""
    ms = np.asarray([s[1] for s in samples]) * 1e3
    failed = [s for s in samples if s[4]]
    changes = _transitions(samples)
    row: dict[str, Any] = {
        "load": name, "requests": len(samples), "failed": len(failed), "rps": len(samples) / took,
        "p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)),
        "max_ms": float(ms.max()),
        "versions_seen": dict(sorted(Counter(s[3] for s in samples if not s[4]).items())),
        "swaps_observed": len(changes) - 1 if changes else 0,
        **_follow(facts.get("moves", []), changes, took),
        "failures": dict(Counter(s[4] for s in failed).most_common(5)),
        "failed_between_s": [round(failed[0][0], 2), round(failed[-1][0], 2)] if failed else None,
        "readyz_registry_unreachable_s": _unreachable(ready),
        "readyz_not_200": sum(ok is None for _, ok in ready),
        "loadavg_1min_after": round(os.getloadavg()[0], 2),
    }
    row |= {k: v for k, v in facts.items() if k != "moves"}
    row["alias_moves_at"] = facts.get("moves", [])
    return row


def log_problems(log: Path) -> list[str]:
    """Warnings, errors and tracebacks in the server's log (JSON lines or plain text)."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return []
    out = []
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            entry = None
        if isinstance(entry, dict):
            if entry.get("level") in ("WARNING", "ERROR", "CRITICAL"):
                exc = str(entry.get("exception") or "").strip().splitlines()[-1:]
                out.append(" ".join([f"{entry['level']} {entry.get('logger')}:",
                                     str(entry.get("message")), *exc])[:300])
        elif not TF_NOISE.match(line) and any(
                word in line.lower() for word in ("warning", "error", "traceback", "failed")):
            out.append(line[:300])
    return out
