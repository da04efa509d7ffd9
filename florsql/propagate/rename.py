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
from florsql.propagate.slice import assigned
from florsql.propagate.source import Block


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
    block: Block, index: int, old: Block, pairs: dict[int, int], names: Iterable[str]
) -> dict[str, str]:
    """Old names for ``names`` read at statement ``index`` of ``block``, where evidence allows.

    ``pairs`` aligns ``block`` (new index -> old index) with the ``old`` block.
    """
    renames = {}
    for name in names:
        k = next((k for k in range(index - 1, -1, -1) if name in assigned(block.stmts[k])), None)
        if k is None or k not in pairs:
            continue
        mapping = counterpart_names(block.stmts[k], old.stmts[pairs[k]])
        if mapping.get(name, name) != name:
            renames[name] = mapping[name]
    return renames


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
