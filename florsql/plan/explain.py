"""EXPLAIN: the replay plan and the final DuckDB SQL as text lines. Runs nothing."""

from __future__ import annotations

from collections.abc import Sequence

from florsql.plan.replay_plan import Chunk, ReplayPlan, RunReplay, VersionReplay

__all__ = ["explain_lines", "human_bytes", "human_seconds", "ranges"]

RUNS_SHOWN = 8


def ranges(values: tuple[int, ...] | list[int]) -> str:
    """Compress sorted integers into ranges.

    Example:
        >>> ranges([0, 1, 2, 5, 7, 8])
        '0-2, 5, 7-8'
    """
    out: list[str] = []
    items = sorted(set(values))
    i = 0
    while i < len(items):
        j = i
        while j + 1 < len(items) and items[j + 1] == items[j] + 1:
            j += 1
        out.append(str(items[i]) if i == j else f"{items[i]}-{items[j]}")
        i = j + 1
    return ", ".join(out)


def human_bytes(n: int) -> str:
    value = float(n)
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def human_seconds(s: float) -> str:
    if s < 120:
        return f"{s:.1f} s"
    if s < 7200:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def _chunk(c: Chunk) -> str:
    where = "from the top of the script"
    if c.checkpoint is not None:
        ck = c.checkpoint
        where = f"from checkpoint {ck.loop} {ck.iteration} ({ck.position}, {human_bytes(ck.bytes)})"
    if c.kind == "head":
        what = "code before the loops"
    elif c.kind == "tail":
        what = f"{c.loop or 'loop'} {c.start}.. to the end of the script"
    elif c.kind == "all":
        what = "the whole run"
    else:
        what = f"{c.loop} {ranges(c.iterations)}"
        if c.start is not None and c.iterations and c.start < c.iterations[0]:
            what += f" (runs {c.start}-{c.iterations[0] - 1} first)"
    return f"{what} {where}, ~{human_seconds(c.seconds)}"


def step_lines(c: Chunk) -> list[str]:
    """The chunk's steps, consecutive iterations with the same mode and reason on one line.

    Example:
        >>> from florsql.plan.replay_plan import Step
        >>> lead = "full: leads on"
        >>> steps = (Step(3, "rest", 3, "rest: running captured"),
        ...          Step(4, "full", None, lead), Step(5, "full", None, lead))
        >>> step_lines(Chunk("iterations", "epoch", (3, 5), 3, None, False, 1.0, steps))
        ['epoch 3 rest: running captured', 'epoch 4-5 full: leads on']
    """
    groups: list[tuple[list[int], str]] = []
    for s in c.steps:
        why = s.why if s.why.startswith(s.mode) else f"{s.mode}: {s.why}"
        if groups and groups[-1][1] == why and groups[-1][0][-1] + 1 == s.iteration:
            groups[-1][0].append(s.iteration)
        else:
            groups.append(([s.iteration], why))
    return [f"{c.loop} {ranges(its)} {why}" for its, why in groups]


def _run(r: RunReplay) -> list[str]:
    per_loop: dict[str, list[int]] = {}
    for need in r.needs:
        per_loop.setdefault(need.loop, []).append(need.iteration)
    its = "; ".join(f"{lp} {ranges(v)}" for lp, v in per_loop.items())
    top = f"; outside loops: {', '.join(r.top_level)}" if r.top_level else ""
    lines = [f"    run {r.run_id}: {its or 'no loop iterations'}{top} ({', '.join(r.names)})"]
    if r.companions:  # today's other statements that may draw: run beside, values not kept
        lines.append(f"      also runs, values not kept (may draw): {', '.join(r.companions)}")
    restricted = [n for n in r.needs if n.inner]
    if restricted:
        inner = restricted[0].inner[0]
        lines.append(
            f"      only {inner.loop} {ranges(inner.iterations)} in {len(restricted)} iteration(s)"
        )
    for c in r.chunks:
        lines.append(f"      task: {_chunk(c)}")
        lines += [f"        {line}" for line in step_lines(c)]
        if c.to_end:
            lines.append("        then the code after the loop")
        if c.fallback is not None:
            lines.append("        if verification fails: every step in full")
    return lines


def _version(v: VersionReplay) -> list[str]:
    lines = [
        f"  version {v.vid[:12]} {v.filename}: {len(v.runs)} run(s), ~{human_seconds(v.seconds)}"
    ]
    for name, line, chain, file in v.statements:
        where = "/".join(chain) if chain else ("outside loops" if chain == () else "unknown loop")
        lines.append(f"    statement: {name} ({file} line {line}, in {where})")
    lines.append(f"    inner loops skipped: {', '.join(v.skip_inner) or 'none'}")
    if v.unplaceable:
        lines.append(
            f"    cannot place: {', '.join(v.unplaceable)} (the runs of this version that lack it "
            "never entered its loop: their code did not get there, and replay runs the old "
            "code's own branches; NULL)"
        )
    for name, why in v.unplaced:
        lines.append(f"    cannot place: {name} ({why}); NULL")
    for name, why in v.lost:
        lines.append(
            f"    replayed without today's {name}: it may draw from an RNG and cannot be placed "
            f"({why})"
        )
    for name, helpers in v.edited:
        lines.append(
            f"    {name} calls {', '.join(helpers)} as this version defines it (today's "
            "definition differs: a replay runs each version's own code)"
        )
    uneven = [n for n, how in v.uneven if how == "uneven" or len(v.names) > 1]
    if uneven:
        lines.append(
            f"    may draw in some iterations only: {', '.join(uneven)} (a task that skips "
            "iterations cannot see such a draw: a run whose task skips any is replayed again "
            "from its start, unless a replay of this code from its start saw no draw)"
        )
    for r in v.runs[:RUNS_SHOWN]:
        lines += _run(r)
    if len(v.runs) > RUNS_SHOWN:
        lines.append(f"    ... and {len(v.runs) - RUNS_SHOWN} more run(s)")
    return lines


def explain_lines(
    plan: ReplayPlan, sql: str, pivot: str | None = None, notes: Sequence[str] = ()
) -> list[str]:
    """The text EXPLAIN shows, one line per item (``pivot``: the materialized pivot's SQL;
    ``notes``: what the query would warn of the recorded values it reads).

    Example:
        >>> explain_lines(ReplayPlan(), "SELECT 1")[:2]
        ['Replay plan: nothing to replay (every value the query reads exists)', 'DuckDB SQL:']
    """
    lines: list[str] = []
    if plan.empty and plan.elsewhere:
        lines.append("Replay plan: nothing to replay (but see 'not replayed' below)")
    elif plan.empty and notes:
        lines.append("Replay plan: nothing to replay (but see the notes below)")
    elif plan.empty:
        lines.append("Replay plan: nothing to replay (every value the query reads exists)")
    else:
        c = plan.cost
        lines.append(
            f"Replay plan: {c.runs} run(s), {c.iterations} outer iteration(s), {c.tasks} "
            f"task(s), est. {human_seconds(c.seconds)} of work, "
            f"{human_bytes(c.checkpoint_bytes)} of checkpoints restored"
        )
        threads = f"{c.threads} thread{'s' * (c.threads != 1)} each"
        start = "warm worker running" if c.warm else "warm worker start included"
        if not c.forks:
            start = "an interpreter per task, its start included in each"
        if c.start:
            how = "measured on this machine" if c.start_measured else "not yet measured here"
            start += f" ({human_seconds(c.start)}, {how})"
        lines.append(
            f"  est. wall time {human_seconds(c.wall)}: {c.at_once} task(s) at once "
            f"({threads}, {c.cores} core{'s' * (c.cores != 1)}); {start}"
        )
        if c.scaled_from:
            lines.append(
                f"  task estimates x{c.scale:g}: the median of what the last {c.scaled_from} "
                "replay tasks here took against their estimates"
            )
        elif c.machine_scale:
            lines.append(
                f"  task estimates x{c.scale:g}: what recent replays on this machine took "
                "against their estimates (too few replay tasks here yet)"
            )
    if plan.names:
        lacking = ", ".join(_lacking_text(n, k, dict(plan.lacking_some)) for n, k in plan.lacking)
        lines.append(f"  hindsight columns: {lacking}")
    for i, (pushed, residual) in enumerate(zip(plan.pushed, plan.residual, strict=False)):
        tail = "; other predicates stay in DuckDB" if residual else ""
        label = f"logs #{i + 1}" if len(plan.pushed) > 1 else "logs"
        lines.append(f"  pushed into the replay set ({label}): {pushed}{tail}")
    lines += [f"  note: {n}" for n in (*plan.notes, *notes)]
    for v in plan.versions:
        lines += _version(v)
    for name, count in plan.unreplayable:
        lines.append(f"  not replayable: {name} for {count} run(s) (their script does not log it)")
    for filename, names, runs in plan.orphaned:
        lines.append(
            f"  not replayable: {', '.join(names)} for {runs} run(s) of {filename}, which "
            "today's code no longer has (renamed or deleted)"
        )
    for filename, name, chain, runs, recorded in plan.elsewhere:
        where = f"in {chain}" if chain else "outside every loop"
        there = ", ".join(c or "outside every loop" for c in recorded)
        lines.append(
            f"  not replayed: {name} {where} (today's {filename}) for {runs} run(s), which log "
            f"{name} only in {there} (a name a run logs is never replayed: give the statement "
            "its own name)"
        )
    for f in plan.failures:
        first = f.reason.splitlines()[0] if f.reason else ""
        lines.append(f"  not replayed, failed before: {', '.join(f.names)}: {first}")
    for u in plan.unreached:
        if u.statement:
            lines.append(
                f"  not replayed: {', '.join(u.names)} of run {u.run_id}, which recorded it in "
                f"other iterations with another statement ({u.reason}): give today's its own "
                "name to have it replayed"
            )
            continue
        if u.running:
            lines.append(
                f"  not replayed, the run is still running: {', '.join(u.names)} of run {u.run_id}"
            )
            continue
        lines.append(
            f"  not replayed, the run ended: {', '.join(u.names)} of run {u.run_id} ({u.reason})"
        )
    lines.append("DuckDB SQL:")
    lines += ["  " + ln for ln in sql.splitlines()]
    if pivot is not None and "__flor_wide" in sql:
        lines.append("__flor_wide, the pivot materialized once per index generation:")
        lines += ["  " + ln for ln in pivot.splitlines()]
    return lines


def _lacking_text(name: str, runs: int, some: dict[str, int]) -> str:
    """How EXPLAIN says which runs lack a hindsight column (session 51: "2 run(s) did not
    record it" of runs that recorded it in half the epochs)."""
    partial = some.get(name, 0)
    if partial >= runs:
        return f"{name} ({runs} run(s) recorded it in some iterations only)"
    if partial:
        return (
            f"{name} ({runs - partial} run(s) did not record it, {partial} in some iterations only)"
        )
    return f"{name} ({runs} run(s) did not record it)"
