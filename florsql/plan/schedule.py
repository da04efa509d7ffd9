"""Scheduling: the replay set cut into chunks that start from checkpoints, with a cost estimate.

Needed outer iterations of a run are cut into chunks (one worker task each). A chunk starts from
the nearest checkpoint before its first iteration (from the top of the script when there is
none); a gap between needed iterations starts a new chunk when a checkpoint lies in the gap,
else the chunk runs through it. Inside a chunk, an iteration whose needed statements sit in no
inner loop skips its inner loops by restoring that iteration's ``after:<inner>`` checkpoint
(see docs/record.md). Costs come from the recorded iteration times (``loops.seconds``), the
checkpoint sizes, and a fixed start-up per task.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

from florsql.plan.hindsight import ScriptCode
from florsql.plan.replay_plan import (
    CheckpointRef,
    Chunk,
    InnerRestriction,
    IterationNeed,
    RunReplay,
)
from florsql.plan.replay_set import ANY_CHAIN
from florsql.plan.state import NeedRow, PlanState

__all__ = ["RESTORE_BYTES_PER_S", "TASK_OVERHEAD_S", "RunFacts", "load_facts", "plan_run"]

TASK_OVERHEAD_S = 2.0  # a worker process: start, imports, worktree checkout
RESTORE_BYTES_PER_S = 200e6


@dataclass
class RunFacts:
    """What the index recorded about one run's timing and checkpoints."""

    seconds: dict[str, dict[int, tuple[float, float]]] = field(default_factory=dict)
    checkpoints: dict[str, dict[int, CheckpointRef]] = field(default_factory=dict)
    total: float = 0.0

    def loop_seconds(self, loop: str) -> float:
        return sum(s for s, _ in self.seconds.get(loop, {}).values())

    def non_loop(self) -> float:
        """Time outside every outer loop (set-up before, evaluation after), at least 0."""
        return max(0.0, self.total - sum(self.loop_seconds(lp) for lp in self.seconds))


def load_facts(state: PlanState, run_ids: list[str]) -> dict[str, RunFacts]:
    """Iteration times, inner-loop times and checkpoints of ``run_ids``, in three queries."""
    facts: dict[str, RunFacts] = defaultdict(RunFacts)
    con = state.con
    rows = con.execute(
        """SELECT run_id, loop_name, iteration, seconds, inner_seconds FROM __flor_times
           WHERE run_id IN (SELECT unnest(?::VARCHAR[]))""",
        [run_ids],
    ).fetchall()
    for run_id, loop, it, sec, inner in rows:
        facts[run_id].seconds.setdefault(loop, {})[int(it)] = (float(sec), float(inner))
    rows = con.execute(
        """SELECT run_id, loop_name, iteration, position, file, bytes FROM checkpoints
           WHERE run_id IN (SELECT unnest(?::VARCHAR[]))""",
        [run_ids],
    ).fetchall()
    for run_id, loop, it, pos, file, size in rows:
        ref = CheckpointRef(loop, int(it), pos, file, int(size or 0))
        facts[run_id].checkpoints.setdefault(loop, {})[int(it)] = ref
    rows = con.execute(
        """SELECT run_id, coalesce(epoch(ended) - epoch(tstamp), 0) FROM run_meta
           WHERE run_id IN (SELECT unnest(?::VARCHAR[]))""",
        [run_ids],
    ).fetchall()
    for run_id, total in rows:
        facts[run_id].total = float(total)
    return facts


def plan_run(
    run_id: str, needs: list[NeedRow], code: ScriptCode | None, facts: RunFacts
) -> RunReplay:
    """The :class:`RunReplay` of one run from its rows of the replay set."""
    names = tuple(sorted({n.name for n in needs}))
    unknown = any(n.chain == ANY_CHAIN for n in needs) or code is None
    # A statement in another file than the run's script, or whose loops are unknown: the
    # executor replays the whole run from the top (replay/scheduler.py), and so says the plan.
    main = needs[0].filename
    unknown = unknown or any(
        s.chain is None or (s.file and s.file != main)
        for n in names
        for s in (code.sites_of(n) if code is not None else ())
    )
    used_loops = {lp for n in needs for lp in n.chain.split("/")[1:] if n.chain}
    skip = (
        ()
        if unknown or code is None
        else tuple(lp for lp in code.inner_loops() if lp not in used_loops)
    )
    loop_needs = [n for n in needs if n.outer_iteration is not None]
    top = [n for n in needs if n.outer_iteration is None]
    iteration_needs = _iteration_needs(loop_needs)
    top_level = tuple(sorted({n.name for n in top}))
    if unknown:
        chunks = [_whole_run(facts)]
    else:
        chunks = []
        by_loop: dict[str, list[IterationNeed]] = defaultdict(list)
        for need in iteration_needs:
            by_loop[need.loop].append(need)
        for loop, its in by_loop.items():
            chunks += _loop_chunks(loop, its, facts)
        chunks += _top_chunks(top_level, code, facts)
    first = needs[0]
    return RunReplay(
        run_id=run_id,
        vid=first.vid,
        filename=first.filename,
        names=names,
        needs=tuple(iteration_needs),
        top_level=top_level,
        skip_inner=skip,
        chunks=tuple(chunks),
        seconds=round(sum(c.seconds for c in chunks), 3),
    )


def _iteration_needs(rows: list[NeedRow]) -> list[IterationNeed]:
    grouped: dict[tuple[str, int], list[NeedRow]] = defaultdict(list)
    for row in rows:
        assert row.outer_loop is not None and row.outer_iteration is not None
        grouped[(row.outer_loop, row.outer_iteration)].append(row)
    out = []
    for (loop, it), group in sorted(grouped.items()):
        inner: dict[str, set[int]] = {}
        for r in group:
            restricted = r.inner_loop and r.inner_iterations
            if restricted and len(r.inner_iterations) < r.inner_total:
                inner.setdefault(r.inner_loop or "", set()).update(r.inner_iterations)
            elif r.inner_loop:
                inner[r.inner_loop] = set()  # some name needs every inner iteration
        restrictions = tuple(
            InnerRestriction(lp, tuple(sorted(v))) for lp, v in sorted(inner.items()) if v
        )
        names = tuple(sorted({r.name for r in group}))
        loops = tuple(sorted({r.inner_loop for r in group if r.inner_loop}))
        out.append(IterationNeed(loop, it, names, loops, restrictions))
    return out


def _loop_chunks(loop: str, needs: list[IterationNeed], facts: RunFacts) -> list[Chunk]:
    ckpts = facts.checkpoints.get(loop, {})
    times = facts.seconds.get(loop, {})
    groups: list[list[IterationNeed]] = []
    for need in needs:
        if groups:
            last = groups[-1][-1].iteration
            gap_ckpt = any(last <= k < need.iteration for k in ckpts)
            if need.iteration == last + 1 or not gap_ckpt:
                groups[-1].append(need)
                continue
        groups.append([need])
    return [_chunk(loop, g, ckpts, times) for g in groups]


def _chunk(
    loop: str,
    needs: list[IterationNeed],
    ckpts: dict[int, CheckpointRef],
    times: dict[int, tuple[float, float]],
) -> Chunk:
    first, last = needs[0].iteration, needs[-1].iteration
    before = [k for k in ckpts if k < first]
    ckpt = ckpts[max(before)] if before else None
    start = ckpt.iteration + 1 if ckpt else 0
    seconds = TASK_OVERHEAD_S
    if ckpt is not None:
        seconds += ckpt.bytes / RESTORE_BYTES_PER_S
        if ckpt.position.startswith("after:"):
            sec, inner = times.get(ckpt.iteration, (0.0, 0.0))
            seconds += max(0.0, sec - inner)
    needed = {n.iteration: n for n in needs}
    for it in range(start, last + 1):
        sec, inner = times.get(it, (0.0, 0.0))
        own = ckpts.get(it)
        need = needed.get(it)
        if need is not None and not need.inner_loops and own and own.position.startswith("after:"):
            seconds += max(0.0, sec - inner) + own.bytes / RESTORE_BYTES_PER_S
        else:
            seconds += sec
    iterations = tuple(needed)
    return Chunk("iterations", loop, iterations, start, ckpt, False, round(seconds, 3))


def _top_chunks(names: tuple[str, ...], code: ScriptCode | None, facts: RunFacts) -> list[Chunk]:
    if not names or code is None:
        return []
    wheres = {s.where for n in names for s in code.sites_of(n) if s.chain == ()}
    chunks = []
    half = facts.non_loop() / 2
    if "head" in wheres:
        chunks.append(Chunk("head", None, (), None, None, False, round(TASK_OVERHEAD_S + half, 3)))
    if "tail" in wheres:
        loop = next(iter(facts.seconds), None)
        ckpts = facts.checkpoints.get(loop or "", {})
        ckpt = ckpts[max(ckpts)] if ckpts else None
        times = facts.seconds.get(loop or "", {})
        start = ckpt.iteration + 1 if ckpt else 0
        seconds = TASK_OVERHEAD_S + half + sum(s for it, (s, _) in times.items() if it >= start)
        if ckpt is None:
            seconds += half
        else:
            seconds += ckpt.bytes / RESTORE_BYTES_PER_S
        chunks.append(Chunk("tail", loop, (), start, ckpt, True, round(seconds, 3)))
    return chunks


def _whole_run(facts: RunFacts) -> Chunk:
    loop = next(iter(facts.seconds), None)
    its = tuple(sorted(facts.seconds.get(loop or "", {})))
    return Chunk("all", loop, its, 0, None, True, round(TASK_OVERHEAD_S + facts.total, 3))
