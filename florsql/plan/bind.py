"""Binding: find every reference to ``logs`` and the columns each one uses; reject unknown columns.

The query is analysed on a qualified copy (sqlglot's ``qualify`` with the catalog as schema):
each column then names its source, so a reference's log columns are exact even through joins,
correlated subqueries and CTEs. A user CTE named ``logs`` shadows the relation, as in SQL.
Statements sqlglot cannot scope (a top-level ``PIVOT``) are analysed per inner query.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.qualify import qualify
from sqlglot.optimizer.scope import Scope, traverse_scope

from florsql.errors import PlanError
from florsql.fold import fold
from florsql.grammar import line_col, node_position
from florsql.grammar.placeholders import ACCEPTED
from florsql.plan.catalog import Catalog

__all__ = ["REF_KEY", "Binding", "Reference", "bind_query", "is_logs_table"]

REF_KEY = "flor_ref"


@dataclass
class Reference:
    """One reference to ``logs`` in the query (``FROM logs``, ``JOIN logs AS b``...).

    Attributes:
        ref_id: its number, also stored in the original table node's ``meta``.
        alias: the name its columns are qualified by.
        names: the log columns it uses; None for all of them (``SELECT *``, ``COLUMNS(...)``,
            a pivot over it). An empty set also means all: ``count(*)`` names no log.
        columns: every ``logs`` column it uses (run-level and loop columns too).
        scope: the scope that reads it (on the qualified copy); None if not analysed.
    """

    ref_id: int
    alias: str
    names: set[str] | None = field(default_factory=set)
    columns: set[str] = field(default_factory=set)
    scope: Scope | None = None
    table: exp.Table | None = None

    def grain(self) -> tuple[str, ...] | None:
        """The log names that decide its rows (None: every log name)."""
        return None if not self.names else tuple(sorted(self.names))


@dataclass
class Binding:
    """The references of one query, on its qualified copy."""

    references: list[Reference]
    qualified: exp.Expr | None
    exact: bool


def is_logs_table(node: exp.Expr) -> bool:
    """``logs`` or ``main.logs`` (names are case-insensitive, as in DuckDB)."""
    if not isinstance(node, exp.Table) or node.name.lower() != "logs" or node.text("catalog"):
        return False
    return node.text("db").lower() in ("", "main")


def bind_query(tree: exp.Expr, catalog: Catalog, source: str) -> Binding:
    """Tag the ``logs`` tables of ``tree`` and work out each reference's columns.

    Raises:
        PlanError: a column no relation in its scope has (with a "did you mean"), or an
            unqualified column two relations of its scope have (naming both).
    """
    for i, table in enumerate(t for t in tree.find_all(exp.Table) if is_logs_table(t)):
        table.meta[REF_KEY] = i
        alias = table.args.get("alias")
        if isinstance(alias, exp.TableAlias) and alias.columns:
            # ``logs AS t(a, b)`` renames logs' first columns by position (projid, run_id...):
            # before session 43, "Unknown column 'b'"
            line, column = node_position(alias, source) or (None, None)
            raise PlanError(
                "a column alias list on logs is not supported (it renames logs' first columns "
                "by position): alias the columns in the select list (SELECT run_id AS b ...), "
                "or give the list to a subquery (FROM (SELECT run_id, epoch FROM logs) AS "
                "t(b, e))",
                sql=source,
                line=line,
                col=column,
            )
    roots = [tree] if isinstance(tree, exp.Query) else _inner_queries(tree)
    roots += _pivoted_queries(tree)
    exact = True
    try:
        refs, copies = _analyse_roots(roots, catalog, source)
    except (SqlglotError, AssertionError) as e:
        if isinstance(e, SqlglotError):
            _unknown_qualified(e, tree, catalog, source)
        # sqlglot cannot qualify a position over a `*` it cannot expand (`SELECT * FROM (PIVOT
        # logs ...) ORDER BY 1` asserts, `ORDER BY 2` is an "Unknown output column"). A
        # position names a select item, which names its own columns: analysed without the
        # positions, the references' columns are the same (before, analysed by the names
        # written: the pivot's `logs` took the grain of the one log its USING named, and the
        # answer lost the rows of every other log, silently). Not exact: no rule may read the
        # ORDER BY or LIMIT of a copy whose positions are gone.
        exact = False
        try:
            refs, copies = _analyse_roots([_without_positions(r) for r in roots], catalog, source)
        except (SqlglotError, AssertionError):
            return _fallback(tree, catalog)
    if not exact:
        return Binding(refs + _unscoped(tree, refs), None, exact=False)
    qualified = copies[0] if len(copies) == 1 and roots[0] is tree else None
    once: dict[int, Reference] = {}
    for ref in refs:  # a pivoted query the outer scopes reached too: once
        once.setdefault(ref.ref_id, ref)
    refs = list(once.values())
    return Binding(refs + _unscoped(tree, refs), qualified, exact=True)


def _analyse_roots(
    roots: list[exp.Query], catalog: Catalog, source: str
) -> tuple[list[Reference], list[exp.Expr]]:
    refs: list[Reference] = []
    copies: list[exp.Expr] = []
    for root in roots:
        copy = qualify(
            root.copy(),
            schema=catalog.sqlglot_schema(),
            dialect="duckdb",
            validate_qualify_columns=False,
            quote_identifiers=False,
            identify=False,
        )
        copies.append(copy)
        refs += _analyse(copy, catalog, source)
    return refs, copies


def _without_positions(root: exp.Query) -> exp.Query:
    """A copy of ``root`` whose positional ``ORDER BY``/``GROUP BY``/``DISTINCT ON`` terms
    (``ORDER BY 1``) are ``NULL``: each named a select item, whose columns the analysis sees."""
    copy = root.copy()
    for node in list(copy.find_all(exp.Order, exp.Group, exp.Distinct)):
        terms = node.args.get("on") if isinstance(node, exp.Distinct) else node
        for term in list(terms.expressions) if isinstance(terms, exp.Expr) else []:
            target = term.this if isinstance(term, exp.Ordered) else term
            if isinstance(target, exp.Literal) and target.is_int:
                target.replace(exp.Null())
    return copy


def _unscoped(tree: exp.Expr, refs: list[Reference]) -> list[Reference]:
    """``logs`` read where no scope reaches (``PIVOT logs ON ...``, at the top or nested in a
    CTE or subquery, where sqlglot cannot traverse): all of its columns."""
    seen = {r.ref_id for r in refs}
    shadowed = any(cte.alias_or_name.lower() == "logs" for cte in tree.find_all(exp.CTE))
    out = []
    for table in tree.find_all(exp.Table):
        ref_id = table.meta.get(REF_KEY)
        if shadowed and table.find_ancestor(exp.Query) is not None:
            continue  # inside a query where a user CTE named logs may shadow it
        if ref_id is not None and ref_id not in seen:
            out.append(Reference(ref_id, table.alias_or_name, None, table=table))
    return out


def _pivoted_queries(tree: exp.Expr) -> list[exp.Query]:
    """The queries a ``PIVOT``/``UNPIVOT`` statement reads where it is nested in a query (a CTE,
    a subquery): sqlglot's scopes do not reach into them, so each is analysed on its own."""
    out: list[exp.Query] = []
    for pivot in tree.find_all(exp.Pivot):
        source = pivot.this
        if not isinstance(source, exp.Expr) or pivot.find_ancestor(exp.Query) is None:
            continue
        for query in source.find_all(exp.Query):
            parent = query.parent
            while parent is not None and parent is not pivot and not isinstance(parent, exp.Query):
                parent = parent.parent
            if parent is pivot:
                out.append(query)
    return out


def _inner_queries(tree: exp.Expr) -> list[exp.Query]:
    out: list[exp.Query] = []
    for node in tree.find_all(exp.Query):
        parent = node.parent
        while parent is not None and not isinstance(parent, exp.Query):
            parent = parent.parent
        if parent is None:
            out.append(node)
    return out


def _fallback(tree: exp.Expr, catalog: Catalog) -> Binding:
    """Name-based analysis: every ``logs`` table uses the log names written anywhere."""
    if any(cte.alias_or_name.lower() == "logs" for cte in tree.find_all(exp.CTE)):
        raise PlanError("florsql cannot analyse this query with a CTE named logs; rename the CTE")
    written = {catalog.canonical(c.name) for c in tree.find_all(exp.Column)}
    written &= set(catalog.names("log"))
    refs = []
    for table in tree.find_all(exp.Table):
        if REF_KEY in table.meta:
            refs.append(Reference(table.meta[REF_KEY], table.alias_or_name, set(written)))
    return Binding(refs, None, exact=False)


def _analyse(root: exp.Expr, catalog: Catalog, source: str) -> list[Reference]:
    scopes = traverse_scope(root)
    refs: dict[int, Reference] = {}
    for scope in scopes:
        for alias, src in scope.sources.items():
            if isinstance(src, exp.Table) and REF_KEY in src.meta:
                ref = Reference(src.meta[REF_KEY], alias, set(), set(), scope, src)
                refs[id(src)] = ref
                if src.args.get("pivots") or _has_star(scope):
                    ref.names = None
    log_names = set(catalog.names("log"))
    for scope in scopes:
        for col in scope.columns:
            owner = _resolve(scope, col.table)
            found = refs.get(id(owner)) if isinstance(owner, exp.Table) else None
            if found is not None:
                ref = found
                column = catalog.column(col.name)  # names ignore case, as in DuckDB
                if column is None:
                    _unknown(col, catalog.names(), catalog, source)
                    continue
                ref.columns.add(column.name)
                logged = column.kind == "log" or any(k == "log" for k, _ in column.shared)
                if logged and ref.names is not None:  # (a log of some runs, an arg of others)
                    ref.names.add(column.name)
            elif not col.table:
                _check_unresolved(scope, col, catalog, source)
        for col in _alias_clause_columns(scope):
            _check_unresolved(scope, col, catalog, source)
        _columns_function(scope, refs, log_names)
        _whole_rows(scope, refs)
    return sorted(refs.values(), key=lambda r: r.ref_id)


def _alias_clause_columns(scope: Scope) -> list[exp.Column]:
    """Unqualified names of ``HAVING`` and ``QUALIFY`` that qualify left unplaced: sqlglot's
    ``scope.columns`` leaves every one out (it may be a select alias), so an unknown name reached
    DuckDB, whose message misleads (``HAVING zz > 1``: 'column "zz" must appear in the GROUP BY
    clause')."""
    select = scope.expression
    if not isinstance(select, exp.Select):
        return []
    listed = {id(c) for c in scope.columns}
    found = []
    for key in ("having", "qualify"):
        clause = select.args.get(key)
        if clause is None:
            continue
        for col in clause.find_all(exp.Column):
            if col.table or id(col) in listed or col.find_ancestor(exp.Select) is not select:
                continue
            if isinstance(col.this, exp.Star) or _lambda_variable(col):
                continue
            found.append(col)
    return found


def _lambda_variable(col: exp.Column) -> bool:
    lam = col.find_ancestor(exp.Lambda)
    while lam is not None:
        if any(fold(p.name) == fold(col.name) for p in lam.expressions):
            return True
        lam = lam.find_ancestor(exp.Lambda)
    return False


def _whole_rows(scope: Scope, refs: dict[int, Reference]) -> None:
    """``SELECT logs FROM logs`` reads the reference's whole row, as a struct: every column; so
    does ``WHERE struct_extract(l, 'acc') > 0.5`` (any clause of this SELECT, not a subquery's).
    """
    select = scope.expression
    if not isinstance(select, exp.Select):
        return
    for col in select.find_all(exp.TableColumn, exp.Column):
        if col.find_ancestor(exp.Select) is not select:
            continue
        bare = isinstance(col, exp.TableColumn) or not col.text("table")
        owner = scope.sources.get(col.name) if bare else None
        ref = refs.get(id(owner)) if isinstance(owner, exp.Table) else None
        if ref is not None:
            ref.names = None


def _has_star(scope: Scope) -> bool:
    """A ``*`` in the select list, or a column named by its place (``#12``, DuckDB's 12th
    column of the FROM clause) in a clause where it is one: which log it reads depends on the
    columns' order, so it counts as reading every one (before, none: a hindsight column it
    named was NULL without a warning)."""
    select = scope.expression
    if not isinstance(select, exp.Select):
        return False
    if any(isinstance(s, exp.Star) or s.is_star or _star_pattern(s) for s in select.selects):
        return True
    return any(_reads_a_column(p, select) for p in select.find_all(exp.PositionalColumn))


def _reads_a_column(positional: exp.PositionalColumn, select: exp.Select) -> bool:
    """Whether ``#n`` in ``select`` is a column of its FROM clause. In the SELECT's own
    ``ORDER BY`` and ``DISTINCT ON`` DuckDB reads it as the n-th item of the select list (as
    ``ORDER BY n``), which reads nothing more; everywhere else (the select list, WHERE, GROUP
    BY, a window's ORDER BY) as the n-th column."""
    if positional.find_ancestor(exp.Select) is not select:
        return False  # a subquery's: its own scope
    child: exp.Expr = positional
    parent = positional.parent
    while parent is not None and parent is not select:
        child, parent = parent, parent.parent
    return child is not select.args.get("order") and child is not select.args.get("distinct")


#: ``* LIKE 'w%'``, ``* NOT ILIKE``, ``* GLOB``, ``* SIMILAR TO``: DuckDB's star filtered by name.
_NAME_FILTERS = (exp.Like, exp.ILike, exp.Glob, exp.SimilarTo, exp.RegexpLike)


def _star_pattern(item: exp.Expr) -> bool:
    """A select item that is a star filtered by a pattern on the names (``* LIKE 'w%'``,
    ``l.* NOT SIMILAR TO 'w.'``, ``(* GLOB 'w*') AS x``): a ``*``, as DuckDB
    expands it, though ``is_star`` does not say so (a hindsight column it brought was never
    computed: NULL without a word)."""
    node = item
    while isinstance(node, exp.Alias | exp.Paren | exp.Not | exp.Escape):
        node = node.this
    if not isinstance(node, _NAME_FILTERS):
        return False
    this = node.this
    return isinstance(this, exp.Star) or (
        isinstance(this, exp.Column) and isinstance(this.this, exp.Star)
    )


def _columns_function(scope: Scope, refs: dict[int, Reference], log_names: set[str]) -> None:
    """``COLUMNS('regex')`` and ``COLUMNS(['a', 'b'])`` (names in any case, as DuckDB reads
    them) pick log columns by name; other forms (a lambda, ``*``) pick all of them."""
    if not isinstance(scope.expression, exp.Select):
        return
    for node in scope.expression.find_all(exp.Columns):
        targets = [refs[id(s)] for s in scope.sources.values() if id(s) in refs]
        pattern = node.this
        for ref in targets:
            if ref.names is None:
                continue
            if isinstance(pattern, exp.Literal) and pattern.is_string:
                matched = regex_matches(pattern.name, log_names)
                if matched is None:
                    ref.names = None
                    continue
                ref.names |= matched
            elif isinstance(pattern, exp.Array) and all(
                isinstance(e, exp.Literal) and e.is_string for e in pattern.expressions
            ):
                listed = {fold(e.name) for e in pattern.expressions}
                ref.names |= {n for n in log_names if fold(n) in listed}
            else:
                ref.names = None


@functools.lru_cache(maxsize=256)
def _regex_matches(pattern: str, names: frozenset[str]) -> frozenset[str] | None:
    import duckdb

    try:
        with duckdb.connect() as con:
            rows = con.execute(
                "SELECT n FROM unnest(?::VARCHAR[]) AS u(n) WHERE regexp_matches(n, ?)",
                [sorted(names), pattern],
            ).fetchall()
    except duckdb.Error:
        return None  # DuckDB refuses the pattern: the query fails there, saying why
    return frozenset(n for (n,) in rows)


def regex_matches(pattern: str, names: set[str] | frozenset[str]) -> set[str] | None:
    """The ``names`` that ``COLUMNS('pattern')`` picks, as DuckDB matches them (RE2, a match
    anywhere in the name, case-sensitive); None where DuckDB refuses the pattern.

    Python's ``re`` is another dialect: it read ``'^[[:upper:]]'`` as a set of ``[:uper``
    followed by ``]`` and matched no name, so the hindsight columns DuckDB's POSIX class picked
    were neither replayed nor warned about (NULL, silently).

    Example:
        >>> sorted(regex_matches("^[[:upper:]]", {"Loss", "acc", "VL2"}))
        ['Loss', 'VL2']
        >>> regex_matches("(", {"a"}) is None
        True
    """
    found = _regex_matches(pattern, frozenset(names))
    return None if found is None else set(found)


def _resolve(scope: Scope, table: str) -> exp.Expr | Scope | None:
    s: Scope | None = scope
    while s is not None:
        if table in s.sources:
            return s.sources[table]
        s = s.parent
    return None


def _check_unresolved(scope: Scope, col: exp.Column, catalog: Catalog, source: str) -> None:
    """An unqualified column qualify could not place: unknown when every source is known."""
    expression = scope.expression
    if not isinstance(expression, exp.Select) or not scope.sources:
        return
    own = _projection_of(col, expression)
    aliases = {fold(s.alias_or_name) for s in expression.selects if s is not own}
    if fold(col.name) in aliases or col.name in scope.sources:
        return  # a select alias (qualify aliases every projection: not its own) or a row
    pool: list[str] = []
    s: Scope | None = scope
    while s is not None:
        having: list[tuple[str, exp.Table]] = []
        for alias, src in s.sources.items():
            columns = _known_columns(src, catalog)
            if columns is None:
                return  # a derived table, table function or unknown relation: DuckDB decides
            pool += columns
            if isinstance(src, exp.Table) and fold(col.name) in {fold(c) for c in columns}:
                having.append((alias, src))
        if len(having) > 1:
            _ambiguous(col, having, source)
        s = s.parent
    _unknown(col, pool, catalog, source)


def _known_columns(src: exp.Expr | Scope, catalog: Catalog) -> list[str] | None:
    """The columns of a ``logs`` reference or a florsql relation; None for any other source."""
    if isinstance(src, exp.Table) and REF_KEY in src.meta:
        return list(catalog.names())
    if isinstance(src, exp.Table) and not src.text("db") and src.name in catalog.relations:
        return list(catalog.relations[src.name])
    return None


def _ambiguous(col: exp.Column, sources: list[tuple[str, exp.Table]], source: str) -> None:
    """A column more than one source of its scope has: name them and how to qualify it."""
    named = [alias if alias == t.name else f"{alias} ({t.name})" for alias, t in sources]
    which = f"{named[0]} and {named[1]} both" if len(named) == 2 else f"{', '.join(named)} all"
    qualified = " or ".join(f"{alias}.{col.name}" for alias, _ in sources)
    pos = node_position(col, source) or (None, None)
    line, column = pos if pos != (None, None) else _find(col.name, source)
    message = f"Ambiguous column '{col.name}': {which} have it; write {qualified}"
    raise PlanError(message, sql=source, line=line, col=column)


def _unknown_qualified(error: SqlglotError, tree: exp.Expr, catalog: Catalog, source: str) -> None:
    """qualify refuses ``t.x`` when table ``t`` has no column ``x``: report it as ours."""
    found = re.match(r"Unknown column: (.+)$", str(error))
    if found is None:
        return
    name = found.group(1).strip('"')
    for col in tree.find_all(exp.Column):
        if fold(col.name) != fold(name) or not col.table:
            continue
        pool: list[str] = []
        for table in tree.find_all(exp.Table):
            if table.alias_or_name != col.table:
                continue
            if REF_KEY in table.meta:
                pool += catalog.names()
            else:
                pool += list(catalog.relations.get(table.name.lower(), {}))
        _unknown(col, pool, catalog, source)


def _projection_of(node: exp.Expr, select: exp.Select) -> exp.Expr | None:
    """The select-list item holding ``node``, if it is in the select list."""
    child, parent = node, node.parent
    while parent is not None and parent is not select:
        child, parent = parent, parent.parent
    return child if parent is select and any(child is s for s in select.selects) else None


def _unknown(
    col: exp.Column, pool: tuple[str, ...] | list[str], catalog: Catalog, source: str
) -> None:
    pos = node_position(col, source) or (None, None)
    line, column = pos if pos != (None, None) else _find(col.name, source)
    hint = catalog.suggest(col.name, list(dict.fromkeys(pool)))
    if isinstance(col.parent, exp.Abs) and col.parent.meta.get("at_sign"):
        hint += (
            f" (@{col.name} is DuckDB's absolute value of {col.name}, not a parameter: {ACCEPTED})"
        )
    for filename in catalog.unexecuted(col.name)[:2] if not hint else []:
        hint += (
            f" Today's {filename} logs it, but no recorded run executed {filename}: a name is a"
            " column where some run executed a file logging it, and a replay places it only"
            " into files the run executed (log it in a script the runs ran, or a module they"
            " imported, to have it for them)."
        )
    quoted = col.this.args.get("quoted") if isinstance(col.this, exp.Identifier) else False
    if quoted and not col.table and not hint:  # ``opt = "sgd"``: a string in double quotes
        text = col.name.replace("'", "''")
        hint += f" Double quotes name a column; a string takes single quotes: '{text}'."
    for filename, why in sorted(catalog.unparsed.items())[:2]:
        hint += (
            f" Today's {filename} does not parse ({why}): the names it logs are unknown until"
            " it does."
        )
    raise PlanError(f"Unknown column '{col.name}'.{hint}", sql=source, line=line, col=column)


def _find(name: str, source: str) -> tuple[int | None, int | None]:
    m = re.search(rf"\b{re.escape(name)}\b", source)
    return line_col(source, m.start()) if m else (None, None)
