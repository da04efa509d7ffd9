"""Nondeterminism check: replayed values of names the run recorded must equal the records."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from florsql.store import layout
from florsql.store.replays import DONE
from florsql.store.segments import join_value, list_segments, read_segments


def _by_path(
    folder: Path, kind: str, names: Iterable[str] | None = None
) -> dict[tuple[str, str], Any]:
    """(context path, name) -> value for rows of ``kind`` (and of ``names``, when given) in a
    run's or task's segments.

    Columnar: only the wanted rows, and the loop rows on their context paths, become Python
    objects. A run's every row did before: 0.15-0.2 s per task for a run of 50k log rows, on
    the query's path after each replay (measured)."""
    import pyarrow.compute as pc

    from florsql.store.rows import int64_array, strings_array

    table = read_segments(list_segments(folder / layout.SEGMENTS))
    want = pc.is_in(table["kind"], value_set=strings_array([kind]))
    if names is not None:
        want = pc.and_(want, pc.is_in(table["name"], value_set=strings_array(sorted(set(names)))))
    columns = ["ctx", "name", "vtype", "v_int", "v_float", "v_str"]
    rows = table.filter(want).select(columns).to_pylist()
    loops = table.filter(pc.is_in(table["kind"], value_set=strings_array(["loop"])))
    loops = loops.select(["ctx", "parent", "name", "iteration"])
    steps: dict[int, tuple[int, str]] = {}  # ctx -> (parent ctx, "loop=iteration")
    need = {int(r["ctx"]) for r in rows} - {0}
    while need:  # up the context paths, one nesting level at a time
        found = loops.filter(pc.is_in(loops["ctx"], value_set=int64_array(sorted(need))))
        for r in found.to_pylist():
            steps.setdefault(int(r["ctx"]), (int(r["parent"]), f"{r['name']}={r['iteration']}"))
        need = {p for p, _ in steps.values() if p != 0 and p not in steps}
        if found.num_rows == 0:
            break
    paths: dict[int, str] = {0: ""}

    def path(ctx: int) -> str:
        if ctx not in paths:
            if ctx not in steps:
                return "?"
            parent, step = steps[ctx]
            above = path(parent)
            paths[ctx] = f"{above}/{step}" if above else step
        return paths[ctx]

    return {
        (path(int(r["ctx"])), r["name"]): join_value(
            r["vtype"], r["v_int"], r["v_float"], r["v_str"]
        )
        for r in rows
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
    recorded = _by_path(layout.run_dir(repo, run_id), "log", {name for _, name in checks})
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
