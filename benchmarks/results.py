"""Each benchmark's figures as a small JSON file, for ``benchmarks/report.py`` to assemble.

A benchmark calls :func:`write` once at its end with the figures it measured in that run:
``rows`` (one figure each, with its goal and, where it applies, FlorDB 4.0.1's figure measured in
the same run) and ``series`` (points for the report's plots). The files go to
``benchmarks/results/<name>.json`` (gitignored; ``FLORSQL_BENCH_RESULTS`` names another folder).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"

#: The plots the report draws: series key -> (title, x label, y label).
PLOTS = {
    "replay_vs_epochs": (
        "Replay time against epochs selected",
        "epochs selected",
        "query seconds (replay included)",
    ),
    "replay_vs_workers": ("Replay time against workers", "workers", "query seconds"),
    "overhead_vs_logs": (
        "Recording overhead against log calls per second",
        "flor.log calls per second",
        "overhead %",
    ),
}


@dataclass
class Row:
    """One figure: ``value`` against ``goal`` (met when ``value op goal``)."""

    figure: str
    value: float
    unit: str = ""
    goal: float | None = None
    op: str = ">="  # ">=", "<=", or "within" (goal / x <= value <= goal x: an estimate)
    flordb: float | None = None  # FlorDB 4.0.1's figure for the same thing, same run
    note: str = ""
    flordb_goal: float | None = None  # goal on flordb / value (how many times faster)

    @property
    def met(self) -> bool | None:
        if self.flordb_goal is not None and self.flordb is not None and self.value:
            return self.flordb / self.value >= self.flordb_goal
        if self.goal is None:
            return None
        if self.op == "within":
            return 1 / self.goal <= self.value <= self.goal
        return self.value >= self.goal if self.op == ">=" else self.value <= self.goal


@dataclass
class Series:
    """Points of one line of a plot (``plot`` is a key of :data:`PLOTS`)."""

    plot: str
    label: str
    x: list[float] = field(default_factory=list)
    y: list[float] = field(default_factory=list)


def folder() -> Path:
    return Path(os.environ.get("FLORSQL_BENCH_RESULTS") or RESULTS)


def write(
    name: str,
    rows: Sequence[Row],
    series: Sequence[Series] = (),
    *,
    quick: bool = False,
    notes: str = "",
    extra: dict[str, Any] | None = None,
) -> Path:
    """Write ``<name>.json`` with this run's figures; returns its path. ``extra``: more of the
    run's measurements, kept as they are (e.g. hindsight's ``task_phases``: where a replay
    task's time goes, which the report shows as a table of its own)."""
    out = folder()
    out.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": name,
        "quick": quick,
        "when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
        "cores": os.cpu_count(),
        "load": round(os.getloadavg()[0], 1),
        "notes": notes,
        "rows": [asdict(r) for r in rows],
        "series": [asdict(s) for s in series],
        "extra": extra or {},
    }
    path = out / f"{name}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    tmp.replace(path)
    return path
