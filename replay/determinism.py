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
    how many values were compared, and the first difference (None: none). ``beyond``: the
    outer iteration where the task ran an inner iteration the run never reached, and why that
    matters (:func:`beyond_the_run`; None: none)."""

    checked: int
    mismatch: str | None
    beyond: tuple[int, str] | None = None


def _loop_paths(folder: Path) -> list[tuple[str, str, str, int]]:
    """Each loop context of a run's or task's segments, in the order entered: (its path,
    its parent's path, loop name, iteration)."""
    import pyarrow.compute as pc

    from florsql.store.rows import strings_array

    table = read_segments(list_segments(folder / layout.SEGMENTS))
    loops = table.filter(pc.is_in(table["kind"], value_set=strings_array(["loop"])))
    rows = loops.select(["ctx", "parent", "name", "iteration"]).to_pylist()
    paths: dict[int, str] = {0: ""}
    out = []
    for r in sorted(rows, key=lambda r: int(r["ctx"])):
        parent = paths.get(int(r["parent"]), "?")
        step = f"{r['name']}={r['iteration']}"
        paths[int(r["ctx"])] = f"{parent}/{step}" if parent else step
        out.append((paths[int(r["ctx"])], parent, str(r["name"]), int(r["iteration"])))
    return out


def beyond_the_run(repo: Path, task: Path, run_id: str) -> tuple[int, str] | None:
    """The first inner iteration the task ran that the run never reached, where the run did
    run that loop in the same outer iteration: the run stopped it sooner for a reason the
    replay does not see (a signal caught, a preemption flag, a time budget), so what the task
    computed from there on is not the run's (sweep S, session 49: an epoch the run left after
    one step on a SIGTERM flag was replayed in full, and its statement's values were the full
    epoch's, under a generic warning only). Returns (the outer iteration, the reason)."""
    mine = _loop_paths(task)
    if not mine:
        return None
    theirs = _loop_paths(layout.run_dir(repo, run_id))
    reached = {p for p, _, _, _ in theirs}
    last: dict[tuple[str, str], int] = {}
    for _, parent, name, it in theirs:
        last[(parent, name)] = max(it, last.get((parent, name), -1))
    for path, parent, name, it in mine:
        if not parent or parent not in reached or path in reached:
            continue  # an outer iteration (planned), or inside one the run never reached
        if (parent, name) not in last or it <= last[(parent, name)]:
            continue
        outer = parent.split("/", 1)[0]
        try:
            j = int(outer.rsplit("=", 1)[1])
        except (IndexError, ValueError):
            return None
        return j, (
            f"run {run_id}: the replay ran {path}, which the run never reached: its {name} "
            f"loop stopped after {name}={last[(parent, name)]} at {parent} for a reason the "
            "replay does not see (a signal or a preemption flag, a time budget, an exception "
            "caught outside the loop), so values from there on would not be the run's"
        )
    return None


def compare_task(repo: Path, task: Path) -> Verification:
    """Compare the recorded names a replay task computed (``check`` rows) with the records."""
    if not (task / DONE).exists():
        return Verification(0, None)
    run_id = layout.read_json(task / DONE)["run_id"]
    beyond = beyond_the_run(repo, task, run_id)
    if beyond is not None:
        return Verification(0, beyond[1], beyond)
    checks = _by_path(task, "check")
    if not checks:
        return Verification(0, None)
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
