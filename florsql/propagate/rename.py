"""Renamed variables: the log statement reads ``gw``, the old version called it ``grad_w``.

A rename is inferred only from evidence:

- the new block's last assignment of the name (before the log statement) aligns with an old
  statement that assigns through the same target shape (``gw = ...`` and ``grad_w = ...``, or
  ``a, gw = ...`` and ``a, grad_w = ...``) from the same value up to constants (``clip(g, 1.0)``
  and ``clip(g, 5.0)``, but not ``clip(grads, 1.0)`` and ``clip(raw, 1.0)``);
- the old place is inside a helper, and the helper's single call site passes the name as an
  argument: ``train_step(w, batch)`` into ``def train_step(weights, rows)`` maps ``w`` to
  ``weights``;
- a loop around both places binds it at the same place of its target (``loop_target_renames``);
- the whole scope around both places (``scope_rename``): every assignment of the name, in
  nested blocks too, aligned statement for statement with an old one that is the same up to
  constants with the old name, and no other binding of either (``loss = loss_fn(...)`` in the
  step loop, ``batch_loss = loss_fn(...)`` in the old one, read after the loop).

Anything less stays an unbound name, a failure.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Callable, Iterable

from florsql.propagate.normalize import strip_literals
from florsql.propagate.safety import Bindings
from florsql.propagate.slice import assigned
from florsql.propagate.source import Block, Frame, SourceFile


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


_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_BODIES = ("body", "orelse", "finalbody", "handlers", "cases")


class _Rename(ast.NodeTransformer):
    def __init__(self, name: str, to: str) -> None:
        self.name, self.to = name, to

    def visit_Name(self, node: ast.Name) -> ast.Name:
        return ast.Name(self.to, node.ctx) if node.id == self.name else node


def _text(nodes: list[ast.AST], rename: tuple[str, str] | None = None) -> str:
    """``nodes`` as source text, constants stripped, ``rename`` (name, to) applied."""
    if rename is not None:
        nodes = [_Rename(*rename).visit(copy.deepcopy(n)) for n in nodes]
    return strip_literals("; ".join(ast.unparse(n) for n in nodes))


def _header_parts(stmt: ast.stmt) -> list[ast.AST]:
    """What a compound statement runs or binds besides its bodies (its header, its handlers'
    types and names, its cases' patterns and guards)."""
    out: list[ast.AST] = []
    for field_name, value in ast.iter_fields(stmt):
        if field_name in ("handlers", "cases"):
            for part in value:
                out += [
                    n
                    for n in (
                        getattr(part, "type", None),
                        getattr(part, "pattern", None),
                        getattr(part, "guard", None),
                    )
                    if n is not None
                ]
        elif field_name not in _BODIES:
            out += [
                v for v in (value if isinstance(value, list) else [value]) if isinstance(v, ast.AST)
            ]
    return out


def _bodies(stmt: ast.stmt) -> list[list[ast.stmt]]:
    if isinstance(stmt, ast.Try | ast.TryStar):
        return [stmt.body, *(h.body for h in stmt.handlers), stmt.orelse, stmt.finalbody]
    if isinstance(stmt, ast.Match):
        return [c.body for c in stmt.cases]
    return [getattr(stmt, "body", []), getattr(stmt, "orelse", [])]


def _scan(stmts: list[ast.stmt], name: str) -> list[ast.stmt] | None:
    """The simple statements of a scope (``stmts``, nested blocks included, not nested
    functions' and classes' bodies) that bind ``name``; None where something else binds or
    declares it (a loop target, ``with ... as``, ``except ... as``, a match capture, an
    import, a ``def``/``class``, ``del``, ``global``/``nonlocal``, a walrus in a header)."""
    found: list[ast.stmt] = []
    for stmt in stmts:
        if isinstance(stmt, _SCOPES):
            if stmt.name == name:
                return None
            continue
        if hasattr(stmt, "body"):
            for part in _header_parts(stmt):
                for node in ast.walk(part):
                    if name in (
                        getattr(node, "name", None),
                        getattr(node, "rest", None),
                    ) or (
                        isinstance(node, ast.Name)
                        and node.id == name
                        and not isinstance(node.ctx, ast.Load)
                    ):
                        return None
            for handler in getattr(stmt, "handlers", []):
                if handler.name == name:
                    return None
            for body in _bodies(stmt):
                inner = _scan(body, name)
                if inner is None:
                    return None
                found += inner
            continue
        if isinstance(stmt, ast.Global | ast.Nonlocal | ast.Delete | ast.Import | ast.ImportFrom):
            if (
                name in assigned(stmt)
                or name in getattr(stmt, "names", ())
                or any(isinstance(n, ast.Name) and n.id == name for n in ast.walk(stmt))
            ):
                return None
            continue
        if name in assigned(stmt):
            if not isinstance(stmt, ast.Assign | ast.AugAssign | ast.AnnAssign):
                return None
            found.append(stmt)
    return found


def scope_rename(
    files: tuple[SourceFile, SourceFile],
    blocks: tuple[Block, Block],
    name: str,
    align: Callable[[Block, Block], dict[int, int]],
) -> str | None:
    """The old name of ``name``, read in block ``blocks[0]`` of today's file (``files[0]``)
    and placed into ``blocks[1]`` of the old one, where the whole scope around them (the
    function, or the module) is evidence of a rename: every statement that binds ``name``
    there, in nested blocks too, is aligned (through compound statements both versions have,
    aligned, of the same type and shape, their headers the same up to constants and the rename
    where they read either name) with an old
    statement that is the same up to constants with ``name`` written ``was``; the old scope
    binds ``was`` nowhere else, and ``name`` nowhere; today's file binds ``was`` nowhere. At
    least one of those statements must compute from a name (``h = 0`` and ``b = 0`` are no
    evidence), and the old file must read ``was`` (a value it threw away is
    :func:`florsql.propagate.slice.filled_discards`'s). None where any of that fails.

    Example: ``loss = loss_fn(...)`` in today's step loop, ``batch_loss = loss_fn(...)`` in the
    old one, and ``flor.log("last", loss.item())`` after the loop: ``loss`` was ``batch_loss``.
    """
    new_file, old_file = files
    if name in old_file.bound_names or old_file.read_names is None:
        return None
    roots = _roots(files, blocks, align)
    if roots is None:
        return None
    new_root, old_root = roots
    if _declared(new_file, name) or _parameter(files, roots, name):
        return None
    binds = _scan(new_root.stmts, name)
    if not binds:
        return None
    was: str | None = None
    matched: list[ast.stmt] = []
    heads: list[tuple[ast.stmt, ast.stmt]] = []  # the compound statements around them
    evidence = False
    for stmt in binds:
        other = _counterpart(files, roots, stmt, align, heads)
        if other is None:
            return None
        counterpart = binding_counterpart(stmt, other, name)
        if counterpart is None or counterpart == name or was not in (None, counterpart):
            return None
        was = counterpart
        if _text([stmt], (name, was)) != _text([other]):
            return None
        matched.append(other)
        evidence = evidence or _names_in_value(stmt)
    if was is None or not evidence or was in new_file.bound_names:
        return None
    for head, old_head in heads:  # a header that reads either name reads it the same way
        new_parts, old_parts = _header_parts(head), _header_parts(old_head)
        mentions = _mentions(new_parts, name) or _mentions(old_parts, was)
        if mentions and _text(new_parts, (name, was)) != _text(old_parts):
            return None
    if was not in old_file.read_names or _declared(old_file, was):
        return None
    if _parameter((old_file, old_file), (old_root, old_root), was):
        return None
    old_binds = _scan(old_root.stmts, was)
    if old_binds is None or {id(s) for s in old_binds} != {id(s) for s in matched}:
        return None
    return was


def _mentions(nodes: list[ast.AST], name: str) -> bool:
    return any(isinstance(n, ast.Name) and n.id == name for x in nodes for n in ast.walk(x))


def _declared(file: SourceFile, name: str) -> bool:
    """Whether ``file`` declares ``name`` ``global`` or ``nonlocal`` anywhere."""
    return any(isinstance(n, ast.Global | ast.Nonlocal) and name in n.names for n in file.nodes)


def _parameter(files: tuple[SourceFile, SourceFile], roots: tuple[Block, Block], name: str) -> bool:
    """Whether ``roots[0]`` is the body of a function that has a parameter ``name``."""
    up = files[0].parents.get(id(roots[0]))
    if up is None:
        return False
    head = up[0].stmts[up[1]]
    if not isinstance(head, ast.FunctionDef | ast.AsyncFunctionDef):
        return True
    a = head.args
    return name in {x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg] if x}


def _roots(
    files: tuple[SourceFile, SourceFile],
    blocks: tuple[Block, Block],
    align: Callable[[Block, Block], dict[int, int]],
) -> tuple[Block, Block] | None:
    """The blocks of the scopes around ``blocks`` (a function's body, or the module), where the
    compound statements around them correspond (aligned, of the same type)."""
    (new_file, old_file), (new, old) = files, blocks
    while True:
        up, old_up = new_file.parents.get(id(new)), old_file.parents.get(id(old))
        if up is None or old_up is None:
            if up is not None or old_up is not None:
                return None
            return (new, old) if not new.scopes[1:] and not old.scopes[1:] else None
        head, old_head = up[0].stmts[up[1]], old_up[0].stmts[old_up[1]]
        if isinstance(head, _SCOPES) or isinstance(old_head, _SCOPES):
            if not (
                isinstance(head, ast.FunctionDef | ast.AsyncFunctionDef)
                and isinstance(old_head, ast.FunctionDef | ast.AsyncFunctionDef)
                and head.body is new.stmts
                and old_head.body is old.stmts
            ):
                return None
            return new, old
        if align(up[0], old_up[0]).get(up[1]) != old_up[1] or type(head) is not type(old_head):
            return None
        new, old = up[0], old_up[0]


def _counterpart(
    files: tuple[SourceFile, SourceFile],
    roots: tuple[Block, Block],
    stmt: ast.stmt,
    align: Callable[[Block, Block], dict[int, int]],
    heads: list[tuple[ast.stmt, ast.stmt]],
) -> ast.stmt | None:
    """The old statement ``stmt`` is aligned with, through the compound statements around it
    (:func:`_old_block`), or None."""
    new_file = files[0]
    block, index = new_file.home(stmt)
    old = _old_block(files, roots, block, align, heads)
    if old is None:
        return None
    at = align(block, old).get(index)
    return None if at is None else old.stmts[at]


def _old_block(
    files: tuple[SourceFile, SourceFile],
    roots: tuple[Block, Block],
    block: Block,
    align: Callable[[Block, Block], dict[int, int]],
    heads: list[tuple[ast.stmt, ast.stmt]],
) -> Block | None:
    """The old block ``block`` corresponds to, through the compound statements around it
    (each aligned with an old one of the same type and shape: added to ``heads``), or None."""
    new_file, old_file = files
    if block is roots[0]:
        return roots[1]
    up = new_file.parents.get(id(block))
    if up is None:
        return None
    parent, at = up
    head = parent.stmts[at]
    if isinstance(head, _SCOPES):
        return None
    old_parent = _old_block(files, roots, parent, align, heads)
    if old_parent is None:
        return None
    old_at = align(parent, old_parent).get(at)
    if old_at is None:
        return None
    old_head = old_parent.stmts[old_at]
    bodies, old_bodies = _bodies(head), _bodies(old_head)
    if type(head) is not type(old_head) or len(bodies) != len(old_bodies):
        return None
    heads.append((head, old_head))
    i = next((i for i, b in enumerate(bodies) if b is block.stmts), None)
    if i is None or not old_bodies[i]:
        return None
    return old_file.home(old_bodies[i][0])[0]
