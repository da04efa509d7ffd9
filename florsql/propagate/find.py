"""Finding ``flor.log`` statements, their names, and where they sit."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import lru_cache

from florsql.propagate.normalize import is_compound
from florsql.propagate.source import Block, SourceFile

_LOG_CALL = re.compile(r"\.\s*log\s*\(")


@dataclass(frozen=True, eq=False)
class LogStatement:
    """A simple statement holding a ``flor.log(name, ...)`` call.

    ``name`` is None when the call's name is not a string literal; ``name_code`` is then its code.
    """

    name: str | None
    name_code: str
    stmt: ast.stmt
    block: Block
    index: int

    @property
    def line(self) -> int:
        """1-based first line of the statement."""
        return self.stmt.lineno

    @property
    def label(self) -> str:
        """The log name, or the code of a computed name."""
        return self.name if self.name is not None else self.name_code


def _log_call(stmt: ast.stmt, aliases: frozenset[str]) -> ast.Call | None:
    """The statement's first ``<alias>.log(...)`` call, not one inside a ``lambda``: a lambda's
    body runs where it is called, which placing its statement does not carry (session 45:
    ``cb = lambda: flor.log("cb", v)`` was placed without its ``cb()``, and the query
    answered no rows, silently; now the name is unplaced, and said)."""
    todo: list[ast.AST] = [stmt]
    while todo:
        node = todo.pop(0)
        if isinstance(node, ast.Lambda):
            continue
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "log"
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in aliases
        ):
            return node
        todo.extend(ast.iter_child_nodes(node))
    return None


def _name_of(call: ast.Call) -> tuple[str | None, str]:
    arg = call.args[0] if call.args else None
    if arg is None:
        arg = next((k.value for k in call.keywords if k.arg == "name"), None)
    if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and _utf8(arg.value):
        return arg.value, repr(arg.value)
    # (a lone surrogate, "\ud800", is no name a column can have: before s37 such a literal made
    # every query of the repository fail)
    return None, ast.unparse(arg) if arg is not None else "<missing>"


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def find_logs(src: SourceFile) -> list[LogStatement]:
    """Every ``flor.log`` statement of the file, in source order.

    Only statements on lines that mention ``.log(`` are examined, so a long file costs little.
    """
    return list(_find_logs(src))


@lru_cache(maxsize=16)
def _find_logs(src: SourceFile) -> tuple[LogStatement, ...]:
    stmts = {id(s): s for n, _ in src.lines_matching(_LOG_CALL) if (s := src.deepest.get(n))}
    found = []
    for stmt in stmts.values():
        call = None if is_compound(stmt) else _log_call(stmt, src.aliases)
        if call is not None:
            name, code = _name_of(call)
            block, index = src.home(stmt)
            found.append(LogStatement(name, code, stmt, block, index))
    return tuple(sorted(found, key=lambda s: (s.stmt.lineno, s.stmt.col_offset)))


def logged_names(src: SourceFile) -> frozenset[str]:
    """Literal names the file logs."""
    return frozenset(s.name for s in find_logs(src) if s.name is not None)
