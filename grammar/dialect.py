"""The ``florsql`` sqlglot dialect: DuckDB's SQL plus florsql's own statements.

Importing this module registers the dialect, so ``sqlglot.parse_one(sql, read="florsql")`` works.
The dialect only *parses*; deciding what is allowed is :mod:`florsql.grammar.safety`'s job, so
statements florsql refuses still parse into nodes (or an opaque ``Command``) that carry their
keyword and position.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sqlglot import exp
from sqlglot.dialects.duckdb import DuckDB
from sqlglot.errors import ParseError
from sqlglot.expressions.builders import INTERVAL_STRING_RE
from sqlglot.generators.duckdb import DuckDBGenerator
from sqlglot.parser import SENTINEL_NONE
from sqlglot.parsers.duckdb import DuckDBParser
from sqlglot.tokens import Token, TokenType
from sqlglot.trie import new_trie

__all__ = ["Explain", "Florsql", "SetReplay", "ShowColumns", "ShowRuns"]


class Explain(exp.Expression):
    """``EXPLAIN <statement>``; ``analyze`` is set for ``EXPLAIN ANALYZE`` (which is refused)."""

    arg_types: ClassVar[dict[str, bool]] = {"this": True, "analyze": False}


class ShowRuns(exp.Expression):
    """``SHOW RUNS``."""

    arg_types: ClassVar[dict[str, bool]] = {}


class ShowColumns(exp.Expression):
    """``SHOW COLUMNS FROM <table>``; ``this`` is an ``exp.Table``."""

    arg_types: ClassVar[dict[str, bool]] = {"this": True}


class SetReplay(exp.Expression):
    """``SET replay = <value>`` (or ``SET executor = <value>``: ``setting`` is then the string
    ``executor``); ``this`` is a string literal holding the value as written."""

    arg_types: ClassVar[dict[str, bool]] = {"this": True, "setting": False}


# Statements sqlglot mis-parses as expressions (CHECKPOINT becomes a column) or cannot parse
# (EXPORT DATABASE): they become a Command carrying the keyword, for safety to refuse by name.
COMMAND_KEYWORDS = frozenset(
    {"ABORT", "CHECKPOINT", "DEALLOCATE", "END", "EXPORT", "IMPORT", "START", "UNLISTEN"}
)


#: florsql's own settings, and the message when one is given no value.
_SETTINGS = {
    "replay": "SET replay needs a value: 'auto', 'confirm' or 'off'",
    "executor": "SET executor needs a value: 'local', 'ray' or 'ray://HOST:PORT'",
}


def _token_upper(token: Token | None) -> str:
    # An exhausted parser holds a falsy SENTINEL token, not None.
    return token.text.upper() if token else ""


#: DuckDB's JSON extraction calls take the JSON and one path (a text, or a list of paths).
JSON_PATH_FUNCTIONS = frozenset(
    {"JSON_EXTRACT", "JSON_EXTRACT_PATH", "JSON_EXTRACT_STRING", "JSON_EXTRACT_PATH_TEXT"}
)


def _one_json_path(name: str, builder: Any) -> Any:
    """sqlglot reads more paths as PostgreSQL's path steps and writes another call in DuckDB:
    ``json_extract_path(j, 'a', 'b')`` became two top-level paths, ``json_extract_string(j,
    'a', 'b')`` lost ``'b'``. Such a call stays as written, for the grammar to refuse."""

    def build(args: list[exp.Expr], dialect: Any) -> exp.Expr:
        if len(args) > 2:
            return exp.Anonymous(this=name.lower(), expressions=args)
        return builder(args, dialect=dialect)

    return build


def _struct_pack(args: list[exp.Expr], dialect: Any) -> exp.Expr:
    """``struct_pack(loss)`` stays a call: sqlglot made it ``{'loss': loss}``, keyed by the name
    as written where DuckDB keys the field by the column's own name (``Loss``), keyed an
    expression ``_0`` (DuckDB refuses ``struct_pack(x + 1)``), and wrote such a struct cast to
    another struct as ``ROW(...)``, cast by place (DuckDB casts by name, refusing names that
    differ). Only fields all named (``struct_pack(k := x)``) are the struct literal."""
    if all(isinstance(a, exp.PropertyEQ) for a in args):
        return exp.Struct.from_arg_list(args)
    return exp.Anonymous(this="struct_pack", expressions=args)


#: Calls sqlglot rewrites into another question, kept as written (before s36 silently otherwise):
#: ``date_trunc(month, ts)`` read the column ``month`` as the part 'MONTH' (``date_diff``,
#: ``datediff``, ``datetrunc`` too; another column failed: 'extract specifier "U" not
#: recognized'), ``date_add(d, 3)`` became ``d + INTERVAL 3 DAY``, a TIMESTAMP where DuckDB
#: answers a DATE (and an INTERVAL column failed), ``log2(x)``/``log10(x)`` became ``LOG(2, x)``,
#: whose last bits differ (``log2(5)``: 2.3219280948873626, DuckDB's 2.321928094887362).
AS_WRITTEN = ("DATE_TRUNC", "DATETRUNC", "DATE_DIFF", "DATEDIFF", "DATE_ADD", "LOG2", "LOG10")


def _as_written(name: str) -> Any:
    def build(args: list[exp.Expr]) -> exp.Expr:
        return exp.Anonymous(this=name.lower(), expressions=args)

    return build


class FlorsqlParser(DuckDBParser):
    """DuckDB's parser with EXPLAIN, SHOW RUNS, SHOW COLUMNS and SET replay."""

    # `JSON '...'` is a cast in DuckDB, keeping the text as written; sqlglot made it a json()
    # call, which answers the text minified.
    TYPE_LITERAL_PARSERS: ClassVar[dict[Any, Any]] = {}

    FUNCTIONS: ClassVar[dict[str, Any]] = {
        **DuckDBParser.FUNCTIONS,
        **{n: _one_json_path(n, DuckDBParser.FUNCTIONS[n]) for n in JSON_PATH_FUNCTIONS},
        "STRUCT_PACK": _struct_pack,
        **{n: _as_written(n) for n in AS_WRITTEN},
    }

    STATEMENT_PARSERS: ClassVar[dict[TokenType, Any]] = {
        **DuckDBParser.STATEMENT_PARSERS,
        TokenType.SET: lambda self: self._parse_florsql_set(),
    }

    SHOW_PARSERS: ClassVar[dict[str, Any]] = {
        **DuckDBParser.SHOW_PARSERS,
        "RUNS": lambda self: self.expression(ShowRuns()),
        "COLUMNS": lambda self: self._parse_show_columns(),
    }
    SHOW_TRIE: ClassVar[dict] = new_trie(key.split(" ") for key in SHOW_PARSERS)

    NO_PAREN_FUNCTION_PARSERS: ClassVar[dict[str, Any]] = {
        **DuckDBParser.NO_PAREN_FUNCTION_PARSERS,
        # `@x` is DuckDB's abs(x); marked so an unknown `x` there can say it is no parameter.
        "@": lambda self: self._parse_at_sign(),
    }

    def _parse_simplified_pivot(  # type: ignore[override]
        self, is_unpivot: bool | None = None
    ) -> exp.Expr:
        # DuckDB's PIVOT/UNPIVOT statement takes ORDER BY, LIMIT and OFFSET after its GROUP BY;
        # sqlglot stops before them. Such a statement is the same query as a SELECT over it.
        pivot = super()._parse_simplified_pivot(is_unpivot)
        if not self._match_set((TokenType.ORDER_BY, TokenType.LIMIT, TokenType.OFFSET), False):
            return pivot
        select = exp.select("*").from_(exp.Subquery(this=pivot), copy=False)
        return self._parse_query_modifiers(select)

    def _warn_unsupported(self) -> None:
        """Stay quiet: florsql refuses every ``Command`` with its own message."""

    def _parse_string_as_identifier(self) -> exp.Identifier | None:
        # DuckDB reads `FROM 'file.csv'` as a file; mark the identifier so safety can tell.
        ident = super()._parse_string_as_identifier()
        if ident is not None:
            ident.meta["string_literal"] = True
        return ident

    def _parse_type(
        self, parse_interval: bool = True, fallback_to_identifier: bool = False
    ) -> exp.Expr | None:
        # A typed literal followed by `::` (`TIMESTAMPTZ '...'::DATE`): DuckDB casts the typed
        # literal; sqlglot applies the `::` to the string, then the type, answering a TIMESTAMPTZ
        # (the wrong day, too). The `::` is deferred until the typed literal is built.
        nxt = self._next
        typed = (
            not fallback_to_identifier
            and self._curr is not None
            and self._curr.token_type in self.TYPE_TOKENS
            and self._curr.token_type != TokenType.INTERVAL
            and nxt is not None
            and nxt.token_type == TokenType.STRING
            and self._index + 2 < len(self._tokens)
            and self._tokens[self._index + 2].token_type == TokenType.DCOLON
        )
        if not typed:
            return super()._parse_type(parse_interval, fallback_to_identifier)
        self._cast_deferred = True
        try:
            this = super()._parse_type(parse_interval, fallback_to_identifier)
        finally:
            self._cast_deferred = False
        return None if this is None else self._parse_column_ops(this)

    def _parse_field(
        self,
        any_token: bool = False,
        tokens: Any = None,
        anonymous_func: bool = False,
    ) -> exp.Expr | None:
        # ``l.select``, ``logs.from``: a reserved word after a dot names a column, as DuckDB
        # reads it (sqlglot failed: "something is missing after it", sweep N); ``l.*`` and a
        # qualified call (``x.count(...)``) parse as before
        curr, prev = self._curr, self._prev
        if (
            any_token
            and curr is not None
            and prev is not None
            and prev.token_type == TokenType.DOT
            and curr.token_type in self.RESERVED_TOKENS
            and curr.text.isidentifier()
            and not (self._next is not None and self._next.token_type == TokenType.L_PAREN)
        ):
            self._advance()
            return self.expression(exp.Identifier(this=curr.text, quoted=False))
        return super()._parse_field(any_token, tokens, anonymous_func)

    def _parse_column_ops(self, this: exp.Expr | None) -> exp.Expr | None:
        if getattr(self, "_cast_deferred", False) and isinstance(this, exp.Literal):
            self._cast_deferred = False
            return this
        return super()._parse_column_ops(this)

    def _parse_at_sign(self) -> exp.Abs:
        node = exp.Abs(this=self._parse_bitwise())
        node.meta["at_sign"] = True
        return node

    def _parse_interval_span(
        self, this: exp.Expr, parse_function_unit: bool = True
    ) -> exp.Interval:
        # sqlglot reads INTERVAL '3 days 04:05:06' as INTERVAL '3' DAYS, dropping the rest of
        # the string: keep such a string whole (DuckDB parses it), without a unit.
        interval = super()._parse_interval_span(this, parse_function_unit)
        if this is not None and this.is_string:
            parts = INTERVAL_STRING_RE.findall(this.name)
            whole = " ".join(this.name.split()).lower()
            if len(parts) == 1 and whole != f"{parts[0][0]} {parts[0][1]}".lower():
                interval.set("this", exp.Literal.string(this.name))
                interval.set("unit", None)
                interval.set("fraction_in_string", None)
        return interval

    def _parse_placeholder(self) -> exp.Expr | None:
        # sqlglot gives `?` and `$1` no position; errors about them should point at them.
        token = self._curr
        node = super()._parse_placeholder()
        if isinstance(node, exp.Placeholder) and token and "start" not in node.meta:
            node.update_positions(token)
        return node

    def _parse_statement(self) -> exp.Expr | None:
        word = _token_upper(self._curr)
        if word == "EXPLAIN":
            return self._parse_explain(self._curr)
        if word in COMMAND_KEYWORDS:
            return self._consume_command(self._curr)
        return super()._parse_statement()

    def _consume_command(self, start: Token) -> exp.Command:
        """Swallow the rest of the statement into a ``Command`` named by its first keyword."""
        while self._curr:
            self._advance()
        rest = self._find_sql(start, self._prev)[len(start.text) :]
        return self.expression(exp.Command(this=start.text.upper(), expression=rest), start)

    def _parse_explain(self, start: Token) -> exp.Expr:
        self._advance()
        analyze = self._match_texts(("ANALYZE", "ANALYSE"))
        first = self._curr
        inner = self._parse_statement() if first else None
        if inner is None:
            self.raise_error("EXPLAIN needs a query after it", start)
        elif "start" not in inner.meta:  # so errors about the explained statement point at it
            inner.update_positions(first)
        return self.expression(Explain(this=inner, analyze=analyze or None), start)

    def _parse_show_columns(self) -> exp.Expr:
        if not self._match_set((TokenType.FROM, TokenType.IN)):
            self.raise_error("expected FROM <table> after SHOW COLUMNS")
        table = self._parse_table_parts(schema=True)
        if table is None:
            self.raise_error("expected a table name after SHOW COLUMNS FROM")
        return self.expression(ShowColumns(this=table))

    def _parse_florsql_set(self) -> exp.Expr:
        start = self._prev
        setting = _token_upper(self._curr).lower()
        if setting not in _SETTINGS:
            return self._parse_set()
        index = self._index
        self._advance()
        if not (self._match(TokenType.EQ) or self._match_text_seq("TO")):
            if self._curr:
                self._retreat(index)
                return self._parse_set()
            self.raise_error(_SETTINGS[setting], start)
        value = self._curr
        if not value:
            self.raise_error(_SETTINGS[setting], start)
        self._advance()
        if self._curr:  # more after the value (a list of settings, or junk): not ours
            self._retreat(index)
            return self._parse_set()
        literal = self.expression(exp.Literal.string(value.text), value)
        if setting == "executor":
            return self.expression(SetReplay(this=literal, setting="executor"), start)
        return self.expression(SetReplay(this=literal), start)

    def raise_error(self, message: str, token: Token = SENTINEL_NONE) -> None:
        """Raise as sqlglot does, adding the token's 0-based ``start`` offset to the error."""
        at = token or self._curr or self._prev
        try:
            super().raise_error(message, token)
        except ParseError as error:
            if at and error.errors:
                error.errors[0]["start"] = at.start
            raise


class FlorsqlGenerator(DuckDBGenerator):
    """DuckDB's generator, plus SQL for florsql's own statements."""

    TRANSFORMS: ClassVar[dict[type[exp.Expr], Any]] = {
        **DuckDBGenerator.TRANSFORMS,
        Explain: lambda self, e: (
            f"EXPLAIN {'ANALYZE ' if e.args.get('analyze') else ''}{self.sql(e, 'this')}"
        ),
        ShowRuns: lambda self, e: "SHOW RUNS",
        ShowColumns: lambda self, e: f"SHOW COLUMNS FROM {self.sql(e, 'this')}",
        SetReplay: lambda self, e: (
            f"SET {e.args.get('setting') or 'replay'} = {self.sql(e, 'this')}"
        ),
    }

    def limitoptions_sql(self, expression: exp.LimitOptions) -> str:
        """A percent LIMIT as ``n%``: DuckDB takes ``n PERCENT`` only after a plain number,
        ``n%`` after any expression (``LIMIT ?%``, ``LIMIT (a + b)%``; before s37 both were
        written ``... PERCENT``, which DuckDB refused as a syntax error)."""
        text = super().limitoptions_sql(expression)
        if expression.args.get("percent") and isinstance(expression.parent, exp.Limit):
            text = "%" + text.removeprefix(" PERCENT")
        return text


class Florsql(DuckDB):
    """The florsql dialect: DuckDB plus EXPLAIN, SHOW RUNS, SHOW COLUMNS and SET replay.

    ``EXPLAIN`` is an ordinary word to this tokenizer (DuckDB's swallows the rest of the
    statement as text), so the statement after it is parsed into a real tree. ``?::`` is a
    parameter and a cast, as in DuckDB (``?::VARCHAR``), not sqlglot's ``?::`` operator.
    """

    class Tokenizer(DuckDB.Tokenizer):
        KEYWORDS: ClassVar[dict[str, TokenType]] = {
            k: v for k, v in DuckDB.Tokenizer.KEYWORDS.items() if k not in ("EXPLAIN", "?::")
        }

    Parser = FlorsqlParser
    Generator = FlorsqlGenerator
