"""Parameter placeholders florsql does not take, found in the text so the error names them.

florsql binds positional ``?`` parameters (DB-API ``qmark``). Other drivers' styles are refused
by name, at their column: ``:name`` and ``:1`` (``named``/``numeric``, sqlite3, Oracle),
``$name`` and ``$1`` (DuckDB, PostgreSQL), ``?1`` (DuckDB, SQLite; before s36 a syntax error),
``%(name)s`` and ``%s`` (``pyformat``/``format``, psycopg). ``@name`` is DuckDB's absolute
value (``@x`` is ``abs(x)``), valid SQL, so it is only named when the statement fails to parse
or names no known column.
"""

from __future__ import annotations

from sqlglot.tokens import Token, TokenType

__all__ = ["ACCEPTED", "named_parameter", "refusal"]

#: What florsql accepts, said in every refusal.
ACCEPTED = (
    "florsql takes positional ? parameters (DB-API qmark style): write ? where each value goes "
    "and pass the values as a list, in order"
)

# A `:` after one of these is a key/value separator or a slice bound, not a parameter.
_VALUE_BEFORE = frozenset(
    {
        TokenType.STRING, TokenType.NUMBER, TokenType.VAR, TokenType.IDENTIFIER,
        TokenType.R_PAREN, TokenType.R_BRACKET, TokenType.R_BRACE, TokenType.L_BRACKET,
        TokenType.NULL, TokenType.TRUE, TokenType.FALSE, TokenType.COLON,
    }
)  # fmt: skip
_NAME = frozenset({TokenType.VAR, TokenType.NUMBER, TokenType.IDENTIFIER})


def refusal(text: str) -> str:
    """The message for the placeholder ``text``.

    Example:
        >>> refusal(":lr")[:45]
        'the placeholder :lr is not supported: florsql'
    """
    return f"the placeholder {text} is not supported: {ACCEPTED}"


def _next_to(a: Token, b: Token) -> bool:
    return b.start == a.end + 1


def named_parameter(tokens: list[Token], *, at_sign: bool = False) -> tuple[str, int] | None:
    """The first placeholder of another style in ``tokens``, as (its text, its start offset).

    ``@name`` counts only with ``at_sign`` (it is valid SQL: the absolute value).

    Example:
        >>> from florsql.grammar.dialect import Florsql
        >>> named_parameter(Florsql().tokenize("SELECT {'a': 1}, x[:n] FROM t WHERE lr > :lr"))
        (':lr', 41)
    """
    for i, tok in enumerate(tokens):
        prev = tokens[i - 1] if i else None
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        if nxt is None or not _next_to(tok, nxt):
            continue
        kind = tok.token_type
        if kind == TokenType.COLON and nxt.token_type in _NAME:
            if prev is None or prev.token_type not in _VALUE_BEFORE:
                return f":{nxt.text}", tok.start
        elif kind == TokenType.PARAMETER and nxt.token_type in _NAME:
            if tok.text == "$" or at_sign:
                return f"{tok.text}{nxt.text}", tok.start
        elif kind == TokenType.PLACEHOLDER and nxt.token_type == TokenType.NUMBER:
            return f"?{nxt.text}", tok.start  # DuckDB's and SQLite's numbered ?1
        elif kind == TokenType.MOD:
            found = _percent(tokens, i)
            if found is not None:
                return found, tok.start
    return None


def _percent(tokens: list[Token], i: int) -> str | None:
    """``%s`` or ``%(name)s`` starting at ``tokens[i]`` (a ``%``)."""
    rest = tokens[i + 1 : i + 5]
    if rest and rest[0].text.lower() == "s" and rest[0].token_type == TokenType.VAR:
        return "%s"
    if len(rest) < 4:
        return None
    kinds = [t.token_type for t in rest]
    if kinds == [TokenType.L_PAREN, _any(rest[1]), TokenType.R_PAREN, TokenType.VAR]:
        chain = all(_next_to(a, b) for a, b in zip([tokens[i], *rest], rest, strict=False))
        if chain and rest[3].text.lower() == "s":
            return f"%({rest[1].text})s"
    return None


def _any(token: Token) -> TokenType:
    return token.token_type if token.token_type in _NAME else TokenType.UNKNOWN
