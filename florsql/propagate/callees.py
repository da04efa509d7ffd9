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

__all__ = ["calls_may_draw", "calls_uneven", "conditional_draw", "parsed", "walk_own"]

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
    "tuple", "type", "zip", "open", "all", "any", "hash", "ord", "chr", "bin", "hex",
})  # fmt: skip
#: Methods, by name, that draw nothing whatever their receiver (containers, strings, files,
#: loggers, tensor reads).
_QUIET_METHODS = frozenset({
    "abs", "add", "append", "clear", "copy", "cpu", "debug", "detach", "dim", "double",
    "error", "exception", "extend", "float", "flush", "format", "get", "info", "insert",
    "item", "items", "join", "keys", "max", "mean", "min", "norm", "numel", "numpy", "pop",
    "setdefault", "size", "split", "std", "strip", "sum", "tolist", "update", "values", "var",
    "warning", "write",
    # tensor reads and shapes
    "argmax", "argmin", "eq", "ne", "lt", "gt", "le", "ge", "long", "int", "bool", "view",
    "reshape", "squeeze", "unsqueeze", "flatten", "t", "transpose", "permute", "contiguous",
    "softmax", "log_softmax", "exp", "log", "sqrt", "pow", "clamp", "round", "all", "any",
    "nonzero", "topk", "sort", "clone", "to", "square", "prod",
    # a module's mode and a scheduler's or optimizer's reads (library objects only: a method
    # of the user's classes is followed instead)
    "eval", "train", "get_last_lr", "state_dict", "cuda", "half", "type", "requires_grad_",
    # grad and precision modes (``with torch.no_grad():``)
    "no_grad", "inference_mode", "enable_grad", "set_grad_enabled", "autocast",
    # files and paths
    "read", "readline", "readlines", "read_text", "read_bytes", "exists", "is_file",
    "is_dir", "stat", "close",
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
    told = _told(node)
    return told is not None and any(not _steady(v) for v in told)


def _told(node: ast.AST) -> list[ast.expr] | None:
    """The arguments telling a call named like a draw whether to draw (its ``train`` or
    ``training`` keyword, ``dropout``'s third positional one); None for a call not named
    like a draw, or not a call."""
    if not isinstance(node, ast.Call):
        return None
    name = _call_name(node).lower()
    if not any(w in name for w in (*_DRAW_WORDS, "rrelu")):
        return None
    told = [k.value for k in node.keywords if k.arg in ("train", "training")]
    if "dropout" in name and len(node.args) >= 3:
        told.append(node.args[2])
    return told


def _mode_blind_draw(node: ast.AST) -> bool:
    """A call that draws whatever the module's mode: named like a draw (``torch.randn_like``,
    ``F.dropout(h, 0.5)``, whose ``training`` is True unless told) and not told to draw only
    in training (``training=self.training``, ``dropout``'s third positional argument).

    Example:
        >>> _mode_blind_draw(ast.parse("torch.randn_like(h)").body[0].value)
        True
        >>> _mode_blind_draw(ast.parse("F.dropout(h, 0.5, training=self.training)").body[0].value)
        False
    """
    told = _told(node)
    return told is not None and not any(
        isinstance(v, ast.Attribute) and v.attr == "training" for v in told
    )


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
    #: a name or attribute a class's instance is stored in -> the constructor called
    #: (``Net``, ``models.Net``; ``Net().to(device)`` counts as ``Net``)
    instances: dict[str, ast.expr] = field(default_factory=dict)
    #: the repository modules ``from X import *`` brings every name of
    stars: list[str] = field(default_factory=list)


_Func = ast.FunctionDef | ast.AsyncFunctionDef
#: A class of the user's: the module defining it, and its definition.
_Class = tuple[_Module, ast.ClassDef]
#: Parameters bound to instances of the user's classes at the call being followed.
_Env = dict[str, _Class]
_Target = tuple[_Module, _Func, ast.ClassDef | None, _Env]

#: Methods of a torch module that return the module itself (``Net().to(device)``).
_SELF_RETURNING = frozenset({
    "to", "cuda", "cpu", "train", "eval", "double", "float", "half", "bfloat16",
    "requires_grad_", "share_memory",
})  # fmt: skip
#: Methods whose result iterates a module's own tensors or submodules: no draw.
_DRAWLESS_ITERABLES = frozenset({
    "parameters", "named_parameters", "buffers", "named_buffers", "children",
    "named_children", "modules", "named_modules", "items", "keys", "values",
})  # fmt: skip


def _env_key(env: _Env) -> tuple[tuple[str, int], ...]:
    return tuple(sorted((k, id(v[1])) for k, v in env.items()))


class _Walker:
    def __init__(self, source: str, path: str, read: Reader | None) -> None:
        self.read = read
        self.root_dir = posixpath.dirname(path)
        self.modules: dict[str, _Module | None] = {}
        self.main = self._parse(path, source)
        self.drawing: dict[tuple[int, tuple[tuple[str, int], ...]], bool] = {}
        self.seen: set[tuple[int, tuple[tuple[str, int], ...]]] = set()
        self._blind: bool | None = None

    def classes_draw_in_eval(self) -> bool:
        """Whether a class of the script or of a repository module it imports calls a draw
        that eval mode does not stop (``torch.randn_like(h)`` in a noise layer's ``forward``,
        maybe behind a flag the loop sets): a library container holding one (``nn.Sequential(
        ..., Noisy(), ...)``) draws after ``model.eval()`` too (sweep Q: an ``evaluate`` putting
        such a model in eval mode first was taken to draw nothing, and answered from a
        checkpoint past the draws, silently)."""
        if self._blind is None:
            mods = [self.main]
            if self.main is not None:
                mods += [self.module(w) for w, _ in self.main.imports.values() if w is not None]
            self._blind = any(
                _mode_blind_draw(node)
                for mod in mods
                if mod is not None
                for cls in mod.classes.values()
                for node in ast.walk(cls)
            )
        return self._blind

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
                if any(a.name == "*" for a in node.names):
                    star = self._find(base, path, node.level)
                    if star is not None:
                        m.stars.append(star)
                    continue
                for a in node.names:
                    sub = f"{base}.{a.name}" if base else a.name
                    as_module = self._find(sub, path, node.level)
                    if as_module is not None:
                        m.imports[a.asname or a.name] = (as_module, None)
                    else:
                        m.imports[a.asname or a.name] = (self._find(base, path, node.level), a.name)
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(node.value, ast.Call):
                ctor = _constructor(node.value)
                if ctor is None:
                    continue
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                for t in targets:
                    key = t.id if isinstance(t, ast.Name) else getattr(t, "attr", None)
                    if key:
                        m.instances[key] = ctor
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

    def _imported_module(self, m: _Module, dotted: str) -> _Module | None:
        """The repository module ``dotted`` names in ``m`` (``utils``, ``pkg.b``, an alias)."""
        if dotted in m.imports:
            where, sub = m.imports[dotted]
            return self.module(where) if sub is None else None
        return None

    # -- calls --------------------------------------------------------------------------------
    def targets(
        self, call: ast.Call, m: _Module, cls: ast.ClassDef | None, env: _Env
    ) -> list[_Target] | None:
        """The user functions ``call`` may run, each with its parameters bound to instances
        of the user's classes ([] when it reaches none: a library call), or None when it
        cannot tell which (a call of a call's result, a subscript...)."""
        found = self._reached_by(call, m, cls, env)
        if found is None:
            return None
        return [(tm, fn, tcls, self._bind(call, fn, tcls, m, env)) for tm, fn, tcls in found]

    def _reached_by(
        self, call: ast.Call, m: _Module, cls: ast.ClassDef | None, env: _Env
    ) -> list[tuple[_Module, _Func, ast.ClassDef | None]] | None:
        f = call.func
        if isinstance(f, ast.Name):
            if f.id in env:  # a parameter given an instance: model(x)
                return self._instance_call(env[f.id])
            return self._named(f.id, m, call_instance=True)
        if not isinstance(f, ast.Attribute):
            return None
        attr = f.attr
        owner = f.value
        if isinstance(owner, ast.Name) and owner.id in env:  # model.probe(e)
            return self._methods(*env[owner.id], attr)
        if isinstance(owner, ast.Name) and owner.id == "self" and cls is not None:
            found = self._methods(m, cls, attr)
            if found:
                return found
            if attr in m.instances:  # self.head(x)
                return self._instance_call(self._class_of(m, m.instances[attr]))
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
                c = self._class_of(m, m.instances[dotted])
                if c is not None:
                    return self._methods(*c, attr)
        out = []
        if attr in m.instances:  # model.encoder(x)
            out += self._instance_call(self._class_of(m, m.instances[attr]))
        for klass in m.classes.values():  # a receiver it cannot name: every method so named
            out += self._methods(m, klass, attr)
        return out

    def _bind(
        self, call: ast.Call, fn: _Func, tcls: ast.ClassDef | None, m: _Module, env: _Env
    ) -> _Env:
        """``fn``'s parameters that ``call`` gives an instance of the user's classes (a name
        bound to one in ``m``, or a parameter of the caller bound so)."""
        params = [a.arg for a in [*fn.args.posonlyargs, *fn.args.args]]
        if tcls is not None and params[:1] in (["self"], ["cls"]):
            params = params[1:]
        given: list[tuple[str, ast.expr]] = list(zip(params, call.args, strict=False))
        given += [(k.arg, k.value) for k in call.keywords if k.arg is not None]
        out: _Env = {}
        for param, arg in given:
            if not isinstance(arg, ast.Name):
                continue
            if arg.id in env:
                out[param] = env[arg.id]
            elif arg.id in m.instances:
                c = self._class_of(m, m.instances[arg.id])
                if c is not None:
                    out[param] = c
        return out

    def _named(
        self, name: str, m: _Module, *, call_instance: bool, top: bool = False
    ) -> list[tuple[_Module, _Func, ast.ClassDef | None]]:
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
            return self._instance_call(self._class_of(m, m.instances[name]))
        for star in m.stars:  # ``from utils import *``
            target = self.module(star)
            if target is not None and (name in target.funcs or name in target.classes):
                return self._named(name, target, call_instance=call_instance, top=True)
        return []

    def _class(self, m: _Module, name: str) -> _Class | None:
        if name in m.classes:
            return m, m.classes[name]
        for star in m.stars:
            target = self.module(star)
            if target is not None and name in target.classes:
                return target, target.classes[name]
        if name in m.imports:
            where, sub = m.imports[name]
            target = self.module(where)
            if target is not None and sub in target.classes:
                return target, target.classes[sub]
            if target is not None and sub is not None and sub in target.imports:
                return self._class(target, sub)  # re-exported once
        return None

    def _class_of(self, m: _Module, ctor: ast.expr) -> _Class | None:
        """The class a constructor expression names (``Net``, ``models.Net``), or None."""
        if isinstance(ctor, ast.Name):
            return self._class(m, ctor.id)
        if isinstance(ctor, ast.Attribute):
            owner = _dotted(ctor.value)
            target = self._imported_module(m, owner) if owner is not None else None
            if target is not None:
                return self._class(target, ctor.attr)
        return None

    def _instance_call(self, c: _Class | None) -> list[tuple[_Module, _Func, ast.ClassDef | None]]:
        if c is None:
            return []
        return self._methods(*c, "forward") + self._methods(*c, "__call__")

    def _methods(
        self, m: _Module, cls: ast.ClassDef, name: str, depth: int = 0
    ) -> list[tuple[_Module, _Func, ast.ClassDef | None]]:
        out: list[tuple[_Module, _Func, ast.ClassDef | None]] = [
            (m, s, cls) for s in cls.body if isinstance(s, _FUNCS) and s.name == name
        ]
        if out or depth > 5:
            return out
        for base in cls.bases:
            found = self._class_of(m, base)
            if found is not None and found[1] is not cls:
                out += self._methods(found[0], found[1], name, depth + 1)
        return out

    # -- judging --------------------------------------------------------------------------------
    def may_draw(
        self,
        nodes: Iterable[ast.AST],
        m: _Module,
        cls: ast.ClassDef | None,
        env: _Env,
        fn: _Func | None = None,
    ) -> bool:
        """Whether running ``nodes`` may draw: a call not known to draw nothing, a loop over
        anything but ``range`` or a module's own tensors."""
        for top in nodes:
            for node in ast.walk(top):
                if isinstance(
                    node, ast.For | ast.AsyncFor | ast.comprehension
                ) and not _drawless_iteration(node.iter):
                    return True
                if isinstance(node, ast.Call) and self._call_draws(node, m, cls, env, fn):
                    return True
        return False

    def _call_draws(
        self,
        call: ast.Call,
        m: _Module,
        cls: ast.ClassDef | None,
        env: _Env,
        fn: _Func | None = None,
    ) -> bool:
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
            if f.attr in _DRAWLESS_ITERABLES:
                return False
        found = self.targets(call, m, cls, env)
        if found is None:
            return True
        if not found:
            if (
                isinstance(f, ast.Name)
                and fn is not None
                and _in_eval(fn, f.id, call.lineno)
                and not self.classes_draw_in_eval()
            ):
                return False  # a library model put in eval mode first: no dropout draws
            return not (isinstance(f, ast.Attribute) and f.attr in _QUIET_METHODS)
        for tm, fn, tcls, tenv in found:
            key = (id(fn), _env_key(tenv))
            if key not in self.drawing:
                self.drawing[key] = False  # recursion: judged by its other paths
                self.drawing[key] = self.may_draw(fn.body, tm, tcls, tenv, fn)
            if self.drawing[key]:
                return True
        return False

    def uneven_function(self, fn: _Func, m: _Module, cls: ast.ClassDef | None, env: _Env) -> bool:
        """Whether ``fn`` branches around code that may draw, or calls a draw told per call.
        A branch holding a ``return`` or ``raise`` chooses the rest of the function; one
        holding only ``break``/``continue`` chooses the rest of its loop's body."""
        parents: dict[int, ast.AST] = {}
        for node in walk_own(fn.body):
            for child in ast.iter_child_nodes(node):
                parents[id(child)] = node
        params = {a.arg for a in [*fn.args.posonlyargs, *fn.args.args, *fn.args.kwonlyargs]}
        for node in walk_own(fn.body):
            if conditional_draw(node):
                return True
            if isinstance(node, ast.For | ast.AsyncFor) and _counted_by(node.iter, params):
                # ``for _ in range(epoch): torch.rand(1)``: how many draws depends on the call
                if self.may_draw(node.body, m, cls, env, fn):
                    return True
                continue
            if not isinstance(node, _CHOOSING):
                continue
            inside = [n for n in ast.walk(node) if isinstance(n, _LEAVING)]
            if any(isinstance(n, ast.Return | ast.Raise) for n in inside):
                region: list[ast.AST] = list(fn.body)
            elif inside:
                loop = _enclosing_loop(node, parents)
                region = list(fn.body) if loop is None else list(loop.body)
            else:
                region = [node]
            if self.may_draw(region, m, cls, env, fn):
                return True
        return False

    def reached(self, nodes: Iterable[ast.AST], m: _Module) -> Iterable[_Target]:
        """Every user function the calls in ``nodes`` reach, directly or through others, with
        its parameters bound as the call that reaches it binds them."""
        todo: list[tuple[ast.AST, _Module, ast.ClassDef | None, _Env]] = [
            (n, m, None, {}) for n in nodes
        ]
        while todo:
            top, tm, tcls, tenv = todo.pop()
            for node in ast.walk(top):
                if not isinstance(node, ast.Call):
                    continue
                for target in self.targets(node, tm, tcls, tenv) or []:
                    key = (id(target[1]), _env_key(target[3]))
                    if key in self.seen:
                        continue
                    self.seen.add(key)
                    if len(self.seen) > MAX_FUNCTIONS:
                        raise _TooMany
                    yield target
                    todo += [(s, target[0], target[2], target[3]) for s in target[1].body]


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


def walk_own(body: Iterable[ast.AST]) -> Iterable[ast.AST]:
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


def _constructor(call: ast.Call) -> ast.expr | None:
    """The class expression a constructor call names (``Net(...)``, ``models.Net(...)``,
    ``Net(...).to(device)``: capitalised, as classes are), or None."""
    func = call.func
    while (
        isinstance(func, ast.Attribute)
        and func.attr in _SELF_RETURNING
        and isinstance(func.value, ast.Call)
    ):
        func = func.value.func
    name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
    return func if name[:1].isupper() and isinstance(func, ast.Name | ast.Attribute) else None


def _in_eval(fn: _Func, name: str, line: int) -> bool:
    """Whether ``fn`` calls ``name.eval()`` at its own top level before ``line`` (the usual
    ``evaluate``: ``model.eval()``, then forward passes; a torch module's library layers draw
    nothing in eval mode), with no ``name.train()`` between."""
    state = False
    for stmt in fn.body:
        if stmt.lineno >= line:
            break
        if (
            isinstance(stmt, ast.Expr)
            and isinstance(stmt.value, ast.Call)
            and isinstance(stmt.value.func, ast.Attribute)
            and isinstance(stmt.value.func.value, ast.Name)
            and stmt.value.func.value.id == name
            and stmt.value.func.attr in ("eval", "train")
        ):
            train = stmt.value.func.attr == "train" and not (
                stmt.value.args
                and isinstance(stmt.value.args[0], ast.Constant)
                and stmt.value.args[0].value is False
            )
            state = not train
    return state


def _counted_by(it: ast.expr, params: set[str]) -> bool:
    """A ``range(...)`` (or ``enumerate`` of one) whose bounds name a parameter directly
    (``range(epoch)``, ``range(1, n + 1)``): its number of iterations varies with the call."""
    if not isinstance(it, ast.Call):
        return False
    name = _call_name(it)
    if name == "enumerate":
        return any(_counted_by(a, params) for a in it.args)
    if name != "range":
        return False
    for arg in it.args:
        names = {n.id for n in ast.walk(arg) if isinstance(n, ast.Name)}
        calls = any(isinstance(n, ast.Call) for n in ast.walk(arg))
        if names & params and not calls:
            return True
    return False


def _drawless_iteration(it: ast.expr) -> bool:
    """A loop over ``range(...)``, a module's own tensors (``model.parameters()``), a dict's
    items, or ``enumerate``/``zip`` of those: its iteration draws nothing."""
    if not isinstance(it, ast.Call):
        return False
    name = _call_name(it)
    if name == "range":
        return True
    if name in ("enumerate", "zip", "reversed", "sorted", "list"):
        return all(_drawless_iteration(a) for a in it.args)
    return isinstance(it.func, ast.Attribute) and name in _DRAWLESS_ITERABLES


def _enclosing_loop(
    node: ast.AST, parents: dict[int, ast.AST]
) -> ast.For | ast.AsyncFor | ast.While | None:
    """The innermost loop around ``node`` within its function."""
    at = parents.get(id(node))
    while at is not None:
        if isinstance(at, ast.For | ast.AsyncFor | ast.While):
            return at
        at = parents.get(id(at))
    return None


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
        for m, fn, cls, env in w.reached(stmts, w.main):
            if w.uneven_function(fn, m, cls, env):
                return True
    except (_TooMany, RecursionError):
        return True
    return False


def calls_may_draw(
    source: str, stmts: list[ast.stmt], path: str = "", read: Reader | None = None
) -> bool:
    """Whether running ``stmts`` (placed into ``source``, the file ``path`` of a version) may
    draw at all: a call not known to draw nothing, followed into the user code it reaches (as
    :func:`calls_uneven` follows it). Library code that may draw may draw in some calls only
    without any branch of the user's (session 48, sweep P: dropout whose ``p`` the old loop
    anneals to 0, a model the old loop puts in eval mode every other epoch, ``torch.randn(
    len(wrong), 8)`` with ``wrong`` empty from epoch 2 on).

    Example:
        >>> calls_may_draw("import torch\\n", ast.parse("x = torch.randn(len(w), 8)").body)
        True
        >>> calls_may_draw("def f(e):\\n    return e * 2\\n", ast.parse("x = f(e)").body)
        False
    """
    w = _Walker(source, path, read)
    if w.main is None:
        return True
    try:
        return w.may_draw(stmts, w.main, None, {})
    except (_TooMany, RecursionError):
        return True
