"""florsql's own answers to the questions SQL clients ask DuckDB's catalog.

A planner rule (:func:`system_relations`), run before binding:

* every table a query names must be one of florsql's relations (``logs``, ``runs``, ... as the
  catalog lists them; ``main.`` and ``florsql.main.`` qualifications allowed), a CTE in scope, or
  ``information_schema.tables``/``columns``/``schemata``; anything else (DuckDB's internal
  tables, ``duckdb_databases``, ``pg_catalog``'s views such as ``pg_settings``) is an unknown
  relation, before DuckDB sees the query;
* ``information_schema.tables``/``columns``/``schemata`` are replaced by their rows as florsql
  states them: florsql's relations and their columns, in catalog ``florsql``, schema ``main``;
* the functions of :data:`florsql.grammar.FLORSQL_FUNCTIONS` are replaced by their values:
  ``version()`` is florsql's version, ``duckdb_version()`` DuckDB's, ``current_database()`` and
  ``current_catalog`` the catalog name (:data:`florsql.grammar.CATALOG_NAME`, the one Flight SQL
  answers too), ``current_schema()`` ``main``.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import sqlglot
from sqlglot import exp

from florsql.errors import PlanError
from florsql.grammar import CATALOG_NAME, SCHEMA_NAME, node_position, resolve_function
from florsql.plan.catalog import Catalog
from florsql.plan.stats import string_literal

if TYPE_CHECKING:
    from florsql.plan.state import PlanState

__all__ = ["INFORMATION_SCHEMA", "florsql_version", "information_schema_sql", "system_relations"]

#: The views of ``information_schema`` florsql answers, with the columns it gives.
INFORMATION_SCHEMA: dict[str, tuple[str, ...]] = {
    "tables": ("table_catalog", "table_schema", "table_name", "table_type", "is_insertable_into"),
    "columns": (
        "table_catalog",
        "table_schema",
        "table_name",
        "column_name",
        "ordinal_position",
        "column_default",
        "is_nullable",
        "data_type",
    ),
    "schemata": ("catalog_name", "schema_name"),
}


@functools.cache
def florsql_version() -> str:
    """florsql's version as ``version()`` answers it, e.g. ``'florsql 0.1.0'``."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"florsql {version('florsql')}"
    except PackageNotFoundError:  # pragma: no cover - run from a source tree without install
        return "florsql"


def user_relations(catalog: Catalog) -> dict[str, dict[str, str]]:
    """Every relation a query may read, with its columns and types, ``logs`` first.

    A log column nothing has a value of yet (a hindsight name no replay computed, a name only
    ever logged as ``None``) is ``NULL``: what a query over it returns (DuckDB's untyped NULL,
    which any expression accepts). A replay that computes values gives it their type, in the
    catalog every front end reads from then on.
    """
    logs = {c.name: c.sql_type for c in catalog.columns}
    return {"logs": logs, **catalog.relations}


def information_schema_sql(view: str, catalog: Catalog) -> str:
    """A query giving the rows of ``information_schema.<view>`` in florsql's terms."""
    cat, schema = string_literal(CATALOG_NAME), string_literal(SCHEMA_NAME)
    relations = user_relations(catalog)
    rows: list[str]
    if view == "tables":
        rows = [f"({cat}, {schema}, {string_literal(n)}, 'BASE TABLE', 'NO')" for n in relations]
    elif view == "columns":
        rows = [
            f"({cat}, {schema}, {string_literal(n)}, {string_literal(col)}, {i}, NULL, 'YES', "
            f"{string_literal(sql_type)})"
            for n, cols in relations.items()
            for i, (col, sql_type) in enumerate(cols.items(), start=1)
        ]
        if not rows:  # pragma: no cover - every relation has columns
            rows = ["(NULL, NULL, NULL, NULL, NULL::BIGINT, NULL, NULL, NULL)"]
    else:
        rows = [f"({cat}, {schema})"]
    names = ", ".join(INFORMATION_SCHEMA[view])
    where = " WHERE table_name IS NOT NULL" if view == "columns" else ""
    return f"SELECT * FROM (VALUES {', '.join(rows)}) AS v({names}){where}"


def system_relations(state: PlanState) -> None:
    """Rule: florsql's answers for the catalog and system functions; unknown relations refused."""
    state.tree = _replace_functions(state.tree, state.source)
    for table in list(state.tree.find_all(exp.Table)):
        _check_table(table, state.catalog, state.source)


def _replace_functions(tree: exp.Expr, source: str) -> exp.Expr:
    def replace(node: exp.Expr) -> exp.Expr:
        if not isinstance(node, exp.Func):
            return node
        written, emitted = resolve_function(node, source)
        name = written or emitted
        value: exp.Expr
        if name == "version":
            value = exp.Literal.string(florsql_version())
        elif name == "duckdb_version":
            value = exp.CurrentVersion()
        elif name in ("current_database", "current_catalog"):
            value = exp.Literal.string(CATALOG_NAME)
        elif name == "current_schema":
            value = exp.Literal.string(SCHEMA_NAME)
        else:
            return node
        parent = node.parent
        if isinstance(parent, exp.Select) and node.arg_key == "expressions":
            # a select-list item keeps the column name DuckDB gives a call: version()
            shown = name if name == "current_catalog" else f"{name}()"
            return exp.alias_(value, shown, quoted=True)
        return value

    return tree.transform(replace, copy=False)


def _cte_names(node: exp.Expr) -> set[str]:
    """The CTE names visible at ``node`` (every WITH on the way to the root)."""
    names: set[str] = set()
    parent = node.parent
    while parent is not None:
        with_ = parent.args.get("with_")
        if isinstance(with_, exp.With):
            names |= {cte.alias_or_name.lower() for cte in with_.expressions}
        parent = parent.parent
    return names


def _check_table(table: exp.Table, catalog: Catalog, source: str) -> None:
    if not isinstance(table.this, exp.Identifier):
        return  # a table function (checked by the grammar) or a parameter (refused there)
    name, db, cat = table.name.lower(), table.text("db").lower(), table.text("catalog").lower()
    if cat not in ("", CATALOG_NAME):
        _unknown(table, catalog, source)
    if db == "information_schema":
        if name not in INFORMATION_SCHEMA:
            _unknown(table, catalog, source)
        _no_time_travel(table, source)
        alias = table.args.get("alias")  # its column names too: information_schema.tables t(a)
        sub = exp.Subquery(
            this=sqlglot.parse_one(information_schema_sql(name, catalog), read="duckdb"),
            alias=alias.copy() if alias else exp.TableAlias(this=exp.to_identifier(name)),
        )
        for arg in ("sample", "pivots"):  # TABLESAMPLE, PIVOT written after the name
            if table.args.get(arg):
                sub.set(arg, table.args[arg])
        table.replace(sub)
        return
    if not db and not cat and name in _cte_names(table):
        return
    if db not in ("", SCHEMA_NAME) or name not in user_relations(catalog):
        _unknown(table, catalog, source)
    _no_time_travel(table, source)
    if cat or db:  # florsql.main.logs and main.logs are logs
        table.set("catalog", None)
        table.set("db", None)


def _no_time_travel(table: exp.Table, source: str) -> None:
    """``logs AT (VERSION => 1)``: DuckDB refuses time travel on its own tables but ignores the
    clause on a CTE, the form ``logs`` takes when it runs, so the query answered with today's
    rows; florsql relations (and its ``information_schema``) have only their current state."""
    when = table.args.get("when")
    if when is None:
        return
    line, col = node_position(table.this, source) or (None, None)
    raise PlanError(
        f"{table.name} has no earlier states to read: AT (...) (time travel) is not supported "
        "on florsql relations",
        sql=source,
        line=line,
        col=col,
    )


def _unknown(table: exp.Table, catalog: Catalog, source: str) -> None:
    written = ".".join(p.name for p in table.parts)
    names = list(user_relations(catalog))
    hint = catalog.suggest(table.name, names)
    line, col = node_position(table.this, source) or (None, None)
    raise PlanError(
        f"Unknown relation '{written}': florsql queries read {', '.join(names)} and "
        f"information_schema.tables/columns/schemata.{hint}",
        sql=source,
        line=line,
        col=col,
    )
