"""Warnings about what a query reads: an arg, beside hindsight values, that some runs never
recorded (:func:`arg_gaps`); replayed values from tasks that disagreed with the recording
(:func:`stored_mismatches`).

A run recorded before today's code gained ``wd = flor.arg("wd", 0.0)`` has no ``wd``: its
``wd`` column is NULL. When today's statement reads ``wd``, propagation carries the
``flor.arg`` call into the run's old version, and replay computes the statement with the
default, as a re-run of the patched version would. The run's ``wd`` column stays as the
recording has it (NULL), so ``WHERE wd = 0.0`` leaves the run out and ``GROUP BY wd`` puts it
under NULL. Until replayed args are materialised (docs/replay.md, "Inside a worker"), a query
that reads such an arg and a hindsight column says so, with the default to ``coalesce`` with.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from sqlglot import exp

from florsql.fold import fold, fold_sql

if TYPE_CHECKING:
    import duckdb

    from florsql.plan.catalog import Catalog

__all__ = [
    "arg_gaps",
    "edited_reads",
    "stored_mismatches",
    "unexecuted_reads",
    "unstored_reads",
]


def arg_gaps(
    con: duckdb.DuckDBPyConnection, catalog: Catalog, query: exp.Expr, repo: Path, source: str
) -> list[str]:
    """One message per arg the query names, beside a hindsight column it names, that today's
    scripts read with ``flor.arg`` and some of their runs never recorded (``query``: the
    statement's query, as planning left it; ``source``: its text)."""
    args = {fold(c.name): c.name for c in catalog.columns if c.kind == "arg"}
    if not args:
        return []
    named = {fold(c.name) for c in query.find_all(exp.Column)}
    if not named & set(args):
        return []
    logs = [c for c in catalog.columns if c.kind == "log" and fold(c.name) in named]
    if not any(c.hindsight for c in logs):
        return []
    # an arg read only as ``coalesce(wd, ...)``'s first argument: the user took care of it
    # (read from the text as written: planning rewrote the tree)
    try:
        from florsql.grammar import parse

        written = parse(source).query
    except Exception:
        written = None
    if written is not None:
        named = {fold(c.name) for c in written.find_all(exp.Column) if not _coalesced(c)}
    out = []
    for key in sorted(named & set(args)):
        defaults: dict[str, str] = {}
        for filename in sorted(catalog.scripts):
            default = _arg_default(repo / filename, key)
            if default is not None:
                defaults[filename] = default
        if not defaults:
            continue
        rows = con.execute(
            "SELECT count(*) FROM run_meta m WHERE list_has_any(m.files, ?) AND NOT EXISTS "
            f"(SELECT 1 FROM args a WHERE a.run_id = m.run_id AND {fold_sql('a.name')} = ?)",
            [sorted(defaults), key],
        ).fetchall()  # fetched whole: DuckDB 2 refuses other work beside an open result
        lacking = int(rows[0][0]) if rows else 0
        if not lacking:
            continue
        name = args[key]
        values = sorted(set(defaults.values()))
        where = ", ".join(f"{d} in {f}" for f, d in sorted(defaults.items()))
        hint = (
            f"write coalesce({name}, {values[0]}) to count them with that default"
            if len(values) == 1
            else f"write coalesce({name}, <its default>) to count them with it"
        )
        out.append(
            f"{lacking} run(s) never recorded arg {name!r} (their code had none): {name} is NULL "
            f"for them, while values replayed for them with today's statements that read it use "
            f"today's default ({where}); {hint}"
        )
    return out


def _coalesced(column: exp.Column) -> bool:
    parent = column.parent
    return isinstance(parent, exp.Coalesce) and parent.this is column


def _arg_default(path: Path, name: str) -> str | None:
    """The default of ``flor.arg("<name>", default)`` in ``path`` as written (its source
    text), when the file calls it; else None."""
    try:
        st = path.stat()
    except OSError:
        return None
    return _defaults(str(path), st.st_mtime_ns, st.st_size).get(name)


@lru_cache(maxsize=64)
def _defaults(path: str, mtime_ns: int, size: int) -> dict[str, str]:
    """Per arg name (lower case), the default its first ``<module>.arg(...)`` call gives."""
    try:
        tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError, RecursionError, UnicodeDecodeError):
        return {}
    out: dict[str, str] = {}
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "arg"
            and isinstance(node.func.value, ast.Name)
        ):
            continue
        first = node.args[0] if node.args else None
        if first is None:
            first = next((k.value for k in node.keywords if k.arg == "name"), None)
        if not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            continue
        default = node.args[1] if len(node.args) > 1 else None
        if default is None:
            default = next((k.value for k in node.keywords if k.arg == "default"), None)
        if default is not None:
            out.setdefault(fold(first.value), ast.unparse(default))
    return out


def stored_mismatches(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    query: exp.Expr,
    memo: dict[int, tuple[Catalog, dict[str, tuple[int, str]]]] | None = None,
) -> list[str]:
    """One message per log name the query reads whose counted replayed values (for some runs)
    come from replay tasks that disagreed with the recording (``replays.mismatch``): the
    replay that made them warned once; every later read of them says so too. ``memo``: kept
    by the caller, the names per catalog (read once per index state, not per query)."""
    logs = {fold(c.name) for c in catalog.columns if c.kind == "log"}
    if not logs:
        return []
    if any(True for _ in query.find_all(exp.Star)):
        named = logs
    else:
        named = {fold(c.name) for c in query.find_all(exp.Column)} & logs
    if not named:
        return []
    known = _per_catalog(memo, catalog, lambda: _mismatched(con))
    return [
        f"the replayed values of {name} for {known[name][0]} run(s) come from replays whose "
        f"old statements disagreed with the recording (e.g. {known[name][1]}); they may not "
        "be what a run of the patched code logs (replays.mismatch has each one; the warning of "
        "the query that replayed them says what can cause it)"
        for name in sorted(named)
        if name in known
    ]


_V = TypeVar("_V")


def _per_catalog(
    memo: dict[int, tuple[Catalog, _V]] | None, catalog: Catalog, compute: Callable[[], _V]
) -> _V:
    """What ``compute`` answers for ``catalog`` (one index state), kept in ``memo`` (the
    caller's) until the catalog changes: read once per index state, not per query."""
    hit = None if memo is None else memo.get(0)
    if hit is not None and hit[0] is catalog:
        return hit[1]
    known = compute()
    if memo is not None:
        memo[0] = (catalog, known)
    return known


def _mismatched(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[int, str]]:
    """Per log name (lower case) with counted replayed values from tasks that disagreed: how
    many runs, and one of the disagreements."""
    try:
        rows = con.execute(
            """SELECT v.name, count(DISTINCT r.run_id), min(r.mismatch)
               FROM replays r JOIN __flor_valid v
                 ON v.replay_id = r.replay_id AND v.task_id = r.task_id
               WHERE r.mismatch IS NOT NULL GROUP BY v.name"""
        ).fetchall()
    except Exception as e:  # an index without replays yet (the empty view has no mismatch)
        if type(e).__module__.startswith(("duckdb", "_duckdb")):
            return {}
        raise
    return {str(n): (int(k), str(m)) for n, k, m in rows}


#: The start of the replaying query's own message (:func:`florsql.engine.replay_decision.
#: unstored_lines`): where it was said just now, :func:`unstored_reads` is not.
UNSTORED_SAID = "runs in every iteration, but the replay"


def unstored_reads(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    query: exp.Expr,
    memo: dict[int, tuple[Catalog, dict[str, tuple[int, int]]]] | None = None,
) -> list[str]:
    """One message per log name the query reads that today's code logs in every iteration
    of its loop (:attr:`ScriptCode.every`) while finished replay tasks left outer iterations
    of that loop without a value (the old code did not get to the statement there): the query
    that replayed them said why, per run; every later read says so too, where before it
    answered NULL and EXPLAIN "every value the query reads exists" (session 51, sweep W)."""
    sites = {
        (fold(s.name), s.chain[0])
        for code in catalog.scripts.values()
        for s in code.sites
        if s.chain and fold(s.name) in code.every
    }
    if not sites:
        return []
    if any(True for _ in query.find_all(exp.Star)):
        named = {n for n, _ in sites}
    else:
        named = {fold(c.name) for c in query.find_all(exp.Column)} & {n for n, _ in sites}
    if not named:
        return []
    known = _per_catalog(memo, catalog, lambda: _unstored(con, sorted(sites)))
    return [
        f"{name}: NULL in {known[name][1]} outer iteration(s) of {known[name][0]} run(s) where "
        "today's statement runs in every iteration, but the replay of their old version did "
        "not get to it (the query that replayed them said where and why)"
        for name in sorted(named)
        if name in known
    ]


def _unstored(
    con: duckdb.DuckDBPyConnection, sites: list[tuple[str, str]]
) -> dict[str, tuple[int, int]]:
    """Per name (lower case): the runs and outer iterations of ``sites``' loops that counted
    replay tasks covered without a value there."""
    from florsql.plan.stats import string_literal

    values = ", ".join(f"({string_literal(n)}, {string_literal(lp)})" for n, lp in sites)
    try:
        rows = con.execute(
            f"""WITH s(name, loop) AS (VALUES {values})
                SELECT p.name, count(DISTINCT p.run_id), count(*)
                FROM __flor_replayed p JOIN s ON s.name = p.name AND s.loop = p.outer_loop
                WHERE NOT EXISTS (
                    SELECT 1 FROM all_log_records r JOIN __flor_ctx c
                    ON c.run_id = r.run_id AND c.ctx_id = r.ctx_id
                    WHERE r.run_id = p.run_id AND {fold_sql("r.name")} = p.name
                    AND c.outer_loop = p.outer_loop AND c.outer_iteration = p.outer_iteration)
                AND NOT EXISTS (SELECT 1 FROM __flor_times t WHERE t.run_id = p.run_id
                    AND t.loop_name = p.outer_loop AND t.entries > 1)
                GROUP BY p.name"""
        ).fetchall()
    except Exception as e:  # an index built before __flor_replayed: nothing to say
        if type(e).__module__.startswith(("duckdb", "_duckdb")):
            return {}
        raise
    return {str(n): (int(k), int(m)) for n, k, m in rows}


def edited_reads(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    query: exp.Expr,
    repo: Path,
    memo: dict[str, tuple[Catalog, list[str]]] | None = None,
) -> list[str]:
    """One message per log name the query names whose runs recorded it with another
    statement than today's (``flor.log("val", w * 3)`` where today's code has ``w * 4``;
    :func:`florsql.plan.guards.other_statement`): a run that logged a name is never replayed
    for it, so those rows hold the old statement's values, beside today's where other runs
    were replayed (sweep X, session 51: ``sum(val)`` 55.97 for 74.63, and ``*3`` beside ``*4``
    in one column, said nowhere). ``memo``: per name, kept while the catalog is the same."""
    logs = {fold(c.name): c.name for c in catalog.columns if c.kind == "log"}
    if not logs or any(True for _ in query.find_all(exp.Star)):
        return []  # (``SELECT *`` names none: a preview says nothing of each)
    named = sorted({fold(c.name) for c in query.find_all(exp.Column)} & set(logs))
    out: list[str] = []
    for name in named:
        hit = None if memo is None else memo.get(name)
        if hit is not None and hit[0] is catalog:
            out += hit[1]
            continue
        lines = _edited(con, catalog, repo, name)
        if memo is not None:
            memo[name] = (catalog, lines)
        out += lines
    return out


def _edited(con: duckdb.DuckDBPyConnection, catalog: Catalog, repo: Path, name: str) -> list[str]:
    from florsql.plan.guards import _log_calls, other_statement
    from florsql.versions import text_reader

    text = text_reader(repo)
    out = []
    for filename, code in sorted(catalog.scripts.items()):
        if not code.sites_of(name):
            continue
        today = text(None, filename)
        if today is None:
            continue
        rows = con.execute(
            """SELECT m.vid, count(DISTINCT m.run_id) FROM run_meta m
               WHERE list_contains(m.files, ?) AND EXISTS (SELECT 1 FROM __flor_cover v
                   WHERE v.run_id = m.run_id AND v.name = ? AND v.recorded)
               GROUP BY m.vid ORDER BY min(m.tstamp)""",
            [filename, name],
        ).fetchall()
        edited = []
        for vid, runs in rows:
            old = text(str(vid), filename)
            if old is None:
                continue
            why = other_statement(today, old, name)
            if why is not None:
                edited.append((str(vid), int(runs), why))
        if not edited:
            continue
        runs = sum(k for _, k, _ in edited)
        vid, _, why = edited[0]
        mine = sorted(_log_calls(today).get(name, ()))
        more = f" and {len(edited) - 1} more version(s)" if len(edited) > 1 else ""
        out.append(
            f"{code.sites_of(name)[0].name}: {runs} run(s) recorded it with another statement "
            f"than today's ({why} in version {vid[:12]}{more} of {filename}; today: "
            f"{mine[0] if mine else '?'}): their values are that statement's, not today's, "
            "and where it did not log, NULL (a run that logged a name is never replayed for it; "
            "give today's statement a name of its own to have it computed for every run)"
        )
    return out


#: Value types that make a log column a number (:func:`florsql.plan.catalog.log_type`).
_NUMERIC = ("int", "float", "bool")


def mixed_reads(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    query: exp.Expr,
    memo: dict[int, tuple[Catalog, dict[str, tuple[int, int, str, int, bool]]]] | None = None,
) -> list[str]:
    """One message per log name (or arg) the query reads that some runs logged as numbers
    and others as text: the column is ``VARCHAR`` (docs/sql.md, types), so its values
    compare, sort and aggregate as text, every run's (session 55, sweep AE: one
    ``flor.log("loss", "n/a")`` of another script made ``max(loss)`` over train.py's runs
    ``'9.0'``, not ``10.0``, said nowhere)."""
    kinds = {
        fold(c.name): c.kind
        for c in catalog.columns
        if c.kind in ("log", "arg") and c.sql_type == "VARCHAR"
    }
    mixed = set(kinds)
    if not mixed:
        return []
    # ``count(*)`` reads no column (sweep AF, session 56: it warned of every mixed column)
    if any(not isinstance(s.parent, exp.Count) for s in query.find_all(exp.Star)):
        named = mixed
    else:
        named = {fold(c.name) for c in query.find_all(exp.Column)} & mixed
    if not named:
        return []
    known = _per_catalog(
        memo,
        catalog,
        lambda: {
            **_mixed(con, sorted(n for n in mixed if kinds[n] == "arg"), "args"),
            **_mixed(con, sorted(n for n in mixed if kinds[n] == "log"), "all_log_records"),
        },
    )
    verbs = {"log": ("logged", "logging"), "arg": ("took", "taking")}
    out = []
    for name in sorted(named):
        if name not in known:
            continue
        numbers, texts, run, both, digits = known[name]
        done, doing = verbs[kinds[name]]
        # an integer past BIGINT's range is stored as its decimal text (docs/record.md):
        # numbers to the user, text to the column (sweep AJ, session 57: "logged text")
        text = "integers past BIGINT's range, stored as text," if digits else "text"
        if both == numbers == texts:
            who = f"{texts} run(s) {done} both numbers and {text} under it (run {run})"
        else:
            who = (
                f"{texts} run(s) {done} {text} under it (run {run}) beside {numbers} run(s) "
                f"{doing} numbers"
            )
        advice = (
            f"read the numbers as TRY_CAST({name} AS HUGEINT) or AS DOUBLE"
            if digits
            else f"read the numbers as TRY_CAST({name} AS DOUBLE), or give the text another name"
        )
        out.append(
            f"{name}: VARCHAR, as {who}: its values compare, sort and aggregate as text ('9.0' "
            f"> '10.0'); {advice}"
        )
    return out


def _mixed(
    con: duckdb.DuckDBPyConnection, names: list[str], table: str
) -> dict[str, tuple[int, int, str, int, bool]]:
    """Per name (lower case) logged (``table``: ``all_log_records``) or taken as an arg
    (``args``) as numbers by some runs and as text by others: the runs of each and one run
    with text."""
    if not names:
        return {}
    numeric = ", ".join(f"'{t}'" for t in _NUMERIC)
    text = f"vtype NOT IN ({numeric}, 'null')"
    rows = con.execute(
        f"""SELECT n, count(*) FILTER (WHERE num), count(*) FILTER (WHERE txt),
                   min(run_id) FILTER (WHERE txt), count(*) FILTER (WHERE num AND txt),
                   bool_and(digits) FILTER (WHERE txt)
            FROM (SELECT {fold_sql("name")} AS n, run_id,
                         bool_or(vtype IN ({numeric})) AS num, bool_or({text}) AS txt,
                         bool_and(vtype = 'str' AND regexp_full_match(value_str, '-?[0-9]{{19,}}'))
                             FILTER (WHERE {text}) AS digits
                  FROM {table} WHERE {fold_sql("name")} IN (SELECT unnest(?::VARCHAR[]))
                  GROUP BY n, run_id)
            GROUP BY n""",
        [names],
    ).fetchall()
    return {
        str(n): (int(a), int(b), str(r), int(both), bool(d))
        for n, a, b, r, both, d in rows
        if a and b
    }


def unexecuted_reads(
    con: duckdb.DuckDBPyConnection,
    catalog: Catalog,
    query: exp.Expr,
    memo: dict[int, tuple[Catalog, dict[str, tuple[int, str, str]]]] | None = None,
) -> list[str]:
    """One message per log name the query names that today's code logs only in files some
    runs of the same main script never executed (a helper moved since into a module their
    version never imported): a replay places a statement only into files a run executed, so
    those runs have no value and no replay to compute one (docs/replay.md, "Statements in
    imported modules"). Until session 58 (sweep AO) such a run's column was NULL, said
    nowhere, while a run that imported the module got a "cannot compute" warning."""
    from florsql.plan.stats import string_literal

    code = {(fold(n), f) for f, script in catalog.scripts.items() for n in script.names()}
    if not code or any(True for _ in query.find_all(exp.Star)):
        return []
    named = {fold(c.name) for c in query.find_all(exp.Column)} & {n for n, _ in code}
    if not named:
        return []

    def compute() -> dict[str, tuple[int, str, str]]:
        values = ", ".join(f"({string_literal(n)}, {string_literal(f)})" for n, f in sorted(code))
        try:
            rows = con.execute(
                f"""WITH code(name, filename) AS (VALUES {values}),
                    -- the main scripts of runs that executed a file logging the name
                    mains AS (SELECT DISTINCT c.name, m.filename AS main FROM code c
                              JOIN run_meta m ON list_contains(m.files, c.filename))
                    SELECT s.name, count(DISTINCT m.run_id), min(m.run_id),
                           string_agg(DISTINCT c.filename, ', ' ORDER BY c.filename)
                    FROM mains s JOIN run_meta m ON m.filename = s.main
                    JOIN code c ON c.name = s.name
                    WHERE NOT EXISTS (SELECT 1 FROM code c2 WHERE c2.name = s.name
                                      AND list_contains(m.files, c2.filename))
                    AND NOT EXISTS (SELECT 1 FROM __flor_cover v WHERE v.run_id = m.run_id
                                    AND {fold_sql("v.name")} = s.name)
                    GROUP BY s.name"""
            ).fetchall()
        except Exception as e:  # an index without run files: nothing to say
            if type(e).__module__.startswith(("duckdb", "_duckdb")):
                return {}
            raise
        return {str(n): (int(k), str(r), str(f)) for n, k, r, f in rows}

    known = _per_catalog(memo, catalog, compute)
    out = []
    for name in sorted(named):
        if name not in known:
            continue
        runs, run, files = known[name]
        out.append(
            f"{name}: no value for {runs} run(s) (run {run}) that never executed {files}, where "
            "today's code logs it: a replay places a statement only into files the run "
            "executed at its version (its main script and the modules it imported), so "
            "nothing computes it there; log it also in code those runs executed to have it "
            "for them"
        )
    return out
