"""Putting statements into the old text: line splices, so every other byte stays as it was.

The inserted statements are cut from the new file exactly as written (trailing comment included)
and rendered through libcst, which also renames the flor module alias when the old version
imports florsql under another name. The old file is never re-generated: its lines are copied and
the new ones placed between them, with the block's own indentation and newline convention.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache

import libcst as cst

from florsql.propagate.source import Block, SourceFile

_TERMINAL = (ast.Return, ast.Raise, ast.Continue, ast.Break)


@dataclass(frozen=True)
class Insertion:
    """Text to put before 1-based old ``line``; ``order`` keeps new-file order within a line."""

    line: int
    text: str
    order: tuple[int, int]


def statement_code(src: SourceFile, stmt: ast.stmt) -> str:
    """The exact source of ``stmt``, trailing comment kept, no newline, its own indentation
    taken off every line that has it (a compound statement's ``else:`` and body lines too).
    A ``def`` or ``class`` keeps its decorators: ``ast`` starts it at the ``def`` line, and a
    carried ``@torch.no_grad()`` helper without its decorator computed with grad, an
    ``@functools.lru_cache`` one ran every call (before session 39, silently)."""
    decorators = getattr(stmt, "decorator_list", [])
    first = min([stmt.lineno, *(d.lineno for d in decorators)]) - 1
    last = (stmt.end_lineno or stmt.lineno) - 1
    end_col = stmt.end_col_offset or 0
    raw = [line.encode() for line in src.lines[first : last + 1]]
    tail = raw[-1][end_col:].decode().rstrip("\r\n")
    raw[-1] = raw[-1][:end_col]
    prefix = raw[0][: stmt.col_offset]
    raw[0] = raw[0][stmt.col_offset :]
    if prefix and not prefix.strip():
        raw[1:] = [r[len(prefix) :] if r.startswith(prefix) else r for r in raw[1:]]
    code = b"".join(raw).decode()
    return code + (tail if tail.lstrip().startswith("#") else "")


class _Rename(cst.CSTTransformer):
    """Rename variables (never attribute names or keyword argument names)."""

    def __init__(self, names: Mapping[str, str]) -> None:
        self.names = names

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.Name:
        return updated_node.with_changes(
            value=self.names.get(updated_node.value, updated_node.value)
        )

    def leave_Attribute(
        self, original_node: cst.Attribute, updated_node: cst.Attribute
    ) -> cst.Attribute:
        return updated_node.with_changes(attr=original_node.attr)

    def leave_Arg(self, original_node: cst.Arg, updated_node: cst.Arg) -> cst.Arg:
        return updated_node.with_changes(keyword=original_node.keyword)


@lru_cache(maxsize=4096)
def _render(code: str, renames: tuple[tuple[str, str], ...]) -> str:
    module = cst.parse_module(code)
    if renames:
        module = module.visit(_Rename(dict(renames)))
    return module.code


def render(code: str, indent: str, newline: str, renames: Mapping[str, str]) -> str:
    """``code`` (from :func:`statement_code`) as lines of a block indented by ``indent``."""
    text = _render(code, tuple(sorted(renames.items())))
    return newline.join(indent + line if line.strip() else line for line in text.splitlines()) + (
        newline
    )


def standalone(src: SourceFile, stmt: ast.stmt) -> bool:
    return not src.lines[stmt.lineno - 1].encode()[: stmt.col_offset].strip()


def indent_of(src: SourceFile, block: Block) -> str:
    """The indentation of the block's statements."""
    stmt = next((s for s in block.stmts if standalone(src, s)), block.stmts[0])
    line = src.lines[stmt.lineno - 1]
    return line[: len(line) - len(line.lstrip(" \t"))]


def newline_of(src: SourceFile) -> str:
    """The file's newline convention."""
    return "\r\n" if src.lines and src.lines[0].endswith("\r\n") else "\n"


def adjust_slot(block: Block, slot: int) -> int:
    """Keep docstrings and ``from __future__`` imports first in their block."""
    while slot < len(block.stmts):
        stmt = block.stmts[slot]
        docstring = isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant)
        future = isinstance(stmt, ast.ImportFrom) and stmt.module == "__future__"
        if not ((docstring and slot == 0 and _owns_docstring(block)) or future):
            break
        slot += 1
    return slot


def head(src: SourceFile, stmt: ast.stmt) -> str:
    """The first line of ``stmt`` itself (a ``def``'s, not its decorator's), for messages."""
    code = statement_code(src, stmt).splitlines()
    skip = stmt.lineno - min(
        [stmt.lineno, *(d.lineno for d in getattr(stmt, "decorator_list", []))]
    )
    return code[skip] if skip < len(code) else code[0]


def _owns_docstring(block: Block) -> bool:
    return not block.chain or block.chain[-1].kind in ("def", "class")


def at_line(line: int) -> str:
    """How failure reasons point into the old version."""
    return f"at line {line} of the old version"


#: The reason a slot between statements joined by ``;`` is refused with (its start).
JOINED = "cannot split the statements joined by ';'"


def slot_problem(src: SourceFile, block: Block, slot: int) -> str | None:
    """Why a statement cannot go at ``slot`` of ``block``, or None."""
    stmts = block.stmts
    if not standalone(src, stmts[0]):
        return f"cannot insert into the one-line block {at_line(stmts[0].lineno)}"
    if slot > 0 and isinstance(stmts[slot - 1], _TERMINAL):
        word = type(stmts[slot - 1]).__name__.lower()
        return f"unreachable: it would follow the {word} {at_line(stmts[slot - 1].lineno)}"
    if 0 < slot < len(stmts) and stmts[slot].lineno == stmts[slot - 1].end_lineno:
        return f"{JOINED} {at_line(stmts[slot].lineno)}"
    return None


def split_joined(source: str) -> str | None:
    r"""``source`` with each line of simple statements joined by ``;`` in a block of their own
    lines (``opt.zero_grad(); loss.backward(); opt.step()`` as three lines at its indentation,
    a trailing comment kept on the last), so a statement can go between them (session 47:
    refused before, "cannot split the statements joined by ';'"); None where there is none or
    the source does not parse. A line after a compound statement's colon (``if x: a; b``) and
    a statement spanning lines are left as they are.

    Example:
        >>> print(split_joined("for i in r:\n    a = 1; f(a)  # two\n"), end="")
        for i in r:
            a = 1
            f(a)  # two
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return None
    lines = source.splitlines(keepends=True)
    groups: dict[int, list[ast.stmt]] = {}
    for node in ast.walk(tree):
        for field in ("body", "orelse", "finalbody"):
            block = getattr(node, field, None)
            if not isinstance(block, list):
                continue
            for k, stmt in enumerate(block):
                if k > 0 and stmt.lineno == block[k - 1].end_lineno:
                    groups.setdefault(block[k - 1].lineno, [block[k - 1]]).append(stmt)
    done = 0
    for first, stmts in sorted(groups.items(), reverse=True):
        text = lines[first - 1]
        raw = text.encode("utf-8")
        indent = raw[: stmts[0].col_offset]
        if (
            any(s.lineno != first or s.end_lineno != first for s in stmts)
            or indent.strip()  # after a compound statement's colon
            or (first > 1 and lines[first - 2].rstrip().endswith("\\"))
        ):
            continue
        ending = text[len(text.rstrip("\r\n")) :] or "\n"
        parts = [raw[s.col_offset : s.end_col_offset] for s in stmts]
        tail = raw[stmts[-1].end_col_offset :].decode("utf-8").strip().lstrip(";").strip()
        if tail and not tail.startswith("#"):
            continue  # something else follows on the line: leave it
        out = [indent.decode() + p.decode("utf-8") for p in parts]
        if tail:
            out[-1] += "  " + tail
        lines[first - 1] = ending.join(out) + ending
        done += 1
    return "".join(lines) if done else None


def splice(
    src: SourceFile, insertions: list[Insertion], removed: frozenset[int] = frozenset()
) -> tuple[str, dict[tuple[int, int], int]]:
    """The old text with the insertions, less the 1-based old lines in ``removed`` (statements
    a log statement replaces), and each insertion's first line in the result."""
    out: list[str] = []
    placed: dict[tuple[int, int], int] = {}
    newline = newline_of(src)
    pending = sorted(insertions, key=lambda i: (i.line, i.order))
    k = 0
    for number in range(1, len(src.lines) + 2):
        while k < len(pending) and pending[k].line <= number:
            ins = pending[k]
            k += 1
            if out and not out[-1].endswith(("\n", "\r")):
                out[-1] += newline
            placed[ins.order] = len(out) + 1
            out.extend(ins.text.splitlines(keepends=True))
        if number <= len(src.lines) and number not in removed:
            out.append(src.lines[number - 1])
    return "".join(out), placed
