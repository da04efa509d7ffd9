"""Replay tasks: the one physical plan of what each worker runs (docs/replay.md).

Per run, every outer iteration a worker executes gets a :class:`Step`: ``rest`` (restore the
checkpoint taken as the first inner loop exited, with the locals saved beside it, skip that loop,
run the rest of the body) or ``full``, and the checkpoint it starts from. A mode or a start is
chosen only when it is sound for the patched script (:mod:`florsql.plan.patched`): every local
the code that then runs reads is restored by that checkpoint or untouched by what is skipped.
Otherwise the iteration runs in full, or the task starts earlier (from the top when no
checkpoint will do). Steps are cut into tasks at sound starting points, so one run replays on
several workers. Costs come from the recorded iteration times, the checkpoint sizes, and a fixed
start-up per task; the plan's wall time (:func:`plan_cost`) schedules the tasks as the local
executor runs them, cores // threads at once, plus the replay's fixed cost and the warm worker's
start when it is not running. EXPLAIN prints these tasks; the executor runs them as given.
"""

from __future__ import annotations

import contextlib
import os
import statistics
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from florsql.plan.patched import Patched, analyze_patched, module_names
from florsql.plan.replay_plan import (
    CheckpointRef,
    Chunk,
    ChunkKind,
    Cost,
    InnerRestriction,
    IterationNeed,
    ReplayPlan,
    RunReplay,
    Step,
)
from florsql.plan.replay_set import ANY_CHAIN
from florsql.plan.state import NeedRow, PlanState
from florsql.store import layout, rundoc
from florsql.store.replays import manifest_by_loop, manifest_records

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "REPLAY_FIXED_S",
    "RESTORE_BYTES_PER_S",
    "TASK_OVERHEAD_S",
    "WORKER_START_S",
    "RunFacts",
    "calibration",
    "chunks_from_files",
    "load_facts",
    "plan_cost",
    "plan_run",
    "plan_steps",
    "with_executor",
]

#: A task forked from the warm worker: fork, runpy of the script's module-level code (its own
#: modules, data set-up), reading the spec and the checkpoint manifest, writing the results.
#: Measured from done.json's timings (benchmarks/hindsight.py): 0.04-0.07 s a task, less its
#: loop and checkpoint loads.
TASK_OVERHEAD_S = 0.08
#: Starting the warm worker (the replay service): an interpreter, florsql's worker modules and
#: the scripts' heavy imports. Measured on these machines (2 cores; benchmarks/hindsight.py):
#: torch 0.78 s and torch._dynamo 0.75 s on 2026-12-01, 1.0 s and 1.05 s on an older one (this
#: was 2.2 then, and EXPLAIN read 1.7-1.9x the replays that started a worker on the newer).
#: Paid once per replay when it is not running, by every task without one.
WORKER_START_S = 1.6
#: Per replay, whatever the tasks: worktrees, patched files, task specs, verification (the
#: replay report's seconds include them): 0.03-0.05 s with a warm worker and its worktrees made
#: (benchmarks/hindsight.py, 2026-12-01; it was 0.1-0.2 s before worktrees were reused), where
#: 0.2 s made EXPLAIN read 2-2.5x the smallest replays.
REPLAY_FIXED_S = 0.05
#: A run is cut into tasks of at least this much estimated work (each task pays a start-up).
MIN_TASK_S = 2.0
#: Checkpoint bytes read and restored per second: a 2.4 MB checkpoint (an MLP and its SGD
#: momentum) loads from its path in 1.5-1.8 ms and restores in 0.2 ms, measured.
RESTORE_BYTES_PER_S = 1.0e9


@dataclass
class RunFacts:
    """What the store recorded about one run's timing and checkpoints.

    ``restores`` holds, per loop and checkpointed iteration, the locals that checkpoint puts
    back (empty for runs recorded before locals were saved).
    """

    seconds: dict[str, dict[int, tuple[float, float]]] = field(default_factory=dict)
    checkpoints: dict[str, dict[int, CheckpointRef]] = field(default_factory=dict)
    restores: dict[str, dict[int, frozenset[str]]] = field(default_factory=dict)
    #: per loop and checkpointed iteration, the output-only objects (progress bars) that were
    #: iterating the loop as the checkpoint was taken: nothing restores them, and they matter
    #: only where the patched code reads them as a value (florsql.record.frame_state)
    busy: dict[str, dict[int, frozenset[str]]] = field(default_factory=dict)
    #: per loop and iteration, florsql's own seconds inside the recorded iteration time: the
    #: checkpoint's copy (training thread) and write (writer thread, sharing the GIL). A
    #: replay takes no checkpoint, so its estimate leaves them out.
    recording: dict[str, dict[int, float]] = field(default_factory=dict)
    total: float = 0.0
    ended: bool = False  # the run failed or was killed: nothing after where it stopped runs
    #: the run raised after ending every outer iteration it began (its error recorded): the
    #: code after its loop runs, up to where it raised, where its replay must raise too
    failed_after: bool = False
    #: the top loop of the last top-level iteration it began (where it ended)
    last_loop: str | None = None
    unfinished: dict[str, int] = field(default_factory=dict)  # loop -> first iteration not ended
    #: loop -> iterations whose ``after:`` checkpoint was taken as the inner loop was left before
    #: it ran out (break, return or an exception; runs recorded before this was kept: none)
    left: dict[str, set[int]] = field(default_factory=dict)
    #: loop -> iteration -> why its checkpoint cannot be put into objects made as the script
    #: starts (a hook registered, a submodule swapped, a parameter group added, an object made
    #: during the run): no task starts from it (runs recorded before this was kept: none)
    unsound: dict[str, dict[int, str]] = field(default_factory=dict)
    #: loop -> iterations whose checkpoint holds the parameters' gradients (session 42; runs
    #: recorded before: none)
    grads: dict[str, set[int]] = field(default_factory=dict)
    threads: int | None = None  # torch's intra-op threads while recording (None: unknown)
    #: outer loops the run entered more than once (``fit(2); fit(2)``), and how many times: an
    #: iteration number then names one iteration of each pass, and its checkpoint file holds
    #: the last pass's, so only a replay of the whole run is exact
    reentered: dict[str, int] = field(default_factory=dict)
    #: flor.loop names the script iterated on after they were taken as left (a loop kept
    #: across an outer loop's iterations, two loops zipped: rundoc.RESUMED): what such a loop
    #: holds at a checkpoint is not restored, so only a replay of the whole run is exact
    resumed: tuple[str, ...] = ()

    def loop_seconds(self, loop: str) -> float:
        return sum(s for s, _ in self.seconds.get(loop, {}).values())

    def non_loop(self) -> float:
        """Time outside every outer loop (set-up before, evaluation after), at least 0."""
        return max(0.0, self.total - sum(self.loop_seconds(lp) for lp in self.seconds))

    def reached(self, loop: str) -> int:
        """How many iterations of outer loop ``loop`` the run began (for a run that failed or
        was killed: finished, since the one it stopped in is not replayed)."""
        its = self.seconds.get(loop, {})
        began = max(its) + 1 if its else 0
        if self.ended and loop in self.unfinished:
            return min(began, self.unfinished[loop])
        return began


def load_facts(state: PlanState, run_ids: list[str]) -> dict[str, RunFacts]:
    """Iteration times, inner-loop times and checkpoints of ``run_ids``."""
    facts: dict[str, RunFacts] = defaultdict(RunFacts)
    con = state.con
    rows = con.execute(
        """SELECT run_id, loop_name, iteration, seconds, inner_seconds, entries FROM __flor_times
           WHERE run_id IN (SELECT unnest(?::VARCHAR[]))""",
        [run_ids],
    ).fetchall()
    for run_id, loop, it, sec, inner, entries in rows:
        facts[run_id].seconds.setdefault(loop, {})[int(it)] = (float(sec), float(inner))
        if entries > 1:
            facts[run_id].reentered[loop] = max(facts[run_id].reentered.get(loop, 0), entries)
    rows = con.execute(
        """SELECT run_id, loop_name, iteration, position, file, bytes,
                  coalesce(copy_seconds, 0) + coalesce(write_seconds, 0) FROM checkpoints
           WHERE run_id IN (SELECT unnest(?::VARCHAR[]))""",
        [run_ids],
    ).fetchall()
    for run_id, loop, it, pos, file, size, own in rows:
        ref = CheckpointRef(loop, int(it), pos, file, int(size or 0))
        facts[run_id].checkpoints.setdefault(loop, {})[int(it)] = ref
        facts[run_id].recording.setdefault(loop, {})[int(it)] = float(own or 0.0)
    rows = con.execute(
        """SELECT run_id, coalesce(epoch(ended) - epoch(tstamp), 0),
                  status IN ('killed', 'failed'), status = 'failed' AND error IS NOT NULL
           FROM run_meta WHERE run_id IN (SELECT unnest(?::VARCHAR[]))""",
        [run_ids],
    ).fetchall()
    for run_id, total, ended, failed in rows:
        facts[run_id].total = float(total)
        facts[run_id].ended = bool(ended)
        facts[run_id].failed_after = bool(failed)  # until an open iteration says otherwise
    rows = con.execute(
        """SELECT run_id, arg_max(loop_name, ctx_id) FROM loops
           WHERE parent_ctx = 0 AND run_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY run_id""",
        [run_ids],
    ).fetchall()
    for run_id, last in rows:
        facts[run_id].last_loop = last
    rows = con.execute(
        """SELECT run_id, loop_name, min(iteration) FROM __flor_open
           WHERE run_id IN (SELECT unnest(?::VARCHAR[])) GROUP BY run_id, loop_name""",
        [run_ids],
    ).fetchall()
    for run_id, loop, it in rows:
        facts[run_id].unfinished[loop] = int(it)
        facts[run_id].failed_after = False
    for run_id in run_ids:
        with contextlib.suppress(OSError, ValueError):
            doc = layout.read_json(layout.run_dir(state.repo, run_id) / layout.RUN_JSON)
            counts = rundoc.torch_threads(doc)
            facts[run_id].threads = counts.intra_op if counts else None
            facts[run_id].resumed = tuple(rundoc.resumed(doc))
        for loop, recs in manifest_by_loop(layout.run_dir(state.repo, run_id)).items():
            for it, rec in recs.items():
                _note_record(facts[run_id], loop, it, rec)
    return facts


def _note_record(facts: RunFacts, loop: str, it: int, rec: dict[str, Any]) -> None:
    """What one checkpoint's manifest line says beyond its file: the locals it restores, the
    objects noted busy, whether its inner loop was left early, why it cannot be restored."""
    names: set[str] = set()
    for frame_names in (rec.get("restores") or {}).values():
        names.update(frame_names)
    facts.restores.setdefault(loop, {})[it] = frozenset(names)
    _note_busy(facts, loop, it, rec)
    if rec.get("left"):
        facts.left.setdefault(loop, set()).add(it)
    if rec.get("unsound"):
        facts.unsound.setdefault(loop, {})[it] = str(rec["unsound"])
    if isinstance(rec.get("grads"), int) and rec["grads"] >= 2:  # True (1): locals as copies
        facts.grads.setdefault(loop, set()).add(it)


def _note_busy(facts: RunFacts, loop: str, it: int, rec: dict[str, Any]) -> None:
    names = {n for frame in (rec.get("busy") or {}).values() for n in frame}
    if names:
        facts.busy.setdefault(loop, {})[it] = frozenset(names)


def plan_run(
    run_id: str,
    needs: list[NeedRow],
    patched: Patched | None,
    facts: RunFacts,
    *,
    parts: int | None = None,
    companions: tuple[tuple[str, tuple[str, ...] | None], ...] = (),
    from_start: str | None = None,
) -> RunReplay:
    """The :class:`RunReplay` of one run from its rows of the replay set.

    ``from_start``: why the run replays from its start in full (today's placed texts may
    draw in some iterations only, and no replay of this code from the start has seen them draw
    nothing yet: a task that skipped iterations would be replayed again so after it ran).

    ``companions``: ``(name, loop chain)`` of today's other statements placed beside the
    needed ones (:attr:`Patched.companions`): they run in the iterations the needed ones run,
    so the inner loops they sit in are never skipped (a draw there must happen, and be seen).
    """
    names = tuple(sorted({n.name for n in needs}))
    loop_needs = [n for n in needs if n.outer_iteration is not None]
    top = [n for n in needs if n.outer_iteration is None]
    iteration_needs = _iteration_needs(loop_needs)
    top_level = tuple(sorted({n.name for n in top}))
    unknown = any(n.chain == ANY_CHAIN for n in needs) or patched is None or patched.unknown
    unknown = unknown or bool(facts.reentered) or bool(facts.resumed)
    unknown = unknown or any(c is None for _, c in companions)
    used_loops = {lp for n in needs for lp in n.chain.split("/")[1:] if n.chain}
    used_loops |= {lp for _, chain in companions if chain for lp in chain[1:]}
    inner_name = patched.first_inner.name if patched and patched.first_inner else None
    skip = (
        ()
        if unknown or from_start or inner_name is None or inner_name in used_loops
        else (inner_name,)
    )
    parts = parts or at_once(facts.threads)
    outer = patched.outer.name if patched is not None and patched.outer else None
    if (
        from_start
        and not unknown
        and not top_level
        and outer is not None
        and all(n.loop == outer for n in iteration_needs)
    ):
        chunks = [_from_the_top(iteration_needs, facts, outer, from_start)]
    elif unknown or from_start:
        chunks = [_whole_run(iteration_needs, facts, patched, from_start)]
    else:
        assert patched is not None
        chunks = []
        loop = patched.outer.name if patched.outer else None
        loops = {n.loop for n in iteration_needs} | ({loop} if loop else set())
        # a run that raised in a later top loop (a test loop after training) reached the code
        # between the two: the replay set planned its statements there only then
        later = facts.ended and loop is not None and loop not in facts.unfinished
        later = later and facts.last_loop not in (None, loop)
        to_end = bool(top_level) and patched.after_loop
        to_end = to_end and (not facts.ended or facts.failed_after or later)
        for lp in sorted(loops):
            its = [n.iteration for n in iteration_needs if n.loop == lp]
            end = to_end and lp == loop
            if its or end:
                chunks += _loop_chunks(lp, its, end, patched, facts, parts)
        stop = facts.last_loop if later else None
        if stop is not None:
            # it ended in a later top loop: the task stops where that loop begins
            chunks = [replace(c, stop_at=stop) if c.to_end else c for c in chunks]
        if top_level and patched.head:
            chunks.append(_head_chunk(facts, loop))
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
        threads=facts.threads,
        companions=tuple(sorted({name for name, _ in companions} - set(names))),
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


# -- steps -------------------------------------------------------------------------------------
class _Stepper:
    """Builds the steps of one run's outer loop, needed iteration by needed iteration."""

    def __init__(self, loop: str, patched: Patched, facts: RunFacts, allow_rest: bool) -> None:
        self.ckpts = facts.checkpoints.get(loop, {})
        self.restores = facts.restores.get(loop, {})
        self.busy = facts.busy.get(loop, {})
        self.left = facts.left.get(loop, set())
        self.unsound = facts.unsound.get(loop, {})
        self.grads = facts.grads.get(loop, set())
        self.open_from = facts.unfinished.get(loop)  # the first iteration that never ended
        self.p = patched
        self.allow_rest = allow_rest and patched.first_inner is not None
        inner = patched.first_inner
        self.after = f"after:{inner.name}" if inner is not None else None
        self.steps: dict[int, Step] = {}
        self.starts: set[int] = set()  # iterations where a task may begin (a sound start)
        self.restore_before: dict[int, int] = {}

    def _missing(self, k: int, need: frozenset[str]) -> list[str]:
        """Names of ``need`` checkpoint ``k`` does not restore (state in a repository module
        never is: the recording lists a module as code)."""
        # A progress bar iterating the loop as the checkpoint was taken is restored by nothing;
        # it stands for itself unless the patched code reads it as a value (pbar.n).
        busy = self.busy.get(k, frozenset())
        restored = (self.restores.get(k, frozenset()) | (busy - self.p.value_read)) - self.p.unsaved
        restored -= self.p.stale  # the old run's value, not today's code's
        restored -= self.p.workers  # a DataLoader's persistent worker processes
        # An object whose method iterates the loop (progress.wrap(flor.loop(...))) was saved
        # mid-iteration by runs recorded before such objects were noted: restored by nothing.
        wrappers = self.p.first_inner.wrappers if self.p.first_inner is not None else frozenset()
        # (a progress bar noted busy is output only: it stands for itself unless read, above)
        wrappers -= busy - self.p.value_read
        restored -= wrappers
        return sorted(
            f"{n} (module state)"
            if n in self.p.unsaved
            else f"{n} (restored by no checkpoint: a progress bar, an open file, an lru_cache)"
            if n in busy
            else f"{n} (changed by the loop's wrapper as the loop ends)"
            if n in wrappers
            else f"{n} (today's code changes it: a checkpoint holds the old run's value)"
            if n in self.p.stale
            else f"{n} (a DataLoader's persistent worker processes: no checkpoint holds them)"
            if n in self.p.workers
            else n
            for n in need - restored
        )

    def rest_why(self, j: int, fresh: bool) -> tuple[bool, str]:
        """Whether iteration ``j`` may skip its first inner loop, and why (not)."""
        if not self.allow_rest:
            return False, "no rest mode"
        ref = self.ckpts.get(j)
        if ref is None or ref.position != self.after:
            return False, f"no {self.after} checkpoint"
        if j in self.unsound:
            return False, f"its checkpoint cannot be restored: {self.unsound[j]}"
        if (
            self.p.first_inner is not None
            and self.p.first_inner.grads_after
            and j not in self.grads
        ):
            # a checkpoint recorded before session 42 holds no gradient (and its locals no
            # reference to one: ``g0 = net[0].weight.grad`` came back a copy)
            return False, "reads .grad after the loop (its checkpoint holds no gradients)"
        if self.p.first_inner is not None and self.p.first_inner.backprop_after:
            return False, (
                "back-propagates after the loop (through a graph the loop may have built: a "
                "checkpoint saves its tensors without it)"
            )
        if self.p.first_inner is not None and self.p.first_inner.yields:
            return False, (
                f"its {self.p.first_inner.name} loop yields (a generator owns it): what it "
                "yields goes to a consumer no checkpoint holds"
            )
        if j in self.left and not self._left_like_break(j):
            return False, (
                f"its {self.p.first_inner.name if self.p.first_inner else 'inner'} loop was left"
                " early (break, return or an exception), and skipping it may take another path"
            )
        inner, outer = self.p.first_inner, self.p.outer
        entered = inner.entered if inner is not None else ()
        if inner is not None and outer is not None and inner.scope != outer.scope:
            entered += outer.body_withs  # a with around the call of the function with the loop
        if fresh and self.p.pre_carried:
            carried = ", ".join(sorted(self.p.pre_carried)[:3])
            return False, (
                f"today's statement before the {inner.name if inner else 'inner'} loop reads "
                f"{carried}, carried from the previous iteration: only that iteration gives it"
            )
        if fresh and entered:  # its __enter__ would run on the state before the restore
            return False, (
                f"`with {entered[0]}` around the loop keeps what it read on entry, and only "
                "the previous iteration gives it that state"
            )
        need = self.p.rest_needs(fresh)
        missing = self._missing(j, need)
        if missing:
            return False, f"reads {', '.join(missing[:4])}, not captured"
        shown = sorted(need)
        restored = f"{', '.join(shown[:4])} captured" if shown else "nothing else to restore"
        return True, restored

    def _left_like_break(self, j: int) -> bool:
        """Whether the inner loop that was left early in iteration ``j`` can only have been
        left by ``break``: then the code after it runs as after a loop that ran out, as in
        rest mode. An exception that left the outer iteration too left it unended."""
        inner, outer = self.p.first_inner, self.p.outer
        return (
            inner is not None
            and outer is not None
            and inner.left_safely
            and inner.scope == outer.scope
            and (self.open_from is None or j < self.open_from)
        )

    def _add(self, j: int, mode: str, why: str) -> None:
        restore = j if mode == "rest" else self.restore_before.get(j)
        self.steps[j] = Step(j, "rest" if mode == "rest" else "full", restore, why)

    def need(self, j: int, *, statement_needs_start: bool) -> None:
        """Make iteration ``j`` run its statements in its true state."""
        if j in self.steps:
            return
        if not statement_needs_start:
            fresh = (j - 1) not in self.steps
            ok, why = self.rest_why(j, fresh=fresh)
            if ok:
                self._add(j, "rest", f"rest: {why}")
                if fresh or self.rest_why(j, fresh=True)[0]:
                    self.starts.add(j)  # a task may begin here: the cut points of parallelism
                return
            if fresh:
                self.reach_start(j)
                ok, why2 = self.rest_why(j, fresh=False)
                if ok and j not in self.restore_before:
                    self._add(j, "rest", f"rest: {why2}")
                    return
            self._add(j, "full", f"full: {why}")
            return
        self.reach_start(j)
        self._add(j, "full", "full: a needed statement is in or before the inner loop")

    def reach_start(self, j: int) -> None:
        """Steps so that iteration ``j`` starts from its true state."""
        if j == 0:
            self.starts.add(0)
            return
        if (j - 1) in self.steps:
            return
        reason = "no checkpoint before it"
        for k in range(j - 1, -1, -1):
            if k in self.steps:
                self._lead_in(k + 1, j, "full: leads to the next needed iteration")
                return
            ref = self.ckpts.get(k)
            if ref is None:
                continue
            if ref.position.startswith("after:"):
                ok, why = self.rest_why(k, fresh=True)
                if ok:
                    self._add(k, "rest", f"rest: starts here; {why}")
                    self.starts.add(k)
                    self._lead_in(k + 1, j, "full: leads to the next needed iteration")
                    return
                reason = f"checkpoint {k}: {why}"
            elif k in self.unsound:
                reason = f"checkpoint {k} cannot be restored: {self.unsound[k]}"
            else:
                missing = self._missing(k, self.p.start_needs(to_end=False))
                if not missing:
                    self.restore_before[k + 1] = k
                    self.starts.add(k + 1)
                    if k + 1 < j:
                        self._add(k + 1, "full", f"full: starts from checkpoint {k}")
                    self._lead_in(k + 2, j, "full: leads to the next needed iteration")
                    return
                reason = f"checkpoint {k}: carried {', '.join(missing[:4])} not captured"
        self.starts.add(0)
        self._lead_in(0, j, f"full: from the top ({reason})")

    def _lead_in(self, first: int, stop: int, why: str) -> None:
        for m in range(first, stop):
            if m not in self.steps:
                self._add(m, "full", why)

    def reach_end(self, last: int) -> None:
        """Make the state at the end of iteration ``last`` true (statements after the loop)."""
        if last in self.steps:
            return
        self.need(last, statement_needs_start=False)


def plan_steps(
    loop: str,
    iterations: list[int],
    patched: Patched,
    facts: RunFacts,
    *,
    to_end: bool,
    allow_rest: bool = True,
) -> tuple[list[Step], set[int]]:
    """Every step that makes ``iterations`` (and, ``to_end``, the loop's end) true, in order,
    and the iterations where a task may start."""
    st = _Stepper(loop, patched, facts, allow_rest)
    reached = facts.reached(loop)
    needs_start = patched.need_start
    for j in sorted(set(iterations)):
        if reached and j >= reached:
            continue  # runs end where they ended: never past the last iteration begun
        st.need(j, statement_needs_start=needs_start)
    if to_end and reached:
        st.reach_end(reached - 1)
    return [st.steps[k] for k in sorted(st.steps)], st.starts


def _loop_chunks(
    loop: str,
    iterations: list[int],
    to_end: bool,
    patched: Patched,
    facts: RunFacts,
    parts: int,
) -> list[Chunk]:
    steps, starts = plan_steps(loop, iterations, patched, facts, to_end=to_end)
    if not steps:
        return []
    times = facts.seconds.get(loop, {})
    ckpts = facts.checkpoints.get(loop, {})
    own = facts.recording.get(loop, {})
    cost = {s.iteration: _step_seconds(s, times, ckpts, own) for s in steps}
    groups = _cut(steps, starts, cost, parts)
    wanted = set(iterations)
    chunks = []
    for g, group in enumerate(groups):
        its = tuple(s.iteration for s in group if s.iteration in wanted)
        last = g == len(groups) - 1
        end = to_end and last
        fallback, _ = plan_steps(loop, list(its), patched, facts, to_end=end, allow_rest=False)
        first = group[0]
        ckpt = ckpts.get(first.restore) if first.restore is not None else None
        seconds = TASK_OVERHEAD_S + sum(cost[s.iteration] for s in group)
        kind: ChunkKind = "iterations" if its else "tail"
        has_rest = any(s.mode == "rest" for s in group)
        chunks.append(
            Chunk(
                kind,
                loop,
                its,
                first.iteration,
                ckpt,
                end,
                round(seconds, 3),
                tuple(group),
                tuple(fallback) if has_rest else None,
            )
        )
    return chunks


def _cut(
    steps: list[Step], starts: set[int], cost: dict[int, float], parts: int
) -> list[list[Step]]:
    """Cut ``steps`` into at most ``parts`` tasks, only where a task may start, balancing the
    estimated seconds (a new task pays a start-up: none shorter than :data:`MIN_TASK_S`)."""
    segments: list[list[Step]] = []
    for i, s in enumerate(steps):
        if i == 0 or (s.iteration in starts and s.restore is not None):
            segments.append([s])
        else:
            segments[-1].append(s)
    if parts <= 1 or len(segments) == 1:
        return [[s for seg in segments for s in seg]]
    total = sum(cost.values())
    target = max(total / parts, MIN_TASK_S)
    groups: list[list[Step]] = [[]]
    acc = 0.0
    for seg in segments:
        seg_cost = sum(cost[s.iteration] for s in seg)
        if groups[-1] and acc + seg_cost > target and len(groups) < parts:
            groups.append([])
            acc = 0.0
        groups[-1] += seg
        acc += seg_cost
    return groups


def _step_seconds(
    step: Step,
    times: dict[int, tuple[float, float]],
    ckpts: dict[int, CheckpointRef],
    own: dict[int, float] | None = None,
) -> float:
    """An iteration's replay seconds: as recorded, less florsql's own checkpoint work in it
    (``own``), less the inner loops in rest mode, plus reading the checkpoint it restores."""
    sec, inner = times.get(step.iteration, (0.0, 0.0))
    mine = (own or {}).get(step.iteration, 0.0)
    restore = ckpts.get(step.restore) if step.restore is not None else None
    load = restore.bytes / RESTORE_BYTES_PER_S if restore is not None else 0.0
    if step.mode == "rest":
        return max(0.0, sec - inner - mine) + load
    return max(inner, sec - mine) + load


def _head_chunk(facts: RunFacts, loop: str | None = None) -> Chunk:
    """The task of the code before the outer loop ``loop``: it stops where that loop begins.
    Before session 50 it named no loop, so the replay intercepted none and ran the whole
    script: all of a finished run's training for one value, and for a run that failed, into
    its own error (``RuntimeError: boom`` at epoch 3), the value said NULL for it."""
    seconds = TASK_OVERHEAD_S + facts.non_loop() / 2
    return Chunk("head", loop, (), None, None, False, round(seconds, 3))


def _from_the_top(needs: list[IterationNeed], facts: RunFacts, loop: str, why: str) -> Chunk:
    """One task from the top of the script, every iteration of ``loop`` in full up to the last
    one needed (as ``runner._from_the_start`` would replay the run after tasks that skipped
    some): a later query of the same code up to there then skips iterations again."""
    its = tuple(sorted({n.iteration for n in needs if n.loop == loop}))
    last = its[-1] if its else -1
    reached = facts.reached(loop)
    if facts.ended:
        its = tuple(i for i in its if i < reached)
        last = min(last, reached - 1)
    steps = tuple(
        Step(i, "full", None, f"full: from the run's start ({why})") for i in range(last + 1)
    )
    recorded = facts.seconds.get(loop, {})
    seconds = TASK_OVERHEAD_S + sum(recorded.get(i, (0.0, 0.0))[0] for i in range(last + 1))
    return Chunk("iterations", loop, its, 0, None, False, round(seconds, 3), steps, None)


def _whole_run(
    needs: list[IterationNeed],
    facts: RunFacts,
    patched: Patched | None,
    from_start: str | None = None,
) -> Chunk:
    loop = patched.outer.name if patched is not None and patched.outer is not None else None
    loop = loop or next(iter(facts.seconds), None)
    reached = facts.reached(loop) if loop else 0
    if facts.reentered:
        entered = ", ".join(f"{lp} {n} times" for lp, n in sorted(facts.reentered.items()))
        why = f"full: the whole run (the run entered its outer loop more than once: {entered})"
    elif facts.resumed:
        loops = ", ".join(f"flor.loop({n!r})" for n in facts.resumed)
        why = (
            f"full: the whole run (it iterated {loops} on after the loop around it moved on: "
            "a checkpoint does not hold where it had got to)"
        )
    elif from_start and not (patched is None or patched.unknown):
        why = f"full: the whole run ({from_start})"
    else:
        why = f"full: the whole run ({patched.whole_why if patched is not None else 'no analysis'})"
    steps = tuple(Step(i, "full", None, why) for i in range(reached))
    its = tuple(sorted({n.iteration for n in needs if n.loop == loop})) or tuple(range(reached))
    its = tuple(i for i in its if i < reached) if facts.ended else its
    # a run that failed or was killed never got past its loop, save one that raised after it
    to_end = not facts.ended or facts.failed_after
    return Chunk(
        "all", loop, its, 0, None, to_end, round(TASK_OVERHEAD_S + facts.total, 3), steps, None
    )


def chunks_from_files(
    repo: Path,
    run_id: str,
    source: str,
    names: tuple[str, ...],
    iterations: list[int] | None,
    *,
    total: int,
    parts: int = 1,
    loop: str | None = None,
) -> tuple[Chunk, ...]:
    """The tasks of one run planned from its files alone (no index): for callers of
    :func:`florsql.replay.run_replay` that name the iterations themselves. ``source`` is the
    patched script; iteration times are taken as equal."""
    patched = analyze_patched(source, names, loop, _module_names(repo, run_id, source))
    facts = RunFacts()
    loop = patched.outer.name if patched.outer is not None else None
    if loop is None:
        return (_head_chunk(facts),) if names else ()
    facts.seconds[loop] = {i: (1.0, 0.5) for i in range(total)}
    for it, rec in manifest_records(layout.run_dir(repo, run_id), loop).items():
        ref = CheckpointRef(loop, it, rec["position"], rec["file"], int(rec.get("bytes", 0)))
        facts.checkpoints.setdefault(loop, {})[it] = ref
        _note_record(facts, loop, it, rec)
    if patched.unknown or iterations is None:
        its = list(range(total)) if iterations is None else iterations
        needs = [IterationNeed(loop, i, names) for i in its]
        return (_whole_run(needs, facts, patched),)
    chunks = _loop_chunks(loop, iterations, patched.after_loop, patched, facts, parts)
    if patched.head:
        chunks.append(_head_chunk(facts, loop))
    return tuple(chunks)


def _module_names(repo: Path, run_id: str, source: str) -> frozenset[str]:
    """:attr:`Patched.unsaved` of a run from its ``run.json`` (the files it imported, at its
    version): state in the repository's modules that no checkpoint saves."""
    import json

    from florsql.versions import file_at

    try:
        doc = json.loads((layout.run_dir(repo, run_id) / "run.json").read_text(encoding="utf-8"))
        filename, vid, files = str(doc["filename"]), str(doc["vid"]), list(doc.get("files") or [])
    except (OSError, ValueError, KeyError, TypeError):
        return frozenset()
    texts: dict[str, str | None] = {}
    for path in files:
        if path != filename:
            try:
                texts[path] = file_at(repo, vid, path)
            except Exception:  # not readable at that version: taken as keeping state
                texts[path] = None
    return module_names(source, filename, texts)


# -- the plan's cost ---------------------------------------------------------------------------
def at_once(threads: int | None, cores: int | None = None) -> int:
    """How many tasks of ``threads`` torch threads each run at once on ``cores`` (default: this
    machine's): never more threads than cores, at least one task.

    Example:
        >>> at_once(1, 2), at_once(2, 2), at_once(8, 2), at_once(None, 4)
        (2, 1, 1, 4)
    """
    cores = cores or os.cpu_count() or 1
    return max(1, cores // max(1, threads or 1))


def schedule(seconds: list[float], slots: int) -> float:
    """Elapsed time of tasks taken in order, each by the first free of ``slots`` workers (what
    the local executor does).

    Example:
        >>> schedule([2.0, 1.0, 1.0], 2), schedule([2.0, 1.0, 1.0], 1)
        (2.0, 4.0)
    """
    free = [0.0] * max(1, slots)
    for s in seconds:
        k = free.index(min(free))
        free[k] += s
    return max(free)


#: Calibration (:func:`calibration`): at most this many recent tasks, at least this many, and
#: the bounds of the factor (a task estimated under this is left out: its time is noise).
CALIBRATION_TASKS = 20
CALIBRATION_MIN_TASKS = 3
CALIBRATION_BOUNDS = (1 / 3, 3.0)
CALIBRATION_MIN_ESTIMATE_S = 0.05


def calibration(con: duckdb.DuckDBPyConnection) -> tuple[float, int]:
    """``(factor, tasks)``: the median, over this repository's most recent replay tasks that
    carry an estimate, of the wall time each took (fork to exit, its ``done.json`` timings)
    divided by the planner's estimate for it; ``(1.0, 0)`` with fewer than
    :data:`CALIBRATION_MIN_TASKS` of them. The estimates come from recorded iteration times
    and constants measured on a quiet machine; a busier or slower machine than the recording's,
    or a warm worker quicker than the constants, shows in these ratios, and the next estimate
    follows them (clamped to :data:`CALIBRATION_BOUNDS`)."""
    try:
        rows = con.execute(
            "SELECT task_seconds / estimate FROM replays WHERE estimate >= ? AND "
            "task_seconds > 0 ORDER BY started DESC, replay_id DESC, task_id LIMIT ?",
            [CALIBRATION_MIN_ESTIMATE_S, CALIBRATION_TASKS],
        ).fetchall()
    except Exception:  # an index without the columns (opened read-only, older): no calibration
        return 1.0, 0
    ratios = [float(r[0]) for r in rows if r[0] is not None]
    if len(ratios) < CALIBRATION_MIN_TASKS:
        return 1.0, 0
    low, high = CALIBRATION_BOUNDS
    return round(min(high, max(low, statistics.median(ratios))), 3), len(ratios)


def plan_cost(
    runs: list[RunReplay],
    *,
    warm: bool | None = None,
    workers: int | None = None,
    cores: int | None = None,
    forks: bool = True,
    scale: tuple[float, int] = (1.0, 0),
    start: float | None = None,
    machine_scale: bool = False,
) -> Cost:
    """The cost of replaying ``runs``: the work, and the wall time with every start-up cost.

    ``warm``: whether the warm worker already runs (True) or must start first (False; None:
    not known when planning, counted as False). ``forks=False``: the executor starts an
    interpreter per task (no warm worker): every task pays the worker start.
    ``workers``: the executor's limit on tasks at once. ``scale``: ``(factor, tasks)`` of
    :func:`calibration`; each task's estimate is multiplied by the factor (``machine_scale``:
    the factor is this machine's, see :mod:`florsql.replay.timings`). ``start``: the worker
    start measured on this machine (None: :data:`WORKER_START_S`).
    """
    chunks = [c for r in runs for c in r.chunks]
    threads = max((r.threads or 1 for r in runs), default=1)
    cores = cores or os.cpu_count() or 1
    slots = at_once(threads, cores)
    if workers:
        slots = min(slots, workers)
    factor, scaled_from = scale
    start_s = WORKER_START_S if start is None or start <= 0 else start
    per_task = 0.0 if forks else start_s
    wall = REPLAY_FIXED_S + schedule([c.seconds * factor + per_task for c in chunks], slots)
    counted = 0.0 if forks else start_s
    if forks and not warm:
        wall += start_s
        counted = start_s
    return Cost(
        machine_scale=machine_scale,
        start=round(counted, 3),
        start_measured=counted > 0 and start is not None and start > 0,
        scale=factor,
        scaled_from=scaled_from,
        seconds=round(sum(c.seconds for c in chunks) * factor, 3),
        tasks=len(chunks),
        runs=len(runs),
        iterations=sum(len(r.needs) for r in runs),
        checkpoint_bytes=sum(c.checkpoint.bytes for c in chunks if c.checkpoint is not None),
        wall=round(wall, 3) if chunks else 0.0,
        at_once=slots,
        threads=threads,
        cores=cores,
        warm=warm,
        forks=forks,
    )


def with_executor(
    plan: ReplayPlan,
    *,
    warm: bool | None,
    workers: int | None,
    forks: bool = True,
    scale: tuple[float, int] = (1.0, 0),
    start: float | None = None,
    machine_scale: bool = False,
) -> ReplayPlan:
    """``plan`` with its wall time for the executor that will run it: whether its warm worker
    already runs, whether it forks tasks from one at all, and how many workers it allows;
    ``scale``: the :func:`calibration` of its tasks' estimates (``machine_scale``: this
    machine's); ``start``: its warm worker's start measured on this machine, if known."""
    if plan.empty:
        return plan
    runs = list(plan.runs())
    cost = plan_cost(
        runs,
        warm=warm,
        workers=workers,
        cores=plan.cost.cores,
        forks=forks,
        scale=scale,
        start=start,
        machine_scale=machine_scale,
    )
    return replace(plan, cost=cost)
