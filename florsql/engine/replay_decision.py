"""Deciding whether to replay, calling the executor, and the warnings either way."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from florsql.errors import (
    DataChangedWarning,
    FlorWarning,
    NondeterminismWarning,
    ReplayError,
    ReplayFailedWarning,
    ReplayNeededError,
    ReplayOffWarning,
    StatementDrawWarning,
    UnverifiedWarning,
    concat_messages,
)
from florsql.fold import fold
from florsql.plan.explain import human_seconds, ranges
from florsql.plan.planner import PlannedQuery
from florsql.plan.replay_plan import ReplayPlan, VersionReplay

if TYPE_CHECKING:
    from florsql.engine.session import Engine

__all__ = [
    "REFUSED_HERE",
    "SET_REPLAY_HINT",
    "Messages",
    "replay_if_needed",
    "summary",
    "unstored_lines",
    "wants_replay",
    "warn",
]

#: How the replay-off warning says to compute the values (a server says its own way).
SET_REPLAY_HINT = "SET replay = 'auto' to compute them"
#: How the warning of replay 'error' begins (a server says its own way).
REFUSED_HERE = "replay is refused here"


class Messages(list[tuple[type[Warning], str]]):
    """(warning category, message) pairs, in the order they were raised; with ``quiet`` they
    are only collected (the result carries them), never passed to :func:`warnings.warn`."""

    def __init__(self, *, quiet: bool = False) -> None:
        super().__init__()
        self.quiet = quiet


def summary(plan: ReplayPlan) -> str:
    """One line: which names, how many runs and iterations, the estimate.

    Example:
        >>> summary(ReplayPlan())
        'nothing'
    """
    if plan.empty:
        return "nothing"
    per_name: dict[str, set[str]] = {}
    for run in plan.runs():
        for name in run.names:
            per_name.setdefault(name, set()).add(run.run_id)
    names = ", ".join(f"{n} for {len(r)} run(s)" for n, r in sorted(per_name.items()))
    c = plan.cost
    work = f"{c.iterations} outer iteration(s), {c.tasks} task(s)"
    return f"{names}; {work}, est. {human_seconds(c.seconds)}"


def _warn(engine: Engine, messages: Messages, text: str, category: type[Warning]) -> None:
    messages.append((category, text))
    if not messages.quiet:
        warnings.warn(text, category, stacklevel=engine.warn_stacklevel)


#: :func:`_warn` for other modules of the engine (a message beside the replay's)
warn = _warn


def wants_replay(engine: Engine, planned: PlannedQuery, mode: str) -> bool:
    """Whether :func:`replay_if_needed` may run the executor for ``planned`` (so the caller must
    hold the engine exclusively): values are missing, replay is on and an executor is there."""
    return (
        any(v.runs for v in planned.replay.versions)
        and mode not in ("off", "error")
        and engine.executor is not None
    )


def replay_if_needed(
    engine: Engine,
    planned: PlannedQuery,
    *,
    mode: str,
    replan: Callable[[], PlannedQuery],
    quiet: bool = False,
    known: Callable[[list[str]], set[str]] | None = None,
    unstored: Callable[[list[ReplayPlan]], list[str]] | None = None,
) -> tuple[PlannedQuery, Messages]:
    """Replay what ``planned`` needs if ``mode`` allows, then ``replan`` (which refreshes the
    index and plans the statement again); warn otherwise. Runs the executor only when
    :func:`wants_replay` says so. ``known``: of some names, those (in lower case) with a
    recorded or replayed value somewhere. ``unstored``: after the replay, what its finished
    tasks left without a value where today's statement runs in every iteration
    (:func:`unstored_lines`), one line per run and name."""
    messages = Messages(quiet=quiet)
    plan = planned.replay
    ran: list[ReplayPlan] = []
    if not any(v.runs for v in plan.versions):
        unplaced = [u for v in plan.versions for u in _unplaced_lines(v)]
        names = sorted({name for v in plan.versions for name, _ in v.unplaced})
        # An error only where the statement has no value anywhere: where other runs recorded
        # or replayed it (another version records it, or took it), the answer is theirs, with
        # the warning for the versions that cannot (as when those were still being replayed).
        valued = known(names) if known is not None and names else set()
        alone = not any(fold(n) in valued for n in names)
        if unplaced and alone and mode not in ("off", "error") and engine.executor is not None:
            # Nothing to replay and statements that cannot be placed: as the replay would
            # have said, an error naming each and why.
            raise ReplayError(
                "no statement could be placed into the old versions:\n" + "\n".join(unplaced)
            )
        _unplaceable(engine, plan, messages)
        _failed(engine, plan, messages)
        _unreached(engine, plan, messages)
        return planned, messages
    needed = {name for run in plan.runs() for name in run.names}
    if mode == "error" and needed <= planned.star_only:
        # A preview (SELECT * ... LIMIT n): it named none of them, so NULL cells say what they
        # are (the columns' advertised type is NULL too), and the warning says why.
        _warn(
            engine,
            messages,
            f"{REFUSED_HERE}: hindsight values never computed are NULL: {summary(plan)}; the "
            "query reaches them only through * (rows only they would make are absent): name "
            "the column to be told instead (such a query is refused); " + SET_REPLAY_HINT,
            ReplayOffWarning,
        )
        _unplaceable(engine, plan, messages)
        _failed(engine, plan, messages)
        _unreached(engine, plan, messages)
        return planned, messages
    if mode == "error":
        raise ReplayNeededError(
            f"the query needs hindsight values that were never computed ({summary(plan)})"
        )
    reason = None
    if mode == "off":
        reason = "replay is off"
    elif engine.executor is None:
        reason = f"replay is {mode!r} but no replay executor is installed"
    elif mode == "confirm" and (engine.confirm is None or not engine.confirm(plan)):
        reason = "replay was not confirmed"
    if reason is not None:
        _warn(
            engine,
            messages,
            f"{reason}: hindsight values not computed (NULL): {summary(plan)}; {SET_REPLAY_HINT}",
            ReplayOffWarning,
        )
        _unplaceable(engine, plan, messages)
        _failed(engine, plan, messages)
        _unreached(engine, plan, messages)
        return planned, messages
    assert engine.executor is not None
    _edited(engine, plan, messages)
    outcome = engine.executor.run(plan, repo=engine.repo)
    ran.append(plan)
    planned = replan()
    outcomes = [outcome]
    # A failed task whose frames show which statements raised blocks only those: the others
    # are planned again (florsql.plan.replay_set), and computed now, in tasks without them.
    first = plan
    while (
        len(outcomes) < MAX_ROUNDS
        and any(o.failures for o in outcomes)
        and _retry(first, plan, planned.replay)
    ):
        plan = planned.replay
        outcome = engine.executor.run(plan, repo=engine.repo)
        ran.append(plan)
        planned = replan()
        outcomes.append(outcome)
    outcome = _merged(outcomes) if len(outcomes) > 1 else outcome
    remembered = {f"{f.replay_id}/{f.task_id}" for f in planned.replay.failures}
    ids = tuple(getattr(outcome, "failed_ids", ())) or (None,) * len(outcome.failures)
    fresh = [m for m, i in zip(outcome.failures, ids, strict=False) if i not in remembered]
    if fresh:
        text = concat_messages(fresh)
        _warn(
            engine,
            messages,
            f"{len(fresh)} replay task(s) failed; their values are NULL:\n{text}",
            ReplayFailedWarning,
        )
    changed = tuple(getattr(outcome, "data_changed", ()))
    if changed:
        _warn(
            engine,
            messages,
            "replayed with data that differs from what the runs read (their values are marked "
            "in replays.data_changed):\n" + concat_messages(list(changed)),
            DataChangedWarning,
        )
    why = " (the data changed: see the data warning)" if changed else ""
    if outcome.nondeterministic:
        text = concat_messages(list(outcome.nondeterministic))
        _warn(
            engine,
            messages,
            f"replayed values differ from the recorded ones{why}; the values replayed with "
            f"them may not be what a run of the patched code logs. Causes: {_DEPARTED}:\n{text}",
            NondeterminismWarning,
        )
    rejected = tuple(getattr(outcome, "rejected", ()))
    if rejected:
        text = concat_messages(list(rejected))
        _warn(
            engine,
            messages,
            f"{len(rejected)} replay task(s) skipped an inner loop and disagreed with the "
            f"recording{why}; their values were discarded and recomputed in full:\n{text}",
            NondeterminismWarning,
        )
    drew: dict[str, list[str]] = dict(getattr(outcome, "drew", None) or {})
    if drew:
        from florsql.store.replays import RNG_NAMES

        said = "; ".join(
            f"{name}: {', '.join(RNG_NAMES.get(k, k) for k in kinds)}"
            for name, kinds in drew.items()
        )
        again = tuple(getattr(outcome, "from_start", ()))
        how = (
            f"{len(again)} run(s) were replayed again from their start with no checkpoint "
            "restored (as slow as re-running them), and "
            if again
            else ""
        )
        _warn(
            engine,
            messages,
            "today's statements drew from a global RNG or a generator of the script, or "
            f"changed a model in place ({said}): "
            "a run of today's script trains differently from the recorded run after the first "
            "draw, and the values "
            f"are that run's: {how}the recorded values beside them stay the recorded "
            "run's; to replay from checkpoints instead, give what the statement draws from a "
            "generator of its own (a DataLoader's generator=torch.Generator(), "
            "torch.random.fork_rng() around it; in eval mode dropout draws nothing, and "
            "neither batch norm's statistics nor spectral norm's vectors change: net.eval() "
            "before a forward pass, net.train() after)",
            StatementDrawWarning,
        )
    unverified = tuple(getattr(outcome, "unverified", ()))
    if unverified:
        _warn(
            engine,
            messages,
            f"{len(unverified)} run(s) replayed with no recorded value to compare against "
            f"(unverified): {', '.join(unverified[:5])}"
            + (f" and {len(unverified) - 5} more" if len(unverified) > 5 else ""),
            UnverifiedWarning,
        )
    for text in getattr(outcome, "not_reached", ()):
        # a run that raised after its loop: today's statements after the line it raised at
        # (session 50; before, every statement after its loop was NULL, "failed after ...")
        _warn(engine, messages, text, FlorWarning)
    for text in unstored(ran) if unstored is not None else ():
        # today's statement runs in every iteration; the old code the replay ran did not get
        # to it in some (session 51: NULL, said nowhere, EXPLAIN planning those iterations)
        _warn(engine, messages, text, FlorWarning)
    if any(v.runs for v in planned.replay.versions):
        # Never NULL without a word: what is left after the last round (a failed statement's
        # iterations before its failure, held back while others ran) is said, and the next
        # query computes it.
        rounds = f" ({len(outcomes)} rounds)" if len(outcomes) > 1 else ""
        _warn(
            engine,
            messages,
            f"still missing after replay{rounds}: {summary(planned.replay)}; the next query "
            "replays them",
            FlorWarning,
        )
    _unplaceable(engine, planned.replay, messages)
    _failed(engine, planned.replay, messages)
    _unreached(engine, planned.replay, messages)
    return planned, messages


#: Rounds of replay one query runs at most: all its tasks; then, where a task failed in some
#: of its statements, the others without them; then the blamed statements' earlier iterations
#: on their own (one more round per statement that failed at another iteration). What is left
#: after the last round is said in a warning and replayed by the next query.
MAX_ROUNDS = 5


def _retry(first: ReplayPlan, before: ReplayPlan, after: ReplayPlan) -> bool:
    """Whether the plan made after a round of replay (``before``) is a retry of part of the
    query's ``first`` plan: it has tasks, every (run, name) of them was in ``first``, and it
    is not ``before`` again."""
    if not any(v.runs for v in after.versions):
        return False
    pairs = {(r.run_id, n) for r in first.runs() for n in r.names}
    again = {(r.run_id, n) for r in after.runs() for n in r.names}
    return again <= pairs and after.replay_set() != before.replay_set()


@dataclass(frozen=True)
class _Merged:
    """The outcomes of a query's rounds of replay, as one."""

    tasks: int
    failures: tuple[str, ...]
    failed_ids: tuple[str | None, ...]
    nondeterministic: tuple[str, ...]
    data_changed: tuple[str, ...]
    rejected: tuple[str, ...]
    unverified: tuple[str, ...]
    drew: dict[str, list[str]]
    from_start: tuple[str, ...] = ()
    not_reached: tuple[str, ...] = ()


def _merged(outcomes: list[Any]) -> _Merged:
    def every(attr: str) -> tuple[Any, ...]:
        return tuple(x for o in outcomes for x in getattr(o, attr, ()))

    ids: list[str | None] = []
    for o in outcomes:
        got = tuple(getattr(o, "failed_ids", ()))
        ids += got if got else [None] * len(o.failures)
    return _Merged(
        tasks=sum(o.tasks for o in outcomes),
        failures=every("failures"),
        failed_ids=tuple(ids),
        nondeterministic=tuple(dict.fromkeys(every("nondeterministic"))),
        data_changed=tuple(dict.fromkeys(every("data_changed"))),
        rejected=every("rejected"),
        unverified=tuple(dict.fromkeys(every("unverified"))),
        drew=_drew(outcomes),
        from_start=tuple(dict.fromkeys(every("from_start"))),
        not_reached=tuple(dict.fromkeys(every("not_reached"))),
    )


def _drew(outcomes: list[Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for o in outcomes:
        for name, kinds in (getattr(o, "drew", None) or {}).items():
            known = out.setdefault(name, [])
            known.extend(k for k in kinds if k not in known)
    return out


def _unplaced_lines(v: VersionReplay) -> list[str]:
    return [f"{v.vid[:12]}: {name}: {why}" for name, why in v.unplaced]


def _edited(engine: Engine, plan: ReplayPlan, messages: Messages) -> None:
    """Say which statements a replay computes with a function their version defines otherwise
    than today's file (session 47, sweep L: an L1 ``wnorm`` edited into an L2 one since was
    replayed as L1 without a word)."""
    for v in plan.versions:
        for name, helpers in v.edited:
            _warn(
                engine,
                messages,
                f"version {v.vid[:12]} of {v.filename} computes {name} with "
                f"{', '.join(helpers)} as that version defines it; today's definition differs "
                "(a replay runs each version's own code: to use today's, give it another name)",
                FlorWarning,
            )


def _elsewhere(engine: Engine, plan: ReplayPlan, messages: Messages) -> None:
    """Say where today's statement logs a name at a loop level the runs logging it never did
    (session 48, sweep N: a new epoch-level ``flor.log("loss", ...)`` beside the step-level
    one old runs have got no values there, without a word)."""
    for filename, name, chain, runs, recorded in plan.elsewhere:
        where = f"in {chain}" if chain else "outside every loop"
        there = ", ".join(c or "outside every loop" for c in recorded)
        _warn(
            engine,
            messages,
            f"today's {filename} logs {name} {where}, where {runs} run(s) that log {name} never "
            f"did (they log it in {there}): florsql replays only names a run lacks, so those "
            f"rows are absent; give today's statement a name of its own to have it replayed",
            FlorWarning,
        )


def _unplaceable(engine: Engine, plan: ReplayPlan, messages: Messages) -> None:
    _elsewhere(engine, plan, messages)
    for filename, names, runs in plan.orphaned:
        _warn(
            engine,
            messages,
            f"{runs} run(s) of {filename} cannot compute {', '.join(names[:5])}"
            + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            + f": today's code has no {filename} (renamed or deleted), and today's statements "
            "go into a version's copy of the file of the same path; NULL (to compute them, "
            f"put today's code back at {filename}, or record those runs again)",
            FlorWarning,
        )
    for v in plan.versions:
        for name, why in v.unplaced:
            _warn(
                engine,
                messages,
                f"version {v.vid[:12]} of {v.filename} cannot compute {name}: today's statement "
                f"cannot be placed into it ({why}); NULL",
                FlorWarning,
            )
        if v.unplaceable:
            _warn(
                engine,
                messages,
                f"version {v.vid[:12]} of {v.filename} cannot compute "
                f"{', '.join(v.unplaceable)} (its runs that lack it never entered its loop: "
                "their code did not get there, and replay runs the old code's own branches); "
                "NULL",
                FlorWarning,
            )


def _failed(engine: Engine, plan: ReplayPlan, messages: Messages) -> None:
    """One warning per failed task the plan leaves out, with its full reason."""
    for f in plan.failures:
        its = [i for i in f.iterations if i is not None]
        where = f"outer iteration(s) {ranges(its)}" if its else ""
        if None in f.iterations:
            where += (" and " if where else "") + "the top level"
        _warn(
            engine,
            messages,
            f"{', '.join(f.names)} of run {f.run_id} ({where}): NULL, replay task "
            f"{f.replay_id}/{f.task_id} failed with this code{_FAILED_WHERE.get(f.cause, '')}; "
            f"it is tried again once the patched code changes{_FAILED_HINT.get(f.cause, '')}:"
            f"\n{f.reason}",
            ReplayFailedWarning,
        )


#: Why a replay that ran the old code on the run's state can depart from the recording.
_DEPARTED = (
    "state the checkpoints do not hold (an object the loop changes that is not registered in "
    "flor.checkpointing), today's statements changing the run (a draw from an RNG, an object "
    "changed), or old code that does not repeat itself (an unseeded RNG, threads, data that "
    "changed)"
)

#: What a remembered failure's warning says of where it raised (RememberedFailure.cause).
_FAILED_WHERE = {
    "statement": ": today's statement raised",
    "restore": ": putting the run's checkpoint back raised, before today's statements ran",
    "old code": ": the version's own code raised with today's statements in place",
}
_FAILED_HINT = {
    "statement": " (fix the statement)",
    "restore": " (the statement is not at fault: the checkpoint cannot be restored into this "
    "version's code; the reason below says why)",
    "old code": " (check what the statements, or the code carried with them, change that the "
    "old code reads)",
}


def _unreached(engine: Engine, plan: ReplayPlan, messages: Messages) -> None:
    """One warning per failed or killed run whose unreached values the query asked for."""
    for u in plan.unreached:
        if u.statement:
            _warn(
                engine,
                messages,
                f"{', '.join(u.names)} of run {u.run_id}: NULL where the run did not record it: "
                f"it recorded it in other iterations with another statement ({u.reason}) than "
                "today's, and replay does not mix today's values into that run's column (give "
                "today's statement a name of its own to have it replayed in every iteration)",
                FlorWarning,
            )
            continue
        if u.running:
            _warn(
                engine,
                messages,
                f"{', '.join(u.names)} of run {u.run_id}: NULL: the run is still running, and "
                "replay never runs a run before it ends; a query after it ended computes them",
                FlorWarning,
            )
            continue
        _warn(
            engine,
            messages,
            f"{', '.join(u.names)} of run {u.run_id}: NULL in the iteration the run ended in "
            f"and after it (it was {u.reason}): replay runs only the iterations a run finished, "
            "so any rows of that iteration get no replayed value",
            FlorWarning,
        )


def unstored_lines(con: Any, catalog: Any, plans: list[ReplayPlan]) -> list[str]:
    """What the finished tasks of ``plans`` left without a value, where today's statement runs
    in every iteration of its loop (:attr:`florsql.plan.hindsight.ScriptCode.every`): a helper
    holding it that the old code calls only every other epoch, a branch the old code takes
    only sometimes and propagation found today's statement in. A task covers the iterations
    it ran, valued or not: without this the rows stayed NULL, said nowhere (session 51). Read
    from ``con``'s index after the replay's refresh: ``__flor_cover`` holds the iterations the
    tasks covered, ``all_log_records`` their values; failed tasks cover nothing (their own
    warning says why)."""
    from florsql.fold import fold_sql

    where: dict[tuple[str, str], tuple[str, str, int, str]] = {}  # (run, name) -> statement
    rows: list[str] = []
    for plan in plans:
        for version in plan.versions:
            statements = {fold(n): (f, line) for n, line, _, f in version.statements}
            for run in version.runs:
                for need in run.needs:
                    for name in need.names:
                        site = statements.get(fold(name))
                        code = catalog.scripts.get(site[0]) if site is not None else None
                        if site is None or code is None or fold(name) not in code.every:
                            continue
                        where.setdefault(
                            (run.run_id, fold(name)), (name, site[0], site[1], run.vid)
                        )
                        row = (run.run_id, fold(name), need.loop, need.iteration)
                        rows.append("(" + ", ".join(map(_literal, row)) + ")")
    if not rows:
        return []
    found = con.execute(
        f"""WITH need(run_id, name, loop, it) AS (VALUES {", ".join(dict.fromkeys(rows))})
            SELECT n.run_id, n.name, n.loop, list(n.it ORDER BY n.it) FROM need n
            WHERE EXISTS (SELECT 1 FROM __flor_cover v WHERE v.run_id = n.run_id
                          AND v.name = n.name AND v.outer_loop = n.loop
                          AND v.outer_iteration = n.it)
            AND NOT EXISTS (SELECT 1 FROM all_log_records r JOIN __flor_ctx c
                            ON c.run_id = r.run_id AND c.ctx_id = r.ctx_id
                            WHERE r.run_id = n.run_id AND {fold_sql("r.name")} = n.name
                            AND c.outer_loop = n.loop AND c.outer_iteration = n.it)
            -- a run that entered the loop more than once numbers each pass's iterations
            -- alike: an iteration without a value may be another pass's (a second phase's
            -- flor.loop("epoch") in another file), as the planner's coverage rule says
            AND NOT EXISTS (SELECT 1 FROM __flor_times t WHERE t.run_id = n.run_id
                            AND t.loop_name = n.loop AND t.entries > 1)
            GROUP BY n.run_id, n.name, n.loop ORDER BY n.run_id, n.name, n.loop"""
    ).fetchall()
    out = []
    for run_id, key, loop, its in found:
        name, filename, line, vid = where[(run_id, key)]
        out.append(
            f"{name} of run {run_id}: NULL at {loop} {ranges(list(its))}: today's statement "
            f"({filename} line {line}) runs in every iteration, but the replay of version "
            f"{vid[:12]} did not run it there: the old code does not get to it in those "
            "iterations (a branch, or a call of the function around it, that the old version "
            "takes only under a condition): replay runs the old code's own calls and "
            "branches, so it cannot compute them"
        )
    return out


def _literal(value: object) -> str:
    from florsql.plan.stats import string_literal

    return str(value) if isinstance(value, int) else string_literal(str(value))
