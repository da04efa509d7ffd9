"""Helper functions seen from their call site: a loop body moved into ``train_step(...)``.

A function defined in the file and called from exactly one place, where that place sits inside a
``flor.loop``, runs as part of that loop. Its blocks get a second, *effective* chain: the call
site's chain, then the helper's frame marked transparent, then the frames inside the helper.
Matching then compares chains with the transparent frames left out, so a loop body inlined in one
version and moved into a helper in the other still corresponds.
"""

from __future__ import annotations

import ast
import re
from functools import cached_property, lru_cache

from florsql.propagate.source import Block, Frame, HardKey, SourceFile, hard_key

#: A word followed by ``(``: a definition's or a call's name.
_CALLISH = re.compile(r"\b(\w+)\s*\(")


def own_exprs(stmt: ast.stmt) -> list[ast.AST]:
    """The parts of ``stmt`` that run at its own line: all of a simple statement, a header."""
    if isinstance(stmt, ast.If | ast.While):
        return [stmt.test]
    if isinstance(stmt, ast.For | ast.AsyncFor):
        return [stmt.iter]
    if isinstance(stmt, ast.With | ast.AsyncWith):
        return list(stmt.items)
    if isinstance(stmt, ast.Match):
        return [stmt.subject]
    return [] if hasattr(stmt, "body") else [stmt]


def _named(call: ast.Call, name: str) -> bool:
    f = call.func
    return (isinstance(f, ast.Name) and f.id == name) or (
        isinstance(f, ast.Attribute) and f.attr == name
    )


def _calls(stmt: ast.stmt, name: str) -> bool:
    return any(
        isinstance(node, ast.Call) and _named(node, name)
        for expr in own_exprs(stmt)
        for node in ast.walk(expr)
    )


@lru_cache(maxsize=16)
def helpers_of(src: SourceFile) -> Helpers:
    """The (memoized) :class:`Helpers` of a file."""
    return Helpers(src)


class Helpers:
    """Effective chains of one file's blocks."""

    def __init__(self, src: SourceFile) -> None:
        self.src = src
        self._prefix: dict[int, tuple[Frame, ...] | None] = {}

    @cached_property
    def index(self) -> dict[HardKey, list[tuple[Block, tuple[Frame, ...]]]]:
        """Every block under each chain variant, by the variant's innermost hard frame."""
        found: dict[HardKey, list[tuple[Block, tuple[Frame, ...]]]] = {}
        for block in self.src.blocks:
            for chain in self.variants(block):
                found.setdefault(hard_key(chain), []).append((block, chain))
        return found

    @cached_property
    def _call_lines(self) -> dict[str, list[int]]:
        """Lines where each defined name is followed by ``(``: its definition and its calls."""
        found: dict[str, list[int]] = {}
        if not self.src.defs:
            return found
        defs = self.src.defs
        # every word before a ``(``, kept where it names a definition (an alternation of the
        # names took 3 ms to compile, once per file: a third of placing into 100 versions)
        for line, match in self.src.lines_matching(_CALLISH):
            if match.group(1) in defs:
                found.setdefault(match.group(1), []).append(line)
        return found

    def _call_site(self, name: str, definition: ast.stmt) -> ast.stmt | None:
        """The single statement calling ``name``, or None when there are none or several."""
        lines = [n for n in self._call_lines.get(name, []) if n != definition.lineno]
        if len(lines) != 1:
            return None
        site = self.src.deepest.get(lines[0])
        return site if site is not None and _calls(site, name) else None

    def _helper_prefix(self, definition: ast.stmt) -> tuple[Frame, ...] | None:
        """Effective chain down to and including the transparent helper frame, if a helper."""
        key = id(definition)
        if key in self._prefix:
            return self._prefix[key]
        self._prefix[key] = None  # guards against recursion
        name = getattr(definition, "name", "")
        site = None
        if len(self.src.defs.get(name, [])) == 1:
            site = self._call_site(name, definition)
        if site is not None:
            around = self.chain(self.src.home(site)[0])
            if any(f.kind == "loop" for f in around):
                helper = Frame("def", name, transparent=True)
                self._prefix[key] = (*around, helper)
        return self._prefix[key]

    def call_site(self, definition: ast.FunctionDef) -> ast.stmt | None:
        """The single statement calling helper ``definition`` (None: none, or several)."""
        return self._call_site(definition.name, definition)

    def enclosing_call(self, block: Block) -> tuple[ast.FunctionDef, ast.Call] | None:
        """The innermost helper around ``block``, with the call that runs it."""
        for scope in reversed(block.scopes[1:]):
            if isinstance(scope, ast.FunctionDef) and self._helper_prefix(scope) is not None:
                site = self._call_site(scope.name, scope)
                calls = [c for e in own_exprs(site) for c in ast.walk(e)] if site else []
                call = next(
                    (c for c in calls if isinstance(c, ast.Call) and _named(c, scope.name)), None
                )
                return (scope, call) if call is not None else None
        return None

    def chain(self, block: Block) -> tuple[Frame, ...]:
        """The block's effective chain (its lexical chain when no helper encloses it)."""
        scope_frames = [i for i, f in enumerate(block.chain) if f.kind in ("def", "class")]
        for depth in range(len(block.scopes) - 1, 0, -1):
            scope = block.scopes[depth]
            if not isinstance(scope, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            prefix = self._helper_prefix(scope)
            if prefix is not None:
                return prefix + block.chain[scope_frames[depth - 1] + 1 :]
        return block.chain

    def variants(self, block: Block) -> list[tuple[Frame, ...]]:
        """Chains to match the block by: lexical, and effective with helper frames left out."""
        effective = self.chain(block)
        if effective == block.chain:
            return [block.chain]
        return [block.chain, tuple(f for f in effective if not f.transparent)]
