"""Rewrite: the user's query over DuckDB, each ``logs`` reference read from its own CTE.

Each reference becomes ``__flor_logs_<k> AS <alias>``, where the CTE holds the ``logs`` relation
with that reference's row grain (:func:`florsql.plan.pivot.grain_predicate`); references with
the same grain share a CTE. The CTEs are prepended to the query's own ``WITH`` (kept as written,
``RECURSIVE`` included), so user CTEs, even one named ``logs``, keep their meaning: a user CTE
named ``logs`` shadows the relation and is left alone.
"""

from __future__ import annotations

import re

from sqlglot import exp
from sqlglot.errors import ErrorLevel

from florsql.errors import PlanError
from florsql.fold import fold
from florsql.grammar.dialect import Florsql
from florsql.plan.bind import REF_KEY
from florsql.plan.pivot import logs_from_wide, logs_live
from florsql.plan.state import PlanState

__all__ = ["CTE_PREFIX", "duckdb_sql", "public_name", "rewrite"]

CTE_PREFIX = "__flor_logs_"
_CTE_NAME = re.compile(rf"{CTE_PREFIX}\d+(?: AS (logs)\b)?", re.IGNORECASE)


def public_name(column: str) -> str:
    """A result column's name as DuckDB names it over the user's query: an unaliased expression
    is named by the SQL that ran, which reads each ``logs`` reference from its CTE.

    Example:
        >>> public_name("(SELECT max(epoch) FROM __flor_logs_1 AS logs)")
        '(SELECT max(epoch) FROM logs)'
        >>> public_name("EXISTS(SELECT * FROM __flor_logs_2 AS l)")
        'EXISTS(SELECT * FROM logs AS l)'
    """
    if CTE_PREFIX not in column:
        return column
    return _CTE_NAME.sub(lambda m: m.group(1) or "logs", column)  # FROM LOGS: as written


def rewrite(state: PlanState) -> None:
    """Rule: set ``state.sql``, the DuckDB SQL to run, and ``state.ctes``."""
    names: dict[tuple[str, ...] | None, str] = {}
    bodies: list[tuple[str, str]] = []
    target: dict[int, str] = {}
    for ref in state.references:
        grain = ref.grain()
        if grain not in names:
            name = f"{CTE_PREFIX}{len(names) + 1}"
            names[grain] = name
            build = logs_from_wide if state.use_cache else logs_live
            body = build(state.catalog, grain)
            bodies.append((name, body))
            state.ctes[ref.ref_id] = body
        target[ref.ref_id] = names[grain]
    unaliased: set[str] = set()
    for table in list(state.tree.find_all(exp.Table)):
        ref_id = table.meta.get(REF_KEY)
        if ref_id in target:
            alias = table.alias or table.name
            table.set("db", None)
            table.set("catalog", None)
            table.set("this", exp.to_identifier(target[ref_id]))
            if not table.alias:
                table.set("alias", exp.TableAlias(this=exp.to_identifier(alias)))
                unaliased.add(fold(alias))
    for column in state.tree.find_all(exp.Column):
        # `main.logs.epoch`, `florsql.main.logs.epoch`: the table is now the CTE aliased logs
        if column.args.get("db") is not None and fold(column.table) in unaliased:
            column.set("db", None)
            column.set("catalog", None)
    state.sql = with_ctes(state.tree, bodies, source=state.source)


#: What sqlglot says it cannot write in DuckDB, yet writes as DuckDB itself answers it: a row
#: count sampled with SYSTEM (DuckDB samples it as RESERVOIR does); DuckDB's own
#: ``approx_top_k`` and ``extract`` from a TIMESTAMPTZ, written back as they were read (the
#: warnings are about other dialects' return types and time zones).
_SAME_IN_DUCKDB = (
    "Sampling method SYSTEM is not supported with a discrete sample count",
    "APPROX_TOP_K cannot be transpiled to DuckDB due to incompatible return types",
    "EXTRACT from TIMESTAMPTZ / TIMESTAMPLTZ may produce different results",
)


def duckdb_sql(tree: exp.Expr, *, source: str | None = None) -> str:
    """``tree`` as DuckDB SQL, refusing what sqlglot cannot write as written.

    sqlglot writes a form DuckDB lacks as something else and only logs a warning: ``last(x
    IGNORE NULLS)``, which DuckDB refuses, became ``last(x)`` (NULL where the last row's value
    is). florsql refuses it instead, with sqlglot's reason.

    Raises:
        PlanError: sqlglot could not write part of the query for DuckDB.

    Example:
        >>> from sqlglot import parse_one
        >>> duckdb_sql(parse_one("SELECT first(x IGNORE NULLS) FROM t", read="duckdb"))
        'SELECT ANY_VALUE(x) FROM t'
        >>> duckdb_sql(parse_one("SELECT last(x IGNORE NULLS) FROM t", read="duckdb"))
        Traceback (most recent call last):
        ...
        florsql.errors.PlanError: IGNORE NULLS is not supported for non-window functions: ...
    """
    # florsql's dialect: DuckDB's generator, writing a percent LIMIT as DuckDB takes it
    generator = Florsql().generator(unsupported_level=ErrorLevel.IGNORE)
    sql = generator.generate(tree)
    lost = [m for m in generator.unsupported_messages if not m.startswith(_SAME_IN_DUCKDB)]
    if lost:
        hint = (
            " (IGNORE NULLS and RESPECT NULLS belong to window functions; an aggregate leaves "
            "NULLs out with FILTER (WHERE x IS NOT NULL))"
            if "NULLS" in lost[0]
            else ""
        )
        raise PlanError(
            f"{lost[0].rstrip('.')}: florsql runs queries on DuckDB, which has no such form, and "
            f"will not answer another question in its place; write it as DuckDB takes it{hint}",
            sql=source,
        )
    return sql


def with_ctes(tree: exp.Expr, ctes: list[tuple[str, str]], *, source: str | None = None) -> str:
    """``tree`` as DuckDB SQL with ``ctes`` (name, body SQL) in front of its own WITH."""
    if not ctes:
        return duckdb_sql(tree, source=source)
    ours = [f"{name} AS (\n{body}\n)" for name, body in ctes]
    own = tree.args.get("with_")
    recursive = False
    if isinstance(own, exp.With):
        recursive = bool(own.args.get("recursive"))
        ours += [duckdb_sql(cte, source=source) for cte in own.expressions]
        tree = tree.copy()
        tree.set("with_", None)
    head = "WITH RECURSIVE " if recursive else "WITH "
    return head + ",\n".join(ours) + "\n" + duckdb_sql(tree, source=source)
