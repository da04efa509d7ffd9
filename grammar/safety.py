"""Read-only validation: refuse every statement and function that is not a plain read.

Three kinds of rule, applied to every node of the tree however deeply nested (CTEs, subqueries,
joins, LATERAL, set operations, function arguments, lambda bodies):

* statements: a deny list (:mod:`florsql.grammar.refusals`) of statement classes and commands;
* functions: an allow-list (:mod:`florsql.grammar.functions`). Every call is resolved to the
  name as written (quotes removed, any schema or ``x.`` method receiver set aside) and to the
  name DuckDB will run (the call sqlglot generates for DuckDB); both must be on the list;
* structural rules: a table function in FROM must be one of ``range``/``generate_series``/
  ``unnest``, and a table name must be a plain name, never a string (``FROM 'data.csv'``), a
  path-like quoted name (``FROM "data.csv"``) or a parameter.
"""

from __future__ import annotations

import difflib
import re
import threading

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.generator import Generator

from florsql.errors import ParseError
from florsql.grammar.dialect import (
    JSON_PATH_FUNCTIONS,
    Explain,
    SetReplay,
    ShowColumns,
    ShowRuns,
)
from florsql.grammar.functions import (
    ALLOWED_FUNCTIONS,
    ALLOWED_TABLE_FUNCTIONS,
    FLORSQL_FUNCTIONS,
    SYNTAX,
)
from florsql.grammar.placeholders import refusal as placeholder_refusal
from florsql.grammar.positions import line_col, node_offset
from florsql.grammar.refusals import (
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
    "resolve_function",
]

REPLAY_VALUES = ("auto", "confirm", "off")
SET_REFUSED = "SET of DuckDB options is not allowed; florsql settings: replay, executor"
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
    written = _anonymous_name(func)
    if written:
        names.add(written)
    return names


def _anonymous_name(func: exp.Func) -> str | None:
    written = func.args.get("this")
    if isinstance(written, str):
        return written.lower()
    if isinstance(func, (exp.Anonymous, exp.AnonymousAggFunc)) and isinstance(
        written, exp.Identifier
    ):
        return written.name.lower()  # a quoted name: "current_setting"(...)
    return None


_CALL = re.compile(r'\s*(?:"((?:[^"]|"")+)"|([A-Za-z_][A-Za-z0-9_$]*))\s*\(')
_KEYWORD = re.compile(r"[A-Za-z_]+")


def _unquote(text: str) -> str | None:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        return text[1:-1].replace('""', '"').lower()
    return text.lower() if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_$]*", text) else None


def resolve_function(func: exp.Func, sql: str | None = None) -> tuple[str | None, str | None]:
    """(the name as written, the name DuckDB will run) of a call, lower-case.

    The name as written comes from the source text (quotes removed; a schema or the receiver
    of ``x.f()`` set aside); None where the node has no name in the text (``CURRENT_DATE``,
    ``[1, 2]``). The name DuckDB runs is the call sqlglot generates for DuckDB; None where
    that is syntax rather than a call by name (``x ->> '$.a'``, ``CASE ...``).

    Example:
        >>> import sqlglot
        >>> sql = 'SELECT "Current_Setting"(1), main.write_log(2), epoch_ms(3)'
        >>> for f in sqlglot.parse_one(sql, read="duckdb").find_all(exp.Func):
        ...     print(resolve_function(f, sql))
        ('current_setting', 'current_setting')
        ('epoch_ms', 'epoch_ms')
        ('write_log', 'write_log')
    """
    cached = func.meta.get(_RESOLVED)
    if isinstance(cached, tuple) and cached[0] == sql:
        return cached[1], cached[2]
    written, emitted = _resolve(func, sql)
    func.meta[_RESOLVED] = (sql, written, emitted)
    return written, emitted


_RESOLVED = "florsql_resolved"


def _resolve(func: exp.Func, sql: str | None) -> tuple[str | None, str | None]:
    """What :func:`resolve_function` computes, uncached."""
    written = _anonymous_name(func)
    start, end = func.meta.get("start"), func.meta.get("end")
    if sql is not None and isinstance(start, int) and isinstance(end, int):
        written = _unquote(sql[start : end + 1]) or written
    emitted_sql = _duckdb_call(func)
    if emitted_sql is None:  # sqlglot cannot write it for DuckDB: refused under its class name
        return written, written or f"<{type(func).__name__.lower()}>"
    call = _CALL.match(emitted_sql)
    if call:
        quoted, bare = call.groups()
        emitted = quoted.replace('""', '"').lower() if quoted else bare.lower()
    elif _KEYWORD.fullmatch(emitted_sql.strip()):
        emitted = emitted_sql.strip().lower()  # a bare keyword: CURRENT_CATALOG
    else:
        emitted = None
    return written, emitted


_LOCAL = threading.local()


def _generator() -> Generator:
    """A DuckDB SQL generator for this thread (making one per call costs more than the call)."""
    gen: Generator | None = getattr(_LOCAL, "generator", None)
    if gen is None:
        gen = _LOCAL.generator = Dialect.get_or_raise("duckdb").generator()
    return gen


_LEAVES = (exp.Literal, exp.Identifier, exp.DataType, exp.Var, exp.Star, exp.Null, exp.Boolean)


def _duckdb_call(func: exp.Func) -> str | None:
    """The DuckDB SQL sqlglot writes for ``func``, its nested expressions stubbed out (each is
    checked on its own; writing every subtree again would make the check quadratic)."""

    def stub(value: object) -> object:
        if isinstance(value, _LEAVES) or not isinstance(value, exp.Expr):
            return value.copy() if isinstance(value, exp.Expr) else value
        return exp.column("_")

    try:
        args = {
            k: [stub(v) for v in value] if isinstance(value, list) else stub(value)
            for k, value in func.args.items()
        }
        gen = _generator()
        gen.unsupported_messages = []  # as generate() does: nothing piles up across calls
        return gen.sql(type(func)(**args))
    except Exception:  # a form that needs its real arguments: write it whole
        try:
            return func.sql(dialect="duckdb")
        except Exception:
            return None


def _allowed(name: str) -> bool:
    return name in ALLOWED_FUNCTIONS or name in SYNTAX or name in FLORSQL_FUNCTIONS


def _display_name(func: exp.Func, sql: str | None = None) -> str:
    written, emitted = resolve_function(func, sql)
    return written or emitted or func.sql_names()[0].lower()


def check_read_only(tree: exp.Expr, sql: str, offset: int = 0) -> None:
    """Raise ``ParseError`` unless ``tree`` (parsed from ``sql``) is a read florsql allows.

    ``offset`` is where the statement starts in ``sql``: the position given for refusals of the
    statement as a whole. Other refusals point at the offending node.
    """
    try:
        _check_root(tree)
        for node in tree.walk(bfs=False):
            _check_node(node, sql)
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
    elif isinstance(tree, SetReplay) and not tree.args.get("setting"):  # executor: the engine
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
        setting = node.text("expression").strip().rstrip(";").strip().lower()
        if keyword == "RESET" and setting in ("replay", "executor"):
            # florsql's own setting (before s37: "it changes the DuckDB engine florsql runs on")
            values = "'auto' | 'confirm' | 'off'" if setting == "replay" else "'local' | 'ray'"
            raise _Refused(
                f"RESET {setting} is not supported: write the value you want, SET {setting} = "
                f"{values}",
                at,
            )
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


def _check_node(node: exp.Expr, sql: str) -> None:
    if node.parent is not None and (
        isinstance(node, (exp.Command, exp.Set)) or _statement_rule(node) is not None
    ):
        _check_statement(node, at=node)
    if isinstance(node, exp.Func):
        _check_function(node, sql)
    elif isinstance(node, exp.Table):
        _check_table(node)
    elif isinstance(node, exp.Fetch):
        _check_fetch(node)
    elif isinstance(node, exp.SetOperation):
        _check_set_operands(node)
    elif isinstance(node, exp.TableSample):
        _check_sample(node)
    elif isinstance(node, exp.Placeholder) and node.this is not None:
        start = node_offset(node)
        sign = sql[start] if start is not None and sql[start : start + 1] in (":", "$") else "$"
        raise _Refused(placeholder_refusal(f"{sign}{node.this}"), node)
    elif isinstance(node, exp.Placeholder):
        clause = _item_clause(node)
        if clause is not None:
            raise _Refused(POSITIONAL_PARAMETER.format(clause=clause), node)


BERNOULLI_ROWS = (
    "BERNOULLI sampling takes a percentage, not a row count (DuckDB refuses it; PostgreSQL "
    "reads BERNOULLI (10) as 10 percent): write bernoulli(10%) or 10 PERCENT (bernoulli) for a "
    "share of the rows, reservoir(10 ROWS) for a number of them"
)


def _check_sample(node: exp.TableSample) -> None:
    """Refuse BERNOULLI with a row count, which sqlglot writes as ``RESERVOIR (n ROWS)``."""
    method = node.args.get("method")
    name = method.name if isinstance(method, exp.Expr) else str(method or "")
    if name.upper() == "BERNOULLI" and node.args.get("size") is not None:
        raise _Refused(BERNOULLI_ROWS, node)


POSITIONAL_PARAMETER = (
    "a parameter cannot stand alone as an item of {clause} (DuckDB refuses it; florsql binds "
    "? as a value, and a number there would name a column by its position): write the column, "
    "or its position, in the SQL text, or use ? inside an expression"
)


#: The key, in a ``?`` placeholder's ``meta``, that marks one written after a unary plus
#: (``ORDER BY +?``): sqlglot drops the plus, but to DuckDB ``+?`` is an expression, a constant
#: sort key, not a parameter standing alone; binding writes it as a typed constant.
PLUS_PARAMETER = "florsql_unary_plus"


def _item_clause(node: exp.Placeholder) -> str | None:
    """The clause (``ORDER BY``, ``GROUP BY``, ``DISTINCT ON``) whose item ``node`` is, alone
    (in parentheses or not): there a bound integer is a column position, which DuckDB refuses
    to take from a parameter, so binding it as a literal would answer another question."""
    if (node.meta or {}).get(PLUS_PARAMETER):
        return None
    return item_clause(node, (exp.Paren,))


def item_clause(node: exp.Expr, through: tuple[type[exp.Expr], ...]) -> str | None:
    """The clause (``ORDER BY``, ``GROUP BY``, ``DISTINCT ON``) whose item ``node`` is, under
    nothing but ``through`` (parentheses; a minus too for a bound value: DuckDB folds ``- -1``
    into the integer 1, a position)."""
    child: exp.Expr = node
    parent = node.parent
    while isinstance(parent, through):
        child, parent = parent, parent.parent
    if isinstance(parent, exp.Ordered):
        order = parent.parent
        if isinstance(order, exp.Order) and isinstance(order.parent, exp.Query):
            return "ORDER BY"
        return None
    while isinstance(parent, (exp.Rollup, exp.Cube, exp.GroupingSets, exp.Tuple)):
        child, parent = parent, parent.parent
        while isinstance(parent, through):
            child, parent = parent, parent.parent
    if isinstance(parent, exp.Group):
        return "GROUP BY"
    if isinstance(parent, exp.Distinct) and child.arg_key == "on":
        return "DISTINCT ON"
    return None


FETCH_TIES = (
    "FETCH ... WITH TIES is not supported (DuckDB has no WITH TIES, and LIMIT would drop the "
    "ties): write QUALIFY rank() OVER (ORDER BY <the ORDER BY>) <= n"
)
FETCH_PERCENT = (
    "FETCH ... PERCENT is not supported (DuckDB has no such form, and LIMIT n would count "
    "rows): write LIMIT n PERCENT"
)


SET_OPERAND_LIMIT = (
    "LIMIT or OFFSET before UNION, EXCEPT or INTERSECT is ambiguous (DuckDB refuses it): put "
    "the SELECT it belongs to in parentheses, (SELECT ... LIMIT n) UNION ..., or write it after "
    "the last SELECT to cut the whole result"
)


def _check_set_operands(node: exp.SetOperation) -> None:
    """An operand of a set operation, not in parentheses, with its own LIMIT or OFFSET: sqlglot
    keeps it on that operand (``SELECT 1 UNION ALL SELECT 2 LIMIT 1 UNION ALL SELECT 3`` answered
    1, 2, 3); DuckDB has no reading of it."""
    for side in ("this", "expression"):
        operand = node.args.get(side)
        if isinstance(operand, exp.Select):
            for arg in ("limit", "offset", "fetch"):
                clause = operand.args.get(arg)
                if clause is not None:
                    target = clause.args.get("expression") or clause.args.get("count") or clause
                    raise _Refused(SET_OPERAND_LIMIT, target)


def _check_fetch(node: exp.Fetch) -> None:
    """``FETCH FIRST n ROWS ONLY`` is DuckDB's ``LIMIT n``; its ``WITH TIES`` and ``PERCENT``
    forms have no DuckDB spelling (sqlglot would write ``LIMIT n``: a wrong answer)."""
    options = node.args.get("limit_options")
    count = node.args.get("count")
    if options is not None and options.args.get("with_ties"):
        raise _Refused(FETCH_TIES, count)
    if options is not None and options.args.get("percent"):
        raise _Refused(FETCH_PERCENT, count)


def _function_refusal(func: exp.Func, sql: str) -> tuple[str, str | None] | None:
    """(name, why or None) if ``func`` is refused: the name as written or the name DuckDB would
    run is not on the allow-list (a sqlglot alias of the node's own class counts as written).
    ``why`` is the reason for a well-known refused function."""
    if _quantified_list(func):
        return None
    written, emitted = resolve_function(func, sql)
    aliases = set() if _anonymous_name(func) else {a.lower() for a in func.sql_names()}
    for name in (written, emitted):
        if name is None or _allowed(name) or (name is written and name in aliases):
            continue
        why = REFUSED_FUNCTIONS.get(name) or next(
            (why for prefix, why in REFUSED_PREFIXES.items() if name.startswith(prefix)), None
        )
        return name, why
    return None


def _quantified_list(func: exp.Func) -> bool:
    """``x = ALL(list)``, ``x < SOME(list)``: DuckDB compares ``x`` with every (some) element,
    as ``= ANY(list)``. sqlglot reads ``ALL``/``SOME`` over anything but a subquery as a call of
    a function ``all``/``some`` and writes it back as written; before s36 it was refused as a
    function florsql does not allow."""
    return (
        isinstance(func, exp.Anonymous)
        and isinstance(func.this, str)  # "all"(...) is a function call to DuckDB too
        and func.this.upper() in ("ALL", "SOME")
        and len(func.expressions) == 1
        and isinstance(func.parent, (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE))
        and func.arg_key == "expression"
    )


def _function_message(name: str, why: str | None) -> str:
    if why:
        return f"function {name} {why} and is not allowed in florsql queries"
    close = difflib.get_close_matches(name, sorted(ALLOWED_FUNCTIONS), n=1, cutoff=0.75)
    hint = f" Did you mean {close[0]}?" if close else ""
    return (
        f"function {name} is not one of the functions florsql allows in queries "
        f"(florsql.grammar.ALLOWED_FUNCTIONS).{hint}"
    )


JSON_PATH_STEPS = (
    "{name} takes the JSON and one path in DuckDB, not PostgreSQL's path steps: write "
    "{name}(j, '$.a.b') for the value at a.b, or a list of paths, {name}(j, ['$.a', '$.b']), "
    "for several values"
)


def _check_function(func: exp.Func, sql: str) -> None:
    if (
        isinstance(func, exp.Anonymous)
        and func.name.upper() in JSON_PATH_FUNCTIONS
        and len(func.expressions) > 2
    ):
        raise _Refused(JSON_PATH_STEPS.format(name=func.name.lower()), func)
    refused = _function_refusal(func, sql)
    if refused is not None and refused[1] is not None:
        raise _Refused(_function_message(*refused), func)  # a well-known one says why
    parent = func.parent
    in_from = isinstance(parent, (exp.From, exp.Join, exp.Lateral, exp.Table, exp.Subquery))
    names = function_names(func) | set(resolve_function(func, sql)) - {None}
    if in_from and func.arg_key == "this" and not names & ALLOWED_TABLE_FUNCTIONS:
        raise _Refused(
            f"table function {_display_name(func, sql)} is not allowed in florsql queries; FROM "
            "takes florsql's relations, subqueries, and range, generate_series or unnest",
            func,
        )
    if refused is not None:
        raise _Refused(_function_message(*refused), func)


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
    alias = table.args.get("alias")
    if isinstance(alias, exp.TableAlias) and alias.columns and not alias.name:
        # ``FROM show(1)``: sqlglot reads a call of a name it takes for a keyword as the table
        # ``show`` with the column list ``(1)``; DuckDB runs it as a table function
        raise _Refused(
            f"table function {table.name} is not allowed in florsql queries; FROM takes "
            "florsql's relations, subqueries, and range, generate_series or unnest",
            table,
        )
    if isinstance(name, exp.Identifier) and _PATH_CHARS & set(name.name):
        raise _Refused(
            f'table name "{name.name}" looks like a file path, which DuckDB would read; '
            "florsql queries may only read florsql's relations",
            name,
        )
