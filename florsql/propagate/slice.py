"""Slices: the new statements a log statement needs, carried along with it.

``gn = clip(...)`` followed by ``flor.log("grad_norm", gn)``: when the old block has no
``gn = ...`` of its own, the assignment travels with the log statement. Only statements of the
same block, before it, that are new and that assign a name the log statement reads, directly or
through another carried statement. New means aligned with no statement of the old block: a
statement that was only edited (``main()`` became ``final = main()``) is not new. Nothing else
new travels. Neither does a statement the old block has elsewhere (similar code assigning the
same names) or that appears verbatim anywhere in the old file: carrying it would run it twice.
"""

from __future__ import annotations

import ast
import re
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache

from florsql.propagate.align import align_pairs
from florsql.propagate.normalize import is_compound, similarity
from florsql.propagate.source import Block, SourceFile
from florsql.propagate.source import walk as ast_nodes

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)


#: :func:`assigned` per node, by identity (the node is kept with its answer, so an id is never
#: reused while its entry lives); cleared when full. Trees are never changed in place (a
#: rename works on a copy), and a propagation asks about the same few hundred statements
#: thousands of times (measured: 85% of the calls repeat one).
_ASSIGNED: dict[int, tuple[ast.AST, frozenset[str]]] = {}
_ASSIGNED_MAX = 20_000


def assigned(stmt: ast.AST) -> frozenset[str]:
    """Names ``stmt`` (or a target) binds by assignment (targets, walrus, augmented
    assignment), import, ``def`` or ``class``; a function's or class's body binds its own."""
    hit = _ASSIGNED.get(id(stmt))
    if hit is not None and hit[0] is stmt:
        return hit[1]
    names = _assigned(stmt)
    if len(_ASSIGNED) >= _ASSIGNED_MAX:
        _ASSIGNED.clear()
    _ASSIGNED[id(stmt)] = (stmt, names)
    return names


def _assigned(stmt: ast.AST) -> frozenset[str]:
    out: set[str] = set()
    stack: list[ast.AST] = [stmt]
    while stack:
        node = stack.pop()
        if isinstance(node, _SCOPES):
            out.add(node.name)
            continue
        if isinstance(node, ast.Lambda):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            out |= {a.asname or a.name.split(".")[0] for a in node.names if a.name != "*"}
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        stack.extend(ast.iter_child_nodes(node))
    return frozenset(out)


def reads(stmt: ast.stmt) -> frozenset[str]:
    """Names ``stmt`` reads from outside it (an augmented assignment reads its target too; a
    comprehension's or lambda's own variables are not read from outside: ``p`` in
    ``sum(p.norm() for p in net.parameters())``; nor are a function's parameters and locals)."""
    names = {
        n.id for n in ast_nodes(stmt) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
    }
    own: set[str] = set()
    for n in ast_nodes(stmt):
        if isinstance(n, ast.comprehension):
            own |= {t.id for t in ast_nodes(n.target) if isinstance(t, ast.Name)}
        elif isinstance(n, ast.Lambda | ast.FunctionDef | ast.AsyncFunctionDef):
            a = n.args
            own |= {x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg] if x}
        if isinstance(n, _SCOPES):
            own |= {
                t.id
                for b in n.body
                for t in ast_nodes(b)
                if isinstance(t, ast.Name) and isinstance(t.ctx, ast.Store)
            }
    names -= own
    if isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
        names.add(stmt.target.id)
    return frozenset(names)


def _path(node: ast.AST) -> str | None:
    """``a`` for a name, ``a.b`` for an attribute of one (``a.b.c[i]`` too): what a slice
    tracks."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        if isinstance(node.value, ast.Name):
            return f"{node.value.id}.{node.attr}"
        return _path(node.value)
    if isinstance(node, ast.Subscript | ast.Starred):
        return _path(node.value)
    return None


def _root(path: str) -> str:
    return path.split(".", 1)[0]


def _walk_code(stmt: ast.AST) -> list[ast.AST]:
    """The nodes of ``stmt`` that run with it: not the bodies of functions, classes and
    lambdas it defines."""
    out: list[ast.AST] = []
    stack: list[ast.AST] = [stmt]
    while stack:
        node = stack.pop()
        out.append(node)
        if isinstance(node, (*_SCOPES, ast.Lambda)) and node is not stmt:
            continue
        if isinstance(node, _SCOPES):
            continue
        stack.extend(ast.iter_child_nodes(node))
    return out


#: :func:`read_paths` of a statement node, kept while the node lives (as :data:`_CHANGES`).
_READ_PATHS: weakref.WeakKeyDictionary[ast.AST, frozenset[str]] = weakref.WeakKeyDictionary()


def read_paths(stmt: ast.stmt) -> frozenset[str]:
    """What ``stmt`` reads from outside it, as slices track it: ``self.ep_loss`` rather than
    all of ``self`` where a name is only read through one attribute; plain names otherwise."""
    known = _READ_PATHS.get(stmt)
    if known is None:
        known = _READ_PATHS[stmt] = _read_paths(stmt)
    return known


def _read_paths(stmt: ast.stmt) -> frozenset[str]:
    names = set(reads(stmt))
    through: dict[str, set[str]] = {}
    bare: set[str] = set()
    for node in ast_nodes(stmt):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and isinstance(node.value.ctx, ast.Load)
        ):
            paths = through.setdefault(node.value.id, set())
            if not isinstance(node.ctx, ast.Store | ast.Del):  # ``self.x = 0`` reads no self.x
                paths.add(f"{node.value.id}.{node.attr}")
    # a method called on a name reads all of it (``p.sum()`` reads ``p``, which an in-place
    # ``p.data.mul_(0.5)`` changes), unlike an attribute read as a value (``self.ep_loss``)
    called = {
        id(n.func.value)
        for n in ast_nodes(stmt)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Attribute)
        and isinstance(n.func.value, ast.Name)
    }
    attribute_bases = {
        id(n.value)
        for n in ast_nodes(stmt)
        if isinstance(n, ast.Attribute) and id(n.value) not in called
    }
    for node in ast_nodes(stmt):
        if (
            isinstance(node, ast.Name)
            and isinstance(node.ctx, ast.Load)
            and id(node) not in attribute_bases
        ):
            bare.add(node.id)
    out = {n for n in names if n in bare or n not in through}
    for name, paths in through.items():
        if name in names:
            out |= paths
    if isinstance(stmt, ast.AugAssign):
        target = _path(stmt.target)
        if target is not None:
            out.add(target)
    return frozenset(out)


#: :func:`changes` of a statement node (``fresh`` None), kept while the node lives: the
#: slices ask it of every statement before each log statement, for every one of them (a
#: quarter of a warm query's planning before session 44). Keyed by the node itself: a
#: renamed copy (``copy.deepcopy``, then changed) is another node.
_CHANGES: weakref.WeakKeyDictionary[
    ast.AST, dict[frozenset[str], tuple[frozenset[str], frozenset[str]]]
] = weakref.WeakKeyDictionary()


def changes(
    stmt: ast.stmt, fresh: frozenset[str] | None = None, modules: frozenset[str] = frozenset()
) -> tuple[frozenset[str], frozenset[str]]:
    """What ``stmt`` changes, as ``(kills, updates)``: names it binds and attributes it sets
    (``self.ep_loss = 0.0``) replace what was there; stores through a subscript
    (``correct[c] += 1``), augmented attributes and method calls made as statements
    (``losses.append(x)``, ``gsum.add_(g)``) change it in place. A method call counts only on a
    name of ``fresh`` (names the old version never binds; None: any), or one that changes its
    receiver (:func:`_changes_in_place`), so today's ``net.train()`` is not taken as part of
    what an old ``net`` is; never on a name of ``modules`` (what the file imports:
    ``torch.manual_seed(0)`` is no change of a ``torch`` the statement reads)."""
    if fresh is None:
        # per ``modules`` too: until session 62 the answer without them was kept and served
        # to every caller, so an old function's ``np.copyto(buf, buf + 1)`` changed ``np``,
        # not ``buf``, and a carried call of it changed the old run's ``buf``, silently
        known = _CHANGES.get(stmt)
        if known is None:
            known = _CHANGES[stmt] = {}
        got = known.get(modules)
        if got is None:
            got = known[modules] = _changes(stmt, None, modules)
        return got
    return _changes(stmt, fresh, modules)


def _changes(
    stmt: ast.stmt, fresh: frozenset[str] | None, modules: frozenset[str] = frozenset()
) -> tuple[frozenset[str], frozenset[str]]:
    kills = set(assigned(stmt))
    updates: set[str] = set()
    weak: set[str] = set()  # by a method called as a statement: parts of fresh names only
    nodes = _walk_code(stmt)
    for node in nodes:
        if isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for sub in ast_nodes(t):
                    if isinstance(sub, ast.Attribute) and isinstance(sub.ctx, ast.Store):
                        p = _path(sub)
                        if p is not None:
                            (kills if isinstance(sub.value, ast.Name) else updates).add(p)
                    elif isinstance(sub, ast.Subscript) and isinstance(sub.ctx, ast.Store):
                        p = _path(sub)
                        if p is not None:
                            updates.add(p)
        elif isinstance(node, ast.AugAssign) and not isinstance(node.target, ast.Name):
            p = _path(node.target)
            if p is not None:
                updates.add(p)
        elif isinstance(node, ast.Delete):
            for t in node.targets:
                p = _path(t)
                if p is not None and not isinstance(t, ast.Name):
                    updates.add(p)
        elif (stored := setattr_target(node)) is not None:
            p = _path(stored)  # ``setattr(opt, "lr_scale", 0.5)`` is ``opt.lr_scale = 0.5``
            if p is not None:
                (kills if isinstance(stored.value, ast.Name) else updates).add(p)
        elif (
            isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Call)
            and isinstance(node.value.func, ast.Attribute)
        ):
            p = _path(_receiver(node.value.func.value))
            if p is not None and (fresh is None or _root(p) in fresh):
                weak.add(p)
    for p, _, statement in call_changes(stmt, modules):
        (weak if statement else updates).add(p)
    # a loop of the statement over parts of an object, changing them in place (today's EMA:
    # ``for pe, pn in zip(ema.parameters(), net.parameters()): pe.mul_(d).add_(pn, ...)``),
    # changes that object: before session 30 only ``pe`` was seen, the update stayed behind,
    # and ``ema`` was evaluated as it was made, silently
    # and a store into such a part, or a change of it by a call that changes its receiver
    # wherever it is made, changes that object whether or not the old version binds it (today's
    # ``for g in opt.param_groups: g["lr"] = g["lr"] * 0.5``: until session 58 the old
    # optimizer's learning rate was read after it, silently)
    parts: dict[str, set[str]] = {}
    for node in nodes:
        if isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
            for target, value in loop_parts(node.target, node.iter):
                owners = {
                    n.id
                    for n in ast_nodes(value or ast.Constant(0))
                    if isinstance(n, ast.Name) and n.id not in modules
                }
                for part in ast_nodes(target):
                    if isinstance(part, ast.Name):
                        parts.setdefault(part.id, set()).update(owners)
    for name in [u for u in updates if _root(u) in parts]:
        updates.update(parts[_root(name)])
    for name in [u for u in weak if _root(u) in parts]:
        updates.update(o for o in parts[_root(name)] if fresh is None or o in fresh)
    updates |= weak
    return frozenset(kills), frozenset(updates)


#: methods that only write out what they are given (a logger, a TensorBoard writer, a
#: progress bar): called on an object, they change nothing the run computes
OUTPUT_METHODS = frozenset(
    {
        "info",
        "debug",
        "warning",
        "warn",
        "error",
        "exception",
        "critical",
        "print",
        "write",
        "flush",
        "add_scalar",
        "add_scalars",
        "add_histogram",
        "add_text",
        "add_image",
        "add_figure",
        "set_description",
        "set_description_str",
        "set_postfix",
        "set_postfix_str",
        "refresh",
        "display",
    }
)

#: methods called as statements that switch a module's mode (:func:`_mode_switches` has their
#: rule) or only write out what they are given (Lightning's ``self.log`` too): on an object
#: the old version holds, no change to what it holds
_NOT_CHANGES = OUTPUT_METHODS | {"eval", "train", "log", "log_dict"}

#: methods that change their receiver wherever they are called, in an expression too
#: (``last = xs.pop()``, ``k = stats.setdefault("b", 0)``), besides any ``name_`` method
_MUTATING_METHODS = frozenset(
    {
        "append",
        "extend",
        "insert",
        "pop",
        "popitem",
        "remove",
        "clear",
        "sort",
        "reverse",
        "setdefault",
        "update",
        "add",
        "discard",
        "intersection_update",
        "difference_update",
        "symmetric_difference_update",
        "appendleft",
        "popleft",
        "extendleft",
        "rotate",
        "fill",
        "resize",
        "put",
        "itemset",
        "step",
        "zero_grad",
        "backward",
        "load_state_dict",
    }
)

#: functions that change their first argument (``np.copyto(a, b)``, ``heapq.heappush(h, x)``,
#: ``random.shuffle(xs)``, ``next(it)``), besides any ``name_`` function
#: (``clip_grad_norm_(net.parameters(), 1.0)``, ``nn.init.normal_(w)``)
_MUTATING_FUNCTIONS = frozenset(
    {
        "copyto",
        "place",
        "putmask",
        "shuffle",
        "heappush",
        "heappop",
        "heapify",
        "heappushpop",
        "heapreplace",
        "insort",
        "insort_left",
        "insort_right",
        "next",
    }
)

#: functions that, called as a statement with an object, do not change it (they write it out)
_READS_ONLY = _NOT_CHANGES | {
    "save",
    "dump",
    "dumps",
    "pprint",
    "show",
    "plot",
    "savefig",
    "imshow",
    "scatter",
    "hist",
    "sleep",
    "synchronize",
    "seed",
    "manual_seed",
    "assert_allclose",
    "assert_close",
    "len",
    "repr",
    "str",
    "breakpoint",
    "setattr",  # a store of ``obj.name`` (:func:`setattr_target`): the store rules judge it
    "delattr",
    "getattr",
    "hasattr",
    "isinstance",
}


def _changes_in_place(call: ast.Call) -> bool:
    """Whether ``call``, made as a statement on a name the old version binds too, counts as
    changing it: any method but a mode switch or one that only writes out (``_NOT_CHANGES``),
    nor one that switches modes inside (``net.apply(lambda m: m.eval())``: the switches' rule).
    Today's ``xs.extend([2])`` before ``flor.log("n", len(xs))``, on the ``xs`` the old version
    builds, was left behind until session 58: the statement read the old version's list, one
    element short, silently. Counted, it travels, and carried code that changes what the old
    version holds is refused (``api._stores_into_old``) unless the name is today's own there
    (``xs = []`` travelling with it)."""
    func = call.func
    return (
        isinstance(func, ast.Attribute)
        and func.attr not in _NOT_CHANGES
        and not any(
            isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr in _MODES
            for n in ast_nodes(call)
            if n is not call
        )
    )


def _in_place_name(name: str) -> bool:
    return name.endswith("_") and not name.startswith("_")


def _changed_receiver(node: ast.expr) -> ast.expr | None:
    """What a method call on ``node`` changes: ``pe`` for ``pe.mul_(d)``'s ``.add_``; None where
    ``node`` is a new object (``torch.zeros(1).add_(x)``, ``x.clone().clamp_(0, 1)``)."""
    while isinstance(node, ast.Call):
        if not (isinstance(node.func, ast.Attribute) and _in_place_name(node.func.attr)):
            return None
        node = node.func.value
    return node


#: :func:`call_changes` per statement node and ``modules``, kept while the node lives (the
#: slices ask it of every statement before each log statement: +10% of propagating 3
#: statements into 100 versions uncached)
_CALL_CHANGES: weakref.WeakKeyDictionary[
    ast.AST, dict[frozenset[str], tuple[tuple[str, ast.AST, bool], ...]]
] = weakref.WeakKeyDictionary()


def call_changes(
    stmt: ast.AST, modules: frozenset[str] = frozenset()
) -> tuple[tuple[str, ast.AST, bool], ...]:
    """:func:`_call_changes`, kept per statement node."""
    known = _CALL_CHANGES.get(stmt)
    if known is None:
        known = _CALL_CHANGES[stmt] = {}
    got = known.get(modules)
    if got is None:
        got = known[modules] = tuple(_call_changes(stmt, modules))
    return got


def _call_changes(
    stmt: ast.AST, modules: frozenset[str] = frozenset()
) -> list[tuple[str, ast.AST, bool]]:
    """What calls that ``stmt`` makes change in place, as ``(path, call, statement)``:
    ``statement`` where the call is a method called as a statement (``xs.extend([2])``:
    ``api._stores_into_old`` judges it where it travels), else a change this function alone
    sees: a changing method in an expression (``last = xs.pop()``), an ``out=`` argument
    (``np.add(a, 10, out=a)``), a function that changes its first argument (``np.copyto(a,
    b)``, ``random.shuffle(xs)``, ``clip_grad_norm_(net.parameters(), 1.0)``), or an object
    handed to a function called as a statement (``grow(xs)``, save for output: ``print``,
    ``torch.save``, ``json.dump``...). Never on a name of ``modules`` (``torch.manual_seed``)."""
    out: list[tuple[str, ast.AST, bool]] = []
    statements = {id(n.value) for n in _walk_code(stmt) if isinstance(n, ast.Expr)}

    def add(node: ast.expr | None, call: ast.AST, statement: bool = False) -> None:
        if node is None:
            return
        p = _path(node)
        if p is not None and _root(p) not in modules:
            out.append((p, call, statement))

    for node in _walk_code(stmt):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        for kw in node.keywords:
            if kw.arg == "out":
                for target in kw.value.elts if isinstance(kw.value, ast.Tuple) else [kw.value]:
                    add(target, node)
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        on_module = False
        if isinstance(func, ast.Attribute):
            base = _receiver(func.value)
            p = _path(base)
            on_module = p is not None and _root(p) in modules
            if not on_module:
                if id(node) in statements and _changes_in_place(node):
                    add(_receiver(func.value), node, True)
                elif name in _MUTATING_METHODS or _in_place_name(name):
                    add(_changed_receiver(func.value), node)
                continue
        if not (isinstance(func, ast.Name) or on_module) or not node.args:
            continue
        if name in _MUTATING_FUNCTIONS:
            add(_receiver(node.args[0]), node)
        elif _in_place_name(name):
            continue  # ``clip_grad_norm_(net.parameters(), 1.0)``: ``api._in_place``'s rule
        elif id(node) in statements and name not in _READS_ONLY:
            for arg in node.args:
                if isinstance(arg, ast.Name | ast.Attribute | ast.Subscript):
                    add(arg, node)
    return out


def loop_parts(target: ast.expr, it: ast.expr) -> list[tuple[ast.expr, ast.expr | None]]:
    """What each part of a loop's target is bound to: element by element through ``zip`` and
    ``enumerate`` (``for pe, pn in zip(ema.parameters(), net.parameters())``: ``pe`` to a part
    of ``ema``, ``pn`` of ``net``; the index of ``enumerate`` to a number), else the whole
    target to the iterable."""
    if (
        isinstance(target, ast.Tuple | ast.List)
        and isinstance(it, ast.Call)
        and isinstance(it.func, ast.Name)
        and not it.keywords
        and not any(isinstance(a, ast.Starred) for a in it.args)
    ):
        if it.func.id == "zip" and len(it.args) == len(target.elts):
            return [p for t, a in zip(target.elts, it.args, strict=True) for p in loop_parts(t, a)]
        if it.func.id == "enumerate" and len(target.elts) == 2 and len(it.args) == 1:
            return [(target.elts[0], None), *loop_parts(target.elts[1], it.args[0])]
    return [(target, it)]


def _receiver(node: ast.expr) -> ast.expr:
    """What a chain of calls is made on: ``pe`` for ``pe.mul_(d).add_(x)``'s ``.add_``."""
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        node = node.func.value
    return node


def setattr_target(node: ast.AST) -> ast.Attribute | None:
    """The attribute a ``setattr(obj, "name", value)`` statement stores into, as an
    ``obj.name`` store target; None for anything else (a computed name too)."""
    if not (
        isinstance(node, ast.Expr)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Name)
        and node.value.func.id == "setattr"
        and len(node.value.args) == 3
    ):
        return None
    obj, name, _ = node.value.args
    if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
        return None
    return ast.Attribute(value=obj, attr=name.value, ctx=ast.Store())


def relevant(kills: frozenset[str], updates: frozenset[str], needed: set[str]) -> bool:
    """Whether a statement with these changes touches one of ``needed`` (names and paths)."""
    for k in kills:
        if k in needed or any(n.startswith(k + ".") for n in needed):
            return True
    for u in updates:
        if u in needed or _root(u) in needed or any(n.startswith(u + ".") for n in needed):
            return True
    return False


def kill(needed: set[str], kills: frozenset[str]) -> None:
    """Take from ``needed`` what ``kills`` replaces (a name takes its attributes along)."""
    for n in list(needed):
        if n in kills or _root(n) in kills:
            needed.discard(n)


def alignment(block: Block, old: Block, skip: frozenset[int]) -> dict[int, int]:
    """Statements of ``block`` (index) that align with one of ``old`` (its index).

    ``skip`` holds ids of statements left out (the log statements being placed).
    """
    keep = [k for k, s in enumerate(block.stmts) if id(s) not in skip]
    norms = [block.norms[k] for k in keep]
    exact = None
    if len(set(norms)) < len(norms) or len(set(old.norms)) < len(old.norms):
        # statements alike but for literals: their spelling breaks the tie (only then: a
        # dump of every statement cost propagation ~10%)
        exact = ([_spelled(block.stmts[k]) for k in keep], [_spelled(s) for s in old.stmts])
    pairs = align_pairs(norms, old.norms, exact)
    out = {keep[i]: j for i, j in pairs.items()}
    _moved_twins(block, old, keep, out)
    _unwrapped(block, old, keep, out, skip)
    taken = set(out.values())
    for k in keep:  # an import line today's code widened (``import os, json as js``)
        if k in out or not isinstance(block.stmts[k], ast.Import | ast.ImportFrom):
            continue
        j = next(
            (
                j
                for j, o in enumerate(old.stmts)
                if j not in taken
                and _widens(block.stmts[k], o)
                and all((k2 < k) == (j2 < j) for k2, j2 in out.items())
            ),
            None,
        )
        if j is not None:
            out[k] = j
            taken.add(j)
    return out


def _moved_twins(block: Block, old: Block, keep: list[int], out: dict[int, int]) -> None:
    """Drop from ``out`` each pair of simple statements written otherwise where today's block
    still has the old statement as it is, unpaired (moved: two old lines swapped since):
    today's statement of that pair is new code, not the old one edited. Session 60 (found
    by tests/test_propagate_differential_edits_s60.py): the old ``lst.append(a + 6);
    print(...); lst.append(a + 2)``, today's with the last two swapped and a new ``h.append(a
    + 3)`` after them; the best monotone alignment paired ``h.append(a + 3)`` with the old
    ``lst.append(a + 2)``, so it was taken for the old code and left behind (``h`` logged 0)."""
    loose = [k for k in keep if k not in out and not is_compound(block.stmts[k])]
    if not loose:
        return
    there = {_text(block, block.stmts[k]) for k in loose}
    for k, j in list(out.items()):
        stmt, other = block.stmts[k], old.stmts[j]
        if is_compound(stmt) or is_compound(other):
            continue
        was = _text(old, other)
        if was in there and _text(block, stmt) != was:
            del out[k]


def _unwrapped(
    block: Block, old: Block, keep: list[int], out: dict[int, int], skip: frozenset[int]
) -> None:
    """Drop from ``out`` each pair of compound statements whose old one wraps code today's
    block has outside it, unpaired, as it is, while today's one holds none of that code: the
    old ``with`` was unwrapped since and today's ``with`` is new code alike in its header.
    Session 61 (found by tests/test_propagate_differential_edits_s60.py): the old step body
    ``with nullcontext(): lst.append(step)``, today's ``lst.append(step)`` unwrapped, then new
    ``h = len(lst)`` and a new ``with nullcontext(): flor.log("g", g)``; the two ``with``
    paired, and ``h = len(lst)`` went before the old ``with``, reading ``lst`` one step
    early, silently."""
    loose = {
        _text(block, block.stmts[k])
        for k in keep
        if k not in out and not is_compound(block.stmts[k])
    }
    if not loose:
        return
    for k, j in list(out.items()):
        stmt, other = block.stmts[k], old.stmts[j]
        if not (is_compound(stmt) and is_compound(other)) or type(stmt) is not type(other):
            continue
        wrapped = {_text(old, s) for s in getattr(other, "body", []) if not is_compound(s)}
        inside = {
            _text(block, s)
            for b in _bodies_of(stmt)
            for s in b
            if id(s) not in skip and not is_compound(s)
        }
        if wrapped and wrapped <= loose and not wrapped & inside:
            del out[k]


def _text(block: Block, stmt: ast.stmt) -> str:
    """A simple statement's text as written, each line stripped (indentation apart, equal
    where the two versions spell it alike)."""
    if block.lines and stmt.end_lineno is not None:
        return "\n".join(line.strip() for line in block.lines[stmt.lineno - 1 : stmt.end_lineno])
    return ast.unparse(stmt)


def _spelled(stmt: ast.stmt) -> str:
    """``stmt`` as spelled, literals included; of a compound statement, its header only (its
    body is aligned on its own)."""
    if isinstance(stmt, ast.If | ast.While):
        return f"{type(stmt).__name__} {ast.dump(stmt.test)}"
    if isinstance(stmt, ast.For | ast.AsyncFor):
        return f"for {ast.dump(stmt.target)} {ast.dump(stmt.iter)}"
    if isinstance(stmt, ast.With | ast.AsyncWith):
        return "with " + " ".join(ast.dump(i) for i in stmt.items)
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return f"def {stmt.name}"
    if isinstance(stmt, ast.Try | ast.Match):
        return type(stmt).__name__
    return ast.dump(stmt)


def _widens(new: ast.stmt, old: ast.stmt) -> bool:
    """Whether import ``new`` binds all that import ``old`` binds, the same way, and more:
    today's line is the old one widened (token similarity misses ``import os, json as js``
    for ``import os``: "cannot tell its place", session 49).

    Example:
        >>> w = lambda a, b: _widens(ast.parse(a).body[0], ast.parse(b).body[0])
        >>> w("import os, json as js", "import os"), w("import sys, json", "import os")
        (True, False)
        >>> w("from m import a, b as c", "from m import a"), w("from m import *", "from m import a")
        (True, False)
    """
    names = {(a.name, a.asname) for a in getattr(new, "names", ())}
    mine = {(a.name, a.asname) for a in getattr(old, "names", ())}
    if ("*", None) in names | mine or not mine or not mine < names:
        return False
    if isinstance(new, ast.ImportFrom):
        return isinstance(old, ast.ImportFrom) and (new.module, new.level) == (
            old.module,
            old.level,
        )
    return isinstance(new, ast.Import) and isinstance(old, ast.Import)


class Uncarried(Exception):
    """Today's statement reads a name that new code it cannot take along changes: placing it
    alone would read the old version's value, silently wrong."""


def moved(
    stmt: ast.stmt,
    norm: str,
    old: Block,
    old_text: str,
    paired: frozenset[int] = frozenset(),
    new_text: str | None = None,
    branches: bool = False,
) -> bool:
    """Whether the old version has ``stmt`` elsewhere: in the block (a similar statement
    assigning the same names that no other new statement stands for: ``paired`` holds the old
    statements aligned with one), or verbatim in the file (moved there, not added: the new
    file, ``new_text``, has it no more often than the old). With ``branches``, verbatim copies
    in the ``if`` statements of the block do not count (:func:`_in_branches`)."""
    names = assigned(stmt)
    # binding nothing, a statement changes what it changes in place: the same objects, or it
    # is another statement (today's ``h.append(a + 3)`` is not the old ``lst.append(a + 2)``
    # moved: session 60, tests/test_propagate_differential_edits_s60.py, ``h`` logged 0)
    touched = None if names else _touched(stmt)
    if any(
        similarity(norm, other_norm)
        and assigned(other) == names
        and (touched is None or not _other_objects(touched, _touched(other), new_text))
        for j, (other, other_norm) in enumerate(zip(old.stmts, old.norms, strict=True))
        if j not in paired
    ):
        return True
    text = ast.unparse(stmt)
    if text not in old_text:
        return False
    if branches and _in_branches(text, old) >= old_text.count(text):
        # the old copies sit in branches beside where it goes (``if do_eval: acc = ...``,
        # today's computes it every epoch), and the statement is placed for a run that never
        # logged it there: it did not take the branch (session 50: not carried, the
        # statement read ``acc`` unbound)
        return False
    return new_text is None or new_text.count(text) <= old_text.count(text)


def _touched(stmt: ast.stmt) -> frozenset[str]:
    """The names whose objects ``stmt`` changes in place (the roots of its updates)."""
    return frozenset(_root(u) for u in changes(stmt, None)[1])


def _other_objects(today: frozenset[str], old: frozenset[str], new_text: str | None) -> bool:
    """Whether two statements that change objects in place change different ones: other
    names, where today's file still spells the old ones (else the old names were renamed:
    ``optimizer.zero_grad()`` moved, for the old ``opt.zero_grad()``)."""
    if today == old or not old or new_text is None:
        return False
    return all(re.search(rf"\b{re.escape(n)}\b", new_text) for n in old - today)


#: Compound statements whose blocks may not run, or not whole, when they are reached: an
#: ``if``'s branch, a ``try`` body an exception leaves early, a loop that runs no iteration.
BRANCHING = (ast.If, ast.Match, ast.Try, ast.For, ast.AsyncFor, ast.While)


def _in_branches(text: str, old: Block) -> int:
    """How many statements written ``text`` the :data:`BRANCHING` statements of block ``old``
    hold (not ``if __name__ == "__main__":``, which runs whenever the script does; sweep T:
    a ``try:`` body computing ``acc`` before its log line, left by a ``KeyError``, was taken as
    computing it, and the placed statement read the last epoch's ``acc``)."""
    found = 0
    for st in old.stmts:
        if not isinstance(st, BRANCHING) or main_guard(st):
            continue
        found += sum(
            1
            for n in ast_nodes(st)
            if isinstance(n, ast.stmt) and n is not st and ast.unparse(n) == text
        )
    return found


def main_guard(stmt: ast.stmt) -> bool:
    """Whether ``stmt`` is ``if __name__ ...:`` (the main guard)."""
    test = stmt.test if isinstance(stmt, ast.If) else None
    return (
        isinstance(test, ast.Compare)
        and isinstance(test.left, ast.Name)
        and test.left.id == "__name__"
    )


def _flor_calls(stmt: ast.stmt) -> bool:
    """Whether ``stmt`` holds a ``log``/``loop``/``checkpointing`` call (florsql's)."""
    names = ("log", "loop", "checkpointing")
    for n in ast_nodes(stmt):
        if isinstance(n, ast.Call):
            func = n.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in names:
                return True
    return False


@dataclass(frozen=True)
class Nested:
    """Statements carried into another block than the log statement's: into a block inside a
    compound statement both versions have (the update ``total += loss.item()`` added inside
    the step loop, placed in the old step loop), or into an enclosing block of the same
    function (``running = 0.0`` before the epoch loop)."""

    new: Block  # the new version's block
    old: Block  # its counterpart in the old version
    indices: tuple[int, ...]  # statements of ``new`` that travel into ``old`` (ascending)
    limit: int | None = None  # the last old slot they may take (before the enclosing statement)
    floor: int | None = None  # the first (after it: a loop's tail, for the next iteration)


@dataclass(frozen=True)
class Slice:
    """What travels with a log statement: statements of its own block, and statements for
    blocks inside compound statements before it that both versions have."""

    indices: list[int]
    nested: tuple[Nested, ...] = ()
    #: statements of the log statement's block after it, where that block is a loop body: the
    #: previous iteration ran them before it (``flor.log("h", h)`` above a new ``h += x``)
    after: list[int] = field(default_factory=list)
    #: statements of ``indices`` that switch a module's mode (``net.eval()``) before code that
    #: runs it: they travel between a save of the module's modes and their restore after the
    #: log statement (:func:`_mode_switches`)
    modes: tuple[int, ...] = ()
    #: why the statement is refused where no more particular rule of ``api`` refuses it first:
    #: travelling code changes in place what the old version holds (:func:`_old_change`)
    unsafe: str | None = None


def carried(
    block: Block,
    index: int,
    old: Block,
    old_text: str,
    skip: frozenset[int],
    pairs: dict[int, int],
    new_text: str | None = None,
    files: tuple[SourceFile, SourceFile] | None = None,
    renamed: Callable[[Block, Block, str], str | None] | None = None,
    branches: bool = False,
    helpers: frozenset[int] = frozenset(),
) -> Slice:
    """What travels with statement ``index`` of ``block`` (indices ascending).

    ``branches``: the statement is placed for runs that never logged its name where the old
    version logs it in a branch: code the old version has only in an ``if`` of the block
    travels too (:func:`moved`).

    ``skip`` holds ids of statements never carried (the other log statements being placed);
    ``pairs`` is the :func:`alignment` of ``block`` with ``old``. A new compound statement
    (``if val < best: best = val``) travels whole, unless it holds florsql calls. Where a needed
    name is changed by new code inside a compound statement the old block has too (``total +=
    loss.item()`` added inside the step loop), that code travels into the old compound
    statement's matching block, found from ``files`` (the new and the old file); without them,
    or where the two compound statements differ in shape, :class:`Uncarried` is raised: the
    statement alone would read the old version's value.
    """
    origin, origin_old = block, old
    fresh = (
        None
        if files is None
        else files[0].bound_names - files[1].bound_names - files[0].imported_names
    )
    ctx = _Context(
        old_text,
        skip,
        new_text,
        files,
        fresh,
        frozenset() if files is None else files[0].imported_names,
        renamed,
        branches=branches,
        helpers=helpers,
    )
    needed = set(read_paths(block.stmts[index]))
    if files is not None:  # the flor module travels by its own rule (``_Session.flor_import``)
        needed = {n for n in needed if _root(n) not in files[0].aliases}
    pairs0 = pairs
    chosen, nested, needed = _carry(block, 0, index, needed, old, pairs, ctx)
    if files is None:
        return Slice(chosen, nested)
    new_file, old_file = files
    after: list[int] = []
    # the previous iteration's tail runs before it, too: the rest of its block, whether that
    # is the loop's body or a branch inside it (``if step % 100 == 99: flor.log("avg", run /
    # 100); run = 0.0`` inside an old ``if``: the reset stayed behind, session 60)
    if _in_loop(block, new_file):
        after, deeper, more = _carry(
            block,
            index + 1,
            len(block.stmts),
            _renewed(index, needed, old, pairs, ctx),
            old,
            pairs,
            ctx,
        )
        nested = (*nested, *deeper)
        needed |= more
    up: list[Nested] = []
    while needed and id(block) in new_file.parents and id(old) in old_file.parents:
        (parent, at), (old_parent, old_at) = new_file.parents[id(block)], old_file.parents[id(old)]
        head = parent.stmts[at]
        if isinstance(head, _SCOPES) or isinstance(old_parent.stmts[old_at], _SCOPES):
            # another scope: from there only the module's definitions travel (a new import
            # or helper that today's statement inside ``main()`` uses)
            if not isinstance(head, _SCOPES):
                _new_code_around(block, needed, ctx)
                inside = [origin.stmts[k] for k in (index, *chosen, *after)]
                inside += [n.new.stmts[k] for n in (*up, *nested) for k in n.indices]
                _made_local(inside, old_parent.stmts[old_at], ctx)
            if isinstance(head, ast.FunctionDef | ast.AsyncFunctionDef):
                params = _parameters(head)
                carried_stmts = [origin.stmts[k] for k in (*chosen, *after)]
                carried_stmts += [n.new.stmts[k] for n in (*up, *nested) for k in n.indices]
                _set_up_elsewhere(needed, params, head, carried_stmts, ctx)
                needed -= {n for n in needed if _root(n) in params}
            module = _module_definitions(needed, ctx, new_file, old_file)
            if module is not None:
                up.insert(0, module)
            break
        needed -= {n for n in needed if _root(n) in _targets(head)}
        if _in_loop(parent, new_file) and not isinstance(head, _LOOPS):
            side, more = _other_branches(head, old_parent.stmts[old_at], block, needed, ctx)
            up += side
            needed |= more
        pairs = alignment(parent, old_parent, skip)
        got, deeper, entry = _carry(parent, 0, at, set(needed), old_parent, pairs, ctx)
        if got:
            up.insert(0, Nested(parent, old_parent, tuple(got), limit=old_at))
        up[:0] = deeper
        if _in_loop(parent, new_file):
            tail, deeper, more = _carry(
                parent, at + 1, len(parent.stmts), set(entry), old_parent, pairs, ctx
            )
            if tail:
                up.append(Nested(parent, old_parent, tuple(tail), floor=old_at + 1))
            up += deeper
            entry |= more
        needed = entry
        block, old = parent, old_parent
    travelling = [origin.stmts[k] for k in (index, *chosen, *after)]
    travelling += [n.new.stmts[k] for n in (*up, *nested) for k in n.indices]
    _helpers_change(travelling, ctx)
    _attributes_changed_elsewhere(travelling, origin.scopes, ctx)
    _module_code_changes(travelling, origin.scopes, ctx)
    evals = ctx.files is None or switches_to_eval(ctx.files[1])
    modes = _mode_switches(origin, index, chosen, pairs0, after, evals)
    chosen = sorted({*chosen, *modes})
    placed = [(origin, k) for k in (index, *chosen, *after)]
    placed += [(n.new, k) for n in (*up, *nested) for k in n.indices]
    _refuse_switches(origin, origin_old, pairs0, placed, files, skip, evals)
    unsafe = ctx.unsafe[0] if ctx.unsafe else None
    return Slice(chosen, (*up, *nested), after, modes, unsafe)


#: methods that switch how a module computes (dropout, batch norm), not what it holds
_MODES = {"eval": "evaluation", "train": "training"}

#: attributes through which a module's parameters and buffers are read, not its forward run
_HELD = frozenset(
    {
        "weight",
        "bias",
        "parameters",
        "named_parameters",
        "state_dict",
        "buffers",
        "named_buffers",
        "modules",
        "children",
        "named_modules",
        "named_children",
        "grad",
        "data",
        "training",
        "running_mean",
        "running_var",
    }
)


def _runs_module(stmt: ast.stmt, root: str) -> bool:
    """Whether ``stmt`` may run the forward pass of what ``root`` holds, where a module's mode
    matters: calls it or a part of it (``net(x)``, ``self.net(x)``, ``net[0](x)``,
    ``net.encoder(x)``), or hands it to a function (``evaluate(net)``); reading its parameters
    (``net[0].weight.norm()``, ``net.parameters()``) does not."""
    for node in _walk_code(stmt):
        if not isinstance(node, ast.Call):
            continue
        for arg in [*node.args, *(k.value for k in node.keywords)]:
            base, held = arg, False
            while isinstance(base, ast.Attribute | ast.Subscript | ast.Starred):
                held |= isinstance(base, ast.Attribute) and base.attr in _HELD
                base = base.value
            if isinstance(base, ast.Name) and base.id == root and not held:
                return True
        func, held = node.func, False
        while isinstance(func, ast.Attribute | ast.Subscript):
            held |= isinstance(func, ast.Attribute) and func.attr in _HELD
            func = func.value
        if isinstance(func, ast.Name) and func.id == root and not held:
            if node.func is func or not isinstance(node.func, ast.Attribute):
                return True
            if node.func.attr not in _MODES and not node.func.attr.startswith("_"):
                return True
    return False


def to_training(stmt: ast.stmt) -> bool:
    """Whether mode switch ``stmt`` is to training mode (``net.train()``, ``net.train(True)``)."""
    call = stmt.value if isinstance(stmt, ast.Expr) else None
    if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)):
        return False
    if call.func.attr != "train" or len(call.args) > 1:
        return False
    args = [*call.args, *(k.value for k in call.keywords if k.arg == "mode")]
    return not args or (isinstance(args[0], ast.Constant) and args[0].value is True)


@lru_cache(maxsize=32)
def switches_to_eval(src: SourceFile) -> bool:
    """Whether ``src`` may switch a module out of training mode anywhere (``.eval()``, a
    ``.train(...)`` not plainly True, a ``training`` attribute set). Where it never does, its
    modules are always in training mode (``torch.nn.Module``'s default), and today's new
    ``net.train()`` changes nothing there."""
    for node in src.nodes:
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr == "eval":
                return True
            if node.func.attr == "train" and not to_training(ast.Expr(node)):
                return True
        elif (
            isinstance(node, ast.Attribute)
            and node.attr == "training"
            and isinstance(node.ctx, ast.Store)
        ):
            return True
    return False


def _mode_switches(
    block: Block,
    index: int,
    chosen: list[int],
    pairs: dict[int, int],
    after: list[int],
    evals: bool = True,
) -> tuple[int, ...]:
    """New statements before statement ``index`` of ``block`` that switch a module's mode
    (``net.eval()``, ``net.train(False)``, ``self.net.eval()``) where the statement, or code
    carried with it after the switch, runs that module (:func:`_runs_module`). Placed without
    them, the statement would compute in the mode the old run was in there (dropout on, the
    batch's statistics): another value than today's code computes. They travel, between a save
    of every submodule's mode and its restore (``api._plan`` checks that nothing of the old
    version runs in between)."""
    out = []
    travelling = [*chosen, index, *after]  # ``after``: a loop's tail, run before it too
    for j in range(index):
        if j in pairs or j in travelling:
            continue
        stmt = block.stmts[j]
        receiver = mode_receiver(stmt)
        if receiver is None or (not evals and to_training(stmt)):
            continue  # back to training where the old version never leaves it: no change
        base = receiver
        while isinstance(base, ast.Attribute | ast.Subscript):
            base = base.value
        if not isinstance(base, ast.Name):
            continue
        later = [block.stmts[k] for k in travelling if k > j]
        if any(_runs_module(s, base.id) for s in later):
            out.append(j)
    return tuple(out)


def mode_receiver(stmt: ast.stmt) -> ast.expr | None:
    """What ``stmt`` switches the mode of (``net`` for ``net.eval()``), or None."""
    if (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Call)
        and isinstance(stmt.value.func, ast.Attribute)
        and stmt.value.func.attr in _MODES
    ):
        return stmt.value.func.value
    return None


def mode_reason(stmt: ast.stmt, why: str) -> str:
    """Why a mode switch that today's statement needs cannot travel."""
    call = stmt.value if isinstance(stmt, ast.Expr) else None
    mode = "evaluation"
    if (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == "train"
        and (not call.args or (isinstance(call.args[0], ast.Constant) and call.args[0].value))
    ):
        mode = "training"
    receiver = mode_receiver(stmt)
    name = ast.unparse(receiver) if receiver is not None else "a module"
    return (
        f"it runs {name}, which today's code switches to {mode} mode before it "
        f"({ast.unparse(stmt)}, line {stmt.lineno}), and the switch cannot travel with it: "
        f"{why}"
    )


def _refuse_switches(
    origin: Block,
    old: Block,
    pairs: dict[int, int],
    placed: list[tuple[Block, int]],
    files: tuple[SourceFile, SourceFile] | None,
    skip: frozenset[int],
    evals: bool = True,
) -> None:
    """Raise :class:`Uncarried` where new code switches a module's mode (``net.eval()``,
    ``net.train(False)``, ``for m in net.modules(): m.eval()``, ``net.apply(...)``, through an
    alias ``m = net`` too) before the statement or code carried with it (``placed``: each as
    its block and index), and that code runs the module: propagation carries no such call (it
    would change the old run where the old code never switched back), and placed without it
    the statement would compute in the mode the old run was in (dropout on, batch statistics
    of the batch): another value than today's code computes, silently.

    The switch may be in the log statement's block or in any block around it up to its
    function: ``net.eval()`` new in the epoch body, today's ``va = ...`` added inside the old
    ``with torch.no_grad():`` after it (until session 30 only the statement's own block was
    looked at, and ``va`` was computed with dropout on, silently)."""
    levels = [(origin, pairs)]
    if files is not None:
        new_file, old_file = files
        block = origin
        while id(block) in new_file.parents and id(old) in old_file.parents:
            (parent, at), (old_parent, old_at) = (
                new_file.parents[id(block)],
                old_file.parents[id(old)],
            )
            if isinstance(parent.stmts[at], _SCOPES) or isinstance(
                old_parent.stmts[old_at], _SCOPES
            ):
                break
            levels.append((parent, alignment(parent, old_parent, skip)))
            block, old = parent, old_parent
        parents = new_file.parents
    else:
        parents = {}
    # each travelling statement with the (block, index) of it and of the statements around it
    chains: list[tuple[ast.stmt, set[tuple[int, int]]]] = []
    travelling: set[int] = set()
    for blk, k in placed:
        chain = {(id(blk), k)}
        up_ = blk
        while id(up_) in parents:
            up_, at = parents[id(up_)]
            chain.add((id(up_), at))
        chains.append((blk.stmts[k], chain))
        travelling.add(id(blk.stmts[k]))
    aliases = _aliases([s for blk, _ in levels for s in blk.stmts])
    for blk, level_pairs in levels:
        for j, stmt in enumerate(blk.stmts):
            if j in level_pairs or id(stmt) in travelling:
                continue
            switch = _switch_roots(stmt)
            if switch is None:
                continue
            roots, mode = switch
            if mode == "training" and not evals:
                continue  # the old version never leaves training mode: no switch there
            roots = _with_aliases(roots, aliases)
            later = [
                s
                for s, chain in chains
                if any((id(blk), p) in chain for p in range(j + 1, len(blk.stmts)))
            ]
            hit = next((r for r in sorted(roots) for s in later if _runs_module(s, r)), None)
            if hit is not None and blk is not origin:
                raise Uncarried(
                    f"it runs {hit}, which today's code switches to {mode} mode before it "
                    f"({_first_line(stmt)}, line {stmt.lineno}), outside the block today's "
                    "statement goes into: carried, the old code of that block would run in the "
                    "switched mode, and without it the statement would compute in the mode the "
                    "old run was in there"
                )
            if hit is not None:
                raise Uncarried(
                    f"it runs {hit}, which today's code switches to {mode} mode before it "
                    f"({_first_line(stmt)}, line {stmt.lineno}): florsql carries a switch only "
                    "as a statement before today's one, of the module it runs (net.eval()), and "
                    "without it the statement would compute in the mode the old run was in there"
                )


def _first_line(stmt: ast.stmt) -> str:
    return ast.unparse(stmt).splitlines()[0]


def _switch_roots(stmt: ast.stmt) -> tuple[set[str], str] | None:
    """``(roots, mode)`` where ``stmt`` switches a module's mode: the names whose modules it
    may switch (the receiver's root, ``net`` for ``net[2].eval()``; where that is a name the
    statement binds itself, as ``for m in net.modules(): m.eval()`` or ``net.apply(lambda m:
    m.eval())`` do, also the roots of the other receivers and iterables in it), and the mode
    ("evaluation" or "training"). None for a statement that switches nothing, or for a
    definition (a ``def`` runs nothing)."""
    if isinstance(stmt, _SCOPES):
        return None
    mode, roots, bound = None, set(), False
    for node in ast_nodes(stmt):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in _MODES
        ):
            continue
        base = node.func.value
        while isinstance(base, ast.Attribute | ast.Subscript):
            base = base.value
        if not isinstance(base, ast.Name):
            bound = True
            continue
        roots.add(base.id)
        this = _MODES[node.func.attr]
        if node.args and not (isinstance(node.args[0], ast.Constant) and node.args[0].value):
            this = "evaluation"
        mode = this if mode in (None, this) else "another"
    if mode is None and not bound:
        return None
    own = {
        n.id
        for n in ast_nodes(stmt)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store | ast.Del)
    } | {a.arg for n in ast_nodes(stmt) if isinstance(n, ast.Lambda) for a in n.args.args}
    if bound or roots & own:
        for node in ast_nodes(stmt):
            owner: ast.expr | None = None
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                owner = node.func.value
            elif isinstance(node, ast.For | ast.comprehension):
                owner = node.iter
            while isinstance(owner, ast.Attribute | ast.Subscript | ast.Call):
                owner = owner.func if isinstance(owner, ast.Call) else owner.value
            if isinstance(owner, ast.Name) and owner.id not in own:
                roots.add(owner.id)
            elif isinstance(owner, ast.Tuple | ast.List):
                roots |= {e.id for e in owner.elts if isinstance(e, ast.Name)}
    return roots - own, mode or "evaluation"


def _aliases(stmts: list[ast.stmt]) -> dict[str, set[str]]:
    """Names bound to one another by a plain assignment among ``stmts`` (``m = net``, ``model
    = self.net``), both ways: a switch of one is a switch of the other."""
    out: dict[str, set[str]] = {}
    for stmt in stmts:
        if not (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
        ):
            continue
        base = stmt.value
        while isinstance(base, ast.Attribute | ast.Subscript):
            base = base.value
        if isinstance(base, ast.Name):
            a, b = stmt.targets[0].id, base.id
            out.setdefault(a, set()).add(b)
            out.setdefault(b, set()).add(a)
    return out


def _with_aliases(roots: set[str], aliases: dict[str, set[str]]) -> set[str]:
    out, todo = set(roots), list(roots)
    while todo:
        for other in aliases.get(todo.pop(), ()):
            if other not in out:
                out.add(other)
                todo.append(other)
    return out


def _helpers_change(stmts: list[ast.stmt], ctx: _Context) -> None:
    """Raise :class:`Uncarried` where today's code changes a module-level name the slice reads
    from inside a function (``global tot; tot += ...`` or ``stats["sum"] += ...`` in the
    ``train_step`` the step loop calls): propagation places no code into a function the log
    statement is not in, and the statement alone would read the old version's value."""
    if ctx.files is None:
        return
    roots = {_root(n) for s in stmts for n in read_paths(s)}
    moving = {id(n) for s in stmts for n in ast_nodes(s)}  # placed along: not out of reach
    for name, fn, stmt in global_changes(ctx.files[0], ctx.fresh, ctx.modules):
        if id(stmt) in moving:
            continue
        if name in roots and ast.unparse(stmt) not in ctx.files[1].unparsed:
            raise Uncarried(
                f"it reads {name}, which today's code changes inside {fn}() (line "
                f"{stmt.lineno}), where propagation does not place code"
            )


def _module_code_changes(stmts: list[ast.stmt], scopes: tuple[ast.AST, ...], ctx: _Context) -> None:
    """Raise :class:`Uncarried` where a statement inside a function reads a module-level name
    that today's module-level code changes, by code the old file lacks and that does not
    travel (``h["s"] += a`` new in the step loop that calls ``train_step``, which logs
    ``h["s"]``): propagation places a function's statement with code of that function only
    (and the module's new definitions), so the statement would read the old version's value.
    Until session 60 the helper logged 0 every step where a re-run sums (found by
    tests/test_propagate_differential_s60.py); the reverse, a change inside the function of a
    name read outside it, was refused already (:func:`_helpers_change`)."""
    if ctx.files is None:
        return
    fn = next(
        (s for s in reversed(scopes) if isinstance(s, ast.FunctionDef | ast.AsyncFunctionDef)), None
    )
    if fn is None:
        return
    new_file, old_file = ctx.files
    declared = {n for node in ast_nodes(fn) if isinstance(node, ast.Global) for n in node.names}
    local = (_parameters(fn) | {n for st in fn.body for n in assigned(st)}) - declared
    skip = new_file.aliases | ctx.modules | local
    roots = {_root(p) for st in stmts for p in read_paths(st)} - skip
    if not roots:
        return
    moving = {id(n) for st in stmts for n in ast_nodes(st)}
    top = {id(st) for st in new_file.tree.body}
    for stmt in _module_code(new_file):
        if id(stmt) in moving or id(stmt) in ctx.skip:
            continue
        kills, updates = changes(stmt, ctx.fresh, ctx.modules)
        if id(stmt) in top:  # a definition (``EPS = ...``): travels, or is an unbound name
            kills = frozenset()
        hit = sorted(roots & ({_root(k) for k in kills} | {_root(u) for u in updates}))
        if hit and ast.unparse(stmt) not in old_file.unparsed:
            raise Uncarried(
                f"it reads {hit[0]}, which today's code changes outside {fn.name}() (line "
                f"{stmt.lineno}), where propagation does not place code for a statement of "
                f"{fn.name}()"
            )


@lru_cache(maxsize=32)
def _module_code(src: SourceFile) -> tuple[ast.stmt, ...]:
    """The simple statements of ``src`` outside every function and class (module-level code,
    inside its loops and branches too)."""
    out: list[ast.stmt] = []
    todo: list[ast.stmt] = list(src.tree.body)
    while todo:
        stmt = todo.pop()
        if isinstance(stmt, _SCOPES):
            continue
        if is_compound(stmt):
            for body in _bodies_of(stmt):
                todo.extend(body)
        else:
            out.append(stmt)
    return tuple(sorted(out, key=lambda st: st.lineno))


def _made_local(travelling: list[ast.stmt], old_fn: ast.stmt, ctx: _Context) -> None:
    """Raise :class:`Uncarried` where statements going into an old function of their own
    (today's step body that the old version runs as ``step_part()``) assign a name that
    function does not bind, and today's code reads that name's value from outside them: before
    they assign it (``h0 = (h0 * 3 + x) % 997``, a module-level accumulator) or in code that
    does not travel (a log after the loop). Inside the old function the name would be a local
    of its own: ``UnboundLocalError``, or the outer value read unchanged, silently (session
    61, found by tests/test_propagate_differential_edits_s60.py)."""
    if ctx.files is None or not isinstance(old_fn, ast.FunctionDef | ast.AsyncFunctionDef):
        return
    own = set(_parameters(old_fn)).union(*(assigned(st) for st in old_fn.body))
    declared = {
        name
        for st in old_fn.body
        for node in _walk_code(st)
        if isinstance(node, ast.Global | ast.Nonlocal)
        for name in node.names
    }
    ordered = sorted(travelling, key=lambda st: (st.lineno, st.col_offset))
    mine = {id(n) for st in ordered for n in ast_nodes(st)}
    bound: set[str] = set()
    for st in ordered:
        fresh = assigned(st) - own - declared
        early = sorted((fresh & reads(st)) - bound)
        bound |= fresh
        if early:
            name = early[0]
            break
    else:
        outside = {
            node.id
            for node in ctx.files[0].nodes
            if isinstance(node, ast.Name)
            and isinstance(node.ctx, ast.Load)
            and node.id in bound
            and id(node) not in mine
        }
        if not outside:
            return
        name = sorted(outside)[0]
    raise Uncarried(
        f"it assigns {name}, which today's code reads from outside it, where the old version "
        f"runs it inside {old_fn.name}(): there {name} would be a local of its own"
    )


def _new_code_around(block: Block, needed: set[str], ctx: _Context) -> None:
    """Raise :class:`Uncarried` where the old version runs ``block``'s counterpart inside a
    function of its own (the step loop's body moved into ``step_part()``) and today's code
    around ``block``, up to its function (not the module's top-level definitions, which
    travel), changes a name the statement still needs: the old function is as far as its
    code can go, so the statement would read the old version's value (session 60,
    tests/test_propagate_differential_edits_s60.py: today's ``h0 += [...]`` in the epoch body
    stayed behind, ``h0`` logged 0 from the old ``step_part()``)."""
    if ctx.files is None or not needed:
        return
    new_file, old_file = ctx.files
    inner = block
    while id(inner) in new_file.parents:
        parent, at = new_file.parents[id(inner)]
        head = parent.stmts[at]
        if isinstance(head, _SCOPES):
            return
        top = parent is new_file.blocks[0]
        others: list[ast.stmt] = [st for k, st in enumerate(parent.stmts) if k != at]
        others += [st for body in _bodies_of(head) if body is not inner.stmts for st in body]
        for st in others:
            for node in ast_nodes(st):
                if not isinstance(node, ast.stmt) or is_compound(node) or id(node) in ctx.skip:
                    continue
                if isinstance(node, _SCOPES):
                    continue
                kills, updates = changes(node, ctx.fresh, ctx.modules)
                if top and node in parent.stmts:
                    kills = frozenset()  # a definition: travels, or is an unbound name
                hit = sorted(n for n in needed if relevant(kills, updates, {n}))
                if hit and ast.unparse(node) not in old_file.unparsed:
                    raise Uncarried(
                        f"it reads {hit[0]}, which today's code changes around it (line "
                        f"{node.lineno}), where the old version runs it inside a function of "
                        "its own: propagation does not place code there"
                    )
        inner = parent


def _attributes_changed_elsewhere(
    stmts: list[ast.stmt], scopes: tuple[ast.AST, ...], ctx: _Context
) -> None:
    """Raise :class:`Uncarried` where the slice reads an attribute (``self.opt_steps``,
    ``t.meter``) that today's code changes, by code the old file lacks, inside another
    function: a method of the class (``self.opt_steps += 1`` in the ``train_step`` that
    ``fit`` calls), or a function handed the object (``def step(stats): stats.n += 1``).
    Propagation places no code into a function the statement is not in, so the statement
    alone would read the old version's value: until session 60 a counter today's
    ``train_step`` increments logged 0 in every epoch of the old version, silently (a re-run
    of today's script logs 3, 6, 9...).

    An attribute is matched by its name: ``self.x`` read in a method matches ``self.x``
    changed in a method of the same class; any other ``obj.x`` matches a change of ``.x``
    through a parameter or a non-local name of any function (the object the function is
    handed cannot be told from its type here)."""
    if ctx.files is None:
        return
    new_file, old_file = ctx.files
    skip = new_file.aliases | ctx.modules
    reads = {
        tuple(p.split(".", 1))
        for s in stmts
        for p in read_paths(s)
        if "." in p and _root(p) not in skip
    }
    if not reads:
        return
    own_class = next((s for s in reversed(scopes) if isinstance(s, ast.ClassDef)), None)
    own = {id(s) for s in scopes}
    moving = {id(n) for s in stmts for n in ast_nodes(s)}
    # the old version's own changes, by class, function, object and attribute: today's edit
    # of one (``self.fc1 = nn.Linear(4, 12)`` for ``(4, 8)`` in ``__init__``) is the old
    # version's own way of computing it, which the patched old version runs (session 61: a
    # weight norm of a layer whose width changed was refused)
    wanted = frozenset(a for _, a in reads)
    versions = {
        (getattr(c, "name", None), f.name, r, a)
        for c, f, _, r, a in _attribute_changes(old_file, None, old_file.imported_names, wanted)
    }
    for cls, fn, stmt, root, attr in _attribute_changes(new_file, ctx.fresh, ctx.modules, wanted):
        if id(fn) in own or id(stmt) in moving:
            continue
        if (getattr(cls, "name", None), fn.name, root, attr) in versions:
            continue
        for read_root, read_attr in sorted(reads):
            if read_attr != attr:
                continue
            if read_root == "self" and (root != "self" or cls is not own_class):
                continue  # another class's ``self.x``, or not through ``self``
            if ast.unparse(stmt) in old_file.unparsed:
                continue  # the old version's own code
            where = f"{cls.name}.{fn.name}" if cls is not None else fn.name
            raise Uncarried(
                f"it reads {read_root}.{read_attr}, which today's code changes inside "
                f"{where}() (line {stmt.lineno}), where propagation does not place code"
            )


@lru_cache(maxsize=32)
def _attribute_changes(
    src: SourceFile,
    fresh: frozenset[str] | None,
    modules: frozenset[str] = frozenset(),
    wanted: frozenset[str] | None = None,
) -> tuple[
    tuple[ast.ClassDef | None, ast.FunctionDef | ast.AsyncFunctionDef, ast.stmt, str, str], ...
]:
    """``(class, function, statement, root, attribute)`` for each statement of a function of
    ``src`` that changes an attribute of an object from outside the function (through a
    parameter, ``self`` included, or a name the function does not bind): ``class`` is the
    class the function is a method of (None for another function). ``wanted``: only these
    attributes (a function naming none of them is not looked into: the changes of every
    function of the old file were half of propagating into a version)."""
    method_of: dict[int, ast.ClassDef] = {}
    for node in src.nodes:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                method_of[id(item)] = node
    out = []
    for fn in src.nodes:
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        if wanted is not None and not wanted & _attribute_names(fn):
            continue  # (a change's path is ``root.attribute``: an attribute it names)
        params = _parameters(fn)
        local = {n for s in fn.body for n in assigned(s)} - params
        for stmt in ast_nodes(fn):
            if not isinstance(stmt, ast.stmt) or stmt is fn or is_compound(stmt):
                continue
            kills, updates = changes(stmt, fresh, modules)
            for path in sorted(kills | updates):
                if "." not in path or _root(path) in local:
                    continue
                root, attr = path.split(".", 1)
                if wanted is None or attr in wanted:
                    out.append((method_of.get(id(fn)), fn, stmt, root, attr))
    return tuple(out)


#: :func:`_attribute_names` of a function node, kept while the node lives
_ATTRIBUTE_NAMES: weakref.WeakKeyDictionary[ast.AST, frozenset[str]] = weakref.WeakKeyDictionary()


def _attribute_names(fn: ast.AST) -> frozenset[str]:
    """The attributes ``fn``'s code names (``x.attr``), and its strings (``setattr(x, "attr",
    v)``), the functions inside it included: what any path :func:`changes` finds in it may
    end with."""
    known = _ATTRIBUTE_NAMES.get(fn)
    if known is None:
        names: set[str] = set()
        for n in ast_nodes(fn):
            if isinstance(n, ast.Attribute):
                names.add(n.attr)
            elif isinstance(n, ast.Constant) and isinstance(n.value, str):
                names.add(n.value)
        known = _ATTRIBUTE_NAMES[fn] = frozenset(names)
    return known


@lru_cache(maxsize=32)
def global_changes(
    src: SourceFile, fresh: frozenset[str] | None, modules: frozenset[str] = frozenset()
) -> tuple[tuple[str, str, ast.stmt], ...]:
    """``(name, function, statement)`` for each statement of a function of ``src`` that changes
    a name from outside the function (declared ``global``, or changed in place)."""
    return tuple(
        found
        for fn in src.nodes
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef)
        for found in function_global_changes(fn, fresh, modules)
    )


def function_global_changes(
    fn: ast.FunctionDef | ast.AsyncFunctionDef,
    fresh: frozenset[str] | None,
    modules: frozenset[str] = frozenset(),
) -> list[tuple[str, str, ast.stmt]]:
    """:func:`global_changes` of one function (those of the functions inside it included)."""
    out = []
    declared = {n for node in ast_nodes(fn) if isinstance(node, ast.Global) for n in node.names}
    local = (_parameters(fn) | {n for s in fn.body for n in assigned(s)}) - declared
    for stmt in ast_nodes(fn):
        if not isinstance(stmt, ast.stmt) or stmt is fn or is_compound(stmt):
            continue
        kills, updates = changes(stmt, fresh, modules)
        for name in sorted(
            {k for k in kills if k in declared} | {_root(u) for u in updates} - local
        ):
            out.append((name, fn.name, stmt))
    return out


def _set_up_elsewhere(
    needed: set[str],
    params: set[str],
    fn: ast.FunctionDef | ast.AsyncFunctionDef,
    carried_stmts: list[ast.stmt],
    ctx: _Context,
) -> None:
    """Raise :class:`Uncarried` where the slice changes an attribute of a parameter in place
    (``self.seen += len(idx)``) that nothing carried sets up and the old file never sets: today
    it starts elsewhere (``__init__``), where propagation places no code, and the old version
    would fail on it."""
    if ctx.files is None:
        return
    updated = {u for st in carried_stmts for u in changes(st, ctx.fresh, ctx.modules)[1]}
    old_attributes = ctx.files[1].stored_attributes
    for path in sorted(needed):
        if (
            "." in path
            and _root(path) in params
            and path in updated
            and path.split(".", 1)[1] not in old_attributes
        ):
            raise Uncarried(
                f"it reads {path}, which today's code sets up outside {fn.name}() and "
                "changes in it: propagation places no code where it starts"
            )


def _parameters(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    a = fn.args
    return {x.arg for x in [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg] if x}


def _definition(stmt: ast.stmt) -> bool:
    """An import, a ``def`` or ``class``, or an assignment calling nothing: module-level code
    whose only effect is the names it binds."""
    if isinstance(stmt, ast.Import | ast.ImportFrom | ast.FunctionDef | ast.AsyncFunctionDef):
        return True
    if isinstance(stmt, ast.ClassDef):
        return True
    if isinstance(stmt, ast.Assign | ast.AnnAssign) and stmt.value is not None:
        return not any(isinstance(n, ast.Call) for n in ast_nodes(stmt.value))
    return False


def _module_definitions(
    needed: set[str], ctx: _Context, new_file: SourceFile, old_file: SourceFile
) -> Nested | None:
    """Today's module-level definitions of ``needed`` names that the old module lacks (and
    those they read in turn), for a statement inside a function."""
    if not needed or not new_file.blocks or not old_file.blocks:
        return None
    block, old = new_file.blocks[0], old_file.blocks[0]
    pairs = alignment(block, old, ctx.skip)
    paired = frozenset(pairs.values())
    chosen: list[int] = []
    for k in range(len(block.stmts) - 1, -1, -1):
        stmt = block.stmts[k]
        names = assigned(stmt)
        if (
            not relevant(names, frozenset(), needed)
            or not _definition(stmt)
            or (_flor_calls(stmt) and id(stmt) not in ctx.helpers)
        ):
            continue
        kill(needed, names)
        if k in pairs or moved(
            stmt, block.norms[k], old, ctx.old_text, paired, ctx.new_text, ctx.branches
        ):
            continue
        chosen.append(k)
        needed |= read_paths(stmt)
    return Nested(block, old, tuple(chosen[::-1])) if chosen else None


_LOOPS = (ast.For, ast.AsyncFor, ast.While)


def _in_loop(block: Block, src: SourceFile) -> bool:
    """Whether ``block`` is a loop's body or inside one, in the same function: what follows a
    statement in it runs, in the loop's previous iteration, before the statement runs again."""
    while id(block) in src.parents:
        parent, at = src.parents[id(block)]
        head = parent.stmts[at]
        if isinstance(head, _SCOPES):
            return False
        if isinstance(head, _LOOPS) and head.body is block.stmts:
            return True
        block = parent
    return False


def _other_branches(
    head: ast.stmt, old_head: ast.stmt, child: Block, needed: set[str], ctx: _Context
) -> tuple[list[Nested], set[str]]:
    """Inside a loop, the other branches of ``head`` (the ``if``, ``try`` or ``match`` whose
    branch ``child`` holds the statement) run between two runs of the statement: what today's
    code changes there of ``needed`` travels into the old ``head``'s same branch (placements,
    and what they need from before ``head``), or the statement is refused. Until session 60
    today's ``h += epoch`` in the ``else`` of an old ``if epoch % 2 == 0:`` whose branch logs
    ``h`` stayed behind: the even epochs logged 0 where a re-run adds the odd epochs."""
    if ctx.files is None:
        return [], set()
    new_bodies, old_bodies = _bodies_of(head), _bodies_of(old_head)
    placements: list[Nested] = []
    outside: set[str] = set()
    for i, body in enumerate(new_bodies):
        if not body or body is child.stmts:
            continue
        inner = {
            n
            for n in needed
            if any(
                id(st) not in ctx.skip and relevant(*changes(st, ctx.fresh, ctx.modules), {n})
                for st in body
            )
        }
        if not inner:
            continue
        if (
            type(head) is not type(old_head)
            or len(new_bodies) != len(old_bodies)
            or not (old_bodies[i])
        ):
            raise Uncarried(
                f"it reads {sorted(inner)[0]}, which today's code changes in another branch "
                f"of the block around it (line {body[0].lineno}), a branch the old version "
                "does not have"
            )
        got, need = _carry_body(body, old_bodies[i], inner, ctx)
        placements += got
        outside |= need
    return placements, outside


def _loop_body(block: Block, src: SourceFile) -> bool:
    """Whether ``block`` is the body of a ``for``/``while`` loop (its tail runs, in the
    previous iteration, before its head)."""
    if id(block) not in src.parents:
        return False
    parent, at = src.parents[id(block)]
    head = parent.stmts[at]
    return isinstance(head, ast.For | ast.AsyncFor | ast.While) and head.body is block.stmts


@dataclass(frozen=True)
class _Context:
    old_text: str
    skip: frozenset[int]
    new_text: str | None
    files: tuple[SourceFile, SourceFile] | None
    fresh: frozenset[str] | None = None  # names today's file binds and the old one never does
    modules: frozenset[str] = frozenset()  # names today's file imports
    #: the old name of a name read in a block of today's file placed into one of the old file,
    #: where the scope around them is evidence (:func:`florsql.propagate.rename.scope_rename`)
    renamed: Callable[[Block, Block, str], str | None] | None = None
    #: :func:`_switched_roots` of the two files (by id)
    switched: dict[int, frozenset[str]] = field(default_factory=dict)
    #: code the old version runs only in an ``if`` beside the slot is not there (:func:`moved`)
    branches: bool = False
    #: new definitions that travel though they hold florsql calls (by id): the helper around
    #: a log statement whose call today's code adds (``api._new_call``, session 54)
    helpers: frozenset[int] = frozenset()
    #: :func:`_old_change` reasons met while slicing (the first is :attr:`Slice.unsafe`)
    unsafe: list[str] = field(default_factory=list)


def _carry(
    block: Block,
    start: int,
    end: int,
    needed: set[str],
    old: Block,
    pairs: dict[int, int],
    ctx: _Context,
) -> tuple[list[int], tuple[Nested, ...], set[str]]:
    """The slice of ``block[start:end]`` for ``needed`` (names and ``a.b`` paths): indices,
    nested placements, and what is still needed before ``start``.

    A statement aligned with an old one (``pairs``) is the old version's own code, except where
    it changes a needed name that the old one does not (``norm = clip_grad_norm_(ps,
    1.0).item()``, ``gsum += clip_grad_norm_(ps, 1.0).item()`` or ``val = evaluate(net)`` where
    the old code called ``clip_grad_norm_(ps, 1.0)`` or ``evaluate(net)`` alone): a rewrite. It
    is carried too (an index in ``pairs``); its placement replaces that old statement or is
    refused (``florsql.propagate.api._rewritten``). Taken as the old code's, the name would
    keep whatever value the old version gave it elsewhere."""
    chosen: list[int] = []
    nested: list[Nested] = []
    paired = frozenset(pairs.values())
    for k in range(end - 1, start - 1, -1):
        stmt = block.stmts[k]
        if id(stmt) in ctx.skip:
            continue
        kills, own_updates = changes(stmt, ctx.fresh, ctx.modules)
        updates = own_updates | _through_aliases(stmt, own_updates, ctx)
        if not relevant(kills, updates, needed):
            if k not in pairs or not is_compound(stmt):
                continue
            if not _new_changes_inside(stmt, old.stmts[pairs[k]], needed, ctx):
                continue  # (a change of a name the old block changes too: in place, below)
        if is_compound(stmt):
            if k in pairs:
                other = old.stmts[pairs[k]]
                old_kills, old_updates = changes(other, ctx.fresh, ctx.modules)
                targets = _targets(stmt)
                new_kills = kills - old_kills - targets
                # (what the two blocks change, compared as written: holders are followed
                # statement by statement below, where names renamed since cannot mislead)
                new_updates = own_updates - old_updates
                back = _renamed_back(block, old, new_kills, new_updates, needed, ctx)
                if back:  # the old code changes them under their old names: compare as today's
                    fresh = None if ctx.fresh is None else ctx.fresh - frozenset(back.values())
                    kills, updates = changes(stmt, fresh, ctx.modules)
                    old_kills, old_updates = (
                        frozenset(_swapped(p, back) for p in paths)
                        for paths in changes(other, fresh, ctx.modules)
                    )
                    new_kills = kills - old_kills - targets
                    new_updates = updates - old_updates
                changed = _new_changes_inside(stmt, other, needed, ctx)
                if relevant(new_kills, new_updates, needed) or changed:
                    want = {n for n in needed if relevant(new_kills, new_updates, {n})} | changed
                    inside, outside = _into(stmt, other, want, ctx)
                    nested = [*inside, *nested]
                    needed |= {n for n in outside if _root(n) not in targets}
                else:  # the old code inside gives the names: in the mode it ran in there?
                    _same_modes_inside(stmt, other, needed, ctx)
            elif _flor_calls(stmt) and id(stmt) not in ctx.helpers:
                touched = sorted(n for n in needed if relevant(kills, updates, {n}))
                raise Uncarried(
                    f"it reads {touched[0]}, which a new block holding florsql calls changes "
                    f"(line {stmt.lineno})"
                )
            elif not moved(
                stmt, block.norms[k], old, ctx.old_text, paired, ctx.new_text, ctx.branches
            ):
                ctx.unsafe.extend(_old_change(stmt, block, k, pairs, needed, ctx))
                chosen.append(k)  # it may not run its branch: what comes before still counts
                needed |= read_paths(stmt)
            continue
        if (
            k not in pairs
            and not moved(
                stmt, block.norms[k], old, ctx.old_text, paired, ctx.new_text, ctx.branches
            )
        ) or (k in pairs and _rewrites(stmt, kills, old.stmts[pairs[k]], needed, ctx)):
            if k not in pairs:
                ctx.unsafe.extend(_old_change(stmt, block, k, pairs, needed, ctx))
            kill(needed, kills)
            chosen.append(k)
            needed |= read_paths(stmt)
        else:
            if k in pairs:  # the old version's own code gives the name: in the same mode?
                _same_modes(block, k, old, pairs[k], needed, ctx)
            kill(needed, kills)
    return chosen[::-1], tuple(nested), needed


def _renewed(
    index: int, needed: set[str], old: Block, pairs: dict[int, int], ctx: _Context
) -> set[str]:
    """``needed`` less what the old version's own code changes in place in each iteration
    before the statement (``opt.zero_grad()``, ``loss.backward()`` before today's
    ``flor.log("gn", net.weight.grad.norm())``): what the previous iteration's tail did to it
    is (for all florsql can tell) made again there, so today's new tail (a
    ``clip_grad_norm_(net.parameters(), 0.5)`` after the statement) is no change of what the
    statement reads, and the statement reads the old run's gradients, as a hand-patched old
    version does (session 58: refused for a few commits).

    The old statement's changes, not today's: today's step loop, aligned with the old one,
    holds today's new ``if a % 2 == 0: h0.append(...)`` too, and took ``h0`` for renewed, so
    today's ``h0.append(...)`` after the statement stayed behind and the replay summed less
    than today's script (session 59: tests/test_propagate_differential.py found it)."""
    if ctx.files is None:
        return set(needed)
    old_file = ctx.files[1]
    renewed: set[str] = set()
    for k in range(index):
        if k in pairs:
            stmt = old.stmts[pairs[k]]
            updates = frozenset(p for p, _, _ in call_changes(stmt, old_file.imported_names))
            renewed |= {_root(u) for u in updates | _through_aliases(stmt, updates, ctx, old_file)}
    return {n for n in needed if _root(n) not in renewed}


@lru_cache(maxsize=32)
def _plain_aliases(src: SourceFile) -> dict[str, frozenset[str]]:
    """Names ``src`` binds to another object as it is, or to one made holding it: a change
    through them changes that object. A plain alias (``ys = xs``, ``snap = total``, ``m =
    self.net``); an object a class (or a scheduler factory, ``get_linear_schedule_with_warmup``)
    makes of a module's parameters (``opt = SGD(net.parameters())``: ``opt.step()`` changes
    ``net``) or of such an object (``sched = StepLR(opt, ...)``: a new ``sched.step()`` sets the
    optimizer's learning rate); not a module handed as it is (``AveragedModel(net)`` copies
    it); and, for ``.backward()`` only (see
    :func:`_through_aliases`), a tensor computed from it (``extra = mse(net(X), Y)``: a new
    ``extra.backward()`` adds to ``net``'s gradients), under the key ``"A.backward"``."""
    out: dict[str, set[str]] = {}
    holders: set[str] = set()  # names made holding a module's parameters (optimizers)
    modules = src.imported_names
    for node in sorted((n for n in src.nodes if isinstance(n, ast.Assign)), key=lambda n: n.lineno):
        if not (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            continue
        name, value = node.targets[0].id, node.value
        held: set[str] = set()
        if isinstance(value, ast.Name | ast.Attribute | ast.Subscript):
            p = _path(value)
            if p is not None:
                held.add(_root(p))
        elif isinstance(value, ast.Call) and _makes_holder(value.func):
            for arg in [*value.args, *(kw.value for kw in value.keywords)]:
                arg = arg.value if isinstance(arg, ast.Starred) else arg
                p = _path(_receiver(arg))
                if p is None:
                    continue
                if isinstance(arg, ast.Name) and arg.id in holders:
                    held.add(arg.id)  # ``StepLR(opt)``: an optimizer, made holding parameters
                elif (
                    isinstance(arg, ast.Call)
                    and isinstance(arg.func, ast.Attribute)
                    and arg.func.attr in _PARAMETERS  # ``SGD(net.parameters())``
                ):
                    held.add(_root(p))
        computed = {
            n.id
            for n in ast_nodes(value)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)
        }
        if computed - modules - {name}:
            out.setdefault(f"{name}.backward", set()).update(computed - modules - {name})
        held -= modules | {name}
        if held:
            out.setdefault(name, set()).update(held)
            if isinstance(value, ast.Call):
                holders.add(name)
    return {k: frozenset(v) for k, v in out.items()}


#: methods through which an object is handed a module's parameters (an optimizer made of them)
_PARAMETERS = frozenset({"parameters", "named_parameters", "param_groups"})


def _makes_holder(func: ast.expr) -> bool:
    """Whether a call of ``func`` makes an object that holds its arguments: a class
    (``StepLR``, ``SGD``, ``Trainer``: a capitalized name) or a scheduler factory."""
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name[:1].isupper() or ("schedule" in name and name.startswith("get_"))


def _through_aliases(
    stmt: ast.stmt, updates: frozenset[str], ctx: _Context, src: SourceFile | None = None
) -> frozenset[str]:
    """The objects ``stmt`` changes through a name of ``src`` (today's file unless given)
    that holds them (:func:`_plain_aliases`: ``ys = xs`` and ``ys.append(1)``, ``snap =
    total`` and ``snap += 100``, in place for a tensor or a list, ``sched.step()``,
    ``extra.backward()``)."""
    if ctx.files is None:
        return frozenset()
    aliases = _plain_aliases(src or ctx.files[0])
    if not aliases or _switch_roots(stmt) is not None:
        return frozenset()  # a mode switch through an alias (``m = net; m.eval()``): its rule
    roots = {_root(u) for u in updates}
    if isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
        roots.add(stmt.target.id)
    roots |= {f"{_root(p)}.backward" for p, call, _ in call_changes(stmt) if _backward(call)}
    return _held(roots, aliases)


def _held(roots: set[str], aliases: dict[str, frozenset[str]]) -> frozenset[str]:
    """What ``roots`` hold, one level only (``sched`` holds ``opt``: its step sets the rate,
    not ``net``'s weights, session 43); from a ``"A.backward"`` key, through what each tensor
    was computed from (``loss = crit(out, yb)``, ``out = net(xb)``: ``loss.backward()`` adds
    to ``net``'s gradients)."""
    out: set[str] = set()
    todo = [(r, n.endswith(".backward")) for n in roots for r in aliases.get(n, ())]
    while todo:
        r, grads = todo.pop()
        if r not in out:
            out.add(r)
            if grads:  # what a tensor was computed from, back to the module's parameters
                todo += [(h, True) for h in aliases.get(r, ())]
                todo += [(h, True) for h in aliases.get(f"{r}.backward", ())]
    return frozenset(out)


def _backward(call: ast.AST) -> bool:
    return (
        isinstance(call, ast.Call)
        and isinstance(call.func, ast.Attribute)
        and call.func.attr == "backward"
        and isinstance(call.func.value, ast.Name)
    )


def _old_change(
    stmt: ast.stmt, block: Block, k: int, pairs: dict[int, int], needed: set[str], ctx: _Context
) -> list[str]:
    """Why the statement is refused where ``stmt``, new code that travels with today's statement,
    changes in place an object the old version holds, in a way ``api._stores_into_old`` does
    not judge (:func:`call_changes`: ``last = xs.pop()``, ``np.add(a, 10, out=a)``,
    ``grow(xs)``, ``random.shuffle(xs)``; through a plain alias: ``ys = xs`` and
    ``ys.append(1)``). Carried, the change would alter the old run (its later iterations would
    no longer be the recorded ones, and a replay from a checkpoint and a full re-run would
    differ); left behind, as until session 58, the statement read the old version's object
    as if today's code had not changed it, silently. The reason is :attr:`Slice.unsafe`:
    ``api`` says it where none of its own rules for carried code refuses first (an in-place
    ``name_`` call, a method called as a statement on an old object...)."""
    if ctx.files is None:
        return []
    own = {n for j in range(k) if j not in pairs for n in assigned(block.stmts[j])}
    own |= assigned(stmt) | _targets(stmt) if is_compound(stmt) else set()
    found = [(p, call) for p, call, statement in call_changes(stmt, ctx.modules) if not statement]
    aliases = _plain_aliases(ctx.files[0])
    if _switch_roots(stmt) is None:  # a switch through an alias: the switches' rule
        if isinstance(stmt, ast.AugAssign) and isinstance(stmt.target, ast.Name):
            found += [(r, stmt) for r in _held({stmt.target.id}, aliases)]
        for p, call, _ in call_changes(stmt, ctx.modules):
            holder = f"{_root(p)}.backward" if _backward(call) else _root(p)
            found += [(r, call) for r in _held({holder}, aliases)]
    found = [
        (p, call)
        for p, call in found
        if _root(p) not in own and (ctx.fresh is None or _root(p) not in ctx.fresh)
    ]
    if not found:
        return []
    # the object the statement reads first (``opt`` for ``sched.step()``, not the ``net`` it holds)
    path, call = min(found, key=lambda f: not relevant(frozenset(), frozenset({f[0]}), needed))
    root = _root(path)
    code = ast.unparse(call).splitlines()[0]
    line = getattr(call, "lineno", stmt.lineno)
    how, held = f"changes {root} in place", f"{root} as the old run held it"
    if isinstance(call, ast.Call) and _backward(call):
        how = f"adds to the gradients of what {ast.unparse(call.func)[: -len('.backward')]} was"
        how += " computed from"
        held = "the gradients the old run had"
    return [
        f"today's code {how} before it ({code}, line {line}) where the old version does not: "
        "carried, the change would alter the old run (its later iterations would not be the "
        f"recorded ones); left behind, the statement would read {held}"
    ]


def _new_changes_inside(new: ast.stmt, old: ast.stmt, needed: set[str], ctx: _Context) -> set[str]:
    """The needed names that a statement new inside ``new``, a compound statement aligned with
    ``old``, changes in place (``dropped = buf.pop(0)`` added inside the old step loop, which
    already changed ``buf`` with ``buf.append(x)``: compared as a whole, the two loops change
    the same names)."""
    out: set[str] = set()
    for new_block, old_block, pairs in _aligned_bodies(new, old, ctx):
        for j, stmt in enumerate(new_block.stmts):
            if id(stmt) in ctx.skip:
                continue
            if j in pairs:
                if is_compound(stmt):
                    out |= _new_changes_inside(stmt, old_block.stmts[pairs[j]], needed, ctx)
                continue
            # (direct changes only: through a holder, a statement only moved or renamed since,
            # as ``opt.zero_grad()`` or ``batch_loss.backward()``, would seem to change the
            # model: the old step loop does the same under other names, sweep S's corpus)
            updates = frozenset(p for p, _, _ in call_changes(stmt, ctx.modules))
            out |= {n for n in needed if relevant(frozenset(), updates, {n})}
    return out


def _same_modes(
    block: Block, k: int, old: Block, old_k: int, needed: set[str], ctx: _Context
) -> None:
    """Raise :class:`Uncarried` where statement ``k`` of ``block``, the old version's own code
    (aligned with statement ``old_k`` of ``old``), gives the statement a needed name by running
    a module that today's code switches to another mode before it than the old version did
    (``net.eval()`` added before the old ``va = accuracy(net(X), Y)``, or inside the old ``with
    torch.no_grad():`` around it): placed, today's statement would read the value the old
    version computed in the old mode (dropout on), not the one today's code computes, silently
    (until session 31). Modes are followed back through the blocks around the statement up to
    its function, the last switch of the module before it deciding (none: training mode)."""
    if ctx.files is None:
        return
    stmt = block.stmts[k]
    kills, updates = changes(stmt, ctx.fresh, ctx.modules)
    if not relevant(kills, updates, needed):
        return
    new_file, old_file = ctx.files
    for root in sorted(_switched_roots(new_file, ctx) | _switched_roots(old_file, ctx)):
        if not _runs_module(stmt, root):
            continue
        today = _mode_at(block, k, new_file, root)
        before = _mode_at(old, old_k, old_file, root)
        if today != before:
            name = sorted(n for n in needed if relevant(kills, updates, {n}))[0]
            raise Uncarried(
                f"it reads {name}, which the old version's own code computes running {root} "
                f"({_first_line(stmt)}, line {stmt.lineno}); today's code runs it in "
                f"{today} mode there, the old version in {before} mode: placed, the statement "
                "would log the value the old mode gives, not the one today's code computes "
                f"(compute the value in the statement itself, right after today's switch of "
                f"{root} in the same block: the switch then travels with it)"
            )


def _aligned_bodies(
    new: ast.stmt, old: ast.stmt, ctx: _Context
) -> list[tuple[Block, Block, dict[int, int]]]:
    """Each body of ``new``, a compound statement aligned with ``old``, with the old one's
    matching body and their :func:`alignment`; none where the two differ in shape."""
    if ctx.files is None or type(new) is not type(old):
        return []
    new_bodies, old_bodies = _bodies_of(new), _bodies_of(old)
    if len(new_bodies) != len(old_bodies):
        return []
    new_file, old_file = ctx.files
    out = []
    for body, other in zip(new_bodies, old_bodies, strict=True):
        if body and other:
            new_block, old_block = new_file.home(body[0])[0], old_file.home(other[0])[0]
            out.append((new_block, old_block, alignment(new_block, old_block, ctx.skip)))
    return out


def _same_modes_inside(new: ast.stmt, old: ast.stmt, needed: set[str], ctx: _Context) -> None:
    """:func:`_same_modes` for the statements inside ``new``, a compound statement aligned with
    ``old``, that give a needed name."""
    for new_block, old_block, pairs in _aligned_bodies(new, old, ctx):
        for j, stmt in enumerate(new_block.stmts):
            if j not in pairs or id(stmt) in ctx.skip:
                continue
            if is_compound(stmt):
                if relevant(*changes(stmt, ctx.fresh, ctx.modules), needed):
                    _same_modes_inside(stmt, old_block.stmts[pairs[j]], needed, ctx)
            else:
                _same_modes(new_block, j, old_block, pairs[j], needed, ctx)


#: :func:`_switched_roots` per parsed file, across placements and calls (session 45: it was
#: 63% of propagating 3 statements into 20 versions, computed again for each statement and
#: each version's placement of the same latest file)
_SWITCHED: weakref.WeakKeyDictionary[ast.AST, frozenset[str]] = weakref.WeakKeyDictionary()
_SWITCH_CALL = re.compile(r"\.\s*(?:eval|train)\s*\(")


def _switched_roots(src: SourceFile, ctx: _Context) -> frozenset[str]:
    """The names whose modules some statement of ``src`` switches (``net`` for ``net.eval()``)."""
    got = ctx.switched.get(id(src))
    if got is None:
        got = _SWITCHED.get(src.tree)
    if got is None:
        roots: set[str] = set()
        if _SWITCH_CALL.search(src.text):  # no ``.eval(`` or ``.train(``: nothing switches
            for node in src.nodes:
                if isinstance(node, ast.stmt) and not is_compound(node):
                    switch = _switch_roots(node)
                    if switch is not None:
                        roots |= switch[0]
        got = _SWITCHED[src.tree] = frozenset(roots)
    ctx.switched[id(src)] = got
    return got


def _mode_at(block: Block, k: int, src: SourceFile, root: str) -> str:
    """The mode ``root``'s module is in when statement ``k`` of ``block`` runs, as the code
    before it in its function says: the last switch before it, in that block and the blocks
    around it ("training" where there is none: a module starts in training mode; "another"
    where branches disagree)."""
    while True:
        for stmt in reversed(block.stmts[:k]):
            mode = _last_mode(stmt, root)
            if mode is not None:
                return mode
        if id(block) not in src.parents:
            return "training"
        block, k = src.parents[id(block)]
        if isinstance(block.stmts[k], _SCOPES):
            return "training"


def _last_mode(stmt: ast.stmt, root: str) -> str | None:
    """The mode ``stmt`` leaves ``root``'s module in (None: it switches none)."""
    if isinstance(stmt, _SCOPES):
        return None
    if not is_compound(stmt):
        switch = _switch_roots(stmt)
        return switch[1] if switch is not None and root in switch[0] else None
    modes = []
    for body in _bodies_of(stmt):
        mode = None
        for inner in reversed(body):
            mode = _last_mode(inner, root)
            if mode is not None:
                break
        modes.append(mode)
    if all(m is None for m in modes):
        return None
    if isinstance(stmt, ast.If | ast.Try | ast.TryStar | ast.Match):  # one branch runs
        return modes[0] if len(set(modes)) == 1 else "another"
    return next(m for m in reversed(modes) if m is not None)  # a loop's, a with's body


def _renamed_back(
    block: Block,
    old: Block,
    kills: frozenset[str],
    updates: frozenset[str],
    needed: set[str],
    ctx: _Context,
) -> dict[str, str]:
    """Old name -> today's, for the needed names that today's compound statement changes and
    the old one does not, where the old version renamed them (``ctx.renamed``)."""
    if ctx.renamed is None:
        return {}
    back: dict[str, str] = {}
    for name in sorted({_root(n) for n in needed if relevant(kills, updates, {n})}):
        was = ctx.renamed(block, old, name)
        if was is not None:
            back[was] = name
    return back


def _swapped(path: str, back: dict[str, str]) -> str:
    """``path`` with its root name replaced as ``back`` says."""
    root, dot, rest = path.partition(".")
    return back.get(root, root) + dot + rest


def _rewrites(
    stmt: ast.stmt,
    kills: frozenset[str],
    old: ast.stmt,
    needed: set[str],
    ctx: _Context,
) -> bool:
    """Whether ``stmt``, binding ``kills``, binds a ``needed`` name that ``old``, the old
    statement aligned with it, does not: a bare call (``gn = clip(...)`` for ``clip(...)``), or
    the same assignment where the old version threw that value away (``l, gn, out = step()``
    for ``l, _, out = step()``: :func:`filled_discards`). Another old assignment is not: its
    name is renamed, or is the old version's own code; nor are changes in place
    (``loss.backward()`` aligned with ``batch_loss.backward()`` is a renamed name's)."""
    if isinstance(old, ast.Expr):
        return relevant(kills - changes(old, ctx.fresh, ctx.modules)[0], frozenset(), needed)
    if ctx.files is None:
        return False
    return relevant(filled_discards(stmt, old, ctx.files[1]), frozenset(), needed)


def filled_discards(new: ast.stmt, old: ast.stmt, old_file: SourceFile) -> frozenset[str]:
    """The names ``new`` binds where ``old``, the same assignment (one target of the same
    shape, the same value verbatim), binds a name the old file never reads: ``gn`` in ``l, gn,
    out = step()`` for ``l, _, out = step()``. Empty where the two differ otherwise (a name
    the old file reads in a place of the target is a rename, not a value thrown away).

    A thrown-away name is one written as a throw-away (``_``, ``_x``) or bound nowhere else in
    the old file: an old name bound again elsewhere is a rename today's code reads (``a, b_old
    = 1, 2`` then ``b_old = f(a)`` at the end of each epoch, where today's ``if b % 2 == 0``
    reads the ``b`` of that later line: filling ``b`` from the first line read 2 every epoch,
    silently; found by tests/test_propagate_differential.py's renames).

    Example:
        >>> from florsql.propagate.source import analyze
        >>> s = lambda code: ast.parse(code).body[0]
        >>> old = analyze("l, _, out = step()")
        >>> sorted(filled_discards(s("l, gn, out = step()"), old.tree.body[0], old))
        ['gn']
        >>> sorted(filled_discards(s("l, gn, out = step(2)"), old.tree.body[0], old))
        []
    """
    read = old_file.read_names
    old_binds = old_file.binding_counts
    if (
        read is None
        or not isinstance(new, ast.Assign)
        or not isinstance(old, ast.Assign)
        or len(new.targets) != 1
        or len(old.targets) != 1
        or ast.unparse(new.value) != ast.unparse(old.value)
    ):
        return frozenset()
    filled: set[str] = set()

    def pair(a: ast.expr, b: ast.expr) -> bool:
        if isinstance(a, ast.Name) and isinstance(b, ast.Name):
            if a.id != b.id:
                if b.id in read:
                    return False
                if not b.id.startswith("_") and old_binds.get(b.id, 0) != 1:
                    return False  # bound again elsewhere: a rename, not a throw-away
                filled.add(a.id)
            return True
        if isinstance(a, ast.Tuple | ast.List) and type(a) is type(b):
            elts = b.elts
            return len(a.elts) == len(elts) and all(
                pair(x, y) for x, y in zip(a.elts, elts, strict=True)
            )
        if isinstance(a, ast.Starred) and isinstance(b, ast.Starred):
            return pair(a.value, b.value)
        return ast.dump(a) == ast.dump(b)

    if not pair(new.targets[0], old.targets[0]):
        return frozenset()
    return frozenset(filled)


def _bodies_of(stmt: ast.stmt) -> list[list[ast.stmt]]:
    """The statement lists of a compound statement, in a fixed order (for pairing)."""
    if isinstance(stmt, ast.Try | ast.TryStar):
        return [stmt.body, *(h.body for h in stmt.handlers), stmt.orelse, stmt.finalbody]
    if isinstance(stmt, ast.Match):
        return [c.body for c in stmt.cases]
    return [getattr(stmt, "body", []), getattr(stmt, "orelse", [])]


def _carry_body(
    body: list[ast.stmt], other: list[ast.stmt], names: set[str], ctx: _Context
) -> tuple[list[Nested], set[str]]:
    """What changes ``names`` in ``body`` (a block of a compound statement today) carried into
    ``other``, its old counterpart: placements, and what they need from before the block."""
    assert ctx.files is not None
    new_block, old_block = ctx.files[0].home(body[0])[0], ctx.files[1].home(other[0])[0]
    pairs = alignment(new_block, old_block, ctx.skip)
    chosen, deeper, need = _carry(
        new_block, 0, len(new_block.stmts), set(names), old_block, pairs, ctx
    )
    placements = [Nested(new_block, old_block, tuple(chosen))] if chosen else []
    return [*placements, *deeper], need


def _into(
    new: ast.stmt, old: ast.stmt, names: set[str], ctx: _Context
) -> tuple[list[Nested], set[str]]:
    """Carry what assigns ``names`` inside ``new`` into ``old``, its counterpart: placements
    per inner block, and the names those statements need from before the compound one."""

    def refuse() -> Uncarried:
        return Uncarried(
            f"it reads {sorted(names)[0]}, which today's code changes inside a block the old "
            f"version has (line {new.lineno}), in a shape the old block does not have"
        )

    new_bodies, old_bodies = _bodies_of(new), _bodies_of(old)
    if ctx.files is None or type(new) is not type(old) or len(new_bodies) != len(old_bodies):
        raise refuse()
    placements: list[Nested] = []
    outside: set[str] = set()
    want = set(names)
    # later blocks first: what a loop's ``else:`` (or a ``finally:``) needs, its body gives
    for body, other in reversed(list(zip(new_bodies, old_bodies, strict=True))):
        inner = {
            n for n in want if any(relevant(*changes(s, ctx.fresh, ctx.modules), {n}) for s in body)
        }
        if not inner:
            continue
        if not other:
            raise refuse()
        got, need = _carry_body(body, other, inner, ctx)
        placements += got
        outside |= need
        want |= need
    if not placements:
        raise refuse()
    return placements, outside


def _targets(stmt: ast.stmt) -> frozenset[str]:
    """The names a ``for``/``with`` header binds (the loop variable, ``as`` names)."""
    out: set[str] = set()
    if isinstance(stmt, (ast.For, ast.AsyncFor)):
        out |= {n.id for n in ast_nodes(stmt.target) if isinstance(n, ast.Name)}
    if isinstance(stmt, (ast.With, ast.AsyncWith)):
        for item in stmt.items:
            if item.optional_vars is not None:
                out |= {n.id for n in ast_nodes(item.optional_vars) if isinstance(n, ast.Name)}
    return frozenset(out)


def may_carry(
    block: Block, index: int, skip: frozenset[int] | set[int], src: SourceFile | None = None
) -> list[ast.stmt]:
    """Every statement :func:`carried` may carry with statement ``index`` into some old version
    (it carries those the old block lacks): a superset, found from the new file alone, in
    source order. ``skip`` holds ids of statements never carried (log statements). Inside a
    compound statement holding florsql calls (the step loop), the statements that assign a
    needed name count (``total += loss.item()``), with what they need there; with ``src``, so
    do those of the enclosing blocks of the same function (``running = 0.0`` before the loop)."""
    first = set(read_paths(block.stmts[index]))
    if src is not None:  # the flor module travels by its own rule
        first = {n for n in first if _root(n) not in src.aliases}
    chosen, needed = _may_carry(block.stmts[:index], first, skip)
    at = index
    while src is not None:
        if _loop_body(block, src):
            tail, also = _may_carry(block.stmts[at + 1 :], set(needed), skip)
            chosen += tail
            needed |= also
        if not needed or id(block) not in src.parents:
            break
        block, at = src.parents[id(block)]
        head = block.stmts[at]
        if isinstance(head, _SCOPES):
            break
        more, needed = _may_carry(
            block.stmts[:at], {n for n in needed if _root(n) not in _targets(head)}, skip
        )
        chosen[:0] = more
    return chosen


def _may_carry(
    stmts: list[ast.stmt], needed: set[str], skip: frozenset[int] | set[int]
) -> tuple[list[ast.stmt], set[str]]:
    chosen: list[ast.stmt] = []
    for stmt in reversed(stmts):
        if id(stmt) in skip:
            continue
        kills, updates = changes(stmt)
        if not relevant(kills, updates, needed):
            continue
        if is_compound(stmt):
            if not _flor_calls(stmt):
                chosen.append(stmt)
                needed |= read_paths(stmt)
                continue
            want = {n for n in needed if relevant(kills, updates, {n})}
            for body in reversed(_bodies_of(stmt)):
                inside, more = _may_carry(body, set(want), skip)
                chosen.extend(reversed(inside))
                more = {n for n in more if _root(n) not in _targets(stmt)}
                needed |= more
                want |= more
            continue
        kill(needed, kills)
        chosen.append(stmt)
        needed |= read_paths(stmt)
    return chosen[::-1], needed
