"""A log statement's conditions: what decides, inside one iteration of its loop, whether it runs.

From the body of the innermost ``flor.loop`` around the statement (else of its function, else
the module) down to it: each guard it sits in (``if epoch % 3 == 0``, ``else of if do_eval``,
``while ...``, ``for x in xs``, ``try``, ``except KeyError``, ``case 1``, a ``with
contextlib.suppress(...)``) and each statement before it in those blocks that may leave early
(``skip if epoch < warmup: continue``). Two statements with the same conditions, in the same
place, run in the same iterations of a run; today's statement under other conditions than an
old version's may log in iterations where the old one did not (session 53: ``if epoch % 3 ==
0`` today, ``if epoch % 2 == 0`` in the version, and the run's epoch 3 stayed NULL, said
nowhere). A plain ``with`` and a ``finally`` guard nothing; an ``if __name__ == "__main__":``
neither.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Callable
from functools import lru_cache
from typing import TYPE_CHECKING

from florsql.propagate.source import tree_nodes, walk

if TYPE_CHECKING:
    from florsql.propagate.source import SourceFile

__all__ = [
    "Conditions",
    "Ref",
    "bound_text",
    "conditions",
    "conditions_in",
    "known",
    "leaves_early",
    "main_guard",
    "named",
    "outermost_function",
    "parents_of",
    "refs_of",
    "skip_label",
]

Conditions = tuple[str, ...]

#: A name a guard reads from another module: ``(dotted module, level, attribute path)`` as
#: the import is written (``from config import EVERY``: ``("config", 0, ("EVERY",))``;
#: ``import config`` read as ``config.EVERY``: the same; ``from . import conf`` read as
#: ``conf.EVERY``: ``("", 1, ("conf", "EVERY"))``; the path is empty for the module as a
#: whole; level -1 for a file the guard reads by its name, ``open("config.json")``: ``("",
#: -1, ("config.json",))``). Conditions are one file's; what such a name is bound to in each
#: version is the caller's to compare (:func:`florsql.propagate.modules.guard_modules_differ`,
#: session 55).
Ref = tuple[str, int, tuple[str, ...]]

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_LOOPS = (ast.For, ast.AsyncFor, ast.While)
_BLOCKS = ("body", "orelse", "finalbody", "handlers", "cases")


def leaves_early(stmt: ast.stmt) -> bool:
    """Whether ``stmt`` may leave the block around it early (a ``break``/``continue`` of the
    loop around it, a ``return``), nested loops and functions aside for what they hold of
    their own."""

    def visit(node: ast.AST, in_loop: bool) -> bool:
        if isinstance(node, _SCOPES) and node is not stmt:
            return False
        if isinstance(node, ast.Return):
            return True
        if isinstance(node, ast.Break | ast.Continue):
            return not in_loop
        if isinstance(node, _LOOPS):
            return any(visit(c, True) for c in node.body) or any(
                visit(c, in_loop) for c in (node.orelse or [])
            )
        return any(visit(c, in_loop) for c in ast.iter_child_nodes(node))

    if isinstance(stmt, _SCOPES):
        return False
    return visit(stmt, False)


def main_guard(node: ast.If) -> bool:
    """``if __name__ == "__main__":`` (either side), with no ``else`` branch taken."""
    test = node.test
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1):
        return False
    if not isinstance(test.ops[0], ast.Eq):
        return False
    sides = [test.left, test.comparators[0]]
    names = [s for s in sides if isinstance(s, ast.Name) and s.id == "__name__"]
    main = [s for s in sides if isinstance(s, ast.Constant) and s.value == "__main__"]
    return len(names) == 1 and len(main) == 1


def _suppresses(item: ast.withitem) -> bool:
    """A context manager that may swallow an exception by its look (``suppress(...)``,
    ``contextlib.suppress``): the rest of its block may not run."""
    func = item.context_expr.func if isinstance(item.context_expr, ast.Call) else None
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name == "suppress"


def conditions(
    tree: ast.Module,
    stmt: ast.stmt,
    flor_loop: Callable[[ast.AST], bool],
    depth: int = 0,
    calls: bool = True,
    sink: set[Ref] | None = None,
) -> Conditions | None:
    """``stmt``'s conditions (see the module's notes), outermost first. In a function's body
    outside every ``flor.loop`` of it (a helper), those of its calls by name, which must all
    have the same, followed by its own (4 calls deep); None where they cannot be told (no
    call found, calls under different conditions, a function decorated otherwise than by
    ``torch.no_grad()`` and its kin, a method whose name another function of the file also
    has or that Python calls itself, ``forward`` and dunders) or ``stmt`` is not in ``tree``.
    ``flor_loop`` tells a ``for`` statement over ``flor.loop(...)``. ``sink`` gathers what the
    guards read from other modules (:data:`Ref`; their texts are the caller's to compare)."""
    parents = _parents(tree)
    out: list[str] = []
    node: ast.AST = stmt
    while True:
        parent = parents.get(id(node))
        if parent is None:
            return tuple(reversed(out)) if node is tree else None
        if isinstance(parent, ast.FunctionDef | ast.AsyncFunctionDef):
            if any(c is node for c in parent.body):  # (an early ``return`` in its body,
                # session 55: ``if epoch % 2 != 0: return`` before the statement was no
                # condition, and a changed one left the run's new iterations NULL)
                before = parent.body[: next(i for i, c in enumerate(parent.body) if c is node)]
                out += [
                    f"skip {ast.unparse(s)}{_bound(tree, s, sink)}"
                    for s in reversed(before)
                    if leaves_early(s)
                ]
            if not calls:  # (its own only: where its calls run is not asked)
                return ("in " + parent.name + "()", *reversed(out))
            outer = _calls_conditions(tree, parent, flor_loop, depth, sink)
            return None if outer is None else outer + tuple(reversed(out))
        if isinstance(parent, _SCOPES):
            return None
        field = next(
            (f for f in _BLOCKS if any(c is node for c in getattr(parent, f, None) or [])), None
        )
        if field is None:
            return None  # an expression's part: not a statement of a block
        block = getattr(parent, field)
        before = block[: next(i for i, c in enumerate(block) if c is node)]
        if field not in ("handlers", "cases"):  # (other handlers and cases are not before it)
            out += [
                f"skip {ast.unparse(s)}{_bound(tree, s, sink)}"
                for s in reversed(before)
                if leaves_early(s)
            ]
        if isinstance(parent, ast.Module):
            return tuple(reversed(out))
        if field == "body" and flor_loop(parent):
            return tuple(reversed(out))
        label = _label(parent, field, node)
        if label:
            test = getattr(parent, "test", None)
            out.append(label + (_bound(tree, test, sink) if test is not None else ""))
        node = parent


def bound_text(tree: ast.Module, node: ast.AST, sink: set[Ref] | None = None) -> str:
    """What the names ``node`` reads are bound to by the file, as a guard's are in its
    conditions (`` [name = ...]``; ``sink`` gathers what they read from other modules)."""
    return _bound(tree, node, sink)


def skip_label(tree: ast.Module, stmt: ast.stmt) -> str:
    """The condition an early exit ``stmt`` before a statement puts on it."""
    return f"skip {ast.unparse(stmt)}{_bound(tree, stmt)}"


def parents_of(tree: ast.Module) -> dict[int, ast.AST]:
    """Each node of ``tree`` by id -> its parent (memoized per tree)."""
    return _parents(tree)


@lru_cache(maxsize=16)
def _parents(tree: ast.Module) -> dict[int, ast.AST]:
    # one pass over the fields (ast.walk with iter_child_nodes took three times as long, the
    # most of propagating into 100 versions); expression contexts (``Load``: shared leaves,
    # no parent of their own) left out
    parents: dict[int, ast.AST] = {}
    walk(tree, parents)
    return parents


def _calls_conditions(
    tree: ast.Module,
    fn: ast.FunctionDef | ast.AsyncFunctionDef,
    flor_loop: Callable[[ast.AST], bool],
    depth: int,
    sink: set[Ref] | None = None,
) -> Conditions | None:
    """The conditions every call of ``fn`` by name runs under (None: unknown, or not one)."""
    parents = _parents(tree)
    if depth >= 4 or not all(map(_plain_decorator, fn.decorator_list)):
        return None
    if isinstance(parents.get(id(fn)), ast.ClassDef) and not _named_method(tree, fn):
        if not _called_elsewhere(tree, fn):
            return None
        return (f"{ELSEWHERE} {fn.name}()",)  # (its calls are all in other files)
    found: set[Conditions | None] = set()
    for call in ast.walk(tree):
        if not isinstance(call, ast.Call):
            continue
        func = call.func
        name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if name != fn.name:
            continue
        at: ast.AST = call
        while not isinstance(at, ast.stmt):
            up = parents.get(id(at))
            if up is None:
                break
            at = up
        inside = at
        while inside is not None and inside is not fn:
            inside = parents.get(id(inside))  # type: ignore[assignment]
        if inside is fn or not isinstance(at, ast.stmt):
            continue  # a recursive call
        found.add(conditions(tree, at, flor_loop, depth + 1, sink=sink))
    if not found and _called_elsewhere(tree, fn):
        return (f"{ELSEWHERE} {fn.name}()",)
    if len(found) != 1:
        return None
    return found.pop()


#: The first condition of a statement in a module's function that its own file never names:
#: its calls are in other files, unknown here, and its own guards still count (session 54: a
#: helper of ``utils.py`` guarding its ``flor.log`` by ``if epoch % 2 == 0``, ``% 3`` today,
#: had no conditions, and the run's epoch 3 stayed NULL, said nowhere). Equal such
#: conditions tell nothing of where the calls run (:func:`known`).
ELSEWHERE = "called from other files:"


def known(found: Conditions | None) -> bool:
    """Whether ``found`` tells where the statement runs, its calls included."""
    return found is not None and not any(c.startswith(ELSEWHERE) for c in found)


def _called_elsewhere(tree: ast.Module, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A function of the module's top level, or a method of one of its classes, that nothing
    in its file names (no call, no reference, no string): what calls it is in another file
    (session 55: ``Trainer.validate`` of ``trainer.py``, called from ``train.py`` under a
    guard changed there, had no conditions, and the run's new iterations stayed NULL)."""
    parents = _parents(tree)
    owner = parents.get(id(fn))
    if isinstance(owner, ast.ClassDef) and parents.get(id(owner)) is tree:
        # (Python's own calls aside: ``forward`` through ``net(x)``, dunders; two classes
        # of the file may share the name, their calls being elsewhere all the same)
        dunder = fn.name.startswith("__") and fn.name.endswith("__")
        return fn.name != "forward" and not dunder and not named(tree, fn.name)
    return owner is tree and not named(tree, fn.name)


def named(tree: ast.Module, name: str) -> bool:
    """Whether ``tree`` names ``name`` anywhere but a definition's own name: a name, an
    attribute or a string (``getattr(m, "evaluate")``, ``__all__``)."""
    return name in _names(tree)


@lru_cache(maxsize=16)
def _names(tree: ast.Module) -> frozenset[str]:
    out: set[str] = set()
    for n in tree_nodes(tree):
        if isinstance(n, ast.Name):
            out.add(n.id)
        elif isinstance(n, ast.Attribute):
            out.add(n.attr)
        elif isinstance(n, ast.Constant) and isinstance(n.value, str):
            out.add(n.value)
    return frozenset(out)


def outermost_function(
    tree: ast.Module, node: ast.AST
) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The outermost function around ``node``; None where there is none or a class is
    around it."""
    parents = _parents(tree)
    fn = None
    at = parents.get(id(node))
    while at is not None:
        if isinstance(at, ast.ClassDef):
            return None
        if isinstance(at, ast.FunctionDef | ast.AsyncFunctionDef):
            fn = at
        at = parents.get(id(at))
    return fn


#: Decorators that leave where a function runs to its calls (session 54: an ``@torch.no_grad()``
#: evaluation called under ``if epoch % 2 == 0:`` had no conditions, and a guard changed to
#: ``% 3`` left the run's epoch 3 NULL, said nowhere).
_PLAIN_DECORATORS = frozenset(
    {"no_grad", "inference_mode", "enable_grad", "staticmethod", "classmethod", "wraps"}
)


def _plain_decorator(node: ast.expr) -> bool:
    func = node.func if isinstance(node, ast.Call) else node
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name in _PLAIN_DECORATORS


def _named_method(tree: ast.Module, fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """A method its calls name: not one Python calls itself (``forward`` through
    ``net(x)``, dunders), and no other function of the file has its name (``t.validate(e)``
    and ``self.validate(e)`` then call it)."""
    if fn.name == "forward" or (fn.name.startswith("__") and fn.name.endswith("__")):
        return False
    return _function_names(tree).count(fn.name) == 1


@lru_cache(maxsize=16)
def _function_names(tree: ast.Module) -> tuple[str, ...]:
    return tuple(
        n.name for n in tree_nodes(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)
    )


def _bound(tree: ast.Module, node: ast.AST, sink: set[Ref] | None = None) -> str:
    """What the names a guard reads are bound to by the file (transitively, 10 deep;
    ``flor.arg`` by its name only: the run's value is recorded), as `` [name = ...]``: ``if
    do_eval:`` with ``do_eval = epoch % 2 == 0`` is not the same guard as with ``% 3`` (sweep
    AA, session 53). Bound by: assignments; a function's parameter (its default and the
    calls of its function: ``def train(every=2)``); an argparse option read as an attribute
    (``args.every``: the ``add_argument("--every", ...)`` call). Session 54: chains longer
    than 3, parameter defaults and argparse defaults were left out, and a changed one left
    the run's new iterations NULL, said nowhere. A name bound by an import goes into ``sink``
    (:data:`Ref`) where one is given; its text here is the import's."""
    binds, options, members = _binds(tree), _options(tree), _members(tree)
    imports, stars = _imports(tree)
    seen: set[tuple[str, int]] = set()
    texts: set[str] = set()
    todo = {(name, node) for name in _read(node)}
    visited: dict[int, ast.AST] = {id(node): node}
    for _ in range(10):
        more: set[tuple[str, ast.AST]] = set()
        for name, at in sorted(todo, key=lambda t: (t[0], id(t[1]))):
            scope = _scope_of(tree, at)
            if (name, id(scope)) in seen:
                continue
            seen.add((name, id(scope)))
            keys = _keys_read(name, at)
            for stmt in binds.get(name, []):
                part = _dict_entries(stmt, keys) if keys else None
                if part is not None:  # (only the keys read: ``CFG["every"]``, sweep AD)
                    texts.add(f"{name}{part[0]}")
                    more |= {(n, stmt) for v in part[1] for n in _read(v)}
                    continue
                visited[id(stmt)] = stmt
                texts.add(_binding_text(stmt))
                value = getattr(stmt, "value", None)
                if value is not None and not _flor_arg(value):
                    more |= {(n, stmt) for n in _read(value)}
            params = _params(tree, at)
            for text, bound in (*params.get(name, ()), *options.get(name, ())):
                visited[id(bound)] = bound
                texts.add(text)
                more |= {(n, bound) for n in _read(bound) - _callee(bound)}
            for text, bound in members.get(name, ()):
                visited[id(bound)] = bound
                texts.add(text)
                more |= {(n, bound) for n in _read(bound)}
            if name in imports:  # (the module it comes from: ``from hparams import EVERY``
                # for ``from config import EVERY`` is another guard, session 55)
                module, level, path = imports[name]
                texts.add(f"{name} from {'.' * level}{module}{''.join('.' + p for p in path)}")
            if sink is not None and not name.startswith("."):
                _refs(name, at, imports, stars, binds, members, sink)
        todo = more
    if sink is not None:  # files named by what it reads (``open("config.json")``)
        sink.update(
            ("", -1, (c.value,))
            for n in visited.values()
            for c in ast.walk(n)
            if isinstance(c, ast.Constant) and isinstance(c.value, str) and _file_like(c.value)
        )
    return f" [{'; '.join(sorted(texts))}]" if texts else ""


#: Files a guard may read whose text is compared per version (a tracked config file).
_CONFIG_SUFFIXES = (".json", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".conf", ".txt")


def _file_like(text: str) -> bool:
    return (
        len(text) < 256
        and not any(c.isspace() for c in text)
        and text.lower().endswith(_CONFIG_SUFFIXES)
    )


def _refs(
    name: str,
    at: ast.AST,
    imports: dict[str, tuple[str, int, tuple[str, ...]]],
    stars: tuple[tuple[str, int], ...],
    binds: dict[str, list[ast.stmt]],
    members: dict[str, list[tuple[str, ast.AST]]],
    sink: set[Ref],
) -> None:
    """Into ``sink``: the :data:`Ref` of ``name`` as read at ``at``, where an import binds
    it (its attributes read there lengthen the path: ``config.EVERY``), or where nothing of
    the file binds it and a star import may (``from config import *``)."""
    if name in imports:
        module, level, path = imports[name]
        tails: set[tuple[str, ...]] = {()} if not path else set()
        for n in ast.walk(at):
            if isinstance(n, ast.Name) and n.id == name:
                tails.add(())
        for n in ast.walk(at):
            chain: list[str] = []
            a: ast.AST = n
            while isinstance(a, ast.Attribute):
                chain.append(a.attr)
                a = a.value
            if isinstance(a, ast.Name) and a.id == name and chain:
                tails.discard(())
                tails.add(tuple(reversed(chain))[:2])
            if (  # (a constant key read of an imported dict: ``CFG["every"]``)
                isinstance(n, ast.Subscript)
                and isinstance(n.value, ast.Name)
                and n.value.id == name
                and isinstance(n.slice, ast.Constant)
                and path
            ):
                tails.discard(())
                tails.add((f"[{n.slice.value!r}]",))
        for tail in tails or {()}:
            sink.add((module, level, path + tail))
    elif stars and name not in binds and name not in members and name not in _BUILTINS:
        sink.update((module, level, (name,)) for module, level in stars)


_BUILTINS = frozenset(dir(__import__("builtins")))


@lru_cache(maxsize=16)
def _imports(
    tree: ast.Module,
) -> tuple[dict[str, tuple[str, int, tuple[str, ...]]], tuple[tuple[str, int], ...]]:
    """The file's names bound by imports (name -> module, level, path of the name in it:
    ``import a.b`` binds ``a``, the module ``a``; ``from a import b as c`` binds ``c``,
    ``("a", 0, ("b",))``) and its star imports."""
    out: dict[str, tuple[str, int, tuple[str, ...]]] = {}
    stars: list[tuple[str, int]] = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            for a in n.names:
                if a.asname:
                    out.setdefault(a.asname, (a.name, 0, ()))
                else:
                    top = a.name.split(".")[0]
                    out.setdefault(top, (top, 0, ()))
        elif isinstance(n, ast.ImportFrom):
            for a in n.names:
                if a.name == "*":
                    stars.append((n.module or "", n.level))
                else:
                    out.setdefault(a.asname or a.name, (n.module or "", n.level, (a.name,)))
    return out, tuple(stars)


def refs_of(tree: ast.Module, name: str, key: str | None = None) -> tuple[str, frozenset[Ref]]:
    """What ``tree`` (another module) binds ``name`` to, as :func:`_bound`'s text (its
    assignments, a function or class of that name, transitively), and what that reads from
    other modules in turn; ``key`` (``"['every']"``): only that key of a dict literal."""
    sink: set[Ref] = set()
    read: ast.expr = ast.Name(id=name, ctx=ast.Load())
    if key is not None and key.startswith("[") and key.endswith("]"):
        try:
            constant = ast.literal_eval(key[1:-1])
        except (ValueError, SyntaxError):
            constant = None
        if constant is not None:
            read = ast.Subscript(value=read, slice=ast.Constant(constant), ctx=ast.Load())
    text = _bound(tree, read, sink)
    for fn in ast.walk(tree):
        if isinstance(fn, ast.ClassDef) and fn.name == name:
            text += " " + _text_without_logs(fn)
            _bound(tree, fn, sink)
    return text, frozenset(sink)


def _scope_of(tree: ast.Module, node: ast.AST) -> ast.AST:
    """The innermost function around ``node`` (the module where none)."""
    parents = _parents(tree)
    at = parents.get(id(node))
    while at is not None and not isinstance(at, ast.FunctionDef | ast.AsyncFunctionDef):
        at = parents.get(id(at))
    return at if at is not None else tree


def _log_call(stmt: ast.stmt) -> bool:
    """Whether ``stmt`` is a call of a ``log`` method as a statement, changing nothing a
    guard reads (``flor.log("acc", acc)``, Lightning's ``self.log(...)``, ``logger.log``; not
    one writing into an ``out=`` argument: ``np.log(a, out=a)``)."""
    if not isinstance(stmt, ast.Expr) or not isinstance(stmt.value, ast.Call):
        return False
    call = stmt.value
    return (
        isinstance(call.func, ast.Attribute)
        and call.func.attr == "log"
        and not any(k.arg == "out" for k in call.keywords)
    )


def _text_without_logs(node: ast.AST) -> str:
    """``node``'s text without its log statements (:func:`_log_call`): a function a guard
    reads (``val_loss = self.evaluate()`` before ``if self.bad >= patience: break``) is the
    same function in a version without today's ``flor.log`` in it. Session 59 (sweep AO):
    with them, a query of a recorded column logged under such a guard warned, at length, that
    the old version had today's very statement under other conditions."""
    if not any(isinstance(s, ast.stmt) and _log_call(s) for s in ast.walk(node)):
        return ast.unparse(node)
    node = copy.deepcopy(node)
    for n in ast.walk(node):
        for field in ("body", "orelse", "finalbody"):
            stmts = getattr(n, field, None)
            if isinstance(stmts, list) and any(isinstance(s, ast.stmt) for s in stmts):
                kept = [s for s in stmts if not _log_call(s)]
                setattr(n, field, kept or [ast.Pass()])
    return ast.unparse(node)


@lru_cache(maxsize=16)
def _members(tree: ast.Module) -> dict[str, list[tuple[str, ast.AST]]]:
    """What else binds a name or an attribute (``"." + attr``) a guard reads: a function
    or method of that name (its text: ``def should_eval(e): return e % 2 == 0``), a class's
    body assignments (a class attribute, a dataclass field's default: ``every: int = 2``),
    an assignment to that attribute of any object (``self.every = every``). Session 54: a
    predicate function or a class's default changed left the run's new iterations NULL."""
    parents = _parents(tree)
    out: dict[str, list[tuple[str, ast.AST]]] = {}
    for n in ast.walk(tree):
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef):
            text = _text_without_logs(n)
            out.setdefault(n.name, []).append((text, n))
            if isinstance(parents.get(id(n)), ast.ClassDef):
                out.setdefault("." + n.name, []).append((text, n))
        elif isinstance(n, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = n.targets if isinstance(n, ast.Assign) else [n.target]
            owner = parents.get(id(n))
            for t in targets:
                for a in ast.walk(t):
                    if isinstance(a, ast.Attribute):
                        out.setdefault("." + a.attr, []).append((ast.unparse(n), n))
                    elif isinstance(a, ast.Name) and isinstance(owner, ast.ClassDef):
                        # (a class attribute: read as ``self.every``, ``C.EVERY``, and the
                        # class read by its name)
                        out.setdefault("." + a.id, []).append((ast.unparse(n), n))
                        out.setdefault(owner.name, []).append((ast.unparse(n), n))
    return out


def _keys_read(name: str, at: ast.AST) -> frozenset[object] | None:
    """The constant keys ``at`` reads ``name`` by, where it reads it only so
    (``CFG["every"]``); else None."""
    keys: set[object] = set()
    subscripted: set[int] = set()
    for n in ast.walk(at):
        if (
            isinstance(n, ast.Subscript)
            and isinstance(n.value, ast.Name)
            and n.value.id == name
            and isinstance(n.slice, ast.Constant)
        ):
            keys.add(n.slice.value)
            subscripted.add(id(n.value))
    if not keys:
        return None
    bare = any(
        isinstance(n, ast.Name) and n.id == name and id(n) not in subscripted for n in ast.walk(at)
    )
    return None if bare else frozenset(keys)


def _dict_entries(stmt: ast.stmt, keys: frozenset[object]) -> tuple[str, list[ast.expr]] | None:
    """The entries for ``keys`` of the dict literal ``stmt`` assigns (``CFG = {"every": 2,
    "lr": 0.1}``: ``['every'] = 2``), as text and their values; None where ``stmt`` is not
    such an assignment (its whole text counts then)."""
    value = stmt.value if isinstance(stmt, ast.Assign | ast.AnnAssign) else None
    if not isinstance(value, ast.Dict) or any(not isinstance(k, ast.Constant) for k in value.keys):
        return None
    found: dict[object, ast.expr] = {
        k.value: v
        for k, v in zip(value.keys, value.values, strict=True)
        if isinstance(k, ast.Constant)
    }
    picked = [(k, found.get(k)) for k in sorted(keys, key=repr)]
    text = "; ".join(f"[{k!r}] = {ast.unparse(v) if v is not None else 'unset'}" for k, v in picked)
    return text, [v for _, v in picked if v is not None]


def _callee(node: ast.AST) -> set[str]:
    """The name a call of a function calls it by (``evaluate``, ``.validate``): what a call
    binds a parameter with is its arguments, not the function's own text, which holds the
    statement itself (session 55: a new log in the helper changed the conditions of the
    others)."""
    if not isinstance(node, ast.Call):
        return set()
    f = node.func
    return (
        {f.id}
        if isinstance(f, ast.Name)
        else {"." + f.attr}
        if isinstance(f, ast.Attribute)
        else set()
    )


def _read(node: ast.AST) -> set[str]:
    """The names ``node`` reads, and the attributes it reads of them (``args.every`` reads
    ``args`` and ``.every``: an argparse option's key in :func:`_options`)."""
    out = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    out |= {"." + n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
    return out


def _params(tree: ast.Module, node: ast.AST) -> dict[str, list[tuple[str, ast.AST]]]:
    """The parameters of the functions ``node`` is in, by name: what binds them (the
    function's signature, holding the defaults, and each call of the function by name)."""
    parents = _parents(tree)
    out: dict[str, list[tuple[str, ast.AST]]] = {}
    at = parents.get(id(node))
    while at is not None:
        if isinstance(at, ast.FunctionDef | ast.AsyncFunctionDef):
            a = at.args
            bound: list[tuple[str, ast.AST]] = [
                (f"def {at.name}({ast.unparse(a)})", a),
                *((ast.unparse(c), c) for c in _calls(tree).get(at.name, [])),
            ]
            for p in (*a.posonlyargs, *a.args, *a.kwonlyargs):
                out.setdefault(p.arg, bound)
        at = parents.get(id(at))
    return out


@lru_cache(maxsize=16)
def _calls(tree: ast.Module) -> dict[str, list[ast.Call]]:
    """The file's calls by the name they call (``f(...)``, ``x.f(...)``)."""
    calls: dict[str, list[ast.Call]] = {}
    for n in ast.walk(tree):
        if isinstance(n, ast.Call):
            f = n.func
            called = f.id if isinstance(f, ast.Name) else getattr(f, "attr", None)
            if called:
                calls.setdefault(called, []).append(n)
    return calls


@lru_cache(maxsize=16)
def _options(tree: ast.Module) -> dict[str, list[tuple[str, ast.AST]]]:
    """argparse options by ``.dest`` (``"." + dest``): their ``add_argument(...)`` calls."""
    out: dict[str, list[tuple[str, ast.AST]]] = {}
    for n in ast.walk(tree):
        if not (
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute)
            and n.func.attr == "add_argument"
        ):
            continue
        flags = [
            a.value for a in n.args if isinstance(a, ast.Constant) and isinstance(a.value, str)
        ]
        dest = next(
            (
                k.value.value
                for k in n.keywords
                if k.arg == "dest" and isinstance(k.value, ast.Constant)
            ),
            None,
        )
        if dest is None and flags:
            longs = [f for f in flags if f.startswith("--")]
            dest = (longs or flags)[0].lstrip("-").replace("-", "_")
        if isinstance(dest, str):
            out.setdefault("." + dest, []).append((ast.unparse(n), n))
    return out


@lru_cache(maxsize=16)
def _binds(tree: ast.Module) -> dict[str, list[ast.stmt]]:
    """The file's assignments by the names they bind, and the statements changing a
    container in place by a method (``CFG.update({"every": 3})``: session 55, sweep AD, a
    guard reading ``CFG["every"]`` was the same guard whatever the update set)."""
    binds: dict[str, list[ast.stmt]] = {}
    for stmt in ast.walk(tree):
        if (
            isinstance(stmt, ast.Expr)
            and isinstance(stmt.value, ast.Call)
            and isinstance(stmt.value.func, ast.Attribute)
            and isinstance(stmt.value.func.value, ast.Name)
            and stmt.value.func.attr in _MUTATORS
        ):
            binds.setdefault(stmt.value.func.value.id, []).append(stmt)
        elif isinstance(stmt, ast.Assign | ast.AugAssign | ast.AnnAssign):
            targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        binds.setdefault(n.id, []).append(stmt)
    return binds


#: Methods that change a dict, a list or a set in place.
_MUTATORS = frozenset(
    {"update", "setdefault", "pop", "popitem", "clear", "append", "extend", "insert", "remove",
     "add", "discard", "__setitem__"}
)  # fmt: skip


def _flor_arg(value: ast.expr) -> bool:
    return (
        isinstance(value, ast.Call)
        and isinstance(value.func, ast.Attribute | ast.Name)
        and (value.func.attr if isinstance(value.func, ast.Attribute) else value.func.id) == "arg"
    )


def _binding_text(stmt: ast.stmt) -> str:
    value = getattr(stmt, "value", None)
    if isinstance(value, ast.Call) and _flor_arg(value):
        targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]  # type: ignore[attr-defined]
        first = ast.unparse(value.args[0]) if value.args else "?"
        return f"{' = '.join(ast.unparse(t) for t in targets)} = arg {first}"
    return ast.unparse(stmt)


def _label(parent: ast.AST, field: str, child: ast.AST) -> str:
    """The guard ``parent``'s block ``field`` puts on ``child`` ('' for none)."""
    if isinstance(parent, ast.If):
        if main_guard(parent) and field == "body":
            return ""
        return ("if " if field == "body" else "else of if ") + ast.unparse(parent.test)
    if isinstance(parent, ast.While):
        return ("while " if field == "body" else "else of while ") + ast.unparse(parent.test)
    if isinstance(parent, ast.For | ast.AsyncFor):
        head = f"for {ast.unparse(parent.target)} in {ast.unparse(parent.iter)}"
        return head if field == "body" else f"else of {head}"
    if isinstance(parent, ast.Try | ast.TryStar):
        return {"body": "try", "orelse": "else of try"}.get(field, "")
    if isinstance(parent, ast.ExceptHandler):
        return ("except " + (ast.unparse(parent.type) if parent.type is not None else "")).strip()
    if isinstance(parent, ast.match_case):
        return "case " + ast.unparse(parent.pattern)
    if isinstance(parent, ast.Match):
        return "match " + ast.unparse(parent.subject)
    if isinstance(parent, ast.With | ast.AsyncWith) and any(map(_suppresses, parent.items)):
        return "with " + ", ".join(ast.unparse(i) for i in parent.items)
    return ""


@lru_cache(maxsize=16)
def _loops(src: SourceFile) -> frozenset[int]:
    return frozenset(id(f.node) for b in src.blocks for f in b.chain if f.kind == "loop")


def conditions_in(
    src: SourceFile, stmt: ast.stmt, calls: bool = True, sink: set[Ref] | None = None
) -> Conditions | None:
    """:func:`conditions` of ``stmt``, a statement of the analysed file ``src`` (``calls``:
    a helper's with its calls' conditions, else its own only; ``sink``: as there)."""
    loops = _loops(src)
    return conditions(src.tree, stmt, lambda n: id(n) in loops, calls=calls, sink=sink)
