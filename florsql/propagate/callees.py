"""Whether the user code a placed statement calls may draw from an RNG in some calls and not
in others (session 46).

:func:`florsql.propagate.identity.pieces_uneven` judges the texts propagation placed: a
branch in them around code that may draw makes a task that skipped iterations miss the draws
of those it skipped. The code they *call* may branch the same way: a helper of the script
(``def probe(net, epoch): if epoch % 2: return net(torch.randn(4, 3)).sum()``), a method of
the user's class or its ``forward``, a function of another module of the repository (``from
utils import probe``), or a library call told per call whether to draw
(``torch.dropout(h, 0.5, epoch % 2 == 1)``). Before session 46 such code was assumed to draw
in every call if in any, and a query restoring a checkpoint past an iteration where it drew
was wrong until a later replay saw it draw.

:func:`calls_uneven` follows the calls of the placed statements into the functions they
reach, by name, in the patched file and in the version's other modules (``import utils``,
``from pkg.utils import probe``, ``from .utils import probe``, a module next to the script),
through instances made of the user's classes (``net = Net()``, ``self.head = Head()``:
``net(x)`` reaches ``Net.forward`` and ``Net.__call__``), and through a method called on a
receiver it cannot tell (every method so named of the file's classes). It answers True when
a function it reaches branches (``if``, a conditional expression, ``and``/``or``, ``while``,
``try``, ``match``; one holding a ``break``, ``continue``, ``return`` or ``raise`` chooses
the whole rest of its function) around code that may draw (any call that is not
known to draw nothing or to reach only code that draws nothing; a loop over anything but
``range``), or calls a draw whose ``train``/``training`` argument is not a constant (an
attribute ``.training``, a module's mode, counts as constant: it changes with ``net.eval()``,
which the placed code is assumed to undo as the old loop does).

It errs towards True: the price is a replay from the run's start instead of from a
checkpoint, never a wrong value. It cannot see through calls of values it cannot name
(``getattr(m, name)()``, a function passed as an argument, a library's own callbacks): those
are assumed to draw in every call if in any, as before (docs/replay.md).
"""

from __future__ import annotations

import ast
import posixpath
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache

__all__ = ["calls_uneven", "conditional_draw"]

#: Reads a repository file of the version (a path relative to the root): its text, or None.
Reader = Callable[[str], str | None]

#: At most this many functions are followed from one statement's texts (past it: uneven).
MAX_FUNCTIONS = 400

_FUNCS = (ast.FunctionDef, ast.AsyncFunctionDef)

#: Nodes that choose what runs: the code under them runs in some calls and not in others.
_CHOOSING = (ast.If, ast.IfExp, ast.BoolOp, ast.While, ast.Try, ast.Match)
#: Nodes that leave early: what follows them in their function runs in some calls only.
_LEAVING = (ast.Break, ast.Continue, ast.Return, ast.Raise)

#: Calls by plain name that draw nothing (builtins on values; their arguments are walked).
_QUIET_NAMES = frozenset({
    "abs", "bool", "dict", "divmod", "enumerate", "float", "format", "frozenset", "getattr",
    "hasattr", "id", "int", "isinstance", "issubclass", "len", "list", "max", "min", "pow",
    "print", "range", "repr", "reversed", "round", "set", "setattr", "sorted", "str", "sum",
    "tuple", "type", "zip",
})  # fmt: skip
#: Methods, by name, that draw nothing whatever their receiver (containers, strings, files,
#: loggers, tensor reads).
_QUIET_METHODS = frozenset({
    "abs", "add", "append", "clear", "copy", "cpu", "debug", "detach", "dim", "double",
    "error", "exception", "extend", "float", "flush", "format", "get", "info", "insert",
    "item", "items", "join", "keys", "max", "mean", "min", "norm", "numel", "numpy", "pop",
    "setdefault", "size", "split", "std", "strip", "sum", "tolist", "update", "values", "var",
    "warning", "write",
})  # fmt: skip
#: Modules whose functions draw nothing.
_QUIET_MODULES = frozenset({"math", "os", "json", "time", "logging", "operator", "statistics"})

#: Names the record API goes by (``flor.log`` draws nothing).
_FLOR = frozenset({"flor", "florsql"})

#: Parts of a call's name that make it a draw (``torch.randn``, ``F.dropout``).
_DRAW_WORDS = (
    "rand", "shuffle", "choice", "sample", "normal", "uniform", "bernoulli", "multinomial",
    "permutation", "dropout", "gauss", "poisson", "exponential",
)  # fmt: skip


def conditional_draw(node: ast.AST) -> bool:
    """A draw told per call whether to draw: a call named like one (``dropout``,
    ``rrelu``, ...) whose ``train``/``training`` argument (or ``dropout``'s third positional
    one) is neither a constant nor an attribute ``.training``.

    Example:
        >>> conditional_draw(ast.parse("torch.dropout(h, 0.5, epoch % 2 == 1)").body[0].value)
        True
        >>> conditional_draw(ast.parse("F.dropout(h, 0.5, training=self.training)").body[0].value)
        False
    """
    if not isinstance(node, ast.Call):
        return False
    name = _call_name(node).lower()
    if not any(w in name for w in (*_DRAW_WORDS, "rrelu")):
        return False
    told = [k.value for k in node.keywords if k.arg in ("train", "training")]
    if "dropout" in name and len(node.args) >= 3:
        told.append(node.args[2])
    return any(not _steady(v) for v in told)


def _steady(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) or (
        isinstance(node, ast.Attribute) and node.attr == "training"
    )


def _call_name(node: ast.Call) -> str:
    f = node.func
    return f.attr if isinstance(f, ast.Attribute) else getattr(f, "id", "")


@dataclass
class _Module:
    """One parsed file of the version and what its names stand for."""

    path: str
    tree: ast.Module
    funcs: dict[str, ast.FunctionDef | ast.AsyncFunctionDef] = field(default_factory=dict)
    classes: dict[str, ast.ClassDef] = field(default_factory=dict)
    #: alias -> (module path or None when not in the repository, attribute or None)
    imports: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    #: a name or attribute a class's instance is stored in -> the class's name here
    instances: dict[str, str] = field(default_factory=dict)


class _Walker:
    def __init__(self, source: str, path: str, read: Reader | None) -> None:
        self.read = read
        self.root_dir = posixpath.dirname(path)
        self.modules: dict[str, _Module | None] = {}
        self.main = self._parse(path, source)
        self.drawing: dict[int, bool] = {}
        self.seen: set[int] = set()

    # -- modules ----------------------------------------------------------------------------
    def _parse(self, path: str, source: str) -> _Module | None:
        tree = parsed(source)
        if tree is None:
            return None
        m = _Module(path, tree)
        for stmt in tree.body:
            if isinstance(stmt, _FUNCS):
                m.funcs[stmt.name] = stmt
            elif isinstance(stmt, ast.ClassDef):
                m.classes[stmt.name] = stmt
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.asname:
                        m.imports[a.asname] = (self._find(a.name, path, 0), None)
                    else:
                        top = a.name.split(".")[0]
                        m.imports[top] = (self._find(top, path, 0), None)
                        m.imports[a.name] = (self._find(a.name, path, 0), None)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                for a in node.names:
                    sub = f"{base}.{a.name}" if base else a.name
                    as_module = self._find(sub, path, node.level)
                    if as_module is not None:
                        m.imports[a.asname or a.name] = (as_module, None)
                    else:
                        m.imports[a.asname or a.name] = (self._find(base, path, node.level), a.name)
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Call):
                cls = _class_named(node.value.func)
                if cls is None:
                    continue
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    key = t.id if isinstance(t, ast.Name) else getattr(t, "attr", None)
                    if key:
                        m.instances[key] = cls
        self.modules[path] = m
        return m

    def _find(self, dotted: str, importer: str, level: int) -> str | None:
        """The repository path of module ``dotted`` as ``importer`` imports it, or None."""
        if self.read is None or (not dotted and not level):
            return None
        rel = dotted.replace(".", "/")
        if level:
            base = posixpath.dirname(importer)
            for _ in range(level - 1):
                base = posixpath.dirname(base)
            bases = [base]
        else:
            bases = list(dict.fromkeys([self.root_dir, posixpath.dirname(importer), ""]))
        for base in bases:
            stem = posixpath.join(base, rel) if rel else base
            for cand in (f"{stem}.py", posixpath.join(stem, "__init__.py")):
                cand = cand.lstrip("/")
                if cand in self.modules or self.read(cand) is not None:
                    return cand
        return None

    def module(self, path: str | None) -> _Module | None:
        if path is None or self.read is None:
            return None
        if path not in self.modules:
            self.modules[path] = None  # a cycle of imports: parsed once
            text = self.read(path)
            self.modules[path] = None if text is None else self._parse(path, text)
        return self.modules[path]

    # -- calls --------------------------------------------------------------------------------
    def targets(
        self, call: ast.Call, m: _Module, cls: ast.ClassDef | None
    ) -> list[tuple[_Module, ast.FunctionDef | ast.AsyncFunctionDef, ast.ClassDef | None]] | None:
        """The user functions ``call`` may run ([] when it reaches none: a library call), or
        None when it cannot tell which (a call of a call's result, a subscript...)."""
        f = call.func
        if isinstance(f, ast.Name):
            return self._named(f.id, m, call_instance=True)
        if not isinstance(f, ast.Attribute):
            return None
        attr = f.attr
        owner = f.value
        if isinstance(owner, ast.Name) and owner.id == "self" and cls is not None:
            found = self._methods(m, cls, attr)
            if found:
                return found
            if attr in m.instances:  # self.head(x)
                return self._instance_call(m, m.instances[attr])
            return []
        dotted = _dotted(owner)
        if dotted is not None:
            for name in (dotted, dotted.split(".")[0]):
                if name in m.imports:
                    where, sub = m.imports[name]
                    if where is None:
                        return []  # a library: torch.randn, np.random.choice
                    target = self.module(where)
                    if target is None:
                        return []
                    if sub is None and name == dotted:
                        return self._named(attr, target, call_instance=False, top=True)
                    return []
            if dotted in m.instances:  # net.probe(x)
                c = self._class(m, m.instances[dotted])
                if c is not None:
                    return self._methods(c[0], c[1], attr)
        out = []
        if attr in m.instances:  # model.encoder(x)
            out += self._instance_call(m, m.instances[attr])
        for klass in m.classes.values():  # a receiver it cannot name: every method so named
            out += self._methods(m, klass, attr)
        return out

    def _named(
        self, name: str, m: _Module, *, call_instance: bool, top: bool = False
    ) -> list[tuple[_Module, ast.FunctionDef | ast.AsyncFunctionDef, ast.ClassDef | None]]:
        if name in m.funcs:
            return [(m, m.funcs[name], None)]
        if name in m.classes:
            return self._methods(m, m.classes[name], "__init__")
        if name in m.imports and not top:
            where, sub = m.imports[name]
            target = self.module(where)
            if target is None or sub is None:
                return []
            if sub in target.funcs or sub in target.classes:
                return self._named(sub, target, call_instance=call_instance, top=True)
            if sub in target.imports:  # re-exported once
                return self._named(sub, target, call_instance=call_instance)
            return []
        if call_instance and name in m.instances:
            return self._instance_call(m, m.instances[name])
        return []

    def _class(self, m: _Module, name: str) -> tuple[_Module, ast.ClassDef] | None:
        if name in m.classes:
            return m, m.classes[name]
        if name in m.imports:
            where, sub = m.imports[name]
            target = self.module(where)
            if target is not None and sub in target.classes:
                return target, target.classes[sub]
        return None

    def _instance_call(self, m: _Module, cls_name: str) -> list:
        c = self._class(m, cls_name)
        if c is None:
            return []
        return self._methods(c[0], c[1], "forward") + self._methods(c[0], c[1], "__call__")

    def _methods(self, m: _Module, cls: ast.ClassDef, name: str, depth: int = 0) -> list:
        out = [(m, s, cls) for s in cls.body if isinstance(s, _FUNCS) and s.name == name]
        if out or depth > 5:
            return out
        for base in cls.bases:
            b = base.id if isinstance(base, ast.Name) else None
            found = self._class(m, b) if b else None
            if found is not None and found[1] is not cls:
                out += self._methods(found[0], found[1], name, depth + 1)
        return out

    # -- judging --------------------------------------------------------------------------------
    def may_draw(self, nodes: Iterable[ast.AST], m: _Module, cls: ast.ClassDef | None) -> bool:
        """Whether running ``nodes`` may draw: a call not known to draw nothing, a loop over
        anything but ``range``."""
        for top in nodes:
            for node in ast.walk(top):
                if isinstance(node, ast.For | ast.AsyncFor | ast.comprehension):
                    it = node.iter
                    if not (isinstance(it, ast.Call) and _call_name(it) in ("range", "enumerate")):
                        return True
                if isinstance(node, ast.Call) and self._call_draws(node, m, cls):
                    return True
        return False

    def _call_draws(self, call: ast.Call, m: _Module, cls: ast.ClassDef | None) -> bool:
        name = _call_name(call)
        if any(w in name.lower() for w in _DRAW_WORDS):
            return True
        f = call.func
        if isinstance(f, ast.Name) and f.id in _QUIET_NAMES and f.id not in m.funcs:
            return False
        if isinstance(f, ast.Attribute):
            if isinstance(f.value, ast.Name) and f.value.id in _QUIET_MODULES:
                return False
            if f.attr == "log" and isinstance(f.value, ast.Name) and f.value.id in _FLOR:
                return False
        found = self.targets(call, m, cls)
        if found is None:
            return True
        if not found:
            return not (isinstance(f, ast.Attribute) and f.attr in _QUIET_METHODS)
        for tm, fn, tcls in found:
            key = id(fn)
            if key not in self.drawing:
                self.drawing[key] = False  # recursion: judged by its other paths
                self.drawing[key] = self.may_draw(fn.body, tm, tcls)
            if self.drawing[key]:
                return True
        return False

    def uneven_function(
        self, fn: ast.FunctionDef | ast.AsyncFunctionDef, m: _Module, cls: ast.ClassDef | None
    ) -> bool:
        """Whether ``fn`` branches around code that may draw, or calls a draw told per call."""
        for node in _walk_own(fn.body):
            if conditional_draw(node):
                return True
            if isinstance(node, _CHOOSING):
                if any(isinstance(n, _LEAVING) for n in ast.walk(node)):
                    if self.may_draw(fn.body, m, cls):
                        return True
                elif self.may_draw([node], m, cls):
                    return True
        return False

    def reached(
        self, nodes: Iterable[ast.AST], m: _Module, cls: ast.ClassDef | None
    ) -> Iterable[tuple[_Module, ast.FunctionDef | ast.AsyncFunctionDef, ast.ClassDef | None]]:
        """Every user function the calls in ``nodes`` reach, directly or through others."""
        todo = [(n, m, cls) for n in nodes]
        while todo:
            top, tm, tcls = todo.pop()
            for node in ast.walk(top):
                if not isinstance(node, ast.Call):
                    continue
                for target in self.targets(node, tm, tcls) or []:
                    if id(target[1]) in self.seen:
                        continue
                    self.seen.add(id(target[1]))
                    if len(self.seen) > MAX_FUNCTIONS:
                        raise _TooMany
                    yield target
                    todo += [(s, target[0], target[2]) for s in target[1].body]


class _TooMany(Exception):
    pass


@lru_cache(maxsize=32)
def parsed(source: str) -> ast.Module | None:
    """``source`` parsed (None: it does not parse), remembered: a query's planning and its
    replay judge every placed piece of a file, each piece against the whole file. The tree
    is shared: never changed."""
    try:
        return ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None


def _walk_own(body: list[ast.stmt]) -> Iterable[ast.AST]:
    """The nodes of ``body``, not those of functions or classes defined in it."""
    todo: list[ast.AST] = list(body)
    while todo:
        node = todo.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if not isinstance(child, (*_FUNCS, ast.ClassDef, ast.Lambda)):
                todo.append(child)


def _dotted(node: ast.expr) -> str | None:
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name):
        return None
    return ".".join([node.id, *reversed(parts)])


def _class_named(func: ast.expr) -> str | None:
    """The name a constructor call's class goes by here (``Net``, ``models.Net`` -> ``Net``
    when capitalised), or None."""
    name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
    return name if name[:1].isupper() else None


def calls_uneven(
    source: str, stmts: list[ast.stmt], path: str = "", read: Reader | None = None
) -> bool:
    """Whether code that ``stmts`` (placed into ``source``, the file ``path`` of a version)
    call may draw in some calls and not in others (module docstring). ``read`` reads the
    version's other files (None: only ``source`` is followed).

    Example:
        >>> src = "import torch\\ndef probe(e):\\n    if e % 2:\\n        return torch.randn(1)\\n"
        >>> src += "    return 0\\nfor e in range(3):\\n    x = probe(e)\\n"
        >>> calls_uneven(src, ast.parse("x = probe(e)").body)
        True
        >>> calls_uneven("def f(e):\\n    return e * 2\\n", ast.parse("x = f(e)").body)
        False
    """
    w = _Walker(source, path, read)
    if w.main is None:
        return True
    if any(conditional_draw(n) for s in stmts for n in ast.walk(s)):
        return True
    try:
        for m, fn, cls in w.reached(stmts, w.main, None):
            if w.uneven_function(fn, m, cls):
                return True
    except (_TooMany, RecursionError):
        return True
    return False
