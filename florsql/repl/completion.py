"""Completion: what fits where the cursor is, as a pure function over text and the schema.

After ``FROM``/``JOIN`` come relations; after ``alias.`` the columns of that relation; elsewhere
the columns of the relations the statement reads (all of ``logs`` when it names none yet),
keywords and functions. Hindsight columns are marked. Dot-commands complete their names and
arguments from the registry.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from florsql.repl.dotcommands import REGISTRY
from florsql.repl.service import Schema

__all__ = ["FUNCTIONS", "KEYWORDS", "RESERVED", "Suggestion", "identifier", "suggest"]

KEYWORDS = (
    "SELECT", "FROM", "WHERE", "GROUP BY", "GROUP BY ALL", "ORDER BY", "ORDER BY ALL", "HAVING",
    "QUALIFY", "LIMIT", "OFFSET", "JOIN", "LEFT JOIN", "USING", "ON", "AS", "AND", "OR", "NOT",
    "IN", "IS NULL", "IS NOT NULL", "BETWEEN", "LIKE", "DISTINCT", "CASE", "WHEN", "THEN", "ELSE",
    "END", "WITH", "UNION", "UNION ALL", "ASC", "DESC", "NULLS LAST", "OVER", "PARTITION BY",
    "WINDOW", "PIVOT", "UNPIVOT", "EXCLUDE", "REPLACE", "EXPLAIN", "SHOW RUNS",
    "SHOW COLUMNS FROM", "SET replay =",
)  # fmt: skip
FUNCTIONS = (
    "avg", "count", "min", "max", "sum", "first", "last", "arg_max", "arg_min", "median",
    "quantile_cont", "stddev", "list", "string_agg", "round", "abs", "coalesce", "row_number",
    "rank", "lag", "lead", "epoch", "date_trunc", "strftime",
)  # fmt: skip

#: DuckDB's reserved keywords (``duckdb_keywords()``, category ``reserved``) and those of category
#: ``type_function`` that cannot name a column unquoted: a column named one must be quoted.
RESERVED = frozenset(
    {
        "all", "analyse", "analyze", "and", "any", "array", "as", "asc", "asymmetric", "both",
        "case", "cast", "check", "collate", "column", "constraint", "create", "default",
        "deferrable", "desc", "describe", "distinct", "do", "else", "end", "except", "false",
        "fetch", "for", "foreign", "from", "group", "having", "in", "initially", "intersect",
        "into", "lambda", "lateral", "leading", "limit", "not", "null", "offset", "on", "only",
        "or", "order", "pivot", "pivot_longer", "pivot_wider", "placing", "primary", "qualify",
        "references", "returning", "select", "show", "some", "summarize", "symmetric", "table",
        "then", "to", "trailing", "true", "union", "unique", "unpivot", "using", "variadic",
        "when", "where", "window", "with",
        # type_function keywords that cannot stand alone as a column (`SELECT left FROM t` is a
        # syntax error to DuckDB; before s36 completion inserted them bare)
        "anti", "asof", "at", "authorization", "binary", "by", "collation", "concurrently",
        "cross", "freeze", "full", "glob", "ilike", "inner", "is", "isnull", "join", "left",
        "like", "natural", "notnull", "outer", "overlaps", "positional", "right", "semi",
        "similar", "tablesample", "unpack", "verbose",
    }
)  # fmt: skip
_PLAIN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def identifier(name: str) -> str:
    """``name`` as it must be written in SQL: quoted when it is not a plain name or is a
    reserved keyword (a log named ``my name``, ``a.b`` or ``order``).

    Example:
        >>> [identifier(n) for n in ("loss", "my name", "order", 'a"b')]
        ['loss', '"my name"', '"order"', '"a""b"']
    """
    if _PLAIN.fullmatch(name) and name.lower() not in RESERVED:
        return name
    return '"' + name.replace('"', '""') + '"'


_WORD = re.compile(r"[A-Za-z_][\w$]*\.?[\w$]*$")
_RELATION_BEFORE = re.compile(r"\b(FROM|JOIN|TABLE|COLUMNS\s+FROM)\s+([\w.]*)$", re.I)
_SOURCES = re.compile(
    r"\b(?:FROM|JOIN)\s+([A-Za-z_]\w*)(?:\s+(?:AS\s+)?(?!(?:WHERE|GROUP|ORDER|JOIN|LEFT|RIGHT|"
    r"INNER|FULL|CROSS|ON|USING|LIMIT|QUALIFY|HAVING|WINDOW|UNION|SELECT|SEMI|ANTI|ASOF|"
    r"POSITIONAL|NATURAL)\b)([A-Za-z_]\w*))?",
    re.I,
)


@dataclass(frozen=True)
class Suggestion:
    """One completion: the text to insert, replacing ``replace`` characters before the cursor."""

    text: str
    meta: str
    replace: int


def _ranked(word: str, items: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """Case-insensitive prefix matches first, then names that contain ``word``."""
    low = word.lower()
    prefix, inner = [], []
    seen: set[str] = set()
    for text, meta in items:
        key = text.lower()
        if key in seen:
            continue
        if key.startswith(low):
            prefix.append((text, meta))
            seen.add(key)
        elif low and low in key:
            inner.append((text, meta))
            seen.add(key)
    return prefix + inner


def _column_meta(sql_type: str, hindsight: bool) -> str:
    return f"hindsight {sql_type}" if hindsight else sql_type.lower()


def _sources(text: str) -> dict[str, str]:
    """alias (or relation name) -> relation, for the relations the statement reads."""
    out: dict[str, str] = {}
    for match in _SOURCES.finditer(text):
        relation, alias = match.group(1).lower(), match.group(2)
        out[relation] = relation
        if alias:
            out[alias.lower()] = relation
    return out


def _dot(before: str) -> list[Suggestion] | None:
    """Suggestions inside a dot-command line, or None when the text is not one."""
    stripped = before.lstrip()
    if not stripped.startswith("."):
        return None
    name, space, arg = stripped.partition(" ")
    if not space:
        found = _ranked(name, ((c.name, c.help) for c in REGISTRY.values()))
        return [Suggestion(t, m, len(name)) for t, m in found]
    command = REGISTRY.get(name.lower())
    if command is None or command.arg in (None, "file"):
        return []
    if command.arg == "sql":
        return None  # the caller completes the SQL after the command word
    word = arg.rsplit(" ", 1)[-1]
    return [Suggestion(c, command.help, len(word)) for c in command.choices if c.startswith(word)]


def suggest(before: str, schema: Schema) -> list[Suggestion]:
    """Completions for the text before the cursor.

    Example:
        >>> from florsql.repl.service import Column
        >>> s = Schema({"logs": (Column("loss", "DOUBLE"), Column("grad_norm", "DOUBLE", True))})
        >>> [(x.text, x.meta) for x in suggest("SELECT avg(grad", s)]
        [('grad_norm', 'hindsight DOUBLE')]
        >>> [x.text for x in suggest("SELECT * FROM lo", s)]
        ['logs']
    """
    dot = _dot(before)
    if dot is not None:
        return dot
    match = _WORD.search(before)
    word = match.group(0) if match else ""
    if _RELATION_BEFORE.search(before):
        found = _ranked(word, ((r, "relation") for r in schema.relations))
        return [Suggestion(t, m, len(word)) for t, m in found]
    qualifier, dot_sep, partial = word.rpartition(".")
    if dot_sep:
        relation = _sources(before).get(qualifier.lower(), qualifier.lower())
        cols = ((c.name, _column_meta(c.sql_type, c.hindsight)) for c in schema.columns(relation))
        return [_column(t, m, partial, before) for t, m in _ranked(partial, cols)]
    if not word:
        return []
    read = set(_sources(before).values()) or {"logs"}
    columns = [c for rel in schema.relations if rel in read for c in schema.columns(rel)]
    names = {c.name for c in columns}
    items: list[tuple[str, str]] = [
        (c.name, _column_meta(c.sql_type, c.hindsight)) for c in columns
    ]
    items += [(k, "keyword") for k in KEYWORDS]
    items += [(f, "function") for f in FUNCTIONS]
    items += [(r, "relation") for r in schema.relations]
    return [
        _column(t, m, word, before) if t in names else Suggestion(t, m, len(word))
        for t, m in _ranked(word, items)
    ]


def _column(name: str, meta: str, word: str, before: str) -> Suggestion:
    """A column, written as SQL must spell it; an opening quote typed already is replaced."""
    text = identifier(name)
    if text == name:
        return Suggestion(text, meta, len(word))
    opened = before[: len(before) - len(word)].endswith('"')
    return Suggestion(text, meta, len(word) + opened)
