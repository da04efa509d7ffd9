"""DuckDB's errors as :class:`~florsql.errors.SqlError`, pointing into the user's text.

DuckDB reports positions in the SQL it ran (the rewritten query), or none at all. The token it
points at (or the name its message quotes) is looked up in the user's text instead; internal
names (``__flor_logs_1``, ``__flor_wide``) are shown as ``logs``. The DuckDB exception stays
the ``__cause__``, so front ends can classify it (the DB-API maps it to its PEP 249 class).
"""

from __future__ import annotations

import re

from florsql.errors import SqlError
from florsql.grammar import line_col

__all__ = ["translate_duckdb_error"]

_INTERNAL = re.compile(r"__flor_logs_\d+|__flor_wide")
_LINE = re.compile(r"LINE (\d+): (.*)\n( *)\^", re.S)
_QUOTED = re.compile(r'"([^"\n]+)"')
_NAMED = re.compile(r"with name ([\w.]+) does not exist")
_TOKEN = re.compile(r"'[^']*'|\"[^\"]*\"|\w+|\S")
_QUALIFIER = re.compile(r'Referenced table "([^"]+)" not found')
_KIND = re.compile(r"^([A-Z][A-Za-z ]*Error): ")
_MAX_LINES = 6


def translate_duckdb_error(error: Exception, *, ran: str, source: str, offset: int = 0) -> SqlError:
    """A :class:`SqlError` for ``error`` raised running ``ran`` for the user's ``source``.

    Example:
        >>> e = translate_duckdb_error(Exception('Binder Error: Referenced column "lss" not '
        ...     'found in FROM clause!'), ran="...", source="SELECT lss FROM logs")
        >>> (e.line, e.col), e.message
        ((1, 8), 'Referenced column "lss" not found in FROM clause!')
    """
    raw = str(error)
    text = _INTERNAL.sub("logs", raw)
    message = _clean(text)
    quoted = _quoted_token(text)
    qualifier = _QUALIFIER.search(text.splitlines()[0] if text else "")
    if qualifier is not None:  # `x.lr` with no table x in scope: point at `x.`, not at a name
        found = _locate_qualifier(qualifier.group(1), source, offset)  # the FROM also spells
        if found is not None:
            line, col = line_col(source, found)
            return SqlError(message, sql=source, line=line, col=col)
    for token in [*_caret_tokens(raw), *([quoted] if quoted else [])]:
        found = _locate(token, source, offset)
        if found is not None:
            line, col = line_col(source, found)
            return SqlError(message, sql=source, line=line, col=col)
    return SqlError(message, sql=source)


def _clean(text: str) -> str:
    head = text.split("\n\nLINE ")[0]
    head = _LINE.sub("", head)
    lines = [ln for ln in head.splitlines() if ln.strip()]
    if len(lines) > _MAX_LINES:
        lines = [*lines[:_MAX_LINES], f"\t... and {len(lines) - _MAX_LINES} more"]
    first = _KIND.sub("", lines[0]) if lines else text
    return "\n".join([first, *lines[1:]])


def _caret_tokens(text: str, limit: int = 4) -> list[str]:
    """The tokens at DuckDB's caret and after it (the rewrite may have respelled the first:
    ``'x'::INT`` runs as ``CAST('x' AS INT)``)."""
    m = _LINE.search(text)
    if m is None:
        return []
    snippet, pad = m.group(2), len(m.group(3))
    start = pad - len(f"LINE {m.group(1)}: ")
    if start < 0 or start >= len(snippet):
        return []
    out = []
    for tok in _TOKEN.finditer(snippet, start):
        word = tok.group(0)
        if re.fullmatch(r"\W", word) or _INTERNAL.search(word):
            continue
        out.append(word)
        if len(out) == limit:
            break
    return out


def _quoted_token(text: str) -> str | None:
    first = text.splitlines()[0] if text else ""
    m = _QUOTED.search(first) or _NAMED.search(first)
    return m.group(1) if m else None


def _locate_qualifier(name: str, source: str, offset: int) -> int | None:
    """Where ``name`` qualifies a column (``name.x``, ``"name".x``) in ``source``."""
    spelled = rf'(?:"{re.escape(name)}"|{re.escape(name)})'
    m = re.search(rf'(?<![\w."]){spelled}\s*\.\s*["\w*]', source[offset:], re.IGNORECASE)
    return offset + m.start() if m else None


def _locate(token: str, source: str, offset: int) -> int | None:
    bare = token.strip('"')
    if not bare:
        return None
    if re.fullmatch(r"\w+", bare):
        pattern = rf"(?<![\w.]){re.escape(bare)}\b"
        m = re.search(pattern, source[offset:], re.IGNORECASE) or re.search(
            rf"\b{re.escape(bare)}\b", source[offset:], re.IGNORECASE
        )
    else:
        m = re.search(re.escape(bare), source[offset:], re.IGNORECASE)
    return offset + m.start() if m else None
