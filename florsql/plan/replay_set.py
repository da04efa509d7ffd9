"""The replay set: which (run, outer iteration) must compute which hindsight names.

Computed in DuckDB. For each hindsight name a reference reads, and each file whose current code
logs it: the runs that executed that file (as their script or an imported module, any version)
are matched with the loop contexts they recorded
whose chain equals the statement's chain (``epoch/step``; the top level for a statement outside
loops; every context when the chain is unknown). The reference's pushed predicate is evaluated
on those contexts exactly as ``logs`` would evaluate it (same column names and types), and
contexts whose outer iteration is already covered for the name (a recorded value, or a replay
task that computed that outer iteration) are dropped. What remains is grouped by outer
iteration: the grain of coverage. A replayed outer iteration stores the name in every one of its
inner iterations (an inner-loop predicate selects outer iterations, it never narrows what a
replay stores), so a later, wider query finds nothing half-computed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlglot import exp

from florsql.errors import FlorError
from florsql.fold import fold, fold_sql
from florsql.plan.blame import blame
from florsql.plan.pushdown import predicate_sql
from florsql.plan.relax import Relaxed
from florsql.plan.replay_plan import RememberedFailure, Unreached
from florsql.plan.state import NeedRow, PlanState
from florsql.plan.stats import loop_column, outer_loops, string_literal
from florsql.store.replays import describe_failure, patched_hash
from florsql.store.schema import quote

__all__ = ["ANY_CHAIN", "replay_set"]

ANY_CHAIN = "*"

_LACK = f"""
WITH need(__name, __src, __want, __tail, __partial, __later) AS (VALUES {{values}}),
lack AS (
    SELECT DISTINCT n.__name, n.__want, n.__tail, n.__partial, m.run_id, m.vid AS __vid,
           m.filename AS __file,
           m.status IN ('killed', 'failed', 'running') AS __ended,
           m.status IS NOT DISTINCT FROM 'running' AS __running,
           -- it raised after ending every outer iteration it began: it reached the code
           -- after its loop, up to the line that raised (a replay must raise there too); or
           -- in a loop today's code has after the statement (a test loop after training:
           -- session 51, a statement between the two was NULL "in the iteration the run
           -- ended in and after it")
           (m.status = 'failed' AND m.error IS NOT NULL OR m.status = 'killed' AND EXISTS (
               -- killed: only where it recorded an iteration of such a later loop (it got
               -- past the statement; sweep X, a run killed in its test loop)
               SELECT 1 FROM __flor_times t WHERE t.run_id = m.run_id
               AND list_contains(n.__later, t.loop_name)))
           AND NOT EXISTS (
               SELECT 1 FROM __flor_open o WHERE o.run_id = m.run_id
               AND NOT list_contains(n.__later, o.loop_name)) AS __failed_after
    FROM need n JOIN run_meta m ON list_contains(m.files, n.__src)
    WHERE true{{limit}}
    -- a run with an arg of that name reads the arg in every row: it lacks no log of it
    AND NOT EXISTS (SELECT 1 FROM args a WHERE a.run_id = m.run_id
                    AND {fold_sql("a.name")} = {fold_sql("n.__name")})
),"""

#: Contexts one by one: needed when the predicate reads an inner loop's column.
_PER_CONTEXT = """
cand AS (
    SELECT l.*, c.chain AS __chain, c.outer_loop AS __outer_loop,
           c.outer_iteration AS __outer_it, c.inner_loop AS __inner_loop,
           c.inner_iteration AS __inner_it{loop_cols}
    FROM lack l JOIN __flor_ctx c
      ON c.run_id = l.run_id AND (c.chain = l.__want OR l.__want = '*')
    UNION ALL BY NAME
    SELECT l.*, '' AS __chain FROM lack l WHERE l.__want IN ('', '*')
),"""

#: Outer iterations only: exact when the predicate reads no inner loop (the usual case).
_PER_ITERATION = """
cand AS (
    SELECT l.*, c.chain AS __chain, c.outer_loop AS __outer_loop,
           c.outer_iteration AS __outer_it, c.inner_loop AS __inner_loop,
           NULL::BIGINT AS __inner_it{loop_cols}
    FROM lack l JOIN __flor_chains c
      ON c.run_id = l.run_id AND (c.chain = l.__want OR l.__want = '*')
    UNION ALL BY NAME
    SELECT l.*, '' AS __chain FROM lack l WHERE l.__want IN ('', '*')
),"""

_NEEDED = f"""
logs AS (
    SELECT {{run_cols}}, cand.* EXCLUDE (run_id),
           CASE WHEN NOT cand.__ended THEN true
                WHEN cand.__outer_it IS NOT NULL THEN NOT EXISTS (
                    SELECT 1 FROM __flor_open o WHERE o.run_id = cand.run_id
                    AND o.loop_name = cand.__outer_loop AND o.iteration = cand.__outer_it)
                ELSE (NOT cand.__tail OR cand.__failed_after) AND EXISTS (
                    SELECT 1 FROM __flor_chains c WHERE c.run_id = cand.run_id)
           END AS __reached
    FROM cand JOIN runs r ON r.run_id = cand.run_id
),
needed AS (
    SELECT * FROM logs WHERE ({{predicate}}) AND CASE WHEN NOT logs.__partial OR NOT EXISTS (
        -- partial only where the run recorded it at that chain (one logged elsewhere is
        -- never replayed for it: the session 48 rule)
        SELECT 1 FROM log_records r JOIN __flor_ctx x ON x.run_id = r.run_id
        AND x.ctx_id = r.ctx_id WHERE r.run_id = logs.run_id AND x.chain = logs.__chain
        AND {fold_sql("r.name")} = {fold_sql("logs.__name")}) THEN NOT EXISTS (
        SELECT 1 FROM __flor_cover v WHERE v.run_id = logs.run_id
        AND v.name = {fold_sql("logs.__name")}
        AND v.outer_loop IS NOT DISTINCT FROM logs.__outer_loop
        AND v.outer_iteration IS NOT DISTINCT FROM logs.__outer_it)
    -- today's statement logs it in every inner iteration: an outer iteration is covered once a
    -- task computed it, or where every inner context of the chain holds a recorded value
    -- (session 51: ``if step % 2 == 0`` old, every step today, stayed NULL at the odd steps)
    ELSE NOT EXISTS (
        SELECT 1 FROM __flor_replayed v WHERE v.run_id = logs.run_id
        AND v.name = {fold_sql("logs.__name")}
        AND v.outer_loop IS NOT DISTINCT FROM logs.__outer_loop
        AND v.outer_iteration IS NOT DISTINCT FROM logs.__outer_it)
    AND EXISTS (
        SELECT 1 FROM __flor_ctx c WHERE c.run_id = logs.run_id AND c.chain = logs.__chain
        AND c.outer_loop = logs.__outer_loop AND c.outer_iteration = logs.__outer_it
        AND NOT EXISTS (SELECT 1 FROM log_records r WHERE r.run_id = c.run_id
                        AND r.ctx_id = c.ctx_id
                        AND {fold_sql("r.name")} = {fold_sql("logs.__name")}))
    END
)
SELECT n.__name, n.run_id, any_value(n.__vid), n.__file, n.__outer_loop, n.__outer_it,
       n.__chain, any_value(n.__inner_loop), bool_and(n.__reached), bool_or(n.__running)
FROM needed n
GROUP BY n.__name, n.run_id, n.__file, n.__outer_loop, n.__outer_it, n.__chain
"""


def replay_set(state: PlanState) -> None:
    """Rule: fill ``state.needs`` (and ``state.unplaceable``) from the index."""
    merged: dict[tuple[str, str, int | None, str], NeedRow] = {}
    unreached: dict[str, set[str]] = {}
    #: runs still recording: what they already got to is left NULL, with a warning
    running: dict[str, set[str]] = {}
    for ref_id, names in state.hindsight_names().items():
        predicate = predicate_sql(state.pushed.get(ref_id) or Relaxed(None, exact=False))
        if predicate == "false":
            continue
        values = _need_values(state, names)
        if not values:
            continue
        per_context = _reads_inner_loop(state, ref_id)
        for row in state.con.execute(_sql(state, values, predicate, per_context)).fetchall():
            need = NeedRow(
                name=row[0],
                run_id=row[1],
                vid=row[2],
                filename=row[3],
                outer_loop=row[4],
                outer_iteration=row[5],
                chain=row[6],
                inner_loop=row[7],
                inner_iterations=(),  # every inner iteration: coverage is per outer iteration
                inner_total=0,
            )
            if row[9]:
                if row[8]:
                    running.setdefault(need.run_id, set()).add(need.name)
                continue
            if not row[8]:
                unreached.setdefault(need.run_id, set()).add(need.name)
                continue
            merged[(need.name, need.run_id, need.outer_iteration, need.chain)] = need
    needs = sorted(
        merged.values(), key=lambda n: (n.run_id, n.name, n.outer_iteration or -1, n.chain)
    )
    needs, other = _other_statements(state, needs)
    needs = _without_today_s_code(state, needs)
    state.needs = _without_remembered_failures(state, needs)
    for run_id, never in _find_unplaceable(state).items():
        unreached.setdefault(run_id, set()).update(never)
    state.unreached = (
        _ended_runs(state, unreached)
        + other
        + [
            Unreached(run_id, tuple(sorted(names)), "still running", running=True)
            for run_id, names in sorted(running.items())
        ]
    )


def _other_statements(
    state: PlanState, needs: list[NeedRow]
) -> tuple[list[NeedRow], list[Unreached]]:
    """``needs`` less those of runs that recorded the name, in other iterations, with another
    statement than today's (:func:`florsql.plan.guards.other_statement`): filling the rest
    with today's values would mix two definitions in one run's column (sweep W, session 51:
    ``*3`` recorded in the even epochs, today's ``*4`` replayed in the odd ones, silently).
    They stay NULL, said of the run (:class:`Unreached` with ``statement``)."""
    from florsql.plan.guards import other_statement
    from florsql.versions import text_reader

    pairs = {(n.run_id, fold(n.name)) for n in needs}
    if not pairs:
        return needs, []
    runs = sorted({r for r, _ in pairs})
    recorded = {
        (r, n)
        for r, n in state.con.execute(
            "SELECT DISTINCT run_id, name FROM __flor_cover WHERE recorded"
            " AND run_id IN (SELECT unnest(?::VARCHAR[]))",
            [runs],
        ).fetchall()
    } & pairs
    if not recorded:
        return needs, []
    text = text_reader(state.repo)

    kept: list[NeedRow] = []
    other: dict[str, tuple[set[str], str]] = {}
    for need in needs:
        if (need.run_id, fold(need.name)) in recorded:
            today, old = text(None, need.filename), text(need.vid, need.filename)
            at = None if need.chain == ANY_CHAIN else tuple(c for c in need.chain.split("/") if c)
            why = other_statement(today, old, need.name, at) if today and old else None
            if why is not None:
                other.setdefault(need.run_id, (set(), why))[0].add(need.name)
                continue
        kept.append(need)
    out = [
        Unreached(run_id, tuple(sorted(names)), why, statement=True)
        for run_id, (names, why) in sorted(other.items())
    ]
    return kept, out


def _without_today_s_code(state: PlanState, needs: list[NeedRow]) -> list[NeedRow]:
    """``needs`` less those of runs that ran today's very files (the version's text of each
    file the run executed is today's) and ended normally: they ran today's statement in every
    iteration they ran, so where they hold no value, today's code logs none there (its guard,
    ``if epoch % 3 == 0:``, was false), and a replay, running the same code from the same
    state, would compute nothing (session 53: every run of today's code was replayed in each
    iteration its own guard skipped, once some older run lacked the name). A run that failed,
    was killed or is still running keeps its needs (what it never reached is decided there)."""
    runs = sorted({n.run_id for n in needs})
    if not runs:
        return needs
    finished = {
        r: {*(files or ())}
        for r, files in state.con.execute(
            "SELECT run_id, files FROM run_meta WHERE status = 'finished'"
            " AND run_id IN (SELECT unnest(?::VARCHAR[]))",
            [runs],
        ).fetchall()
    }
    ran = _ran_today_s_files(state)
    kept = []
    for need in needs:
        if need.run_id in finished and ran(
            need.vid, need.filename, finished[need.run_id], need.name
        ):
            state.ran_today.setdefault(need.name, set()).add(need.run_id)
            continue
        kept.append(need)
    return kept


def _ran_today_s_files(state: PlanState) -> Callable[[str, str, set[str], str], bool]:
    """Whether a run of version ``vid`` that executed ``files`` ran today's very code of a
    statement of ``name`` in ``filename``: every file it executed is today's text (the statement
    may sit in a module it imported: sweep AB, an unchanged script whose utils.py gained it was
    left NULL), and no module its guard reads differs (:func:`florsql.propagate.modules.
    guard_modules_differ`, session 55: ``try: from local_config import EVERY`` with ``except
    ImportError: from config import EVERY``, ``local_config.py`` new today)."""
    from florsql.propagate.modules import guard_modules_differ
    from florsql.versions import text_reader

    text = text_reader(state.repo)

    def same(vid: str, path: str) -> bool:
        today = text(None, path)
        return today is not None and today == text(vid, path)

    def ran(vid: str, filename: str, files: set[str], name: str) -> bool:
        if not all(same(vid, p) for p in sorted(files | {filename})):
            return False
        here = text(None, filename)
        return here is not None and (
            guard_modules_differ(
                lambda p: text(None, p), lambda p: text(vid, p), filename, here, here, name
            )
            is None
        )

    return ran


def _need_values(state: PlanState, names: tuple[str, ...]) -> list[str]:
    values = []
    for filename, code in state.catalog.scripts.items():
        for name in names:
            for site in code.sites_of(name):
                want = ANY_CHAIN if site.chain is None else "/".join(site.chain)
                # The script's own spelling: its replay logs the name as its code spells it.
                # After the loops (or unknown): a run that ended early never got there.
                tail = site.chain is None or (site.chain == () and site.where != "head")
                # in an inner loop, logged in each of its iterations today: coverage by the
                # inner contexts' records (see ``needed``)
                # (or under conditions: a version's other guard leaves inner iterations
                # today's may log in; runs of a version with today's statement as it is are
                # left out in assemble: session 53)
                partial = bool(site.chain and len(site.chain) > 1)
                # the top loops after it in today's file (where it is outside every loop)
                later = [
                    n
                    for line, names in code.top_loops
                    if site.chain == () and line == site.line and site.file in (filename, "")
                    for n in names
                ]
                after = "[" + ", ".join(map(string_literal, later)) + "]::VARCHAR[]"
                row = f"({string_literal(site.name)}, {string_literal(filename)}, "
                row += f"{string_literal(want)}, {str(tail).lower()}, {str(partial).lower()}, "
                row += f"{after})"
                if row not in values:
                    values.append(row)
    return values


def _reads_inner_loop(state: PlanState, ref_id: int) -> bool:
    """Whether the pushed predicate reads a loop that some run nests in another loop."""
    relaxed = state.pushed.get(ref_id)
    if relaxed is None or relaxed.expression is None:
        return False
    outer = outer_loops(state.con)
    loops = set(state.catalog.loops)
    names = {fold(c.name) for c in relaxed.expression.find_all(exp.Column)}
    return any(n in {fold(loop) for loop in loops} and n not in outer for n in names)


def _sql(state: PlanState, values: list[str], predicate: str, per_context: bool) -> str:
    catalog = state.catalog
    limit = ""
    if state.limit_runs is not None:
        kept = ", ".join(map(string_literal, sorted(state.limit_runs))) or "NULL"
        limit = f" AND m.run_id IN ({kept})"
    if per_context:
        loop_cols = "".join(f", c.{quote(loop_column(n))} AS {quote(n)}" for n in catalog.loops)
        body = _PER_CONTEXT
    else:
        outer = outer_loops(state.con)
        loop_cols = "".join(
            f", CASE WHEN {fold_sql('c.outer_loop')} = {string_literal(fold(n))}"
            f" THEN c.outer_iteration END AS {quote(n)}"
            if fold(n) in outer
            else f", NULL::BIGINT AS {quote(n)}"
            for n in catalog.loops
        )
        body = _PER_ITERATION
    run_cols = ", ".join(f"r.{quote(n)}" for n in catalog.names("meta", "arg"))
    return (
        _LACK.format(values=", ".join(values), limit=limit)
        + body.format(loop_cols=loop_cols)
        + _NEEDED.format(run_cols=run_cols, predicate=predicate)
    )


def _find_unplaceable(state: PlanState) -> dict[str, set[str]]:
    """Names whose loop chain a lacking run never recorded: no context to compute them in
    (keyed by the run's version and main script). A run still recording is not one: it has not
    got there yet (it read "the run was killed or failed before" of a live run). Returns, per
    run that failed or was killed, the names it never got to: said of the run, where it ended
    (before session 51, of its version: "no run of it recorded that loop", where the version's
    other runs did)."""
    ended: dict[str, set[str]] = {}
    ran: Callable[[str, str, set[str], str], bool] | None = None
    needed_runs = {(fold(n.name), n.run_id) for n in state.needs}
    referenced = sorted({n for names in state.hindsight_names().values() for n in names})
    for filename, code in state.catalog.scripts.items():
        for name in referenced:
            chains = {"/".join(s.chain) for s in code.sites_of(name) if s.chain}
            if not chains:
                continue
            rows = state.con.execute(
                """SELECT m.vid, m.run_id, m.filename, m.status,
                          (SELECT list(DISTINCT c.chain ORDER BY c.chain) FROM __flor_chains c
                           WHERE c.run_id = m.run_id), m.files
                   FROM run_meta m
                   WHERE list_contains(m.files, ?)
                   AND m.status IS DISTINCT FROM 'running'
                   AND NOT EXISTS (SELECT 1 FROM __flor_chains c WHERE c.run_id = m.run_id
                                   AND list_contains(?, c.chain))
                   AND NOT EXISTS (SELECT 1 FROM __flor_cover v WHERE v.run_id = m.run_id
                                   AND v.name = ?)""",
                [filename, sorted(chains), fold(name)],
            ).fetchall()
            for vid, run_id, script, status, recorded, files in rows:
                if (fold(name), run_id) in needed_runs:
                    continue
                if status == "finished":
                    ran = ran or _ran_today_s_files(state)
                    if ran(vid, filename, {*(files or ())}, name):
                        # today's very code, which did not enter that loop in this run (``if
                        # use_loop:``, an arg): a run of today's script logs nothing there
                        # either (session 57, sweep AJ: "no run of it recorded that loop" was
                        # said of a version whose other runs did)
                        state.ran_today.setdefault(name, set()).add(run_id)
                        continue
                if status == "finished" and recorded:
                    # the run ended well and recorded other loops: a loop renamed since, not
                    # code never reached (session 47, sweep L: said "the run was killed or
                    # failed before" of a finished run)
                    state.unplaced.setdefault((vid, script), {}).setdefault(
                        name,
                        f"its runs recorded the loops {', '.join(recorded)}, not "
                        f"{' or '.join(sorted(chains))}: a flor.loop renamed since is not "
                        "matched to its old name",
                    )
                elif status in ("failed", "killed"):
                    ended.setdefault(run_id, set()).add(name)
                else:
                    state.unplaceable.setdefault((vid, script), set()).add(name)
    return ended


_FAILURES = """
SELECT f.replay_id, f.task_id, f.run_id, f.vid, m.filename, f.names, f.loop_name, f.iterations,
       f.to_end, f.iteration, f.error, f.traceback, f.source_hash, f.frames
FROM replay_failures f JOIN run_meta m ON m.run_id = f.run_id
WHERE f.run_id IN (SELECT unnest(?::VARCHAR[]))
ORDER BY f.failed, f.replay_id, f.task_id
"""

Key = tuple[str, str, str | None, int | None]


def _outputs_changed(repo: Path, replay_id: str, task_id: str) -> bool:
    """Whether a file the failed task read as today's copy of the run's own (a run resuming
    from its own state file, ``read_outputs`` in its failure marker) has changed since: put
    back as the run found it, the task may replay now (session 49)."""
    import json

    from florsql.store.replays import FAILED, output_stamp, replays_dir

    try:
        marker = json.loads((replays_dir(repo) / replay_id / task_id / FAILED).read_bytes())
        read = marker.get("read_outputs")
    except (OSError, ValueError, AttributeError):
        return False
    if not isinstance(read, dict):
        return False
    return any(output_stamp(str(path)) != stamp for path, stamp in read.items())


def _without_remembered_failures(state: PlanState, needs: list[NeedRow]) -> list[NeedRow]:
    """``needs`` less what a task failed to compute before with the same patched source; those
    go to ``state.failures``. A task that failed at outer iteration *k* blocks its iterations
    from *k* on (the earlier ones only lacked a finished task) and, when it ran to the end of
    the script or failed outside the loop, the top level.

    Where the task's frames show which of its statements raised (:mod:`florsql.plan.blame`),
    only those names are blocked: the others are planned again, in tasks without the blamed
    statements. Until the others are computed, a blamed name's earlier iterations of that run
    are held back too (planned together they would run its statement into the failure again);
    the next round of the query (or the next query) computes them on their own."""
    import json

    runs = sorted({n.run_id for n in needs})
    rows = state.con.execute(_FAILURES, [runs]).fetchall() if runs else []
    if not rows:
        return needs
    current: dict[tuple[str, str, tuple[str, ...]], tuple[str | None, dict[str, Any]]] = {}
    blocked: dict[Key, tuple[str, str, str, str]] = {}
    #: (run, blamed name) -> (the failure's other names, the failed task)
    held: dict[tuple[str, str], tuple[set[str], tuple[str, str, str, str]]] = {}
    for row in rows:
        replay_id, task_id, run_id, vid, filename, names, loop, its, to_end, at, err, tb = row[:12]
        h, frames = row[12], row[13]
        key = (vid, filename, tuple(sorted(names)))
        if key not in current:
            current[key] = _patched(state, vid, filename, list(key[2]))
        now, files = current[key]
        if now != h:
            continue  # the patched source changed (a fixed statement): try again
        if _outputs_changed(state.repo, replay_id, task_id):
            continue  # the run's own files it read changed (one put back): try again
        reason = describe_failure(
            run_id=run_id, vid=vid, loop=loop, iteration=at, error=err, traceback=tb
        )
        culprits: tuple[str, ...] | None = None
        cause = ""
        if frames:
            try:
                listed = json.loads(frames)
                culprits = blame(files, listed, names)
            except (ValueError, TypeError):
                listed, culprits = None, None
            if isinstance(listed, list):
                cause = _cause(listed, culprits)
        failed = (replay_id, task_id, reason, cause)
        if len(names) < 2:
            culprits = None  # a task of one name blocks it whoever raised
        for name in culprits or names:
            for i in its or ():
                if at is None or i >= at:
                    blocked.setdefault((run_id, name, loop, i), failed)
            if to_end or at is None:
                blocked.setdefault((run_id, name, None, None), failed)
            if culprits:
                others = {fold(n) for n in names} - {fold(c) for c in culprits}
                held.setdefault((run_id, fold(name)), (set(), failed))[0].update(others)
    kept: list[NeedRow] = []
    hit: dict[tuple[str, str, str, str], list[NeedRow]] = {}
    for need in needs:
        task = blocked.get((need.run_id, need.name, need.outer_loop, need.outer_iteration))
        if task is None:
            kept.append(need)
        else:
            hit.setdefault(task, []).append(need)
    if held:
        wanted = {(n.run_id, fold(n.name)) for n in kept}
        still = []
        for need in kept:
            hold = held.get((need.run_id, fold(need.name)))
            if hold is not None and any((need.run_id, o) in wanted for o in hold[0]):
                hit.setdefault(hold[1], []).append(need)
            else:
                still.append(need)
        kept = still
    for (replay_id, task_id, reason, cause), rows_hit in hit.items():
        state.failures.append(
            RememberedFailure(
                replay_id=replay_id,
                task_id=task_id,
                run_id=rows_hit[0].run_id,
                names=tuple(sorted({n.name for n in rows_hit})),
                iterations=tuple(
                    sorted({n.outer_iteration for n in rows_hit}, key=lambda i: (i is not None, i))
                ),
                reason=reason,
                cause=cause,
            )
        )
    return kept


#: florsql's modules that put a checkpoint back (registered objects, RNGs, saved locals).
_RESTORING = tuple(
    os.sep + os.path.join("florsql", "record", name) for name in ("checkpoint.py", "frame_state.py")
)


def _cause(frames: list[Any], culprits: tuple[str, ...] | None) -> str:
    """Where a failed task raised (see :class:`RememberedFailure`), from its frames, outermost
    first, and the statements :func:`blame` found raising (None: not theirs to tell)."""
    if culprits:
        return "statement"
    files = [str(f[0]) for f in frames if isinstance(f, list) and f]
    if any(f.endswith(_RESTORING) for f in files):
        return "restore"
    inner = next((f for f in reversed(files) if os.sep + "florsql" + os.sep not in f), None)
    return "old code" if inner is not None else ""


def _patched(
    state: PlanState, vid: str, filename: str, names: list[str]
) -> tuple[str | None, dict[str, Any]]:
    """The hash a replay of version ``vid`` with ``names`` would record for the code it runs
    today (as :func:`florsql.replay.runner.default_patcher` patches it; None if unknown), and
    the propagation per file it comes from."""
    import florsql.propagate as propagate
    from florsql.propagate.model import guarded
    from florsql.versions import file_at

    try:
        result = propagate.for_version(state.repo, vid, names=names, again=names)
        ran = {path: guarded(r) for path, r in result.files.items()}  # as the replay ran it
        files = {path: r.source for path, r in ran.items() if r.placed}
        files.update({path: text for path, text in result.added.items() if path not in files})
        digest = patched_hash(files.get(filename) or file_at(state.repo, vid, filename), files)
        return digest, ran
    except (FlorError, OSError):
        return None, {}


#: Where each run ended: the top-level loop and iteration it stopped in (the last one it
#: began and never ended), else the last it ended. By the loop of that iteration: with two
#: top-level loops (training, then a test loop) a run that failed in the second was said
#: "failed during epoch 1" (sweep T).
_ENDED = """
SELECT m.run_id, m.status,
       coalesce(arg_max(l.loop_name, l.ctx_id) FILTER (WHERE l.seconds IS NULL),
                arg_max(l.loop_name, l.ctx_id)),
       arg_max(l.iteration, l.ctx_id) FILTER (WHERE l.seconds IS NULL),
       arg_max(l.iteration, l.ctx_id) FILTER (WHERE l.seconds IS NOT NULL)
FROM run_meta m LEFT JOIN loops l ON l.run_id = m.run_id AND l.parent_ctx = 0
WHERE m.run_id IN (SELECT unnest(?::VARCHAR[]))
GROUP BY m.run_id, m.status ORDER BY m.run_id
"""


def _ended_runs(state: PlanState, unreached: dict[str, set[str]]) -> list[Unreached]:
    """Why each run that failed or was killed leaves some needed values NULL: where it ended."""
    if not unreached:
        return []
    out = []
    for run_id, status, loop, open_at, last in state.con.execute(
        _ENDED, [sorted(unreached)]
    ).fetchall():
        if open_at is not None:
            where = f"{status} during {loop} {open_at}"
        elif last is not None:
            where = f"{status} after {loop} {last}, its last recorded iteration"
        else:
            # nothing of a loop on disk: it may have been stopped in its first iteration,
            # before that was flushed (sweep S F4: "killed before its first loop" of a run
            # killed in epoch 0)
            where = f"{status} before it recorded a loop iteration"
        out.append(Unreached(run_id, tuple(sorted(unreached[run_id])), where))
    return out
