"""``SHOW RUNS`` and ``SHOW COLUMNS FROM <relation>``."""

from __future__ import annotations

from florsql.errors import PlanError
from florsql.fold import fold_sql
from florsql.plan.catalog import RELATIONS, Catalog
from florsql.plan.stats import string_literal
from florsql.plan.system import INFORMATION_SCHEMA, information_schema_sql

__all__ = ["SHOW_RUNS_SQL", "show_columns_sql"]

#: ``SHOW RUNS``: every run, oldest first: the ``runs`` relation.
SHOW_RUNS_SQL = "SELECT * FROM runs ORDER BY tstamp, run_id"


def show_columns_sql(catalog: Catalog, table: str, source: str) -> str:
    """The query answering ``SHOW COLUMNS FROM table``; for ``logs`` also each column's kind
    and which versions have it. The engine runs it as any query, so its result's types are
    DuckDB's (the DB-API's ``description``, Flight SQL's ``TYPE_NAME``)."""
    parts = [p.strip('"').lower() for p in table.split(".")]
    name = parts[-1]
    if len(parts) >= 2 and parts[-2] == "information_schema" and name in INFORMATION_SCHEMA:
        view = information_schema_sql(name, catalog)
        return f"SELECT column_name, column_type FROM (DESCRIBE {view})"
    if name == "logs":
        return _logs_columns(catalog)
    if name not in (*RELATIONS, "ctx_path"):
        hint = catalog.suggest(name, ["logs", *RELATIONS])
        raise PlanError(f"Unknown relation '{table}'.{hint}", sql=source)
    return f"SELECT column_name, column_type FROM (DESCRIBE {name})"


def _logs_columns(catalog: Catalog) -> str:
    rows = ", ".join(
        f"({i}, {string_literal(c.name)}, {string_literal(c.sql_type)}, "
        f"{string_literal(c.kind)}, {str(c.hindsight).lower()}, {c.lacking_runs})"
        for i, c in enumerate(catalog.columns)
    )
    code = (
        ", ".join(
            f"({string_literal(n)}, {string_literal(f)})"
            for f, script in catalog.scripts.items()
            for n in script.names()
        )
        or "(NULL, NULL)"
    )
    sql = f"""
    WITH cols(pos, column_name, column_type, kind, hindsight, runs_lacking) AS (VALUES {rows}),
    code(name, filename) AS (VALUES {code}),
    have AS (
        SELECT v.name, m.vid, m.run_id FROM __flor_cover v JOIN run_meta m USING (run_id)
        UNION ALL SELECT p.loop_name, m.vid, m.run_id FROM (SELECT DISTINCT run_id, loop_name
            FROM ctx_path) p JOIN run_meta m USING (run_id)
        UNION ALL SELECT a.name, m.vid, m.run_id FROM args a JOIN run_meta m USING (run_id)
    ),
    per AS (SELECT {fold_sql("name")} AS name, list(DISTINCT vid ORDER BY vid) AS versions,
                   count(DISTINCT run_id) AS runs FROM have GROUP BY {fold_sql("name")}),
    lacking AS (
        SELECT {fold_sql("c.name")} AS name, count(DISTINCT m.run_id) AS runs
        FROM code c JOIN run_meta m ON list_contains(m.files, c.filename)
        WHERE c.name IS NOT NULL AND NOT EXISTS (SELECT 1 FROM __flor_cover v
            WHERE v.run_id = m.run_id AND {fold_sql("v.name")} = {fold_sql("c.name")})
        GROUP BY {fold_sql("c.name")}),
    scripts AS (SELECT {fold_sql("name")} AS name, list(DISTINCT filename ORDER BY filename) AS f
                FROM code WHERE name IS NOT NULL GROUP BY {fold_sql("name")})
    SELECT c.column_name, c.column_type, c.kind, c.hindsight,
           CASE WHEN c.kind = 'meta' THEN (SELECT list(DISTINCT vid ORDER BY vid) FROM run_meta)
                ELSE coalesce(p.versions, []) END AS versions,
           CASE WHEN c.kind = 'meta' THEN (SELECT count(*) FROM run_meta)
                ELSE coalesce(p.runs, 0) END AS runs_with,
           CASE WHEN c.kind = 'log' THEN coalesce(l.runs, 0) ELSE c.runs_lacking END
               AS runs_lacking,
           coalesce(s.f, []) AS in_current_code
    FROM cols c LEFT JOIN per p ON p.name = {fold_sql("c.column_name")} AND c.kind <> 'meta'
    LEFT JOIN scripts s ON s.name = {fold_sql("c.column_name")}
    LEFT JOIN lacking l ON l.name = {fold_sql("c.column_name")}
    ORDER BY c.pos"""
    return sql
