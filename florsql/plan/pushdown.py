"""Pushdown: the part of each WHERE clause that restricts which rows of ``logs`` need replay.

A reference's rows can only reach the result through rows that pass its scope's WHERE when it is
read by a plain SELECT as its only source, or joined by inner or cross joins, or as the preserved
side of a LEFT join. Elsewhere (the null-supplying side of an outer join, SEMI/ANTI, ASOF,
POSITIONAL) the mere existence of a row can change the answer, so nothing is pushed. The pushed
predicate is the WHERE relaxed (:mod:`florsql.plan.relax`) to atoms over this reference's
run-level columns (metadata, args) and loop columns.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp
from sqlglot.optimizer.scope import Scope

from florsql.plan.bind import Reference
from florsql.plan.relax import Relaxed, relax
from florsql.plan.state import PlanState

__all__ = ["predicate_sql", "pushdown"]

_SAFE_JOIN_KINDS = ("", "INNER", "CROSS")


def pushdown(state: PlanState) -> None:
    """Rule: fill ``state.pushed`` and ``state.filterable`` per reference."""
    binding = state.binding
    for ref in state.references:
        scope = ref.scope
        ok = binding is not None and binding.exact and scope is not None
        ok = ok and _filterable(ref, scope)
        state.filterable[ref.ref_id] = ok
        if not ok or scope is None:
            state.pushed[ref.ref_id] = Relaxed(None, exact=False)
            continue
        where = scope.expression.args.get("where")
        usable = _usable(ref, scope, state)
        state.pushed[ref.ref_id] = relax(where.this if where is not None else None, usable)


def _filterable(ref: Reference, scope: Scope | None) -> bool:
    if scope is None or not isinstance(scope.expression, exp.Select) or ref.table is None:
        return False
    select = scope.expression
    joins = select.args.get("joins") or []
    from_ = select.args.get("from_") or select.args.get("from")
    is_from = from_ is not None and from_.this is ref.table
    for join in joins:
        side = join.text("side").upper()
        kind = join.text("kind").upper()
        method = join.text("method").upper()
        if method or kind not in _SAFE_JOIN_KINDS:
            return False
        if side == "LEFT":
            if join.this is ref.table:
                return False  # the null-supplying side
        elif side:
            return False  # RIGHT / FULL: every side may be null-supplying
    return is_from or any(j.this is ref.table for j in joins)


def _usable(ref: Reference, scope: Scope, state: PlanState) -> Callable[[exp.Column], bool]:
    catalog = state.catalog

    def usable(col: exp.Column) -> bool:
        if not col.table or col.table != ref.alias:
            return False
        if _owner(scope, col.table) is not ref.table:
            return False
        column = catalog.column(col.name)
        if column is None or column.shared:  # a log of some runs: not known before replay
            return False
        return column.kind in ("meta", "arg", "loop")

    return usable


def _owner(scope: Scope, table: str) -> object:
    s: Scope | None = scope
    while s is not None:
        if table in s.sources:
            return s.sources[table]
        s = s.parent
    return None


def predicate_sql(relaxed: Relaxed) -> str:
    """The pushed predicate as DuckDB SQL over unqualified ``logs`` column names."""
    if relaxed.always_false:
        return "false"
    if relaxed.expression is None:
        return "true"
    tree = relaxed.expression.copy()
    for col in tree.find_all(exp.Column):
        col.set("table", None)
    return tree.sql(dialect="duckdb")
