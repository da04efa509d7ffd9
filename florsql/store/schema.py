"""The index's tables and views."""

from __future__ import annotations

from typing import TYPE_CHECKING

from florsql.fold import fold, fold_sql

if TYPE_CHECKING:
    import duckdb

SCHEMA_VERSION = 11  # 11: names folded as DuckDB folds identifiers (florsql/fold.py; session 38)

SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS meta (key VARCHAR PRIMARY KEY, value VARCHAR);
CREATE TABLE IF NOT EXISTS run_meta (
    run_id VARCHAR PRIMARY KEY, projid VARCHAR, tstamp TIMESTAMPTZ, vid VARCHAR,
    head VARCHAR, dirty BOOLEAN, filename VARCHAR, status VARCHAR, error VARCHAR,
    argv VARCHAR[], python VARCHAR, torch VARCHAR, host VARCHAR, pid BIGINT,
    pid_start VARCHAR, ended TIMESTAMPTZ, files VARCHAR[], data_fingerprint VARCHAR
);
CREATE TABLE IF NOT EXISTS data_inputs (
    run_id VARCHAR, path VARCHAR, bytes BIGINT, mtime TIMESTAMPTZ, hash VARCHAR
);
CREATE TABLE IF NOT EXISTS args (
    run_id VARCHAR, name VARCHAR, vtype VARCHAR,
    value_int BIGINT, value_float DOUBLE, value_str VARCHAR
);
CREATE TABLE IF NOT EXISTS loops (
    run_id VARCHAR, ctx_id BIGINT, parent_ctx BIGINT, loop_name VARCHAR, iteration BIGINT,
    vtype VARCHAR, value_int BIGINT, value_float DOUBLE, value_str VARCHAR,
    t_start DOUBLE, seconds DOUBLE
);
CREATE TABLE IF NOT EXISTS ctx_path (
    run_id VARCHAR, ctx_id BIGINT, loop_name VARCHAR, iteration BIGINT, depth BIGINT
);
CREATE TABLE IF NOT EXISTS log_records (
    run_id VARCHAR, seq BIGINT, ctx_id BIGINT, name VARCHAR, vtype VARCHAR,
    value_int BIGINT, value_float DOUBLE, value_str VARCHAR
);
CREATE TABLE IF NOT EXISTS checkpoints (
    run_id VARCHAR, loop_name VARCHAR, iteration BIGINT, position VARCHAR, file VARCHAR,
    bytes BIGINT, copy_seconds DOUBLE, write_seconds DOUBLE
);
CREATE TABLE IF NOT EXISTS ingested (
    run_id VARCHAR, source VARCHAR, mtime_ns BIGINT, size BIGINT, PRIMARY KEY (run_id, source)
);
"""

#: Columns of ``runs`` before the per-arg columns, and those after (skipped on a name clash).
RUN_CORE = ("run_id", "projid", "tstamp", "vid", "filename", "status")
RUN_EXTRA = (
    "head",
    "dirty",
    "argv",
    "python",
    "torch",
    "host",
    "ended",
    "error",
    "files",
    "data_fingerprint",
)


def quote(name: str) -> str:
    """A DuckDB identifier for ``name``."""
    return '"' + name.replace('"', '""') + '"'


def arg_column_sql(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str]]:
    """(name, SQL expression over ``args``) per arg, typed by the vtypes it has across runs.

    Names that differ only in case are one arg (SQL names ignore case), spelled as the earliest
    run spelled it (run ids sort by start time); each run's value is kept, whatever its spelling.
    """
    rows = con.execute(
        """SELECT arg_min(name, run_id), list(DISTINCT vtype ORDER BY vtype) FROM args
           WHERE name <> '' GROUP BY {k} ORDER BY {k}""".format(k=fold_sql("name"))
    ).fetchall()
    out = []
    for name, vtypes in rows:
        kinds = set(vtypes) - {"null"}
        where = f"WHERE {fold_sql('name')} = '" + fold(name).replace("'", "''") + "'"
        if kinds <= {"bool"}:
            expr = f"bool_or(value_int::BOOLEAN) FILTER ({where})"
        elif kinds <= {"int"}:
            expr = f"max(value_int) FILTER ({where})"
        elif kinds <= {"int", "float", "bool"}:
            expr = f"max(coalesce(value_float, value_int::DOUBLE)) FILTER ({where})"
        else:
            expr = (
                "max(coalesce(value_str, value_int::VARCHAR, value_float::VARCHAR)) "
                f"FILTER ({where})"
            )
        out.append((name, expr))
    return out


def define_views(con: duckdb.DuckDBPyConnection) -> None:
    """(Re)create ``runs`` (one column per arg) and ``versions`` over the current args."""
    args = arg_column_sql(con)
    arg_names = {fold(n) for n, _ in args}
    core = ", ".join(f"m.{c}" for c in RUN_CORE)
    extra = "".join(f", m.{c}" for c in RUN_EXTRA if c not in arg_names)
    if args:
        pivot = ", ".join(f"{expr} AS {quote(n)}" for n, expr in args)
        cols = "".join(f", a.{quote(n)}" for n, _ in args)
        join = f"LEFT JOIN (SELECT run_id, {pivot} FROM args GROUP BY run_id) a USING (run_id)"
    else:
        cols, join = "", ""
    con.execute(f"CREATE OR REPLACE VIEW runs AS SELECT {core}{cols}{extra} FROM run_meta m {join}")
    con.execute(
        """CREATE OR REPLACE VIEW versions AS
        SELECT vid, min(tstamp) AS first_run, max(tstamp) AS last_run, count(*) AS runs,
               list(DISTINCT filename ORDER BY filename) AS filenames,
               arg_max(head, tstamp) AS head, bool_or(dirty) AS dirty
        FROM run_meta GROUP BY vid"""
    )
