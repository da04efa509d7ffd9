"""Positions in query text, and sqlglot's errors translated into florsql's ``ParseError``.

florsql reports 1-based line and column of the *first* character of the offending token.
sqlglot's errors give the line and column of the token's *last* character; the dialect's parser
adds the token's 0-based ``start`` offset to each error, which is what this module uses.
"""

from __future__ import annotations

import re

from sqlglot import exp
from sqlglot.errors import ParseError as SqlglotParseError
from sqlglot.errors import TokenError

from florsql.errors import ParseError

__all__ = [
    "line_col",
    "node_offset",
    "node_position",
    "translate_parse_error",
    "translate_token_error",
]

_REQUIRED = re.compile(r"Required keyword: '\w+' missing for <class '[\w.]*?(\w+)'>")
_GOT_TOKEN = re.compile(r" but got <Token .*$", re.S)


def line_col(sql: str, offset: int) -> tuple[int, int]:
    """Return the 1-based (line, column) of the 0-based character ``offset`` in ``sql``.

    Lines break where ``str.splitlines`` breaks them, as ``florsql.errors.format_position``
    renders them (``\\r\\n``, ``\\r`` and a few rarer separators, besides ``\\n``).

    Example:
        >>> line_col("SELECT 1\\nFROM logz", 14)
        (2, 6)
    """
    before = sql[: max(0, min(offset, len(sql)))].splitlines(keepends=True)
    if not before:
        return 1, 1
    last = before[-1]
    if last.splitlines() != [last]:  # `before` ends with a line break
        return len(before) + 1, 1
    return len(before), len(last) + 1


def node_offset(node: exp.Expr) -> int | None:
    """The 0-based start offset of ``node``, or of its first descendant that has one."""
    for sub in node.walk(bfs=False):
        # sqlglot adds a `*` for FROM-first queries with a made-up position: skip it.
        if isinstance(sub, exp.Star):
            continue
        start = sub.meta.get("start") if sub.meta else None
        if isinstance(start, int):
            return start
    return None


def node_position(node: exp.Expr, sql: str) -> tuple[int, int] | None:
    """The 1-based (line, column) where ``node`` starts in ``sql`` (the text it was parsed from).

    Use ``Statement.source`` as ``sql``: positions count from the start of the whole script.
    """
    offset = node_offset(node)
    return None if offset is None else line_col(sql, offset)


def _describe(description: str, highlight: str) -> str:
    description = _GOT_TOKEN.sub("", description)
    if _REQUIRED.fullmatch(description):
        description = "something is missing after it"
    elif description == "Invalid expression / Unexpected token":
        description = "unexpected token"
    elif description.startswith("Expecting "):
        description = f"expected {description.removeprefix('Expecting ')}"
    elif description.startswith("Expected "):
        description = "e" + description[1:]
    near = f" near {highlight!r}" if highlight else ""
    return f"syntax error{near}: {description}"


def translate_parse_error(error: SqlglotParseError, sql: str) -> ParseError:
    """florsql's ``ParseError`` for a sqlglot parse error raised while parsing ``sql``."""
    info = error.errors[0] if error.errors else {}
    highlight = str(info.get("highlight") or "")
    start = info.get("start")
    if isinstance(start, int):
        line, col = line_col(sql, start)
    elif isinstance(info.get("line"), int) and isinstance(info.get("col"), int):
        line, col = int(info["line"]), max(1, int(info["col"]) - len(highlight) + 1)
    else:
        return ParseError(f"syntax error: {error}", sql=sql)
    message = _describe(str(info.get("description") or error), highlight)
    return ParseError(message, sql=sql, line=line, col=col)


_UNTERMINATED = (
    ("/*", "unterminated comment"),
    ("$", "unterminated dollar-quoted string"),
    ('"', "unterminated quoted identifier"),
    ("'", "unterminated string literal"),
    ("e'", "unterminated string literal"),
)


def translate_token_error(error: TokenError, sql: str, start: int | None) -> ParseError:
    """florsql's ``ParseError`` for a tokenizer error; ``start`` is where the bad token began."""
    if start is None or not 0 <= start < len(sql):
        return ParseError("syntax error: cannot read the query text", sql=sql)
    text = sql[start:].lower()
    what = next((name for prefix, name in _UNTERMINATED if text.startswith(prefix)), None)
    message = f"syntax error: {what}" if what else f"syntax error near {sql[start]!r}"
    line, col = line_col(sql, start)
    return ParseError(message, sql=sql, line=line, col=col)
