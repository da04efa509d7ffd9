"""Relaxing a WHERE clause to the part the replay set can use.

Every maximal boolean atom (anything that is not AND, OR, NOT or parentheses) that the planner
cannot evaluate before replay (it reads a log column, another table, a subquery, names columns
by ``COLUMNS(...)`` or ``*`` or reads a whole row (``struct_extract(l, 'acc')``), or calls a
volatile function such as ``now()`` or ``random()``, see :mod:`florsql.plan.volatile`) is
replaced by TRUE where it appears un-negated and by FALSE under a NOT. AND and OR are monotone
and NOT antitone in SQL's three-valued logic (FALSE < NULL < TRUE), so the relaxed predicate is
TRUE wherever the original is: it never drops a row the query could keep. It is *exact* when no
atom was replaced.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlglot import exp

from florsql.plan.volatile import is_volatile

__all__ = ["Relaxed", "relax"]


@dataclass(frozen=True)
class Relaxed:
    """A relaxed predicate: ``expression`` None means TRUE (nothing to push)."""

    expression: exp.Expr | None
    exact: bool
    always_false: bool = False


def relax(where: exp.Expr | None, usable: Callable[[exp.Column], bool]) -> Relaxed:
    """Relax ``where`` keeping the atoms whose columns all satisfy ``usable``.

    Example:
        >>> from sqlglot import parse_one
        >>> q = parse_one("SELECT 1 FROM t WHERE lr > 0.1 AND NOT (loss < 2 OR epoch = 3)")
        >>> r = relax(q.args["where"].this, lambda c: c.name in ("lr", "epoch"))
        >>> r.expression.sql(), r.exact
        ('lr > 0.1 AND NOT (epoch = 3)', False)
    """
    if where is None:
        return Relaxed(None, True)
    state = {"exact": True}
    out = _relax(where, usable, True, state)
    if isinstance(out, exp.Boolean):
        value = out.this
        return Relaxed(None, state["exact"] and value, always_false=not value)
    return Relaxed(out, state["exact"])


def _relax(
    node: exp.Expr, usable: Callable[[exp.Column], bool], positive: bool, state: dict[str, bool]
) -> exp.Expr:
    if isinstance(node, exp.Paren):
        inner = _relax(node.this, usable, positive, state)
        return inner if isinstance(inner, exp.Boolean) else exp.Paren(this=inner)
    if isinstance(node, exp.Not):
        inner = _relax(node.this, usable, not positive, state)
        if isinstance(inner, exp.Boolean):
            return exp.Boolean(this=not inner.this)
        return exp.Not(this=inner)
    if isinstance(node, exp.And | exp.Or):
        left = _relax(node.left, usable, positive, state)
        right = _relax(node.right, usable, positive, state)
        return _combine(type(node), left, right)
    if _pushable(node, usable):
        return node.copy()
    state["exact"] = False
    return exp.Boolean(this=positive)


def _combine(kind: type[exp.And] | type[exp.Or], left: exp.Expr, right: exp.Expr) -> exp.Expr:
    absorbing = kind is exp.Or  # TRUE absorbs OR, FALSE absorbs AND
    for a, b in ((left, right), (right, left)):
        if isinstance(a, exp.Boolean):
            return a if a.this == absorbing else b
    return kind(this=left, expression=right)


def _pushable(node: exp.Expr, usable: Callable[[exp.Column], bool]) -> bool:
    if isinstance(node, exp.Boolean):
        return True
    for sub in node.walk():
        if isinstance(sub, exp.Query | exp.Subquery | exp.Exists | exp.Placeholder):
            return False
        if isinstance(sub, exp.Columns | exp.Star | exp.TableColumn | exp.PositionalColumn):
            # COLUMNS(...), *, a whole row: columns the replay set does not have; `#8` (DuckDB's
            # 8th column) is another column there (it was pushed: the wrong runs replayed)
            return False
        if isinstance(sub, exp.AggFunc | exp.Window):
            return False
        if isinstance(sub, exp.Func) and is_volatile(sub):
            return False
        if isinstance(sub, exp.Column) and not usable(sub):
            return False
    return True
