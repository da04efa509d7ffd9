"""Read-only validation: refuse every statement and function that is not a plain read.

Two kinds of rule, applied to every node of the tree however deeply nested (CTEs, subqueries,
joins, LATERAL, set operations, function arguments, lambda bodies):

* a deny list (:mod:`florsql.grammar.refusals`) of statement classes and of functions that read
  files, the network, other databases, settings or the environment, or that run SQL from text;
* structural rules that need no list: a table function in FROM must be one of
  ``range``/``generate_series``/``unnest``, and a table name must be a plain name, never a string
  (``FROM 'data.csv'``), a path-like quoted name (``FROM "data.csv"``) or a parameter.
"""

from __future__ import annotations

from sqlglot import exp

from florsql.errors import ParseError
from florsql.grammar.dialect import Explain, SetReplay, ShowColumns, ShowRuns
from florsql.grammar.positions import line_col, node_offset
from florsql.grammar.refusals import (
    ALLOWED_TABLE_FUNCTIONS,
    REFUSED_COMMANDS,
    REFUSED_FUNCTIONS,
    REFUSED_PREFIXES,
    REFUSED_STATEMENTS,
    UNSUPPORTED_STATEMENTS,
)

__all__ = [
    "NOT_A_STATEMENT",
    "REPLAY_VALUES",
    "SET_REFUSED",
    "check_read_only",
    "function_names",
    "is_query",
]

REPLAY_VALUES = ("auto", "confirm", "off")
SET_REFUSED = "SET of DuckDB options is not allowed; florsql settings: replay"
_PATH_CHARS = frozenset("./\\:*?~")
_FLORSQL_STATEMENTS = (Explain, ShowRuns, ShowColumns, SetReplay)
_FLORSQL_KEYWORDS: dict[type[exp.Expr], str] = {
    Explain: "EXPLAIN",
    ShowRuns: "SHOW RUNS",
    ShowColumns: "SHOW COLUMNS",
    SetReplay: "SET replay",
}
NOT_A_STATEMENT = (
    "expected a query (SELECT, FROM, WITH, VALUES, TABLE, PIVOT) or a florsql statement "
    "(EXPLAIN, SHOW RUNS, SHOW COLUMNS FROM <table>, SET replay)"
)


class _Refused(Exception):
    """A refusal found in the tree: the message and the node to point at."""

    def __init__(self, message: str, node: exp.Expr | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.node = node


def is_query(node: exp.Expr) -> bool:
    """Whether ``node`` is a query DuckDB can run: SELECT, a set operation, VALUES, PIVOT."""
    return isinstance(node, (exp.Query, exp.Values, exp.Pivot))


def function_names(func: exp.Func) -> set[str]:
    """The lower-case names a function node answers to: as written, and its sqlglot aliases."""
    anonymous = isinstance(func, (exp.Anonymous, exp.AnonymousAggFunc))
    names = set() if anonymous else {alias.lower() for alias in func.sql_names()}
    written = func.args.get("this")
    if isinstance(written, str):
        names.add(written.lower())
    return names


def _display_name(func: exp.Func) -> str:
    written = func.args.get("this")
    return written.lower() if isinstance(written, str) else func.sql_names()[0].lower()


def check_read_only(tree: exp.Expr, sql: str, offset: int = 0) -> None:
    """Raise ``ParseError`` unless ``tree`` (parsed from ``sql``) is a read florsql allows.

    ``offset`` is where the statement starts in ``sql``: the position given for refusals of the
    statement as a whole. Other refusals point at the offending node.
    """
    try:
        _check_root(tree)
        for node in tree.walk(bfs=False):
            _check_node(node)
    except _Refused as refusal:
        start = node_offset(refusal.node) if refusal.node is not None else None
        line, col = line_col(sql, offset if start is None else start)
        raise ParseError(refusal.message, sql=sql, line=line, col=col) from None


def _refusal(keyword: str, why: str) -> str:
    return f"florsql is read-only: {keyword} is not allowed ({why})"


def _check_root(tree: exp.Expr) -> None:
    if isinstance(tree, Explain):
        if tree.args.get("analyze"):
            raise _Refused(
                "EXPLAIN ANALYZE is not supported: florsql's EXPLAIN shows the replay plan "
                "and its cost without running anything"
            )
        inner = tree.this
        if not is_query(inner):
            _check_statement(inner, at=inner)
            raise _Refused(f"EXPLAIN takes a query (SELECT ...), not {_keyword(inner)}", inner)
    elif isinstance(tree, SetReplay):
        value = tree.this.name.lower()
        if value not in REPLAY_VALUES:
            raise _Refused(
                f"replay must be 'auto', 'confirm' or 'off', not {tree.this.name!r}", tree.this
            )
    elif not is_query(tree) and not isinstance(tree, _FLORSQL_STATEMENTS):
        _check_statement(tree)
        raise _Refused(NOT_A_STATEMENT)


def _keyword(node: exp.Expr) -> str:
    if isinstance(node, exp.Command):
        return str(node.this).upper()
    rule = _statement_rule(node)
    if rule:
        return rule[0]
    return _FLORSQL_KEYWORDS.get(type(node), "an expression")


def _statement_rule(node: exp.Expr) -> tuple[str, str] | None:
    for cls in type(node).__mro__:
        rule = REFUSED_STATEMENTS.get(cls)
        if rule:
            return rule
    return None


def _check_statement(node: exp.Expr, at: exp.Expr | None = None) -> None:
    """Refuse ``node`` if it is a statement florsql does not run; point at ``at`` if given."""
    if isinstance(node, exp.Set):
        raise _Refused(_set_message(node), at)
    if isinstance(node, exp.Command):
        keyword = str(node.this).upper()
        if keyword == "SET":
            raise _Refused(SET_REFUSED, at)
        if keyword == "SHOW":
            shown = f"SHOW {str(node.expression or '').strip()}"[:40]
            raise _Refused(f"{shown} {UNSUPPORTED_STATEMENTS[exp.Show]}", at)
        why = REFUSED_COMMANDS.get(keyword, "only queries and florsql statements are")
        raise _Refused(_refusal(keyword, why), at)
    if isinstance(node, exp.Show):
        raise _Refused(f"SHOW {node.name.upper()} {UNSUPPORTED_STATEMENTS[exp.Show]}", at)
    unsupported = UNSUPPORTED_STATEMENTS.get(type(node))
    if unsupported:
        raise _Refused(unsupported, at)
    rule = _statement_rule(node)
    if rule:
        keyword = rule[0]
        kind = node.args.get("kind")
        if isinstance(node, (exp.Create, exp.Drop, exp.Alter)) and isinstance(kind, str):
            keyword = f"{keyword} {kind.upper()}"
        raise _Refused(_refusal(keyword, rule[1]), at)


def _set_message(node: exp.Set) -> str:
    for item in node.expressions:
        target = item.this.this if isinstance(item.this, exp.EQ) else None
        if isinstance(target, exp.Expr) and target.name.lower() == "replay":
            return (
                "SET replay takes a single value and no scope: "
                "SET replay = 'auto' | 'confirm' | 'off'"
            )
    return SET_REFUSED


def _check_node(node: exp.Expr) -> None:
    if node.parent is not None and (
        isinstance(node, (exp.Command, exp.Set)) or _statement_rule(node) is not None
    ):
        _check_statement(node, at=node)
    if isinstance(node, exp.Func):
        _check_function(node)
    elif isinstance(node, exp.Table):
        _check_table(node)
    elif isinstance(node, exp.Placeholder) and node.this is not None:
        raise _Refused(f"only ? parameters are supported, not ${node.this}", node)


def _function_refusal(func: exp.Func) -> str | None:
    for name in sorted(function_names(func)):
        why = REFUSED_FUNCTIONS.get(name) or next(
            (why for prefix, why in REFUSED_PREFIXES.items() if name.startswith(prefix)), None
        )
        if why:
            return f"function {name} {why} and is not allowed in florsql queries"
    return None


def _check_function(func: exp.Func) -> None:
    message = _function_refusal(func)
    if message:
        raise _Refused(message, func)
    parent = func.parent
    in_from = isinstance(parent, (exp.From, exp.Join, exp.Lateral, exp.Table, exp.Subquery))
    if in_from and func.arg_key == "this" and not function_names(func) & ALLOWED_TABLE_FUNCTIONS:
        raise _Refused(
            f"table function {_display_name(func)} is not allowed in florsql queries; FROM "
            "takes florsql's relations, subqueries, and range, generate_series or unnest",
            func,
        )


def _check_table(table: exp.Table) -> None:
    name = table.this
    if isinstance(name, exp.Placeholder):
        raise _Refused("a parameter cannot stand for a table name", name)
    for part in table.parts:
        if part.meta.get("string_literal"):
            raise _Refused(
                f"a string as a table ('{part.name}') reads a file in DuckDB; florsql queries "
                "may only read florsql's relations",
                part,
            )
    if isinstance(name, exp.Identifier) and _PATH_CHARS & set(name.name):
        raise _Refused(
            f'table name "{name.name}" looks like a file path, which DuckDB would read; '
            "florsql queries may only read florsql's relations",
            name,
        )
