"""The planner's helper relations, rebuilt when the index changes.

They live in ``schema``: by default TEMP objects of the one connection that builds them; the
engine builds them in an attached in-memory database (``flor.main``, see
:mod:`florsql.engine.sandbox`) so that every cursor of the instance sees the same ones. Either
way the index file never changes for a query:

- ``all_log_records``: every log value the query side may read, with a ``source`` column:
  ``'record'`` for the values runs recorded, ``'replay'`` for those replays computed with
  today's statement for their name (``__flor_valid``).
- ``__flor_current``: today's statement fingerprint per log name (lower case), from the caller
  (:attr:`florsql.plan.catalog.Catalog.fingerprints`).
- ``__flor_valid``: per finished replay task, the names it computed with today's fingerprint:
  the replayed values, and the task coverage, that count (docs/replay.md).
- ``replays``: the replays run so far (an empty relation before the first one).
- ``__flor_ctx``: per (run, loop context): its loop chain (``'epoch/step'``), its outermost loop
  and iteration, the loop and iteration one level in, and one column per loop name holding
  that loop's iteration (the loop columns of ``logs``), named :func:`loop_column` so that no
  loop's name (a loop named ``chain`` or ``ctx_id``) is taken for one of the others.
- ``__flor_chains``: per (run, chain, outer iteration): how many inner iterations it ran.
- ``__flor_times``: per (run, outer iteration): its seconds, its inner loops' seconds, and
  how many times the run began it (``entries``: more than 1 where the script entered the same
  outer loop twice, ``fit(2); fit(2)``).
- ``__flor_cover``: which (run, name in lower case, outermost loop and iteration) are known: a
  recorded or (counted) replayed value there, or a finished replay task that computed the name
  in that outer iteration with today's statement (even if the statement logged nothing there);
  keyed by the loop too, as one name may be logged under two outer loops (pretraining and
  fine-tuning); the outer loop and iteration are NULL for the top level (a value outside
  every loop, or a task that ran to the end of the script). What replay skips.
- ``__flor_replayed``: the (run, name, outer iteration) of ``__flor_cover`` that counted
  replay tasks covered, recorded values there or not: a name recorded in some inner
  iterations of an outer one, and logged in every one today, is computed until a task did.
- ``__flor_open``: per run, the top-level loop iterations that never ended (a run that failed
  or was killed in them; also an outer loop left by ``break``).
- ``__flor_names``: per log name, its value types and record count (the column types of
  ``logs``). Names that differ only in case are one name (``spellings`` lists how runs wrote
  it), spelled as the earliest run spelled it (run ids sort by start time).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from florsql.fold import fold, fold_sql
from florsql.store.schema import quote

if TYPE_CHECKING:
    import duckdb

__all__ = [
    "Generation",
    "fingerprint",
    "loop_column",
    "loop_names",
    "outer_loops",
    "rebuild_code_stats",
    "rebuild_stats",
    "string_literal",
]

#: The columns replayed values will add: a store table of this name is unioned in when present.
REPLAY_RECORDS = "replay_log_records"
#: Per finished replay task and name: the fingerprint of the statements that computed it.
REPLAY_NAMES = "replay_names"
VALID = "__flor_valid"
LOG_COLUMNS = "run_id, seq, ctx_id, name, vtype, value_int, value_float, value_str"

_REPLAYS_EMPTY = """CREATE OR REPLACE {kind} {name} AS
SELECT * FROM (VALUES (NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR, NULL::VARCHAR[],
    NULL::VARCHAR, NULL::BIGINT[], NULL::VARCHAR, NULL::TIMESTAMPTZ, NULL::DOUBLE))
    AS r(replay_id, run_id, vid, names, loop_name, iterations, status, started, seconds)
WHERE false"""


@dataclass(frozen=True)
class Generation:
    """A fingerprint of the index contents: helper relations are rebuilt when it changes."""

    sources: int
    mtime_sum: int
    size_sum: int
    replays: int = 0  # replay tasks ingested, finished or failed (another process's too)


def loop_column(name: str) -> str:
    """The column of ``__flor_ctx`` holding loop ``name``'s iteration: prefixed, as no column
    of its own is, so a loop may have any name (``chain``, ``ctx_id``...).

    Example:
        >>> loop_column("epoch")
        'loop:epoch'
    """
    return f"loop:{name}"


def string_literal(text: str) -> str:
    """A SQL string literal for ``text``.

    Example:
        >>> string_literal("it's")
        "'it''s'"
    """
    return "'" + text.replace("'", "''") + "'"


def fingerprint(con: duckdb.DuckDBPyConnection) -> Generation:
    """What the index holds now, in four numbers (cheap: one scan of ``ingested``, and the
    replay tasks' counts)."""
    row = con.execute(
        "SELECT count(*), coalesce(sum(mtime_ns), 0)::HUGEINT::VARCHAR, "
        "coalesce(sum(size), 0)::HUGEINT::VARCHAR, "
        "(SELECT count(*) FROM replays) + (SELECT count(*) FROM replay_failures) FROM ingested"
    ).fetchone()
    assert row is not None
    return Generation(int(row[0]), int(row[1]), int(row[2]), int(row[3]))


def _tables(con: duckdb.DuckDBPyConnection, database: str | None) -> set[str]:
    where = "NOT temporary"
    if database is not None:
        where += f" AND database_name = {string_literal(database)}"
    rows = con.execute(f"SELECT table_name FROM duckdb_tables() WHERE {where}").fetchall()
    return {r[0] for r in rows}


def outer_loops(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Loop names never nested in another loop, in lower case (names ignore case)."""
    rows = con.execute(
        f"SELECT {fold_sql('loop_name')} FROM ctx_path GROUP BY 1 HAVING max(depth) = 0"
    ).fetchall()
    return {r[0] for r in rows}


def loop_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Loop names, outermost first (by their smallest depth, then name).

    Names that differ only in case are one loop, spelled as the earliest run spelled it (run
    ids sort by start time).
    """
    rows = con.execute(
        f"""SELECT arg_min(loop_name, run_id) AS loop_name FROM ctx_path
           GROUP BY {fold_sql("loop_name")} ORDER BY min(depth), {fold_sql("loop_name")}"""
    ).fetchall()
    return [r[0] for r in rows]


def rebuild_stats(
    con: duckdb.DuckDBPyConnection,
    *,
    schema: str | None = None,
    index_db: str | None = None,
    fingerprints: Mapping[str, str] | None = None,
    replays_only: bool = False,
    since: str | None = None,
) -> None:
    """(Re)create every helper relation from the index as it is now.

    Args:
        con: the connection that builds them; its search path must find ``schema``'s objects
            unqualified when ``schema`` is given.
        schema: where they go (``'flor.main'``), or None for TEMP objects of ``con``.
        index_db: the index's catalog, to name its tables fully (views in another database
            bind their names when queried, through the querying connection's search path).
        fingerprints: today's statement fingerprint per log name in lower case
            (:attr:`florsql.plan.catalog.Catalog.fingerprints`): a replayed value counts only
            where its task computed the name with this fingerprint. None: no replayed value
            counts.
        replays_only: only replayed values changed since the last full rebuild (the recorded
            sources are the same): the relations of the recorded loops (``__flor_ctx``,
            ``__flor_chains``, ``__flor_times``, ``__flor_open``), each the size of every run's
            loop contexts, are kept; those that read replayed values are rebuilt.
        since: with ``replays_only``, a table (fully named) of the ``__flor_valid`` rows that
            ``__flor_cover`` and ``__flor_names`` were last built with: when the counted
            replayed values only grew, those two are updated with the new ones
            (:func:`_code_tables_since`) instead of rebuilt from every record.
    """
    tables = _tables(con, index_db)
    place = "TEMP " if schema is None else ""
    prefix = "" if schema is None else f"{schema}."
    src = "" if index_db is None else f"{quote(index_db)}.main."
    source = f"SELECT {LOG_COLUMNS}, 'record' AS source FROM {src}log_records"
    if REPLAY_RECORDS in tables:
        source += (
            f" UNION ALL SELECT {LOG_COLUMNS}, 'replay' AS source FROM {src}{REPLAY_RECORDS} r"
            f" WHERE EXISTS (SELECT 1 FROM {prefix}{VALID} v WHERE v.replay_id = r.replay_id"
            f" AND v.task_id = r.task_id AND v.name = {fold_sql('r.name')})"
        )
    _current_tables(con, fingerprints or {}, tables, place, prefix, src)
    con.execute(f"CREATE OR REPLACE {place}VIEW {prefix}all_log_records AS {source}")
    if "replays" not in tables:
        con.execute(_REPLAYS_EMPTY.format(kind=f"{place}VIEW", name=f"{prefix}replays"))
    if not replays_only:  # the recorded loops' contexts
        loops = loop_names(con)
        per_loop = "".join(
            f", max(iteration) FILTER (WHERE {fold_sql('loop_name')} = {string_literal(fold(n))})"
            f" AS {quote(loop_column(n))}"
            for n in loops
        )
        con.execute(
            f"""CREATE OR REPLACE {place}TABLE {prefix}__flor_ctx AS
            SELECT run_id, ctx_id, string_agg(loop_name, '/' ORDER BY depth) AS chain,
                   any_value(loop_name) FILTER (WHERE depth = 0) AS outer_loop,
                   any_value(iteration) FILTER (WHERE depth = 0) AS outer_iteration,
                   any_value(loop_name) FILTER (WHERE depth = 1) AS inner_loop,
                   any_value(iteration) FILTER (WHERE depth = 1) AS inner_iteration{per_loop}
            FROM ctx_path GROUP BY run_id, ctx_id"""
        )
        # (before the code tables: ``__flor_cover`` reads it)
        con.execute(
            f"""CREATE OR REPLACE {place}TABLE {prefix}__flor_open AS
            SELECT run_id, loop_name, iteration FROM loops
            WHERE parent_ctx = 0 AND seconds IS NULL"""
        )
    if not (replays_only and since and _code_tables_since(con, tables, place, prefix, src, since)):
        _code_tables(con, tables, place, prefix, src)
    if not replays_only:  # the recorded loops' chains, times and open iterations
        con.execute(
            f"""CREATE OR REPLACE {place}TABLE {prefix}__flor_chains AS
            SELECT run_id, chain, outer_loop, outer_iteration, any_value(inner_loop) AS inner_loop,
                   count(DISTINCT inner_iteration) AS inner_total
            FROM {prefix}__flor_ctx GROUP BY run_id, chain, outer_loop, outer_iteration"""
        )
        con.execute(
            f"""CREATE OR REPLACE {place}TABLE {prefix}__flor_times AS
            SELECT o.run_id, o.loop_name, o.iteration, coalesce(any_value(o.seconds), 0) AS seconds,
                   coalesce(sum(i.seconds), 0) AS inner_seconds,
                   count(DISTINCT o.ctx_id) AS entries
            FROM loops o LEFT JOIN loops i ON i.run_id = o.run_id AND i.parent_ctx = o.ctx_id
            WHERE o.parent_ctx = 0 GROUP BY o.run_id, o.loop_name, o.iteration"""
        )


def rebuild_code_stats(
    con: duckdb.DuckDBPyConnection,
    fingerprints: Mapping[str, str],
    *,
    schema: str | None = None,
    index_db: str | None = None,
    since: str | None = None,
) -> None:
    """Rebuild only what depends on today's statements (:func:`rebuild_stats` built the rest
    for the same index): which replayed values count, ``__flor_cover`` and ``__flor_names``.

    ``since``: as :func:`rebuild_stats`'s; an edit that changes no counted replayed value (a
    new statement, the common case) then leaves ``__flor_cover`` and ``__flor_names`` as
    they are."""
    tables = _tables(con, index_db)
    place = "TEMP " if schema is None else ""
    prefix = "" if schema is None else f"{schema}."
    src = "" if index_db is None else f"{quote(index_db)}.main."
    _current_tables(con, fingerprints, tables, place, prefix, src)
    if not (since and _code_tables_since(con, tables, place, prefix, src, since)):
        _code_tables(con, tables, place, prefix, src)


def _current_tables(
    con: duckdb.DuckDBPyConnection,
    fingerprints: Mapping[str, str],
    tables: set[str],
    place: str,
    prefix: str,
    src: str,
) -> None:
    """``__flor_current`` (today's fingerprint per name) and ``__flor_valid`` (the finished
    replay tasks' names computed with it: the replayed values that count)."""
    rows = ", ".join(
        f"({string_literal(fold(n))}, {string_literal(f)})" for n, f in sorted(fingerprints.items())
    )
    body = (
        f"SELECT * FROM (VALUES {rows}) AS t(name, fingerprint)"
        if rows
        else ("SELECT NULL::VARCHAR AS name, NULL::VARCHAR AS fingerprint WHERE false")
    )
    con.execute(f"CREATE OR REPLACE {place}TABLE {prefix}__flor_current AS {body}")
    valid = "SELECT NULL::VARCHAR AS replay_id, NULL::VARCHAR AS task_id, NULL::VARCHAR AS name"
    valid += " WHERE false"
    if REPLAY_NAMES in tables and "replays" in tables:
        valid = f"""SELECT DISTINCT n.replay_id, n.task_id, n.name
            FROM {src}{REPLAY_NAMES} n
            JOIN {prefix}__flor_current c ON c.name = n.name AND c.fingerprint = n.fingerprint
            JOIN {src}replays r ON r.replay_id = n.replay_id AND r.task_id = n.task_id
            WHERE r.status = 'done'"""
    con.execute(f"CREATE OR REPLACE {place}TABLE {prefix}{VALID} AS {valid}")


def _replayed_cover(prefix: str, src: str, valid: str) -> str:
    """Rows of ``__flor_cover`` (less ``recorded``) that finished replay tasks add for the
    (task, name) pairs of ``valid``: their records' contexts, and the iterations (every one,
    for a task of the whole run; and whole runs, ``to_end``) they computed."""
    counted = (
        f"EXISTS (SELECT 1 FROM {valid} v WHERE v.replay_id = t.replay_id"
        f" AND v.task_id = t.task_id AND v.name = {fold_sql('t.name')})"
    )
    return f"""SELECT run_id, {fold_sql("name")} AS name, loop_name AS outer_loop,
               unnest(iterations) AS outer_iteration
        FROM (SELECT replay_id, task_id, run_id, unnest(names) AS name, loop_name, iterations
              FROM {src}replays WHERE status = 'done') t WHERE {counted}
        -- a task that stored every outer iteration (iterations NULL: the whole run) covers
        -- each one the run recorded, of every outer loop: one it left without a value is one
        -- where today's statement logs nothing (a second `for epoch in flor.loop("epoch")`
        -- that holds it, shorter than the first: the first's last epochs were asked of every
        -- query again, and each replayed the whole run, before session 43)
        UNION ALL SELECT DISTINCT t.run_id, {fold_sql("t.name")}, c.outer_loop, c.outer_iteration
        FROM (SELECT replay_id, task_id, run_id, unnest(names) AS name
              FROM {src}replays WHERE status = 'done' AND iterations IS NULL) t
        JOIN {prefix}__flor_ctx c ON c.run_id = t.run_id AND c.outer_loop IS NOT NULL
        WHERE {counted}
        -- not the iteration a failed or killed run ended in: the task stopped before it (sweep
        -- X, session 51: covered, so its NULL went unsaid after the replay)
        AND NOT EXISTS (SELECT 1 FROM {prefix}__flor_open o JOIN {src}run_meta m
                        ON m.run_id = o.run_id AND m.status IN ('failed', 'killed')
                        WHERE o.run_id = c.run_id AND o.loop_name = c.outer_loop
                        AND o.iteration = c.outer_iteration)
        UNION ALL SELECT run_id, {fold_sql("name")}, NULL::VARCHAR, NULL::BIGINT
        FROM (SELECT replay_id, task_id, run_id, unnest(names) AS name
              FROM {src}replays WHERE status = 'done' AND to_end) t WHERE {counted}"""


def cover_select(tables: set[str], prefix: str, src: str) -> str:
    """``__flor_cover``: per run, name (lower case) and outer iteration, whether some record
    or counted replayed value covers it, and whether a record does."""
    tasks = ""
    if "replays" in tables:
        tasks = f"""
            UNION ALL SELECT *, false FROM ({_replayed_cover(prefix, src, prefix + VALID)})"""
    return f"""SELECT run_id, name, outer_loop, outer_iteration, bool_or(recorded) AS recorded
        FROM (
            SELECT r.run_id, {fold_sql("r.name")} AS name, c.outer_loop, c.outer_iteration,
                   r.source = 'record' AS recorded
            FROM {prefix}all_log_records r LEFT JOIN {prefix}__flor_ctx c
              ON c.run_id = r.run_id AND c.ctx_id = r.ctx_id{tasks}
        ) GROUP BY run_id, name, outer_loop, outer_iteration"""


def names_select(prefix: str, only: str = "") -> str:
    """``__flor_names``: per name (case folded), its first spelling, every spelling, its value
    types, records and runs. ``only``: a relation of lower-case ``name``s to limit it to."""
    where = f" WHERE {fold_sql('name')} IN (SELECT name FROM {only})" if only else ""
    return f"""WITH per AS (  -- per spelling first: folding case over every record costs twice
            SELECT name, min(run_id) AS first_run, list(DISTINCT vtype) AS vtypes,
                   count(*) AS records, list(DISTINCT run_id) AS run_ids
            FROM {prefix}all_log_records{where} GROUP BY name)
        SELECT arg_min(name, first_run) AS name, list(name ORDER BY name) AS spellings,
               list_sort(list_distinct(flatten(list(vtypes)))) AS vtypes,
               sum(records)::BIGINT AS records,
               len(list_distinct(flatten(list(run_ids)))) AS runs
        FROM per GROUP BY {fold_sql("name")}"""


def replayed_select(tables: set[str], prefix: str, src: str) -> str:
    """``__flor_replayed``: the (run, name in lower case, outer iteration) counted replay
    tasks covered, whether or not a record covers them too (``__flor_cover`` merges both):
    a name recorded in some inner iterations of an outer one, which today's statement logs in
    every one, is left to compute until a task covered that outer iteration."""
    if "replays" not in tables:
        return (
            "SELECT NULL::VARCHAR AS run_id, NULL::VARCHAR AS name, NULL::VARCHAR AS outer_loop,"
            " NULL::BIGINT AS outer_iteration WHERE false"
        )
    return f"""SELECT DISTINCT * FROM ({_replayed_cover(prefix, src, prefix + VALID)})"""


def _code_tables(
    con: duckdb.DuckDBPyConnection, tables: set[str], place: str, prefix: str, src: str
) -> None:
    con.execute(
        f"CREATE OR REPLACE {place}TABLE {prefix}__flor_cover AS "
        f"{cover_select(tables, prefix, src)}"
    )
    con.execute(
        f"CREATE OR REPLACE {place}TABLE {prefix}__flor_replayed AS "
        f"{replayed_select(tables, prefix, src)}"
    )
    con.execute(f"CREATE OR REPLACE {place}TABLE {prefix}__flor_names AS {names_select(prefix)}")


def _code_tables_since(
    con: duckdb.DuckDBPyConnection,
    tables: set[str],
    place: str,
    prefix: str,
    src: str,
    since: str,
) -> bool:
    """Bring ``__flor_cover`` and ``__flor_names``, built when ``__flor_valid`` was ``since``,
    up to date when counted replayed values were only added (a replay's refresh; an edit that
    adds a statement adds none): the new values' cover rows that are not there yet are
    inserted (a key already there keeps its ``recorded``: a replayed value never sets it), and
    the names they carry are summarised again. False (nothing changed: the caller rebuilds)
    when a value counted before no longer does. The caller built both tables before (it
    keeps ``since`` only then). Measured to equal a full rebuild in tests/test_wide_delta.py."""
    if "replays" not in tables or REPLAY_RECORDS not in tables:
        return False
    gone = con.execute(
        f"SELECT count(*) FROM (SELECT * FROM {since} EXCEPT SELECT * FROM {prefix}{VALID})"
    ).fetchone()
    if gone is None or gone[0]:
        return False
    new = f"{prefix}__flor_valid_new"
    con.execute(
        f"CREATE OR REPLACE {place}TABLE {new} AS "
        f"SELECT * FROM {prefix}{VALID} EXCEPT SELECT * FROM {since}"
    )
    try:
        added = con.execute(f"SELECT count(*) FROM {new}").fetchone()
        if added is None or not added[0]:
            return True  # the same counted values: the same tables
        records = f"""SELECT r.run_id, {fold_sql("r.name")} AS name, c.outer_loop, c.outer_iteration
            FROM {src}{REPLAY_RECORDS} r
            JOIN {new} v ON v.replay_id = r.replay_id AND v.task_id = r.task_id
                        AND v.name = {fold_sql("r.name")}
            LEFT JOIN {prefix}__flor_ctx c ON c.run_id = r.run_id AND c.ctx_id = r.ctx_id"""
        con.execute(
            f"""INSERT INTO {prefix}__flor_replayed
            SELECT * FROM ({_replayed_cover(prefix, src, new)})
            EXCEPT SELECT * FROM {prefix}__flor_replayed"""
        )
        con.execute(  # EXCEPT: a set difference, NULLs (a run-level value) equal
            f"""INSERT INTO {prefix}__flor_cover
            SELECT *, false FROM (
                {records} UNION ALL {_replayed_cover(prefix, src, new)}
                EXCEPT SELECT run_id, name, outer_loop, outer_iteration
                FROM {prefix}__flor_cover)"""
        )
        names = f"{prefix}__flor_names_new"
        con.execute(f"CREATE OR REPLACE {place}TABLE {names} AS SELECT DISTINCT name FROM {new}")
        con.execute(
            f"DELETE FROM {prefix}__flor_names WHERE {fold_sql('name')}"
            f" IN (SELECT name FROM {names})"
        )
        con.execute(f"INSERT INTO {prefix}__flor_names {names_select(prefix, names)}")
        con.execute(f"DROP TABLE IF EXISTS {names}")
    finally:
        con.execute(f"DROP TABLE IF EXISTS {new}")
    return True
