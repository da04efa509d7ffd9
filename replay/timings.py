"""What replay start-up and tasks cost on this machine, measured, for EXPLAIN's estimates.

The planner's constants (:data:`florsql.plan.tasks.WORKER_START_S`, the per-task overheads) were
measured on one machine; on a slower one a cold replay took twice EXPLAIN's estimate (a warm
worker's imports: 3.2 s against the constant's 1.6 s). So every warm worker that starts (the
replay service, or an executor's private one) writes down how long its imports took, and every
replay how long its tasks took against their estimates; later estimates on this machine use the
median of the recent ones: the start-up when no warm worker runs, the factor when the
repository's own tasks are too few to calibrate from (:func:`florsql.plan.tasks.calibration`).

They live in one small JSON file per user, ``$XDG_CACHE_HOME/florsql/timings.json``
(``~/.cache/florsql/timings.json``; ``FLORSQL_TIMINGS`` names another file, ``off`` none),
keyed by the Python interpreter. It is a cache: unreadable, unwritable or missing, it is
ignored and the constants apply. Standard library only.

Each measurement is kept as it would have been on an idle machine: divided by the
:func:`slowdown` of the machine's load when it was taken, and multiplied by the slowdown of
the load now when it is read. Before session 31 a cold replay on an idle machine was estimated
from start-ups measured under load the hour before: 3.0 s against the 1.4 s it took, and
EXPLAIN said 1.6-1.8x the actual time (benchmarks/hindsight.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

#: Measurements kept per kind and interpreter (the newest).
KEEP = 5


def path() -> Path | None:
    """The timings file, or None when turned off."""
    where = os.environ.get("FLORSQL_TIMINGS", "")
    if where.lower() in ("off", "0", "no", "false"):
        return None
    if where:
        return Path(where)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "florsql" / "timings.json"


def _read(file: Path) -> dict[str, Any]:
    try:
        doc = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _load() -> float | None:
    """The machine's load average over the last minute (None where the system has none)."""
    try:
        return float(os.getloadavg()[0])
    except (OSError, AttributeError):
        return None


def slowdown(load: float | None = None, cores: int | None = None) -> float:
    """How many times longer one process's CPU-bound work takes now than on an idle machine,
    from the load average: ``(load + 1) / cores`` (the process itself and what already runs,
    shared among the cores), never below 1. ``load``: the load average over the last minute
    (the machine's now by default); ``cores``: the CPUs this process may use.

    Example:
        >>> slowdown(0.2, 2), slowdown(3.0, 2), slowdown(7.0, 4)
        (1.0, 2.0, 2.0)
    """
    if load is None:
        load = _load()
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except (AttributeError, OSError):
            cores = os.cpu_count() or 1
    if load is None or not load >= 0:
        return 1.0
    return max(1.0, (load + 1.0) / max(1, cores))


def note(kind: str, value: float, python: str | None = None) -> None:
    """Remember one measurement of ``kind`` (``worker_start`` seconds, ``task_factor``) for
    ``python`` (this interpreter by default), as it would have been on an idle machine (see
    :func:`slowdown`). Never raises."""
    file = path()
    if file is None or not (value > 0 and value < 1e6):
        return
    value = value / slowdown()
    with contextlib.suppress(OSError, ValueError, TypeError):
        file.parent.mkdir(parents=True, exist_ok=True)
        doc = _read(file)
        per = doc.setdefault(kind, {})
        if not isinstance(per, dict):
            per = doc[kind] = {}
        key = python or sys.executable
        kept = [float(v) for v in per.get(key, []) if isinstance(v, (int, float))]
        per[key] = [*kept, round(float(value), 4)][-KEEP:]
        fd, tmp = tempfile.mkstemp(prefix=".timings.", dir=file.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f)
        os.replace(tmp, file)


def recent(kind: str, python: str | None = None) -> float | None:
    """The median of the recent measurements of ``kind`` for ``python``, at the machine's load
    now (see :func:`slowdown`), or None."""
    file = path()
    if file is None:
        return None
    per = _read(file).get(kind)
    if not isinstance(per, dict):
        return None
    values = [v for v in per.get(python or sys.executable, []) if isinstance(v, (int, float))]
    return float(statistics.median(values)) * slowdown() if values else None
