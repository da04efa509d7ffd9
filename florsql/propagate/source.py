"""The block model of one Python file: every statement list, with the chain of scopes around it.

A *block* is a list of statements (a module, a function body, a loop body, an ``else:``...). Its
*chain* names the scopes around it from the outside in: functions and classes by name,
``for ... in flor.loop("step", ...)`` by its loop name, other blocks by their header.

The model is built on :mod:`ast`, which gives exact line ranges cheaply; nothing here rewrites code.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

from florsql.propagate.normalize import header, normalize, normalize_header

FLOR_MODULES = frozenset({"florsql", "flordb", "flor"})
HARD_KINDS = frozenset({"def", "class", "loop"})


@dataclass(frozen=True)
class Frame:
    """One scope around a block.

    ``kind`` is def, class, loop (a ``flor.loop``), for, while, with, if, else, try, except,
    finally or case; ``key`` identifies it (a name, or a normalized header); ``label`` is for
    people. A *transparent* frame is a helper function seen from its single call site.
    """

    kind: str
    key: str
    label: str
    transparent: bool = False

    @property
    def hard(self) -> bool:
        """Functions, classes and flor loops: frames matched by name, never by similarity."""
        return self.kind in HARD_KINDS


Body = tuple[list[ast.stmt], Frame]


@dataclass(eq=False)
class Block:
    """A statement list and where it sits."""

    stmts: list[ast.stmt]
    chain: tuple[Frame, ...]
    scopes: tuple[ast.AST, ...]  # the module, then each enclosing def/class, outermost first

    @cached_property
    def norms(self) -> list[str]:
        """Normal forms of the statements, computed on first use."""
        return [normalize(s) for s in self.stmts]

    def first_line(self, index: int) -> int:
        """1-based first line of statement ``index``, its decorators included."""
        stmt = self.stmts[index]
        decorators = getattr(stmt, "decorator_list", [])
        return min([stmt.lineno, *(d.lineno for d in decorators)])

    def insert_line(self, slot: int) -> int:
        """1-based line that a statement inserted before statement ``slot`` starts at."""
        if slot == 0:
            return self.first_line(0)
        previous = self.stmts[slot - 1]
        return (previous.end_lineno or previous.lineno) + 1


@dataclass(eq=False)
class SourceFile:
    """A parsed file: its text, lines, tree, blocks and flor module aliases."""

    text: str
    lines: list[str]
    tree: ast.Module
    blocks: list[Block]
    aliases: frozenset[str]
    defs: dict[str, list[ast.stmt]] = field(default_factory=dict)
    homes: dict[int, tuple[Block, int]] = field(default_factory=dict)  # id(stmt) -> (block, i)

    def home(self, stmt: ast.stmt) -> tuple[Block, int]:
        """The block holding ``stmt`` and its index there."""
        return self.homes[id(stmt)]


def flor_aliases(tree: ast.Module) -> frozenset[str]:
    """Names the file binds to the florsql (or FlorDB) module; ``flor`` when none is imported."""
    found = {
        alias.asname or alias.name
        for node in tree.body
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name in FLOR_MODULES
    }
    return frozenset(found or {"flor"})


def flor_call_name(expr: ast.AST, aliases: frozenset[str], func: str) -> str | None:
    """The literal name of the first ``<alias>.<func>("name", ...)`` call inside ``expr``."""
    for node in ast.walk(expr):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == func
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in aliases
        ):
            arg = node.args[0] if node.args else None
            if arg is None:
                arg = next((k.value for k in node.keywords if k.arg == "name"), None)
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                return arg.value
    return None


def _soft(kind: str, text: str) -> Frame:
    return Frame(kind, normalize_header(text), text)


def _bodies(stmt: ast.stmt, aliases: frozenset[str]) -> list[Body]:
    """The statement lists inside ``stmt`` with the frame each one adds."""
    text = header(stmt)
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
        return [(stmt.body, Frame("def", stmt.name, f"{stmt.name}()"))]
    if isinstance(stmt, ast.ClassDef):
        return [(stmt.body, Frame("class", stmt.name, stmt.name))]
    if isinstance(stmt, ast.For | ast.AsyncFor | ast.While | ast.If):
        name = None
        if isinstance(stmt, ast.For | ast.AsyncFor):
            name = flor_call_name(stmt.iter, aliases, "loop")
        kind = {ast.While: "while", ast.If: "if"}.get(type(stmt), "for")
        first = Frame("loop", name, f"flor.loop({name!r})") if name else _soft(kind, text)
        return [(stmt.body, first), (stmt.orelse, _soft("else", f"else of {first.label}"))]
    if isinstance(stmt, ast.With | ast.AsyncWith):
        return [(stmt.body, _soft("with", text))]
    if isinstance(stmt, ast.Try | ast.TryStar):
        out: list[Body] = [(stmt.body, _soft("try", "try"))]
        for h in stmt.handlers:
            kind_text = "except " + (ast.unparse(h.type) if h.type else "")
            out.append((h.body, _soft("except", kind_text.strip())))
        out.append((stmt.orelse, _soft("else", "else of try")))
        return [*out, (stmt.finalbody, _soft("finally", "finally"))]
    if isinstance(stmt, ast.Match):
        return [(c.body, _soft("case", "case " + ast.unparse(c.pattern))) for c in stmt.cases]
    return []


def _collect(
    src: SourceFile, stmts: list[ast.stmt], chain: tuple[Frame, ...], scopes: tuple[ast.AST, ...]
) -> None:
    block = Block(stmts, chain, scopes)
    src.blocks.append(block)
    for i, stmt in enumerate(stmts):
        src.homes[id(stmt)] = (block, i)
        inner = (
            (*scopes, stmt)
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            else scopes
        )
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            src.defs.setdefault(stmt.name, []).append(stmt)
        for body, frame in _bodies(stmt, src.aliases):
            if body:
                _collect(src, body, (*chain, frame), inner)


@lru_cache(maxsize=256)
def analyze(text: str) -> SourceFile:
    """Parse ``text`` into its block model (cached by text). Raises :class:`SyntaxError`."""
    tree = ast.parse(text)
    src = SourceFile(text, text.splitlines(keepends=True), tree, [], flor_aliases(tree))
    _collect(src, tree.body, (), (tree,))
    return src
