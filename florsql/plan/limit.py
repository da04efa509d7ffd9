"""ORDER BY <run column> LIMIT n: replay only the runs whose rows can reach the first n.

Applies only where it is provably safe: a plain SELECT over one ``logs`` reference (no join,
grouping, DISTINCT, window, QUALIFY or set operation), its WHERE pushed down exactly (no
residual predicate), ordered first by a run-level column, with a constant LIMIT (and OFFSET)
that counts rows (``LIMIT n%``, ``n PERCENT`` and ``WITH TIES`` do not: they are never cut).
Each row of ``logs`` must give exactly one row of the answer, ranked as the planner ranks it:
no set-returning call in the select list (``unnest``, ``generate_subscripts``: a row whose list
is empty gives none, so a run's sure rows may give no row), no sample (``TABLESAMPLE``,
``USING SAMPLE`` keep rows of any run), no volatile function in the first ORDER BY key (its
value at planning is not its value when the query runs).
Runs are walked in that order; a run's *sure* rows are the rows it already has (recorded values)
that pass the WHERE, which will be in the answer whatever replay adds. Once n + offset sure rows
are reached, the runs tied with the last one are kept and every later run is cut: their rows all
sort after at least n rows that are certain to exist. A top-level ``LIMIT 0`` replays nothing.
"""

from __future__ import annotations

import functools

from sqlglot import exp

from florsql.plan.pivot import WIDE_TABLE, grain_predicate, logs_live
from florsql.plan.pushdown import predicate_sql
from florsql.plan.state import PlanState
from florsql.plan.volatile import is_volatile
from florsql.store.schema import quote

__all__ = ["limit_cut"]


def limit_cut(state: PlanState) -> None:
    """Rule: set ``state.limit_runs`` when ORDER BY ... LIMIT may cut the replayed runs."""
    if isinstance(state.tree, exp.Query) and _constant(state.tree.args.get("limit")) == 0:
        state.limit_runs = set()  # LIMIT 0 (a schema probe): no row can need a value
        state.notes.append("LIMIT 0: nothing to replay")
        return
    checked = _applicable(state)
    if checked is None:
        return
    n, order = checked
    ref = state.references[0]
    relaxed = state.pushed[ref.ref_id]
    where = predicate_sql(relaxed)
    grain = grain_predicate(state.catalog, ref.grain())
    rows_source = (
        f"(SELECT * FROM {WIDE_TABLE} WHERE {grain})"
        if state.use_cache
        else f"({logs_live(state.catalog, ref.grain())})"
    )
    run_cols = ", ".join(quote(c) for c in state.catalog.names("meta", "arg"))
    key = order.copy()
    for col in key.find_all(exp.Column):
        col.set("table", None)
    sql = f"""
        WITH sure AS (SELECT run_id, count(*) AS n FROM {rows_source} logs WHERE {where}
                      GROUP BY run_id),
             ranked AS (SELECT run_id, dense_rank() OVER (ORDER BY {key.sql(dialect="duckdb")})
                        AS k FROM (SELECT {run_cols} FROM runs) logs)
        SELECT r.run_id, r.k, coalesce(s.n, 0) FROM ranked r LEFT JOIN sure s USING (run_id)
        ORDER BY r.k, r.run_id"""
    kept: set[str] = set()
    sure = 0
    boundary = None
    for run_id, k, count in state.con.execute(sql).fetchall():
        if boundary is not None and k != boundary:
            break
        kept.add(run_id)
        sure += count
        if sure >= n and boundary is None:
            boundary = k
    state.limit_runs = kept
    state.notes.append(f"ORDER BY ... LIMIT {n}: replay limited to {len(kept)} run(s)")


def _applicable(state: PlanState) -> tuple[int, exp.Ordered] | None:
    tree = state.tree
    refs = state.references
    if len(refs) != 1 or not isinstance(tree, exp.Select) or state.binding is None:
        return None
    ref = refs[0]
    scope = ref.scope
    if scope is None or scope.expression is not state.binding.qualified:
        return None
    select = scope.expression
    if (
        not isinstance(select, exp.Select)
        or not state.binding.exact
        or not state.filterable.get(ref.ref_id)
    ):
        return None
    if not state.pushed[ref.ref_id].exact or select.args.get("joins"):
        return None
    for arg in ("group", "having", "qualify", "distinct", "windows"):
        if select.args.get(arg):
            return None
    if any(select.find(t) for t in (exp.AggFunc, exp.Window, exp.Subquery, exp.TableSample)):
        return None
    if any(_set_returning(f) for f in select.find_all(exp.Func)):
        return None
    n = _constant(select.args.get("limit"))
    offset = select.args.get("offset")
    skip = _constant(offset) if offset is not None else 0
    order = select.args.get("order")
    if n is None or skip is None or order is None or not order.expressions:
        return None
    first = order.expressions[0]
    cols = list(first.find_all(exp.Column))
    # Qualified by the reference: an unqualified name may be a select alias shadowing it.
    if not cols or any(c.table != ref.alias or not _run_level(state, c) for c in cols):
        return None
    if any(is_volatile(f) for f in first.find_all(exp.Func)):
        return None
    if first.find(exp.PositionalColumn) is not None:
        return None  # `#3`: the 3rd column of logs, another one in the ranking query
    return n + skip, first


@functools.cache
def set_returning_functions() -> frozenset[str]:
    """DuckDB's functions that give several rows per row in a select list: ``unnest`` and the
    macros over it (``generate_subscripts``, ``regexp_split_to_table``).

    Example:
        >>> sorted(set_returning_functions())
        ['generate_subscripts', 'regexp_split_to_table', 'unnest']
    """
    import duckdb

    query = """SELECT DISTINCT function_name FROM duckdb_functions()
               WHERE function_type = 'macro' AND lower(macro_definition) LIKE '%unnest(%'"""
    with duckdb.connect() as con:
        return frozenset({"unnest", *(row[0].lower() for row in con.execute(query).fetchall())})


def _set_returning(node: exp.Func) -> bool:
    if isinstance(node, exp.Explode | exp.Unnest):
        return True
    return isinstance(node, exp.Anonymous) and node.name.lower() in set_returning_functions()


def _constant(node: exp.Expr | None) -> int | None:
    """The row count of a ``LIMIT``/``OFFSET`` given as a constant; None for anything else.

    ``LIMIT n%`` (``n PERCENT``) and ``WITH TIES`` do not count rows: never a constant.
    """
    if node is None:
        return None
    options = node.args.get("limit_options")
    if options is not None and (options.args.get("percent") or options.args.get("with_ties")):
        return None
    value = node.args.get("expression")
    if isinstance(value, exp.Cast) and value.to.is_type(*exp.DataType.INTEGER_TYPES):
        value = value.this  # a bound numpy integer: CAST('3' AS BIGINT)
    if isinstance(value, exp.Literal) and _is_int(value.name):
        return int(value.name)
    return None


def _is_int(text: str) -> bool:
    return text.lstrip("-").isdigit()


def _run_level(state: PlanState, col: exp.Column) -> bool:
    column = state.catalog.column(col.name)
    return column is not None and column.run_level
