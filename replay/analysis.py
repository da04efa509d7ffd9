"""Where needed log statements sit in a (patched) old script, relative to its loops.

Decides, conservatively, what a replay of that script must run: a statement after the outer
loop's first inner loop can start from the checkpoint taken as that loop exited ("rest"); one
inside or before it needs the iteration's start state; one after the outer loop needs the run's
end state. Anything unclear (a statement inside a helper function) gets the safe answer.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field


@dataclass
class Placement:
    """What running the needed statements of one script requires."""

    outer_loops: list[str] = field(default_factory=list)  # flor.loop names at the top level
    need_start: bool = False
    after_loop: bool = False
    found: set[str] = field(default_factory=set)  # needed names that have a statement


def _call_name(node: ast.AST | None, attr: str) -> str | None:
    """``X`` for a call ``<module>.<attr>("X", ...)`` (any alias of the module), else None."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == attr
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return node.args[0].value
    return None


def _flor_loop_name(node: ast.AST) -> str | None:
    """``X`` for ``for ... in flor.loop("X", ...)``."""
    if not isinstance(node, (ast.For, ast.AsyncFor)):
        return None
    return _call_name(node.iter, "loop")


def _log_name(node: ast.AST) -> str | None:
    return _call_name(node, "log")


def analyze(source: str, names: set[str]) -> Placement:
    """Classify the ``flor.log`` statements of ``names`` in ``source``.

    Example:
        >>> src = '''
        ... for e in flor.loop("epoch", range(3)):
        ...     for s in flor.loop("step", range(4)):
        ...         flor.log("loss", 1)
        ...     flor.log("acc", 2)
        ... flor.log("final", 3)
        ... '''
        >>> p = analyze(src, {"acc"})
        >>> p.outer_loops, p.need_start, p.after_loop
        (['epoch'], False, False)
        >>> analyze(src, {"loss", "final"}).need_start, analyze(src, {"final"}).after_loop
        (True, True)
    """
    tree = ast.parse(source)
    out = Placement()
    outer: list[ast.AST] = []
    _find_outer(tree, outer, inside=False)
    out.outer_loops = [n for n in (_flor_loop_name(o) for o in outer) if n]
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    for node in ast.walk(tree):
        name = _log_name(node)
        if name is None or name not in names:
            continue
        out.found.add(name)
        where = _classify(node, parents, outer)
        if where == "after_loop":
            out.after_loop = True
        elif where == "start":
            out.need_start = True
    return out


def _find_outer(node: ast.AST, found: list[ast.AST], inside: bool) -> None:
    for child in ast.iter_child_nodes(node):
        is_loop = _flor_loop_name(child) is not None
        if is_loop and not inside:
            found.append(child)
        _find_outer(child, found, inside or is_loop)


def _classify(node: ast.AST, parents: dict[ast.AST, ast.AST], outer: list[ast.AST]) -> str:
    """'rest', 'start' (needs the iteration's start state), 'after_loop' or 'before_loop'."""
    chain = []
    cur: ast.AST | None = node
    while cur is not None:
        chain.append(cur)
        cur = parents.get(cur)
    if any(isinstance(c, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)) for c in chain):
        return "start"  # called from who knows where: the safe answer
    loop = next((c for c in chain if c in outer), None)
    if loop is None:
        stmt_line = node.lineno  # type: ignore[attr-defined]
        ends = [getattr(o, "end_lineno", None) or 0 for o in outer]
        if any(stmt_line > end for end in ends):
            return "after_loop"
        return "before_loop"
    if any(_flor_loop_name(c) is not None for c in chain if c is not loop):
        return "start"  # inside an inner loop
    inner = [n for n in ast.walk(loop) if n is not loop and _flor_loop_name(n) is not None]
    if not inner:
        return "start"
    first_inner_end = min(n.end_lineno or n.lineno for n in inner)  # type: ignore[attr-defined]
    return "rest" if node.lineno > first_inner_end else "start"  # type: ignore[attr-defined]
