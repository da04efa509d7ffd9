"""florsql's SQL front end (installed as ``florsql.grammar``): dialect, parse, read-only checks.

``parse``/``parse_many`` turn text into validated :class:`Statement` objects; every error is a
``florsql.errors.ParseError`` with line, column and a caret snippet. See ``grammar/README.md``.
"""

from __future__ import annotations

from florsql.grammar.dialect import Explain, Florsql, SetReplay, ShowColumns, ShowRuns
from florsql.grammar.functions import (
    ALLOWED_FUNCTIONS,
    ALLOWED_TABLE_FUNCTIONS,
    CATALOG_NAME,
    FLORSQL_FUNCTIONS,
    SCHEMA_NAME,
)
from florsql.grammar.parse import Statement, StatementKind, parse, parse_many
from florsql.grammar.positions import line_col, node_position
from florsql.grammar.refusals import REFUSED_FUNCTIONS, REFUSED_PREFIXES
from florsql.grammar.safety import REPLAY_VALUES, check_read_only, resolve_function

__all__ = [
    "ALLOWED_FUNCTIONS",
    "ALLOWED_TABLE_FUNCTIONS",
    "CATALOG_NAME",
    "FLORSQL_FUNCTIONS",
    "REFUSED_FUNCTIONS",
    "REFUSED_PREFIXES",
    "REPLAY_VALUES",
    "SCHEMA_NAME",
    "Explain",
    "Florsql",
    "SetReplay",
    "ShowColumns",
    "ShowRuns",
    "Statement",
    "StatementKind",
    "check_read_only",
    "line_col",
    "node_position",
    "parse",
    "parse_many",
    "resolve_function",
]
