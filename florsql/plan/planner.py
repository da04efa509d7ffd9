"""The planner: a query in, the DuckDB SQL to run and the :class:`ReplayPlan` out.

Like sqlglot's optimizer, planning is an ordered tuple of rules, one module each, applied to a
shared :class:`~florsql.plan.state.PlanState`:

1. :func:`~florsql.plan.params.bind_parameters`: ``?`` values into the tree, by their place in
   the text (so they restrict the replay set like literals);
   :func:`~florsql.plan.system.system_relations`: only florsql's relations; its answers for
   ``information_schema``, ``version()``, ``current_database()``;
2. :func:`~florsql.plan.bind.bind`: every ``logs`` reference and its columns; unknown columns;
3. :func:`~florsql.plan.pushdown.pushdown`: the WHERE part each reference can push;
4. :func:`~florsql.plan.limit.limit_cut`: ORDER BY <run column> LIMIT n, when safe;
5. :func:`~florsql.plan.replay_set.replay_set`: the (run, iteration, name) set, in DuckDB;
6. :func:`~florsql.plan.assemble.assemble`: chunks, checkpoints, cost: the ReplayPlan;
7. :func:`~florsql.plan.rewrite.rewrite`: the final DuckDB SQL.

The helper relations of :mod:`florsql.plan.stats` must exist on the connection.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlglot import exp

from florsql.fold import fold
from florsql.plan.assemble import assemble
from florsql.plan.bind import bind_query
from florsql.plan.catalog import Catalog
from florsql.plan.limit import limit_cut
from florsql.plan.params import bind_parameters
from florsql.plan.pushdown import pushdown
from florsql.plan.replay_plan import ReplayPlan
from florsql.plan.replay_set import replay_set
from florsql.plan.rewrite import rewrite
from florsql.plan.state import PlanState
from florsql.plan.system import system_relations

if TYPE_CHECKING:
    import duckdb

__all__ = ["RULES", "PlannedQuery", "bind", "bind_parameters", "plan_query"]


def bind(state: PlanState) -> None:
    """Rule: find the ``logs`` references and their columns."""
    state.binding = bind_query(state.tree, state.catalog, state.source)


Rule = Callable[[PlanState], None]
RULES: tuple[Rule, ...] = (
    bind_parameters,
    system_relations,
    bind,
    pushdown,
    limit_cut,
    replay_set,
    assemble,
    rewrite,
)


@dataclass(frozen=True)
class PlannedQuery:
    """The planner's answer.

    Attributes:
        sql: the DuckDB SQL to run (reads ``logs`` through CTEs over the pivot).
        replay: what replay would compute for this query.
        ctes: the body of each ``logs`` CTE, by reference number.
        exact: whether the query was analysed by scope (False: by column names only).
        star_only: the log names the query reaches only through ``*`` in its top-level select
            list (a preview): it names them nowhere, filters, orders or computes nothing on them.
    """

    sql: str
    replay: ReplayPlan
    ctes: dict[int, str]
    exact: bool
    star_only: frozenset[str] = frozenset()


def plan_query(
    tree: exp.Expr,
    *,
    catalog: Catalog,
    con: duckdb.DuckDBPyConnection,
    repo: Path,
    source: str,
    params: Sequence[Any] = (),
    use_cache: bool = True,
    rules: Sequence[Rule] = RULES,
) -> PlannedQuery:
    """Plan one query (a parsed SELECT) against the catalog.

    Example:
        >>> from florsql.grammar import parse
        >>> stmt = parse("SELECT epoch, avg(grad_norm) FROM logs WHERE lr > ? GROUP BY ALL")
        >>> planned = plan_query(stmt.query, catalog=cat, con=con, repo=repo,
        ...                      source=stmt.source, params=[0.01])  # doctest: +SKIP
        >>> planned.replay.replay_set()  # doctest: +SKIP
        {'20260101T000000-1-abc': {'grad_norm': (0, 1, 2)}}
    """
    state = PlanState(
        tree=tree.copy(),
        source=source,
        catalog=catalog,
        con=con,
        repo=Path(repo),
        params=tuple(params),
        use_cache=use_cache,
    )
    for rule in rules:
        rule(state)
    exact = state.binding.exact if state.binding is not None else False
    return PlannedQuery(
        sql=state.sql,
        replay=state.plan,
        ctes=dict(state.ctes),
        exact=exact,
        star_only=star_only(tree, catalog),
    )


def star_only(tree: exp.Expr, catalog: Catalog) -> frozenset[str]:
    """The log names ``tree`` reaches only through ``*`` in its top-level select list.

    Only a plain SELECT whose every star (``*``, ``l.*``, ``* EXCLUDE``...) is an item of its own
    select list (``count(*)`` aside) qualifies: a star in a subquery or CTE feeds a computation,
    as does grouping, ``DISTINCT``, ``QUALIFY``, a window or aggregate in the select list, or an
    ``ORDER BY`` other than by named columns.
    A name written anywhere (any identifier: a column, ``USING``, an alias) is not star-only, nor
    is any name where ``COLUMNS(...)`` or a ``PIVOT`` picks columns.

    Example:
        >>> from florsql.grammar import parse
        >>> cat = Catalog.for_names(["loss", "w2"])  # doctest: +SKIP
        >>> sorted(star_only(parse("SELECT * FROM logs LIMIT 5").query, cat))  # doctest: +SKIP
        ['loss', 'w2']
    """
    if not isinstance(tree, exp.Select) or tree.find(exp.Pivot, exp.Columns) is not None:
        return frozenset()
    if tree.find(exp.PositionalColumn, exp.TableColumn) is not None:
        return frozenset()  # `#12` names a column by its place: named, not reached through *
    if _whole_row(tree):
        return frozenset()  # l['w2'], struct_extract(l, 'w2'), l::VARCHAR: reads every column
    if any(j.text("method").upper() == "NATURAL" for j in tree.find_all(exp.Join)):
        return frozenset()  # joins on every shared name: `logs a NATURAL JOIN logs b` on w2 too
    if any(tree.args.get(arg) for arg in ("group", "having", "qualify", "distinct")):
        return frozenset()  # grouping or deduplicating on what * expands to computes on it
    if any(item.find(exp.Window, exp.AggFunc) for item in tree.expressions):
        return frozenset()  # count(*) OVER (): counts the rows, which hindsight names may make
    order = tree.args.get("order")
    if order is not None and not all(isinstance(o.this, exp.Column) for o in order.expressions):
        return frozenset()  # ORDER BY 12, ORDER BY ALL: may sort by a column * brought
    items = set(map(id, tree.expressions))
    stars = 0
    for star in tree.find_all(exp.Star):
        if isinstance(star.parent, exp.AggFunc):
            continue  # count(*)
        item = star.parent if isinstance(star.parent, exp.Column) else star
        if id(item) not in items:
            return frozenset()
        stars += 1
    if not stars:
        return frozenset()
    written = {fold(i.name) for i in tree.find_all(exp.Identifier)}
    return frozenset(n for n in catalog.names("log") if fold(n) not in written)


def _whole_row(tree: exp.Expr) -> bool:
    """Whether ``tree`` reads a relation's whole row: an unqualified name that is the name of
    a relation it reads (``l`` of ``FROM logs l``, ``logs``), as DuckDB reads it when no column
    has that name. A hindsight value reached so is computed on (``WHERE l['w2'] > 0`` filtered
    every row out of a "preview" answered with NULLs), not only shown; a column that has such
    a name is taken for one too (the query is refused, not previewed)."""
    sources = {fold(t.alias_or_name) for t in tree.find_all(exp.Table)}
    sources |= {fold(s.alias) for s in tree.find_all(exp.Subquery) if s.alias}
    return any(not col.table and fold(col.name) in sources for col in tree.find_all(exp.Column))
