"""Assembling the :class:`ReplayPlan`: runs grouped by version, chunks, and the cost estimate."""

from __future__ import annotations

import threading
from collections import defaultdict

from florsql.errors import FlorError
from florsql.fold import fold, fold_sql
from florsql.plan.patched import Patched, analyze_patched, module_names, patched_script
from florsql.plan.pushdown import predicate_sql
from florsql.plan.relax import Relaxed
from florsql.plan.replay_plan import Cost, ReplayPlan, RunReplay, VersionReplay
from florsql.plan.state import NeedRow, PlanState
from florsql.plan.stats import string_literal
from florsql.plan.tasks import RunFacts, load_facts, plan_cost, plan_run

__all__ = ["assemble"]


def assemble(state: PlanState) -> None:
    """Rule: turn ``state.needs`` into ``state.plan``."""
    referenced = sorted({n for names in state.hindsight_names().values() for n in names})
    by_run: dict[str, list[NeedRow]] = defaultdict(list)
    for need in state.needs:
        by_run[need.run_id].append(need)
    facts = load_facts(state, sorted(by_run)) if by_run else {}
    files = _run_files(state, sorted(by_run))
    per_version: dict[tuple[str, str], list[RunReplay]] = defaultdict(list)
    patched: dict[
        tuple[str, str, tuple[str, ...], str | None, tuple[str, ...], tuple[str, ...]],
        Patched | None,
    ] = {}
    for run_id, needs in by_run.items():
        first = needs[0]
        outer = next((n.outer_loop for n in needs if n.outer_loop), None)
        if outer is None:  # statements outside every loop: the run's own outer loop
            outer = _recorded_outer(facts.get(run_id))
        modules = tuple(f for f in files.get(run_id, []) if f != first.filename)
        asked = tuple(sorted({n.name for n in needs}))
        others = _others(state, first.filename, modules, asked)
        wanted = (first.vid, first.filename, asked, outer, modules, others)
        if wanted not in patched:
            patched[wanted] = _patched(state, *wanted)
        found = patched[wanted]
        failed = found.failed if found is not None else {}
        if failed:  # statements propagation cannot place here: no task computes them
            state.unplaced.setdefault((first.vid, first.filename), {}).update(
                {n: failed[n] for n in wanted[2] if n in failed}
            )
            needs = [n for n in needs if n.name not in failed]
            if not needs:
                continue
        if found is not None and found.present and not facts[run_id].ended:
            # today's statement is in the version as it is: the run ran it, and a replay
            # would compute what it recorded (session 53)
            for n in needs:
                if n.name in found.present:
                    state.ran_today.setdefault(n.name, set()).add(run_id)
            needs = [n for n in needs if n.name not in found.present]
            if not needs:
                continue
        if found is not None and found.lost:
            state.lost.setdefault((first.vid, first.filename), {}).update(found.lost)
        if found is not None and found.uneven:
            state.uneven.setdefault((first.vid, first.filename), {}).update(found.uneven)
        if found is not None and found.edited:
            state.edited.setdefault((first.vid, first.filename), {}).update(found.edited)
        companions = _companion_chains(state, first.filename, modules, found)
        start = _from_start(state, run_id, first.vid, first.filename, needs, found)
        run = plan_run(run_id, needs, found, facts[run_id], companions=companions, from_start=start)
        per_version[(run.vid, run.filename)].append(run)
    for name, ran in sorted(state.ran_today.items()):
        state.notes.append(
            f"{name}: {len(ran)} run(s) ran today's statement of it as it is (their version has "
            "it, guards and all): not replayed where they hold no value, since their replay "
            "would log none there either"
        )
    versions = []
    for key in sorted(set(per_version) | set(state.unplaceable) | set(state.unplaced)):
        vid, filename = key
        runs = tuple(sorted(per_version.get(key, []), key=lambda r: r.run_id))
        run_files = sorted({f for r in runs for f in files.get(r.run_id, [])} | {filename})
        versions.append(_version(state, vid, filename, runs, run_files))
    orphaned = _orphaned(state, referenced)
    state.plan = ReplayPlan(
        names=tuple(referenced),
        versions=tuple(v for v in versions if v.runs or v.unplaceable or v.unplaced),
        cost=_cost(versions),
        pushed=tuple(predicate_sql(state.pushed.get(r.ref_id, _NONE)) for r in state.references),
        residual=tuple(not state.pushed.get(r.ref_id, _NONE).exact for r in state.references),
        limit_runs=tuple(sorted(state.limit_runs)) if state.limit_runs is not None else None,
        lacking=tuple((n, _lacking(state, n)) for n in referenced),
        lacking_some=tuple((n, _partial(state, n)) for n in referenced if _partial(state, n)),
        unreplayable=_unreplayable(state, referenced, [o[0] for o in orphaned]),
        orphaned=orphaned,
        notes=tuple(state.notes),
        failures=tuple(state.failures),
        unreached=tuple(state.unreached),
        fingerprints=tuple(
            (key, state.catalog.fingerprint(key))
            for key in sorted(
                {fold(n) for v in versions for r in v.runs for n in r.names}
                | {fold(n) for v in versions for r in v.runs for n in r.top_level}
            )
        ),
        sources=tuple(sorted((f, code.digest) for f, code in state.catalog.scripts.items())),
        elsewhere=_elsewhere(state),
    )


def _from_start(
    state: PlanState,
    run_id: str,
    vid: str,
    filename: str,
    needs: list[NeedRow],
    found: Patched | None,
) -> str | None:
    """Why the run must replay from its start (today's placed texts, needed or companions,
    may draw in some iterations only, and no replay of this very code from the run's start
    has seen them draw nothing up to the last iteration needed), else None. The runner would
    replay it so anyway once its tasks had run (``runner._from_the_start``): planned so, the
    tasks that skip iterations are not run first, and EXPLAIN's estimate is the run's (it was
    the skipping tasks': 0.13x the actual in benchmarks/hindsight.py's (f), session 53)."""
    if found is None or not found.uneven:
        return None
    ran = {n.name for n in needs} | set(found.companions)
    uneven = sorted(n for n in ran if n in found.uneven)
    if len(ran) == 1 and uneven and found.uneven[uneven[0]] == "gated":
        return None  # one gated statement asked alone sees each draw before a value it stores
    if not uneven:
        return None
    from florsql.plan.patched import replay_files
    from florsql.store.replays import clean_from_start, patched_hash
    from florsql.versions import file_at

    names = sorted({n.name for n in needs})
    try:  # the code its runner will run (``runner.default_patcher``), by its hash
        files, _ = replay_files(state.repo, vid, names, sorted(set(found.companions) - set(names)))
        script = files.get(filename) or file_at(state.repo, vid, filename)
    except FlorError:
        return None
    digest = patched_hash(script, files)
    last = max((n.outer_iteration for n in needs if n.outer_iteration is not None), default=-1)
    if clean_from_start(state.repo, run_id, {digest}, last):
        return None
    return (
        f"{', '.join(uneven)} may draw in some iterations only, and no replay of this code "
        "from the run's start has seen it draw nothing yet"
    )


def _elsewhere(state: PlanState) -> tuple[tuple[str, str, str, int, tuple[str, ...]], ...]:
    """Today's log statements the query reads that sit at a loop chain where runs logging
    their name never logged it (:attr:`ReplayPlan.elsewhere`). Before session 48 a new
    ``flor.log("loss", ...)`` at epoch level, where old runs log ``loss`` in the step loop,
    had no values in the old runs, and EXPLAIN said every value the query reads exists."""
    read: set[str] | None = set()
    for ref in state.references:
        if ref.names is None or read is None:
            read = None
        else:
            read |= {fold(n) for n in ref.names}
    sites = sorted(
        {
            (code.filename, site.name, "/".join(site.chain))
            for code in state.catalog.scripts.values()
            for site in code.sites
            if site.chain is not None and (read is None or fold(site.name) in read)
        }
    )
    if not sites:
        return ()
    values = ", ".join(
        f"({string_literal(f)}, {string_literal(n)}, {string_literal(c)})" for f, n, c in sites
    )
    names = sorted({fold(n) for _, n, _ in sites})
    gen = state.catalog.generation
    key = (str(state.repo), gen.sources, gen.mtime_sum, gen.size_sum, values) if gen else None
    if key is not None:
        with _ELSEWHERE_LOCK:
            if key in _ELSEWHERE:
                return _ELSEWHERE[key]
    rows = state.con.execute(
        f"""WITH today(filename, name, chain) AS (VALUES {values}),
           rec AS (
               SELECT DISTINCT v.run_id, {fold_sql("v.name")} AS name,
                      coalesce(c.chain, '') AS chain
               FROM log_records v LEFT JOIN __flor_ctx c
                    ON c.run_id = v.run_id AND c.ctx_id = v.ctx_id
               WHERE list_contains(?::VARCHAR[], {fold_sql("v.name")}))
           SELECT t.filename, t.name, t.chain, count(DISTINCT m.run_id),
                  list(DISTINCT r.chain ORDER BY r.chain)
           FROM today t JOIN run_meta m
                ON list_contains(m.files, t.filename) AND m.status = 'finished'
           JOIN rec r ON r.run_id = m.run_id AND r.name = {fold_sql("t.name")}
           WHERE NOT EXISTS (
               SELECT 1 FROM rec o WHERE o.run_id = m.run_id
               AND o.name = {fold_sql("t.name")} AND o.chain = t.chain)
           -- the run logs the name where another statement of today's does: the two are
           -- apart (a chain the scan cannot tell, zip of two loops, is no such evidence)
           AND EXISTS (
               SELECT 1 FROM today u JOIN rec o ON o.chain = u.chain
               WHERE u.filename = t.filename AND {fold_sql("u.name")} = {fold_sql("t.name")}
               AND u.chain <> t.chain AND o.run_id = m.run_id
               AND o.name = {fold_sql("t.name")})
           -- and it ran an iteration at the statement's chain to its end (a run that ended
           -- in its first epoch never reached an epoch-level statement)
           AND (t.chain = '' OR EXISTS (
               SELECT 1 FROM __flor_ctx c JOIN loops l
                    ON l.run_id = c.run_id AND l.ctx_id = c.ctx_id
               WHERE c.run_id = m.run_id AND c.chain = t.chain AND l.seconds IS NOT NULL))
           GROUP BY ALL ORDER BY ALL""",
        [names],
    ).fetchall()
    found = tuple((f, n, c, int(k), tuple(chains)) for f, n, c, k, chains in rows)
    if key is not None:  # recorded runs change only with the index's generation
        with _ELSEWHERE_LOCK:
            if len(_ELSEWHERE) > 64:
                _ELSEWHERE.clear()
            _ELSEWHERE[key] = found
    return found


_ELSEWHERE: dict[tuple[object, ...], tuple[tuple[str, str, str, int, tuple[str, ...]], ...]] = {}
_ELSEWHERE_LOCK = threading.Lock()


_NONE = Relaxed(None, exact=False)


def _recorded_outer(facts: RunFacts | None) -> str | None:
    """The outer loop a run recorded, where it recorded one only (else None: the script's
    analysis picks one). A query whose statements all sit outside every loop names none; the
    script's first outermost loop was taken then, and a script whose step loop sits in a
    ``train_one_epoch`` defined above ``main`` got that one: the epoch loop in ``main`` was
    taken for its inner loop, no task was planned, and the values stayed NULL (session 34)."""
    if facts is None:
        return None
    loops = set(facts.seconds) | set(facts.checkpoints)
    return next(iter(loops)) if len(loops) == 1 else None


def _others(
    state: PlanState, filename: str, modules: tuple[str, ...], asked: tuple[str, ...]
) -> tuple[str, ...]:
    """Today's log names in a run's files (``filename``, ``modules``) other than ``asked``
    whose statements may draw from an RNG (:meth:`ScriptCode.may_draw`): those its version
    lacks are placed beside the asked ones (companions, run but not stored). Session 35, gap
    2: ``w0`` replayed without today's ``val_acc``, which draws a DataLoader's seed each epoch,
    followed the recorded run."""
    code = state.catalog.code_of([filename, *modules])
    if code is None:
        return ()
    low = {fold(a) for a in asked}
    return tuple(sorted({n for n in code.may_draw() if fold(n) not in low}))


def _companion_chains(
    state: PlanState, filename: str, modules: tuple[str, ...], found: Patched | None
) -> tuple[tuple[str, tuple[str, ...] | None], ...]:
    """``(name, loop chain)`` of each statement of the companions placed in ``found``."""
    if found is None or not found.companions:
        return ()
    code = state.catalog.code_of([filename, *modules])
    if code is None:
        return ()
    return tuple((s.name, s.chain) for n in found.companions for s in code.sites_of(n))


def _patched(
    state: PlanState,
    vid: str,
    filename: str,
    names: tuple[str, ...],
    outer: str | None,
    modules: tuple[str, ...],
    others: tuple[str, ...] = (),
) -> Patched | None:
    """The patched script's analysis (``modules``: the other repository files the run
    imported; ``others``: today's other names, placed beside ``names`` where the version lacks
    them). When the version cannot be read (its snapshot is gone), today's script stands
    in, with a note: the replay itself will then fail and say why."""
    try:
        return patched_script(state.repo, vid, filename, names, outer, modules, others)
    except FlorError as e:
        try:
            today = (state.repo / filename).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            state.notes.append(f"version {vid[:12]} of {filename}: {e}; the whole run replays")
            return None
        state.notes.append(f"version {vid[:12]} of {filename}: {e}; planned on today's code")
        texts: dict[str, str | None] = {}
        for path in modules:
            try:
                texts[path] = (state.repo / path).read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError):
                texts[path] = None
        return analyze_patched(today, names, outer, module_names(today, filename, texts))


def _lacking(state: PlanState, name: str) -> int:
    column = state.catalog.column(name)
    return column.lacking_runs if column is not None else 0


def _partial(state: PlanState, name: str) -> int:
    column = state.catalog.column(name)
    return column.partial_runs if column is not None else 0


def _run_files(state: PlanState, run_ids: list[str]) -> dict[str, list[str]]:
    """The repository files each run executed (main script first)."""
    if not run_ids:
        return {}
    rows = state.con.execute(
        "SELECT run_id, files FROM run_meta WHERE run_id IN (SELECT unnest(?::VARCHAR[]))",
        [run_ids],
    ).fetchall()
    return {run_id: list(files or []) for run_id, files in rows}


def _version(
    state: PlanState, vid: str, filename: str, runs: tuple[RunReplay, ...], files: list[str]
) -> VersionReplay:
    # The main script's statements first, then those of the modules the runs imported.
    code = state.catalog.code_of([filename, *(f for f in files if f != filename)])
    names = tuple(sorted({n for r in runs for n in r.names}))
    statements: tuple[tuple[str, int, tuple[str, ...] | None, str], ...] = ()
    if code is not None:
        statements = tuple((s.name, s.line, s.chain, s.file) for s in code.sites if s.name in names)
    skip = set.intersection(*(set(r.skip_inner) for r in runs)) if runs else set()
    unplaceable = tuple(sorted(state.unplaceable.get((vid, filename), set())))
    unplaced = tuple(sorted(state.unplaced.get((vid, filename), {}).items()))
    lost = tuple(sorted(state.lost.get((vid, filename), {}).items())) if runs else ()
    uneven = tuple(sorted(state.uneven.get((vid, filename), {}).items())) if runs else ()
    edited = tuple(sorted(state.edited.get((vid, filename), {}).items())) if runs else ()
    return VersionReplay(
        vid=vid,
        filename=filename,
        runs=runs,
        names=names,
        statements=statements,
        skip_inner=tuple(sorted(skip)),
        unplaceable=unplaceable,
        unplaced=unplaced,
        lost=lost,
        uneven=uneven,
        edited=edited,
    )


def _cost(versions: list[VersionReplay]) -> Cost:
    return plan_cost([r for v in versions for r in v.runs])


def _orphaned(state: PlanState, names: list[str]) -> tuple[tuple[str, tuple[str, ...], int], ...]:
    """Per script of some run that today's working tree no longer has (renamed or deleted,
    ``git mv train.py main.py``), the names of ``names`` its runs lack and how many runs lack
    one: today's statements are placed into a version's copy of the file of the same path, so
    nothing computes them there. Before session 43 their values were NULL without a word (only
    EXPLAIN's "not replayable" line)."""
    if not names:
        return ()
    files = state.con.execute(
        "SELECT DISTINCT filename FROM run_meta WHERE filename IS NOT NULL"
    ).fetchall()
    missing = [
        f for (f,) in files if f not in state.catalog.scripts and not (state.repo / f).exists()
    ]
    if not missing:  # (the common case: the query below cost a warm query 30 ms)
        return ()
    rows = state.con.execute(
        f"""SELECT m.filename, n.name, count(*) FROM (SELECT unnest(?::VARCHAR[]) AS name) n
           CROSS JOIN run_meta m
           WHERE list_contains(?::VARCHAR[], m.filename) AND NOT EXISTS (
                 SELECT 1 FROM __flor_cover v
                 WHERE v.run_id = m.run_id AND v.name = {fold_sql("n.name")})
           GROUP BY m.filename, n.name ORDER BY m.filename, n.name""",
        [names, missing],
    ).fetchall()
    gone: dict[str, tuple[list[str], int]] = {}
    for filename, name, count in rows:
        listed, most = gone.setdefault(filename, ([], 0))
        listed.append(name)
        gone[filename] = (listed, max(most, int(count)))
    return tuple((f, tuple(ns), k) for f, (ns, k) in sorted(gone.items()))


def _unreplayable(
    state: PlanState, names: list[str], gone: list[str]
) -> tuple[tuple[str, int], ...]:
    """Per name: runs with no value whose script's current code does not log it, less those
    of the scripts ``gone`` from today's tree (:func:`_orphaned` says them)."""
    if not names:
        return ()
    rows = state.con.execute(
        f"""SELECT n.name, count(*) FROM (SELECT unnest(?::VARCHAR[]) AS name) n
           CROSS JOIN run_meta m
           WHERE NOT EXISTS (SELECT 1 FROM __flor_cover v
                             WHERE v.run_id = m.run_id AND v.name = {fold_sql("n.name")})
             AND NOT list_has_any(?, list_transform(m.files,
                 lambda f: f || '|' || {fold_sql("n.name")}))
             AND NOT list_contains(?, m.filename)
           GROUP BY n.name ORDER BY n.name""",
        [
            names,
            [f"{f}|{fold(n)}" for f, c in state.catalog.scripts.items() for n in c.names()],
            gone,
        ],
    ).fetchall()
    return tuple((name, int(count)) for name, count in rows if count)
