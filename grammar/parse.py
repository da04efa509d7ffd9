"""Parse florsql SQL into :class:`Statement` objects, refusing anything that is not a read."""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Literal

from sqlglot import exp
from sqlglot.errors import ParseError as SqlglotParseError
from sqlglot.errors import TokenError
from sqlglot.tokens import Token, TokenType

from florsql.errors import ParseError
from florsql.grammar.dialect import Explain, Florsql, SetReplay, ShowColumns, ShowRuns
from florsql.grammar.placeholders import named_parameter, refusal
from florsql.grammar.positions import line_col, translate_parse_error, translate_token_error
from florsql.grammar.safety import NOT_A_STATEMENT, PLUS_PARAMETER, check_read_only

__all__ = ["Statement", "StatementKind", "parse", "parse_many"]

StatementKind = Literal["select", "explain", "show_runs", "show_columns", "set"]

_DIALECT = Florsql()
_TOKEN_ERROR_AT = re.compile(r" from \d+:(\d+)$")
_STARTS = frozenset({"EXPLAIN", "SHOW", "SET"})


@dataclass(frozen=True)
class Statement:
    """One parsed, validated florsql statement.

    Attributes:
        kind: ``"select"`` (any query: SELECT, set operations, VALUES, PIVOT), ``"explain"``,
            ``"show_runs"``, ``"show_columns"`` or ``"set"``.
        tree: the whole statement's sqlglot tree (a florsql node for the florsql statements).
        sql: this statement's text, without the ``;``.
        source: the whole text given to ``parse``/``parse_many``; node positions (``meta``)
            count from its start (see ``florsql.grammar.node_position``).
        offset: where ``sql`` starts in ``source`` (0-based).
        query: for ``select`` the tree itself, for ``explain`` the query explained; else None.
        table: for ``show_columns``, the table name as written (``"logs"``, ``"main.logs"``).
        setting: for ``set``, the setting name (``"replay"`` or ``"executor"``).
        value: for ``set``, the value, lower-case: ``"auto"``, ``"confirm"`` or ``"off"``.
        param_count: how many ``?`` parameters the statement takes (bound positionally).
    """

    kind: StatementKind
    tree: exp.Expr
    sql: str
    source: str
    offset: int = 0
    query: exp.Expr | None = None
    table: str | None = None
    setting: str | None = None
    value: str | None = None
    param_count: int = 0

    def duckdb_sql(self) -> str:
        """The query as DuckDB SQL (for ``select`` and ``explain``: the query explained)."""
        if self.query is None:
            raise ValueError(f"a {self.kind} statement has no query")
        return self.query.sql(dialect="duckdb")


def parse(sql: str) -> Statement:
    """Parse one florsql statement; a trailing ``;`` is allowed.

    Raises:
        florsql.errors.ParseError: the text is empty, is not valid SQL, holds more than one
            statement, or is not a read (with line, column and a caret snippet where known).

    Example:
        >>> stmt = parse("SELECT run_id, avg(loss) FROM logs WHERE lr > ? GROUP BY ALL")
        >>> stmt.kind, stmt.param_count
        ('select', 1)
        >>> parse("SET replay TO off").value
        'off'
        >>> parse("SET threads = 4")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        florsql.errors.ParseError: SET of DuckDB options is not allowed; florsql settings: ...
          1 | SET threads = 4
            | ^
    """
    statements = parse_many(sql)
    if len(statements) > 1:
        line, col = line_col(sql, statements[1].offset)
        raise ParseError(
            f"expected one statement, got {len(statements)}: run them one at a time",
            sql=sql,
            line=line,
            col=col,
        )
    return statements[0]


def parse_many(sql: str) -> list[Statement]:
    """Parse a ``;``-separated script into statements, validating each.

    Example:
        >>> [s.kind for s in parse_many("SHOW RUNS; EXPLAIN FROM logs;")]
        ['show_runs', 'explain']
    """
    chunks = _split(_tokenize(sql))
    if not chunks:
        raise ParseError("empty query: expected a SELECT or a florsql statement", sql=sql)
    return [_parse_chunk(chunk, sql) for chunk in chunks]


def _tokenize(sql: str) -> list[Token]:
    tokenizer = _DIALECT.tokenizer()
    try:
        return tokenizer.tokenize(sql)
    except TokenError as error:
        raise translate_token_error(error, sql, _token_error_start(tokenizer, error)) from None


def _token_error_start(tokenizer: object, error: TokenError) -> int | None:
    """Where the token being read began: the tokenizer keeps it; its message says it too."""
    start = getattr(getattr(tokenizer, "_core", None), "_start", None)
    if isinstance(start, int):
        return start
    found = _TOKEN_ERROR_AT.search(str(error.__cause__ or error))
    return int(found.group(1)) if found else None


def _split(tokens: list[Token]) -> list[list[Token]]:
    chunks: list[list[Token]] = [[]]
    for token in tokens:
        if token.token_type == TokenType.SEMICOLON:
            chunks.append([])
        else:
            chunks[-1].append(token)
    return [chunk for chunk in chunks if chunk]


def _parse_chunk(tokens: list[Token], source: str) -> Statement:
    try:
        trees = _DIALECT.parser().parse(tokens, source)
    except SqlglotParseError as error:
        named = named_parameter(tokens, at_sign=True)
        if named is not None:  # e.g. `SELECT :x`, `lr > %s`: say so, at the placeholder
            line, col = line_col(source, named[1])
            raise ParseError(refusal(named[0]), sql=source, line=line, col=col) from None
        first = tokens[0]
        if first.token_type == TokenType.VAR and first.text.upper() not in _STARTS:
            raise _not_a_statement(first, source) from None
        raise translate_parse_error(error, source) from None
    except RecursionError:
        line, col = line_col(source, tokens[0].start)
        message = "the statement nests too deeply to parse (parentheses, subqueries)"
        raise ParseError(message, sql=source, line=line, col=col) from None
    tree = trees[0] if trees else None
    if tree is None:  # sqlglot returns nothing for a statement that starts with ELSE
        raise _not_a_statement(tokens[0], source)
    _check_clause_order(tokens, source)
    _check_string_continuation(tokens, source)
    _check_placeholders_kept(tokens, tree, source)
    _keep_unary_plus(tokens, tree)
    _keep_leading_dot(tokens, tree)
    start = tokens[0].start
    check_read_only(tree, source, start)
    return _classify(tree, source, start, tokens[-1].end + 1)


#: The clauses of a SELECT in the order DuckDB's grammar takes them (LIMIT, OFFSET and FETCH in
#: either order); sqlglot takes them in any order (``... ORDER BY x WHERE y``, ``LIMIT 5 ORDER
#: BY loss``) and answers as if written in this one.
_CLAUSE_RANK: dict[TokenType, float] = {
    TokenType.WHERE: 1,
    TokenType.GROUP_BY: 2,
    TokenType.HAVING: 3,
    TokenType.WINDOW: 4,
    TokenType.QUALIFY: 5,
    TokenType.USING: 5.5,  # USING SAMPLE (a USING of a join is not a clause: see _clause_kind)
    TokenType.ORDER_BY: 6,
    TokenType.LIMIT: 7,
    TokenType.OFFSET: 7,
    TokenType.FETCH: 7,
}
_CLAUSE_RESET = frozenset(
    {TokenType.SELECT, TokenType.FROM, TokenType.UNION, TokenType.INTERSECT, TokenType.EXCEPT}
)
_OPENS = frozenset({TokenType.L_PAREN, TokenType.L_BRACKET, TokenType.L_BRACE})
_CLOSES = frozenset({TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE})


def _check_clause_order(tokens: list[Token], source: str) -> None:
    """Refuse a clause written after one DuckDB's grammar wants after it, at its keyword, as
    DuckDB does (a syntax error), rather than answer the query sqlglot reorders it into.

    Example:
        >>> parse("SELECT run_id FROM runs LIMIT 5 ORDER BY lr")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        florsql.errors.ParseError: syntax error near 'ORDER BY': ORDER BY cannot follow LIMIT; ...
          1 | SELECT run_id FROM runs LIMIT 5 ORDER BY lr
            |                                 ^
    """
    seen: list[Token | None] = [None]  # the last clause keyword per nesting level
    previous: Token | None = None
    for token, after in itertools.zip_longest(tokens, tokens[1:]):
        kind = token.token_type
        if kind == TokenType.USING and not (after is not None and after.text.upper() == "SAMPLE"):
            previous = token
            continue  # a join's USING (...), not the USING SAMPLE clause
        if kind in _OPENS:
            seen.append(None)
        elif kind in _CLOSES:
            if len(seen) > 1:
                seen.pop()
        elif kind in _CLAUSE_RESET:
            seen[-1] = None
        elif kind in _CLAUSE_RANK and not (
            previous is not None and previous.token_type in (TokenType.ALIAS, TokenType.DOT)
        ):  # ``AS limit``, ``t.offset``: a name, not a clause
            last = seen[-1]
            if last is not None and _CLAUSE_RANK[last.token_type] > _CLAUSE_RANK[kind]:
                line, col = line_col(source, token.start)
                raise ParseError(
                    f"syntax error near {token.text!r}: {_clause_name(token)} cannot follow "
                    f"{_clause_name(last)}; a SELECT's clauses go WHERE, GROUP BY, HAVING, "
                    "WINDOW, QUALIFY, USING SAMPLE, ORDER BY, LIMIT/OFFSET",
                    sql=source,
                    line=line,
                    col=col,
                )
            seen[-1] = token
        previous = token


#: Tokens of quoted text a following ``'...'`` may continue, across a line break.
_CONTINUED = frozenset(
    {TokenType.STRING, TokenType.BYTE_STRING, TokenType.NATIONAL_STRING, TokenType.RAW_STRING}
)
_TEXTS = _CONTINUED | {
    TokenType.HEREDOC_STRING, TokenType.BIT_STRING, TokenType.HEX_STRING,
    TokenType.UNICODE_STRING,
}  # fmt: skip


def _check_string_continuation(tokens: list[Token], source: str) -> None:
    """Refuse two quoted strings in a row on one line, at the second, as DuckDB does: it
    continues a string only across a line break (``'a'`` newline ``'b'`` is ``'ab'``), and
    never after a dollar-quoted one. sqlglot joined any two, so ``Opt IN ('sgd' 'adam')``, a
    comma missed, matched the text ``'sgdadam'`` (no row) where DuckDB says syntax error.

    Example:
        >>> parse("SELECT 'a' 'b'")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        florsql.errors.ParseError: syntax error near "'b'": two quoted strings in a row ...
          1 | SELECT 'a' 'b'
            |            ^
    """
    for first, second in itertools.pairwise(tokens):
        if first.token_type not in _TEXTS or second.token_type != TokenType.STRING:
            continue
        if first.token_type in _CONTINUED and "\n" in source[first.end + 1 : second.start]:
            continue  # DuckDB's continuation: one string
        line, col = line_col(source, second.start)
        raise ParseError(
            f"syntax error near {source[second.start : second.end + 1]!r}: two quoted strings "
            "in a row are one string only across a line break (as in DuckDB, and never after "
            "a $$-quoted one); a comma missing?",
            sql=source,
            line=line,
            col=col,
        )


def _clause_name(token: Token) -> str:
    return "USING SAMPLE" if token.token_type == TokenType.USING else token.text.upper()


#: A ``?`` sqlglot's parser dropped, or read as something else than a value: in a sample...
PARAMETER_NOT_A_VALUE = (
    "a ? parameter cannot stand here: DuckDB takes only a constant in this place (a sample's "
    "size, written before ROWS, PERCENT or %); write the value in the SQL text, or give the "
    "sample as reservoir(? ROWS) or bernoulli(? PERCENT)"
)
#: ... and in ``SET`` (before s37 refused with the sample's message above).
PARAMETER_IN_SET = (
    "a ? parameter cannot stand in SET: a setting's value is written in the SQL text "
    "(SET replay = 'off')"
)


def _check_placeholders_kept(tokens: list[Token], tree: exp.Expr, source: str) -> None:
    """Refuse a ``?`` the tree holds no value for, at it: sqlglot drops the ``?`` of ``USING
    SAMPLE ? PERCENT (bernoulli)`` (florsql then counted 0 parameters) and reads the one of
    ``USING SAMPLE ? ROWS`` as the sampling method; DuckDB takes only constants there.

    Example:
        >>> parse("SELECT 1 FROM range(9) USING SAMPLE ? ROWS")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        florsql.errors.ParseError: a ? parameter cannot stand here: DuckDB takes only a ...
          1 | SELECT 1 FROM range(9) USING SAMPLE ? ROWS
            |                                     ^
    """
    held = {
        p.meta.get("start")
        for p in tree.find_all(exp.Placeholder)
        if p.this is None and not (isinstance(p.parent, exp.TableSample) and p.arg_key == "method")
    }
    for token in tokens:
        if token.token_type == TokenType.PLACEHOLDER and token.start not in held:
            line, col = line_col(source, token.start)
            setting = bool(tokens) and tokens[0].token_type == TokenType.SET
            message = PARAMETER_IN_SET if setting else PARAMETER_NOT_A_VALUE
            raise ParseError(message, sql=source, line=line, col=col)


#: Tokens after which a ``+`` is unary and what follows may be a positional term.
_BEFORE_TERM = frozenset(
    {TokenType.ORDER_BY, TokenType.GROUP_BY, TokenType.COMMA, TokenType.L_PAREN}
)
#: Tokens after which a ``+`` is surely unary (never the end of an operand).
_BEFORE_UNARY = _BEFORE_TERM | {
    TokenType.SELECT, TokenType.DISTINCT, TokenType.WHERE, TokenType.HAVING, TokenType.QUALIFY,
    TokenType.AND, TokenType.OR, TokenType.NOT, TokenType.WHEN, TokenType.THEN, TokenType.ELSE,
    TokenType.EQ, TokenType.NEQ, TokenType.LT, TokenType.LTE, TokenType.GT, TokenType.GTE,
    TokenType.L_BRACKET, TokenType.LIMIT, TokenType.OFFSET, TokenType.STAR, TokenType.SLASH,
    TokenType.DASH, TokenType.PLUS,
}  # fmt: skip
#: Where an integer literal names a select item by its place (ORDER BY 1, GROUP BY 1,
#: DISTINCT ON (1), ROLLUP(1)...).
_POSITIONAL = (exp.Ordered, exp.Group, exp.Distinct, exp.Rollup, exp.Cube, exp.GroupingSets)


def _keep_unary_plus(tokens: list[Token], tree: exp.Expr) -> None:
    """``+1`` where a bare integer is a position: a constant to DuckDB (``DISTINCT ON (+1)``
    keeps one row, ``GROUP BY +1`` makes one group, ``ORDER BY +1`` does not sort), but sqlglot
    drops the ``+``, leaving the position 1 (``DISTINCT ON (+1)`` kept a row per value of the
    first column, silently). Such a literal becomes ``CAST(1 AS INTEGER)``, DuckDB's constant.
    A ``?`` after a unary plus (anywhere) is marked (``PLUS_PARAMETER``) and bound with its
    plus: ``ORDER BY +?`` was refused as a parameter standing alone, where DuckDB sorts by the
    constant, and ``+?`` bound to ``'x'`` answered ``'x'`` where DuckDB refuses ``+`` of text.

    Example:
        >>> parse("SELECT DISTINCT ON (+1) a FROM t ORDER BY + 2").tree.sql(dialect="duckdb")
        'SELECT DISTINCT ON (CAST(1 AS INT)) a FROM t ORDER BY CAST(2 AS INT)'
    """
    starts = set()
    holes = set()
    for before, plus, after in zip(tokens, tokens[1:], tokens[2:], strict=False):
        if plus.token_type != TokenType.PLUS:
            continue
        if after.token_type == TokenType.NUMBER and before.token_type in _BEFORE_TERM:
            starts.add(after.start)
        elif (
            after.token_type == TokenType.PLACEHOLDER
            and after.text == "?"
            and before.token_type in _BEFORE_UNARY
        ):
            holes.add(after.start)
    if holes:  # `+?`: binding puts the plus back (PLUS_PARAMETER)
        for hole in tree.find_all(exp.Placeholder):
            if hole.this is None and (hole.meta or {}).get("start") in holes:
                hole.meta[PLUS_PARAMETER] = True
    if not starts:
        return
    for literal in list(tree.find_all(exp.Literal)):
        if not (literal.is_int and (literal.meta or {}).get("start") in starts):
            continue
        parent = literal.parent
        while isinstance(parent, exp.Paren | exp.Tuple):
            parent = parent.parent
        if isinstance(parent, _POSITIONAL):
            literal.replace(exp.cast(literal.copy(), exp.DataType.build("INTEGER")))


def _keep_leading_dot(tokens: list[Token], tree: exp.Expr) -> None:
    """``.5`` as written: sqlglot reads it as ``0.5``, one more digit, which DuckDB types
    ``DECIMAL(2,1)`` (``.5`` is ``DECIMAL(1,1)``) and, with 38 digits after the point, as a
    DOUBLE: ``.99999999999999999999999999999999999999`` (a ``DECIMAL(38,38)`` to DuckDB)
    answered 1.0, silently.

    Example:
        >>> parse("SELECT .5, 0.5, -.25").tree.sql(dialect="duckdb")
        'SELECT .5, 0.5, -.25'
    """
    digits = {
        number.text
        for dot, number in itertools.pairwise(tokens)
        if dot.token_type == TokenType.DOT
        and number.token_type == TokenType.NUMBER
        and number.start == dot.end + 1
        and number.text.isdigit()
    }
    if not digits:
        return
    for literal in list(tree.find_all(exp.Literal)):
        # sqlglot builds this literal from the two tokens, without a position of its own
        text = literal.this
        if literal.is_string or "start" in (literal.meta or {}) or not isinstance(text, str):
            continue
        if text.startswith("0.") and text[2:] in digits:
            literal.set("this", text[1:])


def _not_a_statement(first: Token, source: str) -> ParseError:
    line, col = line_col(source, first.start)
    message = f"syntax error near {first.text!r}: {NOT_A_STATEMENT}"
    return ParseError(message, sql=source, line=line, col=col)


def _classify(tree: exp.Expr, source: str, start: int, end: int) -> Statement:
    kind: StatementKind = "select"
    query: exp.Expr | None = tree
    table = value = None
    setting = "replay"
    if isinstance(tree, Explain):
        kind, query = "explain", tree.this
    elif isinstance(tree, ShowRuns):
        kind, query = "show_runs", None
    elif isinstance(tree, ShowColumns):
        kind, query, table = "show_columns", None, tree.this.sql(dialect="duckdb")
    elif isinstance(tree, SetReplay):
        kind, query, value = "set", None, tree.this.name.lower()
        setting = str(tree.args.get("setting") or "replay")
        if setting == "executor":  # an address keeps its case
            value = tree.this.name.strip()
    return Statement(
        kind=kind,
        tree=tree,
        sql=source[start:end],
        source=source,
        offset=start,
        query=query,
        table=table,
        setting=setting if kind == "set" else None,
        value=value,
        param_count=sum(1 for p in tree.find_all(exp.Placeholder) if p.this is None),
    )
