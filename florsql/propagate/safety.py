"""Safety: every name a placed statement reads must be bound where it lands in the old version.

Two halves. :func:`free_names` runs libcst's scope analysis over the statements that travel (the
log statement and the statements carried with it) as one small module: what they read that no
earlier travelling statement, comprehension or lambda binds, and that is no builtin. The old
file then answers :meth:`Bindings.is_bound` from its own tree: a name is bound at a line when an
enclosing function binds it before that line, or an outer scope binds it at all.
"""

from __future__ import annotations

import ast
import builtins
from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from functools import lru_cache

import libcst as cst
from libcst.helpers import get_full_name_for_node
from libcst.metadata import (
    Assignment,
    BaseAssignment,
    BuiltinAssignment,
    GlobalScope,
    MetadataWrapper,
    ScopeProvider,
)

from florsql.propagate.source import Block

_BUILTINS = frozenset(dir(builtins)) | {"__file__", "__name__", "__doc__", "__spec__"}


class _Nodes(cst.CSTVisitor):
    def __init__(self) -> None:
        self.ids: set[int] = set()

    def on_visit(self, node: cst.CSTNode) -> bool:
        self.ids.add(id(node))
        return True


@lru_cache(maxsize=1024)
def free_names(codes: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """For each statement of ``codes`` (run in order), the outside names it reads.

    Example:
        >>> free_names(("gn = clip(net, 1.0)", "flor.log('grad_norm', gn)"))
        (('clip', 'net'), ('flor',))
    """
    module = cst.parse_module("\n".join(codes) + "\n")
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    scopes = wrapper.resolve(ScopeProvider)
    owners: list[set[int]] = []
    for stmt in module.body:
        visitor = _Nodes()
        stmt.visit(visitor)
        owners.append(visitor.ids)

    def owner(node: cst.CSTNode) -> int:
        return next((k for k, ids in enumerate(owners) if id(node) in ids), len(owners))

    found: list[dict[str, None]] = [{} for _ in owners]
    for scope in {s for s in scopes.values() if s is not None}:
        for access in scope.accesses:
            k = owner(access.node)
            if k < len(found) and not _resolved(
                access.referents, k, owner, isinstance(module.body[k], cst.BaseCompoundStatement)
            ):
                name = get_full_name_for_node(access.node) or ""
                found[k][name.split(".")[0]] = None
    for k, stmt in enumerate(module.body):  # ``x += 1`` reads x, which libcst records not
        for node in _aug_targets(stmt):
            where = scopes.get(node)
            if isinstance(where, GlobalScope) and not any(
                isinstance(a, Assignment) and owner(a.node) < k for a in where[node.value]
            ):
                found[k][node.value] = None
    return tuple(tuple(sorted(names, key=list(names).index)) for names in found)


def _aug_targets(stmt: cst.CSTNode) -> list[cst.Name]:
    """The plain names augmented assignments inside ``stmt`` update."""
    out: list[cst.Name] = []

    class _Aug(cst.CSTVisitor):
        def visit_AugAssign(self, node: cst.AugAssign) -> None:
            if isinstance(node.target, cst.Name):
                out.append(node.target)

    stmt.visit(_Aug())
    return out


def _resolved(
    referents: Collection[BaseAssignment],
    k: int,
    owner: Callable[[cst.CSTNode], int],
    compound: bool = False,
) -> bool:
    """Bound inside the slice: a builtin, a comprehension or lambda, an earlier statement, or
    (``compound``) the same compound statement (``with torch.no_grad(): v = ...;
    flor.log("v", v)`` travelling whole)."""
    for ref in referents:
        if isinstance(ref, BuiltinAssignment) or not isinstance(ref.scope, GlobalScope):
            return True
        if isinstance(ref, Assignment) and (
            owner(ref.node) < k or (compound and owner(ref.node) == k)
        ):
            return True
    return False


@dataclass
class _Scope:
    lines: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    declared_global: set[str] = field(default_factory=set)
    #: names a ``nonlocal`` statement gives to an enclosing function's scope
    declared_nonlocal: set[str] = field(default_factory=set)
    #: the lines of ``del NAME`` statements, per name
    deleted: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))


class _Binder(ast.NodeVisitor):
    """Names one scope binds, with lines; nested functions, classes, comprehensions stay out."""

    def __init__(self, scope: _Scope) -> None:
        self.scope = scope

    def bind(self, name: str, line: int) -> None:
        self.scope.lines[name].append(line)

    def visit_Name(self, node: ast.Name) -> None:
        if isinstance(node.ctx, ast.Store):
            self.bind(node.id, node.lineno)
        elif isinstance(node.ctx, ast.Del):
            self.scope.deleted[node.id].append(node.lineno)

    def visit_FunctionDef(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.bind(node.name, node.lineno)
        for expr in [*node.decorator_list, *node.args.defaults, *node.args.kw_defaults]:
            if expr is not None:
                self.visit(expr)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        self.bind(node.name, node.lineno)
        for expr in [*node.decorator_list, *node.bases]:
            self.visit(expr)

    def visit_Lambda(self, node: ast.Lambda) -> None:
        return None

    def _comprehension(
        self, node: ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp
    ) -> None:
        self.visit(node.generators[0].iter)
        for sub in ast.walk(node):  # a walrus in a comprehension binds in this scope
            if isinstance(sub, ast.NamedExpr) and isinstance(sub.target, ast.Name):
                self.bind(sub.target.id, sub.lineno)

    visit_ListComp = visit_SetComp = visit_DictComp = visit_GeneratorExp = _comprehension

    def visit_Import(self, node: ast.Import | ast.ImportFrom) -> None:
        for alias in node.names:
            if alias.name != "*":
                self.bind(alias.asname or alias.name.split(".")[0], node.lineno)

    visit_ImportFrom = visit_Import

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self.bind(node.name, node.lineno)
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        self.scope.declared_global.update(node.names)

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        self.scope.declared_nonlocal.update(node.names)

    def visit_MatchAs(self, node: ast.MatchAs | ast.MatchStar) -> None:
        if node.name:
            self.bind(node.name, node.lineno)
        self.generic_visit(node)

    visit_MatchStar = visit_MatchAs


def _parts_of(stmt: ast.stmt) -> list[list[ast.stmt]]:
    """The blocks of ``stmt`` whose code runs from their first statement on when reached: a
    loop's body (each iteration), an ``if``'s body and ``else``, a ``try``'s body."""
    if isinstance(stmt, ast.For | ast.AsyncFor | ast.While | ast.Try):
        return [stmt.body] if stmt.body else []
    if isinstance(stmt, ast.If):
        return [b for b in (stmt.body, stmt.orelse) if b]
    return []


def _assigned_here(stmt: ast.stmt) -> set[str]:
    """Names a simple statement binds (its targets)."""
    return {
        n.id for n in ast.walk(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store)
    }


def _evaluated_at_def(fn: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> list[ast.AST]:
    """The parts of a function that run where it is defined, in the enclosing scope."""
    a = fn.args
    out: list[ast.AST] = [*a.defaults, *(d for d in a.kw_defaults if d is not None)]
    if not isinstance(fn, ast.Lambda):
        out += fn.decorator_list
        out += [
            x.annotation
            for x in [*a.posonlyargs, *a.args, a.vararg, *a.kwonlyargs, a.kwarg]
            if x is not None and x.annotation is not None
        ]
        out += [fn.returns] if fn.returns is not None else []
    return out


def _binds_locally(fn: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda, name: str) -> bool:
    """Whether ``name`` is a local variable of ``fn`` (a parameter, or bound in its own body)
    that no ``global``/``nonlocal`` anywhere inside it declares otherwise: its reads there, and
    in the functions inside it, are never the enclosing scope's. Bindings inside nested
    functions, classes and comprehensions are not counted (may say no where it is local)."""
    a = fn.args
    params = [x.arg for x in [*a.posonlyargs, *a.args, a.vararg, *a.kwonlyargs, a.kwarg] if x]
    if any(isinstance(n, ast.Global | ast.Nonlocal) and name in n.names for n in ast.walk(fn)):
        return False
    if name in params:
        return True
    if isinstance(fn, ast.Lambda):
        return False
    own = (
        ast.FunctionDef,
        ast.AsyncFunctionDef,
        ast.Lambda,
        ast.ClassDef,
        ast.ListComp,
        ast.SetComp,
        ast.DictComp,
        ast.GeneratorExp,
    )
    stack: list[ast.AST] = list(fn.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, ast.Store):
            return True
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if node.name == name:
                return True
        elif isinstance(node, ast.Import | ast.ImportFrom):
            if any((x.asname or x.name.split(".")[0]) == name for x in node.names):
                return True
        elif isinstance(node, ast.ExceptHandler) and node.name == name:
            return True
        if not isinstance(node, own):
            stack.extend(ast.iter_child_nodes(node))
    return False


class Bindings:
    """Answers "is this name bound at this line of the old version?" (memoized per scope)."""

    def __init__(self) -> None:
        self._scopes: dict[int, _Scope] = {}
        self._loads: dict[int, frozenset[str]] = {}

    def _scope(self, node: ast.AST) -> _Scope:
        if id(node) not in self._scopes:
            scope = _Scope()
            binder = _Binder(scope)
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                a = node.args
                for arg in [*a.posonlyargs, *a.args, a.vararg, *a.kwonlyargs, a.kwarg]:
                    if arg is not None:
                        binder.bind(arg.arg, 0)
            for stmt in getattr(node, "body", []):
                binder.visit(stmt)
            self._scopes[id(node)] = scope
        return self._scopes[id(node)]

    def _loops_around(self, scope: ast.AST, line: int) -> list[tuple[int, int]]:
        """The line spans of the ``for``/``while`` loops of ``scope`` (not of the functions
        inside it) whose body holds ``line``."""
        out = []
        stack = list(getattr(scope, "body", []))
        while stack:
            node = stack.pop()
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                continue
            if isinstance(node, (ast.For, ast.AsyncFor, ast.While)) and node.body:
                lo, hi = node.body[0].lineno, node.end_lineno or node.lineno
                if lo <= line <= hi:
                    out.append((node.lineno, hi))
            stack.extend(ast.iter_child_nodes(node))
        return out

    def loads(self, block: Block) -> frozenset[str]:
        """Names read in ``block``'s own scope, nested code included; for the module, anywhere
        in the file (a function reads the module's names too)."""
        scope = block.scopes[-1]
        key = -id(scope)
        if key not in self._loads:
            root = block.scopes[0] if isinstance(scope, ast.Module) else scope
            self._loads[key] = frozenset(
                n.id
                for n in ast.walk(root)
                if isinstance(n, ast.Name) and not isinstance(n.ctx, ast.Store)
            ) | frozenset(
                n.target.id
                for n in ast.walk(root)
                if isinstance(n, ast.AugAssign) and isinstance(n.target, ast.Name)
            )
        return self._loads[key]

    def read_after(self, block: Block, line: int, name: str) -> bool:
        """Whether ``block``'s scope may read ``name`` once it has run 1-based ``line``: a read
        on a later line, or anywhere in a loop around ``line`` (its next iteration), or, for a
        module name, in any function (it may be called later)."""
        scope = block.scopes[-1]
        module = isinstance(scope, ast.Module)
        root = block.scopes[0] if module else scope
        loops: list[ast.For | ast.AsyncFor | ast.While] = []
        for frame in block.chain:  # the loops around the block, in its own scope
            if frame.kind in ("def", "class"):
                loops = []
            elif isinstance(frame.node, ast.For | ast.AsyncFor | ast.While):
                loops.append(frame.node)

        def first(stmts: list[ast.stmt], at: int) -> bool | None:
            """Whether running ``stmts`` reaches the read at line ``at`` (True) or a plain
            assignment of the name (False) first; None: neither. A ``with`` block's body runs
            whole, so an assignment in it counts (``with torch.no_grad(): out = net(Xv)``
            before the read: session 47, a carried ``out = ...`` after it was refused)."""
            for stmt in stmts:
                inside = stmt.lineno <= at <= (stmt.end_lineno or stmt.lineno)
                if isinstance(stmt, ast.With | ast.AsyncWith) and stmt.body:
                    if inside and at < stmt.body[0].lineno:
                        return True  # in its header
                    bound = {
                        n.id
                        for i in stmt.items
                        if i.optional_vars is not None
                        for n in ast.walk(i.optional_vars)
                        if isinstance(n, ast.Name)
                    }
                    if name in bound:
                        return False
                    found = first(stmt.body, at)
                    if found is not None:
                        return found
                    continue
                if inside:
                    # a read inside a block of this statement: reached from that block's start
                    # (a loop's body, at each iteration; the branch of an if; a try's body),
                    # unless the block assigns the name first (sweep K: the old step loop's
                    # ``loss = ...`` before its ``loss.item()``)
                    for part in _parts_of(stmt):
                        lo, hi = part[0].lineno, part[-1].end_lineno or part[-1].lineno
                        if lo <= at <= hi:
                            return first(part, at) is not False
                    return True  # in a header, a condition, a handler: reached
                if (
                    isinstance(stmt, ast.If)
                    and stmt.orelse
                    and first(stmt.body, 0) is False
                    and first(stmt.orelse, 0) is False
                ):
                    return False  # assigned in both branches
                if not hasattr(stmt, "body") and name in _assigned_here(stmt):
                    return False
                if (
                    isinstance(stmt, ast.Try)
                    and stmt.handlers
                    and all(
                        first(part, 0) is False
                        for part in (stmt.body, *(h.body for h in stmt.handlers))
                    )
                ):
                    return False  # ``try: acc = f() except E: acc = nan``: assigned either way
            return None

        def next_iteration(at: int) -> bool:
            """A read at line ``at`` (before ``line``) reached again by a loop around both,
            unless a plain statement of that loop's body assigns the name before it."""
            for loop in loops:
                if not loop.lineno <= at <= (loop.end_lineno or loop.lineno):
                    continue
                if first(loop.body, at):
                    return True
            return False

        later = [st for st in block.stmts if st.lineno >= line]

        def reached(at: int) -> bool:
            """A read at line ``at``, after ``line``: reached from there, unless it sits in a
            branch of a later statement of the block that assigns the name before it (``if
            do_eval: acc = f(); flor.log("acc", acc)`` after a carried ``acc = ...``: session
            50, refused as changing what the old code reads)."""
            for st in later:
                if st.lineno <= at <= (st.end_lineno or st.lineno):
                    return not _parts_of(st) or first([st], at) is not False
            return True

        def live(at: int, nested: bool) -> bool:
            return nested or (at >= line and reached(at)) or next_iteration(at)

        def visit(node: ast.AST, nested: bool) -> bool:
            if (
                isinstance(node, ast.Name)
                and node.id == name
                and not isinstance(node.ctx, ast.Store)
            ):
                return live(node.lineno, nested)
            if (
                isinstance(node, ast.AugAssign)
                and isinstance(node.target, ast.Name)
                and node.target.id == name
                and live(node.lineno, nested)
            ):
                return True
            function = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
            if isinstance(
                node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda
            ) and _binds_locally(node, name):
                # its own ``name`` (a helper's local ``gn``): only what runs where it is
                # defined (defaults, decorators, annotations) reads the scope's
                return any(visit(c, nested) for c in _evaluated_at_def(node))
            inner = nested or (module and function)
            return any(visit(c, inner) for c in ast.iter_child_nodes(node))

        return visit(root, False)

    def loads_outside_loops(self, block: Block, name: str) -> bool:
        """Whether ``block``'s scope (the file, for the module) reads ``name`` anywhere but
        inside a ``for`` loop or comprehension that binds it itself (``for p in ...: p.grad``
        reads its own ``p``, whatever came before)."""
        scope = block.scopes[-1]
        root = block.scopes[0] if isinstance(scope, ast.Module) else scope

        def visit(node: ast.AST, shadowed: bool) -> bool:
            if isinstance(node, ast.Name) and node.id == name:
                return not shadowed and not isinstance(node.ctx, ast.Store)
            if isinstance(node, ast.For | ast.AsyncFor):
                own = name in {n.id for n in ast.walk(node.target) if isinstance(n, ast.Name)}
                if visit(node.iter, shadowed):
                    return True
                return any(visit(c, shadowed or own) for c in [*node.body, *node.orelse])
            if isinstance(node, ast.comprehension):
                return visit(node.iter, shadowed) or any(visit(c, shadowed) for c in node.ifs)
            if isinstance(node, ast.ListComp | ast.SetComp | ast.GeneratorExp | ast.DictComp):
                own = any(
                    name in {n.id for n in ast.walk(g.target) if isinstance(n, ast.Name)}
                    for g in node.generators
                )
                parts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
                return any(visit(g, shadowed) for g in node.generators) or any(
                    visit(p, shadowed or own) for p in parts
                )
            if (
                isinstance(node, ast.AugAssign)
                and isinstance(node.target, ast.Name)
                and node.target.id == name
                and not shadowed
            ):
                return True
            return any(visit(c, shadowed) for c in ast.iter_child_nodes(node))

        return visit(root, False)

    def names_of(self, scope: ast.AST) -> list[str]:
        """Every name ``scope`` (a module, function or class node) binds itself."""
        return list(self._scope(scope).lines)

    def lines_of(self, block: Block, name: str) -> list[int]:
        """The lines where ``block``'s own scope binds ``name``."""
        return list(self._scope(block.scopes[-1]).lines.get(name, ()))

    def reaching(self, block: Block, line: int, name: str) -> int | None:
        """The last line before ``line`` where ``block``'s own scope binds ``name`` (0 for a
        parameter), or None where only an outer scope does, or nothing."""
        before = [n for n in self._scope(block.scopes[-1]).lines.get(name, ()) if n < line]
        return max(before) if before else None

    def is_bound(self, block: Block, line: int, name: str, *, carried: bool = False) -> bool:
        """Whether ``name`` is bound on reaching 1-based ``line`` of ``block``; ``carried``:
        also where a loop around the line binds it later in its body (bound there from the
        loop's second iteration on, with the previous iteration's value)."""
        if name in _BUILTINS:
            return True
        innermost = self._scope(block.scopes[-1])
        if name in innermost.declared_global:
            return name in self._scope(block.scopes[0]).lines
        if name in innermost.declared_nonlocal:
            # an enclosing function's (``nonlocal global_step`` in a ``train_one_epoch``
            # nested in ``main``; was taken for a module global: "unbound name", refused)
            enclosing = [s for s in block.scopes[1:-1] if not isinstance(s, ast.ClassDef)]
            return any(name in self._scope(s).lines for s in enclosing)
        if name in innermost.lines:
            bound = innermost.lines[name]
            before = [n for n in bound if n < line]
            gone = [n for n in innermost.deleted.get(name, ()) if n < line]
            if before and gone and max(gone) > max(before):
                # ``del loss`` after its last binding before the place (session 47, sweep L:
                # the replay raised NameError, said as "fix the statement")
                return False
            if before:
                return True
            if not carried:
                return False
            loops = self._loops_around(block.scopes[-1], line)
            return any(lo <= n <= hi for lo, hi in loops for n in bound)
        outer = [s for s in block.scopes[:-1] if not isinstance(s, ast.ClassDef)]
        if any(name in self._scope(s).lines for s in outer):
            return True
        # ``from utils import *`` binds names no text shows: a name bound nowhere else comes
        # from it (session 46, sweep H: refused "unbound name 'probe'"); where it does not,
        # the replay fails with a NameError, said, not a wrong value
        module = block.scopes[0]
        return isinstance(module, ast.Module) and any(
            isinstance(s, ast.ImportFrom)
            and any(a.name == "*" for a in s.names)
            and s.lineno < line
            for s in module.body
        )
