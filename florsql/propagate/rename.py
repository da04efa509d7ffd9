"""Renamed variables: the log statement reads ``gw``, the old version called it ``grad_w``.

A rename is inferred only from evidence, of two kinds:

- the new block's last assignment of the name (before the log statement) aligns with an old
  statement that assigns through the same target shape (``gw = ...`` and ``grad_w = ...``, or
  ``a, gw = ...`` and ``a, grad_w = ...``) from the same value up to constants (``clip(g, 1.0)``
  and ``clip(g, 5.0)``, but not ``clip(grads, 1.0)`` and ``clip(raw, 1.0)``);
- the old place is inside a helper, and the helper's single call site passes the name as an
  argument: ``train_step(w, batch)`` into ``def train_step(weights, rows)`` maps ``w`` to
  ``weights``.

Anything less stays an unbound name, a failure.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable

from florsql.propagate.normalize import strip_literals
from florsql.propagate.safety import Bindings
from florsql.propagate.slice import assigned
from florsql.propagate.source import Block, Frame


def _targets(stmt: ast.stmt) -> tuple[list[ast.expr], ast.expr] | None:
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        return [stmt.targets[0]], stmt.value
    if isinstance(stmt, ast.AugAssign | ast.AnnAssign) and stmt.value is not None:
        return [stmt.target], stmt.value
    return None


def _pair(new: ast.expr, old: ast.expr, into: dict[str, str]) -> bool:
    """Map the names of two target expressions of the same shape, position by position."""
    if isinstance(new, ast.Name) and isinstance(old, ast.Name):
        into[new.id] = old.id
        return True
    if isinstance(new, ast.Tuple | ast.List) and isinstance(old, ast.Tuple | ast.List):
        return len(new.elts) == len(old.elts) and all(
            _pair(a, b, into) for a, b in zip(new.elts, old.elts, strict=True)
        )
    return ast.dump(new) == ast.dump(old)


def _value_alike(new: ast.expr, old: ast.expr) -> bool:
    return strip_literals(ast.unparse(new)) == strip_literals(ast.unparse(old))


def counterpart_names(new: ast.stmt, old: ast.stmt) -> dict[str, str]:
    """Names ``new`` assigns mapped to those ``old`` assigns in their place, if alike."""
    pn, po = _targets(new), _targets(old)
    if pn is None or po is None or type(new) is not type(old):
        return {}
    mapping: dict[str, str] = {}
    if not all(_pair(a, b, mapping) for a, b in zip(pn[0], po[0], strict=True)):
        return {}
    return mapping if _value_alike(pn[1], po[1]) else {}


def infer_renames(
    block: Block,
    index: int,
    old: Block,
    pairs: dict[int, int],
    names: Iterable[str],
    bindings: Bindings | None = None,
) -> dict[str, str]:
    """Old names for ``names`` read at statement ``index`` of ``block``, where evidence allows.

    ``pairs`` aligns ``block`` (new index -> old index) with the ``old`` block. A value made of
    constants only (``h = 0`` and ``b = 999``) is no evidence, and neither is an old name that
    today's code still binds in that scope (with ``bindings``): the old ``b`` is then today's
    ``b``, not a former name of ``h``.
    """
    renames = {}
    for name in names:
        k = next((k for k in range(index - 1, -1, -1) if name in assigned(block.stmts[k])), None)
        if k is None or k not in pairs:
            continue
        stmt = block.stmts[k]
        mapping = counterpart_names(stmt, old.stmts[pairs[k]])
        was = mapping.get(name, name)
        if was == name or not _names_in_value(stmt):
            continue
        if bindings is not None and bindings.lines_of(block, was):
            continue
        renames[name] = was
    return renames


def _names_in_value(stmt: ast.stmt) -> bool:
    """Whether an assignment's value reads a name (it is not made of constants only)."""
    value = getattr(stmt, "value", None)
    return value is not None and any(isinstance(n, ast.Name) for n in ast.walk(value))


def call_renames(
    definition: ast.FunctionDef, call: ast.Call, names: Iterable[str]
) -> dict[str, str]:
    """Names passed as plain arguments at ``call``, mapped to ``definition``'s parameters."""
    params = [a.arg for a in [*definition.args.posonlyargs, *definition.args.args]]
    if isinstance(call.func, ast.Attribute) and params[:1] in (["self"], ["cls"]):
        params = params[1:]
    passed = {a.id: p for p, a in zip(params, call.args, strict=False) if isinstance(a, ast.Name)}
    for kw in call.keywords:
        if kw.arg is not None and isinstance(kw.value, ast.Name):
            passed[kw.value.id] = kw.arg
    return {n: passed[n] for n in names if passed.get(n, n) != n}


def _at_position(new: ast.expr, old: ast.expr, name: str) -> str | None:
    """The name ``old`` binds where ``new`` binds ``name`` (targets of the same shape), if any.

    Example:
        >>> _at_position(ast.parse("i, x").body[0].value, ast.parse("j, x").body[0].value, "i")
        'j'
    """
    if isinstance(new, ast.Name):
        return old.id if new.id == name and isinstance(old, ast.Name) else None
    if isinstance(new, ast.Tuple | ast.List) and isinstance(old, ast.Tuple | ast.List):
        if len(new.elts) != len(old.elts):
            return None
        found = (_at_position(a, b, name) for a, b in zip(new.elts, old.elts, strict=True))
        return next((f for f in found if f is not None), None)
    return None


Loop = tuple[Frame, ast.For | ast.AsyncFor]


def _loops(block: Block) -> list[Loop]:
    """The ``for`` loops around ``block`` (flor loops and others), outermost first."""
    return [
        (f, f.node)
        for f in block.chain
        if f.kind in ("loop", "for") and isinstance(f.node, ast.For | ast.AsyncFor)
    ]


def _old_loop(loop: Loop, new: Block, old: Block) -> Loop | None:
    """The loop around ``old`` that stands for ``loop`` around ``new``: a flor loop by its
    name; another ``for`` by its place among the ``for`` loops, where both have as many."""
    frame = loop[0]
    olds = _loops(old)
    if frame.kind == "loop":
        return next((o for o in olds if o[0].kind == "loop" and o[0].name == frame.name), None)
    news = [n for n in _loops(new) if n[0].kind == "for"]
    fors = [o for o in olds if o[0].kind == "for"]
    return fors[news.index(loop)] if len(news) == len(fors) else None


def loop_target_renames(
    new: Block, line: int, old: Block, old_line: int, names: Iterable[str], bindings: Bindings
) -> tuple[dict[str, str], dict[str, str]]:
    """Evidence from the loops around both places: a name that, where the new version reads it
    at ``line``, still holds what a loop around it binds (``for i, idx in
    enumerate(flor.loop("step", ...))``) stands in the old version for what the same loop binds
    at the same place (``for j, idx in ...``), whatever else the old file calls ``i``.

    Returns the renames, and the names whose loop has no counterpart in the old version that
    binds them (new ``for i, x in enumerate(...)``, old ``for x in ...``) with why, unless the
    old loop's body binds the name itself before ``old_line``.
    """
    renames: dict[str, str] = {}
    problems: dict[str, str] = {}
    for name in names:
        reach = bindings.reaching(new, line, name)
        if reach is None:
            continue
        loop = next(
            (
                (f, node)
                for f, node in reversed(_loops(new))
                if node.target.lineno <= reach <= (node.target.end_lineno or reach)
                and name in assigned(node.target)
            ),
            None,
        )
        other = None if loop is None else _old_loop(loop, new, old)
        if loop is None or other is None:
            continue
        new_target, old_target = loop[1].target, other[1].target
        if not _in_scope(old_target, old, bindings):
            continue  # the old loop is in another scope (a helper): other rules decide
        counterpart = _at_position(new_target, old_target, name)
        if counterpart is None:
            reach_old = bindings.reaching(old, old_line, name)
            if reach_old is None or not other[1].body[0].lineno <= reach_old < old_line:
                problems[name] = (
                    f"{name!r} comes from the loop over {loop[0].label} in the new version "
                    f"(for {_shown(new_target)} in ...), and the old version's loop "
                    f"binds nothing in its place (for {_shown(old_target)} in ...)"
                )
        elif counterpart != name:
            renames[name] = counterpart
    return renames, problems


def _shown(target: ast.expr) -> str:
    """A loop target as written after ``for``: ``i, x`` rather than ``(i, x)``."""
    if isinstance(target, ast.Tuple) and target.elts:
        return ", ".join(ast.unparse(e) for e in target.elts)
    return ast.unparse(target)


def _in_scope(target: ast.expr, block: Block, bindings: Bindings) -> bool:
    """Whether ``block``'s own scope binds the names of loop target ``target``."""
    names = assigned(target)
    return bool(names) and all(target.lineno in bindings.lines_of(block, n) for n in names)


def _binding_target(stmt: ast.stmt) -> ast.expr | None:
    if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
        return stmt.targets[0]
    if isinstance(stmt, ast.AugAssign | ast.AnnAssign | ast.For | ast.AsyncFor):
        return stmt.target
    return None


def binding_counterpart(new: ast.stmt, old: ast.stmt, name: str) -> str | None:
    """What ``old`` binds where ``new`` binds ``name`` (two aligned statements with targets of
    the same shape: ``a, b = ...`` and ``a_old, b = ...`` give ``a_old``), or None where that
    cannot be told.

    Example:
        >>> s = lambda code: ast.parse(code).body[0]
        >>> binding_counterpart(s("a, b = 1, 2"), s("x, b = 1, 2"), "a")
        'x'
    """
    pn, po = _binding_target(new), _binding_target(old)
    if pn is None or po is None or type(new) is not type(old):
        return None
    return _at_position(pn, po, name)
