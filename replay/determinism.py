"""Nondeterminism check: replayed values of names the run recorded must equal the records."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from florsql.store import layout
from florsql.store.replays import DONE
from florsql.store.segments import join_value, list_segments, read_segments


def _by_path(folder: Path, kind: str) -> dict[tuple[str, str], Any]:
    """(context path, name) -> value for rows of ``kind`` in a run's or task's segments."""
    rows = read_segments(list_segments(folder / layout.SEGMENTS)).to_pylist()
    paths: dict[int, str] = {0: ""}
    for r in rows:
        if r["kind"] == "loop":
            parent = paths.get(r["parent"], "?")
            step = f"{r['name']}={r['iteration']}"
            paths[r["ctx"]] = f"{parent}/{step}" if parent else step
    return {
        (paths.get(r["ctx"], "?"), r["name"]): join_value(
            r["vtype"], r["v_int"], r["v_float"], r["v_str"]
        )
        for r in rows
        if r["kind"] == kind
    }


@dataclass(frozen=True)
class Verification:
    """What comparing a task's run of the old code's own statements with the recording found:
    how many values were compared, and the first difference (None: none)."""

    checked: int
    mismatch: str | None


def compare_task(repo: Path, task: Path) -> Verification:
    """Compare the recorded names a replay task computed (``check`` rows) with the records."""
    if not (task / DONE).exists():
        return Verification(0, None)
    checks = _by_path(task, "check")
    if not checks:
        return Verification(0, None)
    run_id = layout.read_json(task / DONE)["run_id"]
    recorded = _by_path(layout.run_dir(repo, run_id), "log")
    compared = 0
    for (path, name), value in sorted(checks.items()):
        if (path, name) not in recorded:
            continue
        compared += 1
        if not _same(recorded[(path, name)], value):
            return Verification(
                compared,
                f"run {run_id}: {name} at {path or 'top level'} was "
                f"{recorded[(path, name)]!r} when recorded and {value!r} in replay",
            )
    return Verification(compared, None)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return bool(a == b)
