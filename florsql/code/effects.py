"""What each ``flor.loop`` of a script changes and what the code around it reads.

Skipping an inner loop (replay's "rest" mode) or starting an outer iteration from a checkpoint is
sound only when every value the code that then runs reads is either restored or untouched. The
Flor paper's SkipBlock memoizes a loop's side-effect set for that reason; this module computes
it statically, with the standard library's ``ast`` only (a recording process uses it, so it must
stay light):

- ``changed``: every name the loop binds or rebinds in its own scope (assignment, augmented
  assignment, the loop targets, ``with ... as``, walrus, ``except ... as``, imports, ``del``) and
  every name whose object it may mutate (a method call, an attribute or subscript store, an
  argument to a function that is not a known-pure builtin, the iterable of a nested loop), or
  may change by running code on what reads like a read (a ``with`` item's ``__enter__`` and
  ``__exit__``, a script ``@property`` or caching ``__getitem__`` that changes its object, a
  ``globals()["name"]`` store, a method called on what a script function returns);
- ``live_in``: names the body may read before assigning them in the same iteration (a value
  carried from one iteration to the next when the loop also changes it);
- ``read_after``: names the code after the loop may read (to the end of its scope) before
  assigning them.

Functions of the same file are followed: a call ``track(v)`` (or ``obj.track(v)``) to a function
defined in the file changes what that function may bind or mutate outside itself (``global`` and
``nonlocal`` names, objects it reaches through free names: ``stats["n"] += 1``), transitively,
and reads its free names. A lambda counts as a function: named by the name it is assigned to
(``record = lambda v: hist.append(v)``), else escaping. A function that escapes (passed as a
callback, stored: a forward hook) may run at any call, so what it changes counts as changed by
every loop.

Everything is an over-approximation: a name too many makes replay run more, never wrong.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field, replace
from functools import lru_cache

__all__ = [
    "LoopFacts",
    "ScriptFacts",
    "analyze_source",
    "default_state",
    "for_statements",
    "imported_names",
    "loop_at",
    "module_state",
    "reads_before_assigned",
]

#: Names bound to the record API's module in scripts (``import florsql as flor``...).
FLOR_MODULES = frozenset({"flor", "florsql", "flordb"})

#: Builtins that never mutate their arguments: a name passed to them is only read.
PURE_CALLS = frozenset(
    {
        "abs", "all", "any", "bool", "callable", "dict", "divmod", "enumerate", "filter",
        "float", "format", "frozenset", "getattr", "hasattr", "hash", "id", "int",
        "isinstance", "issubclass", "iter", "len", "list", "map", "max", "min", "print",
        "range", "repr", "reversed", "round", "set", "sorted", "str", "sum", "tuple", "type",
        "zip",
    }
)  # fmt: skip

#: The builtins of ``PURE_CALLS`` that iterate an argument: ``list(sampler)``,
#: ``sum(stream)`` or ``next(iter(loader))`` advance an iterator or draw from a sampler's own
#: generator, so a name passed to them may change (a list passed to them does not: one more
#: name saved).
ITERATING_CALLS = frozenset(
    {
        "all", "any", "dict", "enumerate", "filter", "frozenset", "iter", "list", "map", "max",
        "min", "reversed", "set", "sorted", "sum", "tuple", "zip",
    }
)  # fmt: skip

#: Method names that only read their object (``loss.item()``, ``x.size(0)``...). A name that
#: also mutates a common object is left out: ``add`` (``set.add``, while ``Tensor.add`` is pure)
#: and ``sort`` (``list.sort``): a name too many only saves more.
PURE_METHODS = frozenset(
    {
        "item", "size", "dim", "numel", "tolist", "numpy", "detach", "cpu", "clone", "keys",
        "values", "items", "get", "count", "index", "format", "startswith", "endswith",
        "argmax", "argmin", "mean", "sum", "max", "min", "std", "var", "norm", "eq", "ne",
        "float", "double", "long", "int", "view", "reshape", "flatten", "squeeze",
        "unsqueeze", "to", "type", "copy", "abs", "sqrt", "exp", "log", "pow", "isnan",
        "isinf", "all", "any", "t", "transpose", "permute", "contiguous", "state_dict",
        "parameters", "named_parameters", "buffers", "children", "modules", "split",
        "chunk", "unbind", "lower", "upper", "strip", "join", "replace", "isdigit", "le", "lt",
        "ge", "gt", "round", "floor", "ceil", "sign", "softmax", "log_softmax", "sigmoid",
        "tanh", "relu", "matmul", "mm", "sub", "mul", "div", "neg", "float16",
        "bfloat16", "half", "bool", "nonzero", "topk", "argsort", "cumsum", "prod",
        "expand", "repeat", "narrow", "select", "gather", "masked_fill", "where", "clamp",
        "allclose", "equal",
    }
)  # fmt: skip

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


@dataclass(frozen=True)
class _Summary:
    """What calling a function of the script may do outside its own locals."""

    mutates: frozenset[str] = frozenset()  # names it may bind or whose objects it may mutate
    reads: frozenset[str] = frozenset()  # free names it may read
    #: its positional parameters in order and the parameters it may change (or rebind) by
    #: name, where a call's arguments map to them (no ``*args``/``**kwargs``; one function of
    #: that name): an argument given to a parameter it leaves alone is only read (session 47)
    params: tuple[str, ...] | None = None
    keywords: frozenset[str] = frozenset()
    changes: frozenset[str] = frozenset()


#: The script's functions by name (a method by its attribute name), while it is analysed.
_CALLEES: ContextVar[Mapping[str, _Summary] | None] = ContextVar("_CALLEES", default=None)
#: The script's plain functions (:func:`_plain_functions`), while it is analysed.
_PLAIN: ContextVar[frozenset[str]] = ContextVar("_PLAIN", default=frozenset())

#: Decorators that keep no state of their own (a function so decorated is still plain).
_STATELESS_DECORATORS = frozenset({"no_grad", "inference_mode", "enable_grad", "wraps"})


def _plain_functions(tree: ast.Module) -> frozenset[str]:
    """Names of the module's own functions that calling cannot change: a ``def`` at module
    level, bound nowhere else (no assignment, ``global`` rebinding, ``del``, import or second
    ``def`` of that name), with no decorator but :data:`_STATELESS_DECORATORS` (an
    ``lru_cache`` keeps its cache). What such a function changes outside itself counts
    through its summary; the function object itself holds nothing a call changes (session
    46, sweep H: a call of ``evaluate`` counted as changing ``evaluate``, which no checkpoint
    holds, so a statement calling an old helper the old loop never called replayed from the
    top). Function attributes it sets (``evaluate.calls += 1``) are in its summary."""
    defs: dict[str, int] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            defs[stmt.name] = defs.get(stmt.name, 0) + 1
            for d in stmt.decorator_list:
                target = d.func if isinstance(d, ast.Call) else d
                name = (
                    target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
                )
                if name not in _STATELESS_DECORATORS:
                    defs[stmt.name] += 1  # counted as rebound
    rebound: set[str] = set()
    top = {id(stmt) for stmt in tree.body}
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            rebound.add(node.id)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            rebound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Global | ast.Nonlocal):
            rebound.update(node.names)
        elif (
            isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and id(node) not in top
        ):
            rebound.add(node.name)  # a nested def or class of the same name shadows it
    return frozenset(n for n, k in defs.items() if k == 1 and n not in rebound)


@dataclass(frozen=True)
class _Hidden:
    """Where the script's own classes change an object on what reads like a read."""

    #: attribute names of the script's properties whose getter changes its object
    #: (``warm.lr`` advancing ``warm.t``)
    properties: frozenset[str] = frozenset()
    #: names bound to an instance of a script class whose ``__getitem__`` changes its object
    #: (``ds = CachedSet(...)``, then ``ds[i]`` fills its cache)
    subscripted: frozenset[str] = frozenset()
    #: names bound to a call given such an instance, or one whose ``__iter__``/``__next__``
    #: changes it (``loader = DataLoader(ds, sampler=sampler)``): iterating the name runs
    #: their methods, so it changes them too
    feeds: Mapping[str, frozenset[str]] = field(default_factory=dict)


_HIDDEN: ContextVar[_Hidden] = ContextVar("_HIDDEN", default=_Hidden())  # noqa: B039 (frozen)

#: Decorators that make a method run on an attribute read.
_PROPERTY_DECORATORS = frozenset({"property", "cached_property"})


@dataclass(frozen=True)
class LoopFacts:
    """One ``for ... in flor.loop("name", ...)`` statement.

    Attributes:
        name: the loop's name.
        line: the ``for`` statement's first line; ``call_line`` the ``flor.loop(...)`` call's.
        end_line: its last line.
        scope: ``"<module>"`` or the name of the function it sits in.
        parent: the line of the ``flor.loop`` around it in the same scope, if any.
        targets: names the ``for`` target binds.
        changed, live_in, read_after: see the module docstring.
        grads_after: the code after the loop reads a parameter's ``.grad``: gradients are in
            no ``state_dict``, so a checkpoint cannot stand in for the loop.
        left_safely: when the loop is left before its iterable runs out, the code after it runs
            as after a loop that ran out: it has no ``else``, no ``return`` or ``yield`` in its
            body, and no ``try`` with handlers (or ``contextlib.suppress``) around it in its
            scope; so a loop left early was left by ``break`` (or an exception that also left
            the outer iteration).
    """

    name: str
    line: int
    call_line: int
    end_line: int
    scope: str
    parent: int | None
    targets: frozenset[str]
    changed: frozenset[str]
    live_in: frozenset[str]
    read_after: frozenset[str]
    grads_after: bool = False  # code after the loop reads ``.grad`` (not in any state_dict)
    #: code after the loop in the same iteration of its parent back-propagates
    #: (``total.backward()``, ``torch.autograd.grad``): through a graph the loop may have built
    #: (losses summed over the step loop, one ``backward`` after it), which a checkpoint saves
    #: without (tensors are saved detached)
    backprop_after: bool = False
    left_safely: bool = True
    #: objects whose method the ``flor.loop`` call is passed through in the ``for`` header
    #: (``progress`` of ``for x in progress.wrap(flor.loop(...))``): their generator is
    #: suspended inside the loop as its checkpoint is taken, so no checkpoint restores them
    wrappers: frozenset[str] = frozenset()
    #: the context managers of the ``with`` statements around the loop inside its parent loop's
    #: body (as source text), other than ones known to keep no state (``torch.no_grad()``,
    #: ``tqdm(...)``, ``open(...)``): their ``__enter__`` ran before the loop's checkpoint and
    #: their ``__exit__`` runs after it, with what the entry kept where no checkpoint sees it
    #: (``start = d["steps"]`` in a ``@contextmanager`` generator)
    entered: tuple[str, ...] = ()
    #: the same for every ``with`` in the loop's body (around a call of a function that runs
    #: the inner loop: ``with counting_steps(stats): train_epoch()``)
    body_withs: tuple[str, ...] = ()
    #: the body yields (a generator function owns the loop, ``list(run_epoch())`` consumes it):
    #: what it yields goes to its consumer, which no checkpoint of the loop holds
    yields: bool = False
    #: names the body definitely assigns before the statement holding its first flor loop
    #: (``metric = Accuracy()`` at the top of each epoch): what they hold there comes from the
    #: iteration itself, not from the previous one
    before_inner: frozenset[str] = frozenset()

    @property
    def carried(self) -> frozenset[str]:
        """Names one iteration hands to the next (changed here, read before assigned)."""
        return (self.changed & self.live_in) - self.targets


@dataclass(frozen=True)
class ScriptFacts:
    """Every ``flor.loop`` of one source file."""

    loops: tuple[LoopFacts, ...]

    def named(self, name: str) -> list[LoopFacts]:
        return [lp for lp in self.loops if lp.name == name]

    def outermost(self) -> list[LoopFacts]:
        return [lp for lp in self.loops if lp.parent is None]

    def children(self, loop: LoopFacts) -> list[LoopFacts]:
        return [lp for lp in self.loops if lp.parent == loop.line]


def loop_at(facts: ScriptFacts, name: str, line: int) -> LoopFacts | None:
    """The loop ``name`` whose ``for`` header or ``flor.loop`` call is at ``line``."""
    for lp in facts.loops:
        if lp.name == name and line in (lp.call_line, lp.line):
            return lp
    candidates = [lp for lp in facts.named(name) if lp.line <= line <= lp.end_line]
    return min(candidates, key=lambda lp: lp.end_line - lp.line, default=None)


@lru_cache(maxsize=64)
def analyze_source(source: str) -> ScriptFacts:
    """The :class:`ScriptFacts` of a script's text (empty when it does not parse).

    Example:
        >>> src = '''
        ... import florsql as flor
        ... step_count = 0
        ... for epoch in flor.loop("epoch", range(3)):
        ...     running = 0.0
        ...     for x in flor.loop("step", data):
        ...         loss = f(x)
        ...         running += loss
        ...         step_count += 1
        ...     flor.log("avg", running / len(data))
        ... flor.log("steps", step_count)
        ... '''
        >>> facts = analyze_source(src)
        >>> step = facts.named("step")[0]
        >>> sorted(step.changed)
        ['data', 'f', 'loss', 'running', 'step_count', 'x']
        >>> sorted(step.read_after & step.changed)
        ['data', 'f', 'running', 'step_count']
        >>> sorted(facts.named("epoch")[0].carried)
        ['data', 'f', 'step_count']
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return ScriptFacts(())
    hidden = _HIDDEN.set(_hidden_state(tree))
    plain = _PLAIN.set(_plain_functions(tree))
    try:
        callees, escaped = _summaries(tree)
        token = _CALLEES.set(callees)
        try:
            finder = _Finder(_flor_aliases(tree), escaped)
            finder.classes = frozenset(
                n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)
            )
            finder.scope(tree.body, "<module>")
        finally:
            _CALLEES.reset(token)
    finally:
        _PLAIN.reset(plain)
        _HIDDEN.reset(hidden)
    return ScriptFacts(tuple(sorted(finder.found, key=lambda lp: lp.line)))


def _hidden_state(tree: ast.Module) -> _Hidden:
    """The script's properties and ``__getitem__`` methods that change their object, and the
    names bound to instances of the classes with such a ``__getitem__``."""
    properties: set[str] = set()
    caching: set[str] = set()
    iterated: set[str] = set()
    for cls in ast.walk(tree):
        if not isinstance(cls, ast.ClassDef):
            continue
        for fn in cls.body:
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) or not fn.args.args:
                continue
            decorators = {
                _root(d) if isinstance(d, ast.Name) else getattr(d, "attr", None)
                for d in fn.decorator_list
            }
            is_property = bool(decorators & _PROPERTY_DECORATORS)
            iterating = fn.name in ("__iter__", "__next__")
            if not is_property and fn.name != "__getitem__" and not iterating:
                continue
            # a cached_property stores its value in the object: a change too
            changes = "cached_property" in decorators or fn.args.args[0].arg in _changed(fn.body)
            if changes and is_property:
                properties.add(fn.name)
            elif changes and iterating:
                iterated.add(cls.name)
            elif changes:
                caching.add(cls.name)
    subscripted: set[str] = set()
    instances: set[str] = set()  # of a class that changes as something reads or iterates it
    bound: list[tuple[list[ast.expr], ast.Call]] = [
        (node.targets if isinstance(node, ast.Assign) else [node.target], node.value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.Call)
    ]
    for targets, call in bound:
        cls_name = _root(call.func)
        if cls_name in caching or cls_name in iterated:
            names = {r for t in targets if (r := _root(t)) is not None}
            instances |= names
            if cls_name in caching:
                subscripted |= names
    feeds: dict[str, frozenset[str]] = {}
    if instances:
        for targets, call in bound:
            given = {
                a.id
                for a in [*call.args, *(k.value for k in call.keywords)]
                if isinstance(a, ast.Name) and a.id in instances
            }
            for t in targets:
                if given and (r := _root(t)) is not None:
                    feeds[r] = feeds.get(r, frozenset()) | given
    return _Hidden(frozenset(properties), frozenset(subscripted), feeds)


#: Names every module has (a closure's free name is none of them).
_BUILTIN_NAMES = frozenset(dir(builtins)) | {"__name__", "__file__", "__doc__", "__spec__"}

#: Methods of output-only objects (a module's ``logger``, a file): calling them changes no value.
SINK_METHODS = frozenset(
    {"debug", "info", "warning", "warn", "error", "exception", "critical", "log", "write", "flush"}
)


def value_reads(source: str) -> frozenset[str]:
    r"""Names the script reads as a value somewhere: every load of a name but those that only
    drive an object's output, i.e. iterating it (``for x in pbar``, ``enumerate(pbar)``) and
    calling one of its methods as a statement (``pbar.set_postfix(...)``, ``pbar.update(1)``),
    and calling it by name (``mask(n)``: an ``lru_cache`` helper's statistics are not read).
    A progress bar used only so never feeds a logged value; ``flor.log("n", pbar.n)`` reads it.
    Everything, when the source does not parse.

    Example:
        >>> src = "pbar = tqdm(xs)\nfor x in enumerate(pbar):\n    pbar.set_postfix(a=x)\n"
        >>> sorted(value_reads(src))
        ['x', 'xs']
        >>> sorted(value_reads(src + "flor.log('n', pbar.n)\n"))
        ['pbar', 'x', 'xs']
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return frozenset({"*"})
    quiet: set[int] = set()  # ids of the Name nodes loaded in an output-only place
    loops = _Finder(_flor_aliases(tree))  # to tell the flor.loop(...) calls
    for node in ast.walk(tree):
        if isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
            for it in _iteration_operands(node.iter):
                quiet.add(id(it))
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            func = node.value.func
            if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name):
                quiet.add(id(func.value))
        elif isinstance(node, ast.withitem) and isinstance(node.context_expr, ast.Name):
            quiet.add(id(node.context_expr))
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            quiet.add(id(node.func))  # calling a function (an lru_cache helper) reads no state
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            # progress.wrap(flor.loop(...)): wrapping a loop reads nothing of the wrapper
            func = node.func
            if isinstance(func.value, ast.Name) and any(loops.loop_call(a) for a in node.args):
                quiet.add(id(func.value))
    return frozenset(
        n.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and id(n) not in quiet
    )


def _iteration_operands(node: ast.expr) -> list[ast.Name]:
    """The names a ``for`` iterates: ``xs`` of ``xs``, ``enumerate(xs)``, ``zip(xs, ys)``."""
    if isinstance(node, ast.Name):
        return [node]
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("enumerate", "zip", "iter", "reversed")
    ):
        return [n for a in node.args for n in _iteration_operands(a)]
    return []


def module_state(source: str) -> frozenset[str]:
    r"""What the functions of a module a script imports (a file of the repository) may change
    in that module itself, which no checkpoint saves: a module-level name a function rebinds
    (``global n``), a mutable module-level object one mutates (``CALLS["n"] += 1``,
    ``_meter.update(v)``, ``HIST.append(v)``), an attribute stored on a module-level class or
    function (``Meter.count += 1``, ``type(self).count += 1``, ``cls.n += 1`` in a
    ``classmethod``), a closure's ``nonlocal`` cell, a default argument a function changes
    (:func:`default_state`). Empty when the module keeps no state of
    its own (functions that only compute, or change the objects passed to them). A module that
    does not parse counts as keeping state.

    Over-approximation, like the rest of this module: a name too many makes replay run from the
    top of the script, never wrong.

    Example:
        >>> src = 'CALLS = {"n": 0}\nLIMIT = 3\ndef step(x):\n    CALLS["n"] += 1\n'
        >>> src += "    return x * LIMIT\ndef pure(x, out):\n    out.append(x)\n"
        >>> sorted(module_state(src))
        ['CALLS']
        >>> sorted(module_state("def pure(x, out):\n    out.append(x)\n    return x + 1\n"))
        []
        >>> src = "import numpy as np, torch\nSEEN = np.zeros(4)\nDEV = torch.device('cpu')\n"
        >>> src += "def count(i):\n    np.add.at(SEEN, i, torch.ones(1, device=DEV))\n"
        >>> sorted(module_state(src))
        ['SEEN']
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return frozenset({"<does not parse>"})
    imported: set[str] = set()
    data: set[str] = set()
    inert: set[str] = set()  # data no call changes (a device, a path)
    code: set[str] = set()
    for node in _own_nodes(tree.body):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            imported.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            code.add(node.name)
        elif (
            isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign))
            and node.value
            and not _constant(node.value)
        ):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names = {n for t in targets for n in _stored_names(t)}
            data |= names
            if _inert(node.value):
                inert |= names
    data -= imported
    own = {n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))}
    out: set[str] = {f"function state {d}" for d in default_state(tree)}
    owners = _method_classes(tree)
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            owner = owners.get(id(fn))
            shared = owner.shared if owner is not None else frozenset()
            out |= _function_state(fn, data, code, own, imported, data - inert, shared)
    return frozenset(out)


def default_state(tree: ast.Module) -> tuple[str, ...]:
    r"""State a module keeps in its functions, which no checkpoint saves: a parameter whose
    default is an object (not a constant) that the function may change (``def smoothed(v,
    _state={}): _state["s"] = ...``, ``lambda v, buf=torch.zeros(1): buf.mul_(0.5)``, a
    method's ``_hist=[]`` appended to) or hand out (returned, passed to a call);
    ``functools.partial`` binding an object made in place (``partial(f, state={})``); the
    cache of an ``lru_cache`` function that draws from an RNG (``val_indices(n)`` returning
    ``torch.randperm(32)[:n]``: a replay's empty cache draws again, from another RNG state).
    A replay starting from a checkpoint gets what a fresh start makes: before session 43 a
    value computed from it was wrong, silently. One description per finding.

    Example:
        >>> src = "def smoothed(v, _state={}):\n    _state['s'] = v\n    return v\n"
        >>> src += "def build(sizes=[64, 64], act=None):\n    return list(sizes)\n"
        >>> default_state(ast.parse(src))
        ('smoothed(_state)',)
        >>> default_state(ast.parse("import functools\ng = functools.partial(f, state={})\n"))
        ('functools.partial(f, state={})',)
    """
    out: list[str] = []
    for fn in ast.walk(tree):
        if isinstance(fn, ast.Call):
            func = fn.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            bound = [*fn.args[1:], *(k.value for k in fn.keywords)]
            if name == "partial" and any(_made_here(b) for b in bound):
                out.append(ast.unparse(fn)[:60])
            continue
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if not isinstance(fn, ast.Lambda) and _cached(fn) and _draws(fn):
            out.append(f"{fn.name} (a cache of values drawn from an RNG)")
        a = fn.args
        positional = [*a.posonlyargs, *a.args]
        pairs = list(zip(positional[len(positional) - len(a.defaults) :], a.defaults, strict=True))
        pairs += [(k, d) for k, d in zip(a.kwonlyargs, a.kw_defaults, strict=True) if d is not None]
        held = {arg.arg for arg, default in pairs if _held(default)}
        if not held:
            continue
        body: list[ast.AST] = [fn.body] if isinstance(fn, ast.Lambda) else list(fn.body)
        changed = sorted(held & _changed_params(body, held))
        if changed:
            name = "lambda" if isinstance(fn, ast.Lambda) else fn.name
            out.append(f"{name}({', '.join(changed)})")
    return tuple(dict.fromkeys(out))


#: Names of calls that draw from an RNG (``torch.randperm``, ``np.random.choice``,
#: ``random.shuffle``, ``w.normal_()``), by substring; a cached function calling one keeps
#: drawn values in its cache.
_DRAW_WORDS = ("rand", "shuffle", "choice", "sample", "normal", "uniform", "bernoulli",
               "multinomial", "permutation", "dropout", "gauss", "poisson")  # fmt: skip


def _cached(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Decorated with ``functools.lru_cache`` or ``functools.cache`` (called or not)."""
    for d in fn.decorator_list:
        target = d.func if isinstance(d, ast.Call) else d
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name in ("lru_cache", "cache"):
            return True
    return False


def _draws(fn: ast.AST) -> bool:
    """Whether ``fn`` calls something named like a draw from an RNG (:data:`_DRAW_WORDS`)."""
    for node in ast.walk(fn):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if any(w in name.lower() for w in _DRAW_WORDS):
                return True
    return False


def _held(default: ast.expr) -> bool:
    """Whether a default argument may be an object a call changes: not a constant, not an
    inert value, not an argument of the record API (``lr=flor.arg("lr", 0.1)``)."""
    if _constant(default) or _inert(default):
        return False
    return not (isinstance(default, ast.Call) and _root(default.func) in FLOR_MODULES)


def _made_here(node: ast.expr) -> bool:
    """An object made by the expression itself (``{}``, ``[]``, ``Meter()``), not a name or a
    constant."""
    if _constant(node) or _inert(node) or isinstance(node, (ast.Name, ast.Lambda)):
        return False
    return isinstance(
        node,
        (ast.Dict, ast.List, ast.Set, ast.Call, ast.ListComp, ast.DictComp, ast.SetComp),
    )


def _changed_params(body: list[ast.AST], params: set[str]) -> set[str]:
    """Which of ``params`` the code of ``body`` may change or hand out: a store into it, an
    augmented assignment (in place for a list or a tensor), a method that is not pure, an
    argument to a call that is not a pure builtin, a value returned or yielded."""
    out: set[str] = set()
    nodes = [n for b in body for n in ast.walk(b)]
    for node in nodes:
        if isinstance(node, (ast.Attribute, ast.Subscript)) and isinstance(
            node.ctx, (ast.Store, ast.Del)
        ):
            out.add(_root(node) or "")
        elif isinstance(node, ast.AugAssign):
            out.add(_root(node.target) or "")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Attribute) and func.attr not in PURE_METHODS:
                out.add(_root(func.value) or "")
            if not (isinstance(func, ast.Name) and func.id in PURE_CALLS):
                for arg in [*node.args, *(k.value for k in node.keywords)]:
                    if isinstance(arg, ast.Name):
                        out.add(arg.id)
        elif isinstance(node, (ast.Return, ast.Yield, ast.YieldFrom)) and isinstance(
            node.value, ast.Name
        ):
            out.add(node.value.id)
    return out & params


#: Constructors of values no call changes (``DEVICE = torch.device("cpu")``, ``ROOT =
#: Path("data")``, ``LR = float(os.environ.get("LR", "0.1"))``): a module passing them to calls
#: keeps no state by it.
_INERT_CALLS = frozenset(
    {
        "device", "dtype", "Path", "PurePath", "int", "float", "str", "bool", "bytes", "tuple",
        "frozenset", "getenv", "get", "compile", "join", "namedtuple",
    }
)  # fmt: skip


def _inert(value: ast.expr) -> bool:
    """A module-level value no call it is passed to changes: a library constant
    (``torch.float32``), a string or number one of :data:`_INERT_CALLS` makes, a choice
    between such values (``"cuda" if ... else "cpu"``), an f-string."""
    if _constant(value) or isinstance(value, (ast.Attribute, ast.JoinedStr)):
        return True
    if isinstance(value, ast.IfExp):
        return _inert(value.body) and _inert(value.orelse)
    if isinstance(value, ast.Call):
        func = value.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        return name in _INERT_CALLS
    return False


def _constant(node: ast.expr) -> bool:
    """An expression of constants only (``3``, ``-1.5``, ``("a", 2)``, ``2 ** 10``)."""
    return all(
        isinstance(
            n,
            (
                ast.Constant,
                ast.Tuple,
                ast.UnaryOp,
                ast.BinOp,
                ast.operator,
                ast.unaryop,
                ast.expr_context,
            ),
        )
        for n in ast.walk(node)
    )


def _function_state(
    fn: ast.FunctionDef | ast.AsyncFunctionDef,
    data: set[str],
    code: set[str],
    own: set[str],
    imported: set[str],
    passable: set[str],
    shared: frozenset[str] = frozenset(),
) -> set[str]:
    """The module-level state one function of a module may change (:func:`module_state`),
    and the state of the closure it is (an object of an enclosing function it mutates).
    ``passable``: the module's data a call it is passed to may change (a library call as much
    as one of the module's own functions: ``np.add.at(SEEN, i, 1)``, ``random.shuffle(ORDER)``,
    ``torch.randn(n, generator=G)``; before session 33 only the module's own functions
    counted, and a replay read such an object as a fresh import made it, silently)."""
    enclosing = _BUILTIN_NAMES | data | code | imported
    declared: set[str] = set()
    out: set[str] = set()
    for node in _own_nodes(fn.body):
        if isinstance(node, ast.Global):
            declared.update(node.names)
        elif isinstance(node, ast.Nonlocal):
            declared.update(node.names)
            out.update(f"{fn.name}: nonlocal {n}" for n in node.names)
    stored = {
        n.id
        for n in _own_nodes(fn.body)
        if isinstance(n, ast.Name) and isinstance(n.ctx, (ast.Store, ast.Del))
    }
    out |= stored & declared  # a global (or a closure's cell) rebound
    local = (_args(fn) | stored) - declared
    is_classmethod = any(
        isinstance(d, ast.Name) and d.id == "classmethod" for d in fn.decorator_list
    )
    first = fn.args.args[0].arg if fn.args.args else None
    for node in _own_nodes(fn.body):
        if isinstance(node, (ast.Attribute, ast.Subscript)) and isinstance(
            node.ctx, (ast.Store, ast.Del)
        ):
            root = _root(node)
            if root is not None and root not in local and root in data | code | declared:
                out.add(root)
            elif root is not None and root not in local | enclosing:
                out.add(f"{fn.name}: closure {root}")
            elif (
                root == "type"
                or "'__class__'" in ast.dump(node)
                or (is_classmethod and root == first)
                or (first is not None and _through_shared(node.value, first, shared))
            ):
                out.add(f"{fn.name}: class attribute")
        elif (
            isinstance(node, ast.AugAssign)
            and first is not None
            and _through_shared(node.target, first, shared)
        ):
            out.add(f"{fn.name}: class attribute")  # ``self.seen += [v]``
        elif isinstance(node, ast.Call):
            func = node.func
            if (
                isinstance(func, ast.Attribute)
                and first is not None
                and func.attr not in PURE_METHODS
                and func.attr not in SINK_METHODS
                and _through_shared(func.value, first, shared)
            ):
                out.add(f"{fn.name}: class attribute")  # ``self.seen.append(v)`` (s44)
            if isinstance(func, ast.Attribute):
                root = _root(func.value)
                quiet = func.attr in PURE_METHODS or func.attr in SINK_METHODS
                if root is not None and root not in local and root in data | declared and not quiet:
                    out.add(root)
                elif root is not None and root not in local | enclosing and not quiet:
                    out.add(f"{fn.name}: closure {root}")
            elif isinstance(func, ast.Name) and func.id in own:
                for arg in [*node.args, *(k.value for k in node.keywords)]:
                    root = _root(arg)
                    if root is not None and root not in local and root in data | declared:
                        out.add(root)
            if _may_change_arguments(func, own):
                for arg in [*node.args, *(k.value for k in node.keywords)]:
                    root = _root(arg)
                    if root is not None and root not in local and root in passable | declared:
                        out.add(root)
    return out


def _may_change_arguments(func: ast.expr, own: set[str]) -> bool:
    """Whether a call of ``func`` may change what is passed to it: any call but a pure builtin
    (``len``, ``float``), a method that only reads (``x.to(DEVICE)``, ``x.view(SHAPE)``), an
    output method (``log.info(STATS)``), and the module's own functions (followed apart)."""
    if isinstance(func, ast.Name):
        return func.id not in PURE_CALLS and func.id not in own
    if isinstance(func, ast.Attribute):
        return func.attr not in PURE_METHODS and func.attr not in SINK_METHODS
    return True


def imported_names(source: str, modules: Iterable[str]) -> frozenset[str]:
    r"""Names ``source`` binds (in any scope) by importing one of ``modules`` (top-level module
    or package names: ``helpers`` covers ``import helpers``, ``import helpers.io as hio``,
    ``from helpers import step``), or by a relative import (``from . import steps``).

    Example:
        >>> src = "import torch, helpers\nimport pkg.steps as st\n"
        >>> src += "from pkg.io import load, save as keep\nfrom . import local\n"
        >>> src += "def main():\n    from helpers import CALLS\n"
        >>> sorted(imported_names(src, ["helpers", "pkg"]))
        ['CALLS', 'helpers', 'keep', 'load', 'local', 'st']
        >>> sorted(imported_names("from helpers import *\nx = step(len(y))\n", ["helpers"]))
        ['step', 'y']
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return frozenset()
    wanted = set(modules)
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in wanted:
                    out.add(a.asname or a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and (
            node.level or (node.module or "").split(".")[0] in wanted
        ):
            out.update(a.asname or a.name for a in node.names if a.name != "*")
            if any(a.name == "*" for a in node.names):  # any name the script does not bind
                out |= _free_names(tree)
    return frozenset(out)


def _free_names(tree: ast.Module) -> set[str]:
    """Names ``tree`` reads but never binds, builtins left out (what a star import may bind)."""
    loaded: set[str] = set()
    bound: set[str] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Name):
            (loaded if isinstance(n.ctx, ast.Load) else bound).add(n.id)
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(n.name)
        elif isinstance(n, ast.arg):
            bound.add(n.arg)
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in n.names)
    return loaded - bound - _BUILTIN_NAMES


def _summaries(tree: ast.Module) -> tuple[dict[str, _Summary], _Summary]:
    """The :class:`_Summary` of every function of ``tree`` by name (functions sharing a name
    are merged), computed to a fixed point over the calls between them; and the merged summary
    of the functions that escape (used other than by calling them by name)."""
    defs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    lambdas, anonymous = _lambdas(tree)
    defs += lambdas
    called = {
        id(c.func) for c in ast.walk(tree) if isinstance(c, ast.Call)
    }  # a name in a call's function position is a call, not an escape
    loaded = {
        n.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and id(n) not in called
    }
    owners = _method_classes(tree)
    closures = _closures(tree)
    out: dict[str, _Summary] = {}
    for _ in range(20):
        token = _CALLEES.set(out)
        try:
            new: dict[str, _Summary] = {}
            for fn in defs:
                one = _summary(fn, owners.get(id(fn)))
                shut = closures.get(id(fn))
                if shut:
                    # a nested function's free names that its enclosing functions bind (a
                    # decorator's ``fn`` in its wrapper) are no state of the script's: they
                    # made a loop "read fn, not captured" (sweep Z F4), unless some function
                    # rebinds them through ``nonlocal`` (a call counter: state)
                    one = replace(one, mutates=one.mutates - shut, reads=one.reads - shut)
                old = new.get(fn.name)
                if old is not None:  # two functions of one name: their arguments unknown
                    one = _Summary(old.mutates | one.mutates, old.reads | one.reads)
                new[fn.name] = one
        finally:
            _CALLEES.reset(token)
        if new == out:
            break
        out = new
    loaded |= anonymous  # a lambda passed on (a hook, a callback) runs where it is called
    bound, holders = _bound_methods(tree, called, out)
    loaded |= bound
    escaped = _Summary(
        frozenset(n for name, s in out.items() if name in loaded for n in s.mutates)
        | _passed_instances(tree)
        | holders,
        frozenset(n for name, s in out.items() if name in loaded for n in s.reads),
    )
    return out, escaped


def _locals(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """The names local to ``fn``: its parameters and what its own scope binds (assignment,
    ``del``, ``def``, ``class``, import, ``except ... as``), less what it declares ``global``
    or ``nonlocal``."""
    declared = {
        name
        for node in _own_nodes(fn.body)
        if isinstance(node, (ast.Global, ast.Nonlocal))
        for name in node.names
    }
    bound = {
        node.id
        for node in _own_nodes(fn.body)
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del))
    }
    for node in _own_nodes(fn.body):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
    return (_args(fn) | bound) - declared


def _closures(tree: ast.Module) -> dict[int, frozenset[str]]:
    """Per nested function (by id): the names its enclosing functions bind (parameters and
    locals) that no nested function may change: none declares them ``nonlocal``, stores into
    them (``count[0] += 1``, ``box.n = 1``), calls a method on them or passes them to a call
    (a decorator's ``fn``, only called and read: ``fn(*a)``, ``fn.__name__``). A changed one is
    state a checkpoint never holds (s24's ``closure_keeps_its_counts_in_a_list_cell``)."""
    rebound = {
        name for node in ast.walk(tree) if isinstance(node, ast.Nonlocal) for name in node.names
    }
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, (ast.Subscript, ast.Attribute)) and isinstance(
                node.ctx, (ast.Store, ast.Del)
            ):
                rebound |= _roots(node)
            elif isinstance(node, ast.AugAssign):
                rebound |= _roots(node.target)
            elif isinstance(node, ast.Call):
                if isinstance(node.func, ast.Attribute):
                    rebound |= _roots(node.func.value)
                callee = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
                if callee in _READ_ONLY_CALLS:
                    continue  # (``print(fn.__name__)``, ``functools.wraps(fn)``)
                for arg in [*node.args, *(k.value for k in node.keywords)]:
                    rebound |= _roots(arg)
    out: dict[int, frozenset[str]] = {}

    def own(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> frozenset[str]:
        return frozenset(_locals(fn) - rebound)

    def visit(node: ast.AST, enclosing: frozenset[str]) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                mine = {
                    n
                    for node in _own_nodes(child.body)
                    if isinstance(node, ast.Global)
                    for n in node.names
                }
                if enclosing - mine:
                    out[id(child)] = enclosing - mine
                visit(child, (enclosing - mine) | own(child))
            else:
                visit(child, enclosing)

    visit(tree, frozenset())
    return out


#: builtins that change none of their arguments
_READ_ONLY_CALLS = frozenset(
    {
        "print",
        "len",
        "str",
        "repr",
        "format",
        "isinstance",
        "round",
        "int",
        "float",
        "bool",
        "wraps",
    }
)


def _roots(node: ast.AST) -> set[str]:
    """The name an expression is reached from (``a`` of ``a.b[0].c``, of ``*a``), if any."""
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
        node = node.value
    return {node.id} if isinstance(node, ast.Name) else set()


@dataclass(frozen=True)
class _Owner:
    """The class holding a method, as :func:`_class_changed` needs it."""

    #: the class and the script's classes derived from it: what ``type(self)``,
    #: ``self.__class__`` and a classmethod's ``cls`` may be
    kinds: frozenset[str] = frozenset()
    #: attributes the class body binds to objects (``hist = []``, ``stats = {"n": 0}``,
    #: ``buf = np.zeros(4)``; its script base classes' too) that no method binds on an
    #: instance: ``self.hist.append(v)`` changes the class's list
    shared: frozenset[str] = frozenset()
    #: where the class is a descriptor (``__get__``/``__set__``): the classes whose body holds
    #: an instance of it (``c = Store()``), changed where the descriptor changes itself
    holders: frozenset[str] = frozenset()


def _method_classes(tree: ast.Module) -> dict[int, _Owner]:
    """The :class:`_Owner` of each method of the script's classes, by ``id`` of its node."""
    classes = {c.name: c for c in ast.walk(tree) if isinstance(c, ast.ClassDef)}
    bases = {
        name: {b.id for b in c.bases if isinstance(b, ast.Name)} for name, c in classes.items()
    }

    def derived(name: str) -> frozenset[str]:
        out, todo = {name}, [name]
        while todo:
            base = todo.pop()
            for sub, its in bases.items():
                if base in its and sub not in out:
                    out.add(sub)
                    todo.append(sub)
        return frozenset(out)

    def ancestry(name: str) -> list[ast.ClassDef]:
        out, todo = [], [name]
        while todo:
            c = classes.get(todo.pop())
            if c is not None and c not in out:
                out.append(c)
                todo += sorted(bases.get(c.name, ()))
        return out

    def bound(cls: ast.ClassDef) -> set[str]:  # class-body names bound to objects
        out: set[str] = set()
        for stmt in cls.body:
            if isinstance(stmt, (ast.Assign, ast.AnnAssign)) and stmt.value is not None:
                if _constant(stmt.value) or isinstance(stmt.value, ast.Lambda):
                    continue
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                out |= {n for t in targets for n in _stored_names(t)}
        return out

    def on_instance(cls: ast.ClassDef) -> set[str]:  # ``self.x = ...`` in its methods
        out: set[str] = set()
        for fn in cls.body:
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and fn.args.args:
                me = fn.args.args[0].arg
                for n in _own_nodes(fn.body):
                    if (
                        isinstance(n, ast.Attribute)
                        and isinstance(n.ctx, ast.Store)
                        and isinstance(n.value, ast.Name)
                        and n.value.id == me
                        and not _augmented_target(fn, n)
                    ):
                        out.add(n.attr)
        return out

    def holders(name: str) -> frozenset[str]:
        out: set[str] = set()
        for other, c in classes.items():
            for stmt in c.body:
                if (
                    isinstance(stmt, (ast.Assign, ast.AnnAssign))
                    and isinstance(stmt.value, ast.Call)
                    and isinstance(stmt.value.func, ast.Name)
                    and stmt.value.func.id in derived(name)
                ):
                    out |= derived(other)
        return frozenset(out)

    owners: dict[int, _Owner] = {}
    for cls in classes.values():
        line = ancestry(cls.name)
        shared = set().union(*(bound(c) for c in line)) - set().union(
            *(on_instance(c) for c in line)
        )
        descriptor = any(
            isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
            and fn.name in ("__get__", "__set__", "__delete__")
            for fn in cls.body
        )
        owner = _Owner(
            derived(cls.name),
            frozenset(shared),
            holders(cls.name) if descriptor else frozenset(),
        )
        for fn in cls.body:
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                owners[id(fn)] = owner
    return owners


def _augmented_target(fn: ast.AST, node: ast.AST) -> bool:
    """Whether ``node`` is the target of an augmented assignment in ``fn`` (``self.hist +=
    [v]`` extends the class's list in place before binding it on the instance)."""
    return any(isinstance(a, ast.AugAssign) and a.target is node for a in ast.walk(fn))


def _class_changed(
    fn: ast.FunctionDef | ast.AsyncFunctionDef, shared: frozenset[str] = frozenset()
) -> bool:
    """Whether a method changes its class: through ``type(self)`` or ``self.__class__``
    (``type(self).total += 1``, ``self.__class__.seen.append(x)``), in a classmethod through
    ``cls`` (called on an instance too: ``m.cbump()``), or in place through an attribute of
    ``shared`` read on ``self`` (``self.hist.append(v)``, ``self.stats["n"] += 1`` where the
    class body binds ``hist = []``). Session 44: such a change was not seen, and a replay that
    restored a checkpoint read the class's start value, silently (6 for a full re-run's 9)."""
    if not fn.args.args:
        return False
    first = fn.args.args[0].arg
    classmethod = any(_decorator_name(d) == "classmethod" for d in fn.decorator_list)

    def via_class(node: ast.AST) -> bool:
        if classmethod:  # ``cls.total += 1``, ``cls.seen.append(x)``; not ``cls(...)``
            return _root(node) == first
        if _through_shared(node, first, shared):
            return True
        while isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred, ast.Call)):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "type"
                and len(node.args) == 1
                and isinstance(node.args[0], ast.Name)
                and node.args[0].id == first
            ):
                return True
            if (
                isinstance(node, ast.Attribute)
                and node.attr == "__class__"
                and isinstance(node.value, ast.Name)
                and node.value.id == first
            ):
                return True
            node = node.func if isinstance(node, ast.Call) else node.value
        return False

    for node in _own_nodes(fn.body):
        if isinstance(node, (ast.Attribute, ast.Subscript)) and isinstance(
            node.ctx, (ast.Store, ast.Del)
        ):
            if via_class(node.value):
                return True
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if node.func.attr not in PURE_METHODS and via_class(node.func.value):
                return True
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in ("setattr", "delattr")
            and node.args
            and via_class(node.args[0])
        ):
            return True
        elif (
            isinstance(node, ast.AugAssign)
            and isinstance(node.target, ast.Attribute)
            and _through_shared(node.target, first, shared)
        ):
            return True  # ``self.hist += [v]`` extends the class's list
    return False


def _through_shared(node: ast.AST, first: str, shared: frozenset[str]) -> bool:
    """Whether ``node`` reaches into ``<first>.<a shared class attribute>``."""
    if not shared:
        return False
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred, ast.Call)):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == first
            and node.attr in shared
        ):
            return True
        node = node.func if isinstance(node, ast.Call) else node.value
    return False


def _decorator_name(node: ast.expr) -> str | None:
    """``classmethod`` for ``@classmethod``, ``cached`` for ``@functools.cached``..."""
    if isinstance(node, ast.Call):
        node = node.func
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else None


def _bound_methods(
    tree: ast.Module, called: set[int], summaries: Mapping[str, _Summary]
) -> tuple[set[str], frozenset[str]]:
    """Methods of the script's classes taken as bound methods, not called where they are
    named: ``ops = {"add": m.add}``, ``getattr(m, "add")``. They run wherever the object they
    were put in is called (``ops["add"](1)``), so, like a function that escapes, at any call
    the loops make: (their names, whose summaries count as escaped; the objects they are bound
    to, where the method changes its object). Session 44: a counter changed through such a
    method was not seen as changed, silently (6 for 9)."""
    changing: set[str] = set()  # names of the script's methods that change their object
    methods: set[str] = set()
    for cls in ast.walk(tree):
        if not isinstance(cls, ast.ClassDef):
            continue
        for fn in cls.body:
            if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) and fn.args.args:
                methods.add(fn.name)
                if fn.args.args[0].arg in _changed(fn.body):
                    changing.add(fn.name)
    names: set[str] = set()
    holders: set[str] = set()
    for n in ast.walk(tree):
        attr, target = None, None
        if (
            isinstance(n, ast.Attribute)
            and isinstance(n.ctx, ast.Load)
            and id(n) not in called
            and n.attr in methods
        ):
            attr, target = n.attr, n.value
        elif (
            isinstance(n, ast.Call)
            and isinstance(n.func, ast.Name)
            and n.func.id == "getattr"
            and len(n.args) >= 2
        ):
            key = n.args[1]
            target = n.args[0]
            if isinstance(key, ast.Constant) and isinstance(key.value, str):
                attr = key.value if key.value in methods else None
            else:  # any of them
                names |= methods
                if changing:
                    root = _root(target)
                    if root:
                        holders.add(root)
                continue
        if attr is None or target is None:
            continue
        names.add(attr)
        root = _root(target)
        if root and (attr in changing or summaries.get(attr, _Summary()).mutates):
            holders.add(root)
    return names, frozenset(holders)


def _passed_instances(tree: ast.Module) -> frozenset[str]:
    """Names bound to an instance of a script class that are passed to a call as a callable
    that changes the instance: the instance itself where its ``__call__`` changes ``self``
    (``net.register_forward_hook(stats)``), or one of such methods (``...(stats.record)``).
    The call keeps it and runs it later, at any call the loops make (``net(x)`` runs the hook):
    the loops change the instance. (Counted only where it was passed, the hook's counts came
    back from no checkpoint and a replay skipping the step loop read the start's: s34.)"""
    changing: dict[str, set[str]] = {}  # class name -> its methods that change self
    for cls in ast.walk(tree):
        if not isinstance(cls, ast.ClassDef):
            continue
        for fn in cls.body:
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)) or not fn.args.args:
                continue
            if fn.args.args[0].arg in _changed(fn.body):
                changing.setdefault(cls.name, set()).add(fn.name)
    if not changing:
        return frozenset()
    kind: dict[str, str] = {}  # name -> the script class it was bound to an instance of
    for n in ast.walk(tree):
        if not isinstance(n, ast.Assign):
            continue
        pairs = [(t, n.value) for t in n.targets]
        for t in n.targets:  # ``a, b = A(), B()``
            if isinstance(t, ast.Tuple) and isinstance(n.value, ast.Tuple):
                pairs += list(zip(t.elts, n.value.elts, strict=False))
        for t, v in pairs:
            if (
                isinstance(t, ast.Name)
                and isinstance(v, ast.Call)
                and isinstance(v.func, ast.Name)
                and v.func.id in changing
            ):
                kind[t.id] = v.func.id
    out: set[str] = set()
    for call in ast.walk(tree):
        if not isinstance(call, ast.Call):
            continue
        for arg in [*call.args, *(k.value for k in call.keywords)]:
            if isinstance(arg, ast.Starred):
                arg = arg.value
            if isinstance(arg, ast.Name) and "__call__" in changing.get(kind.get(arg.id, ""), ()):
                out.add(arg.id)
            elif (
                isinstance(arg, ast.Attribute)
                and isinstance(arg.value, ast.Name)
                and arg.attr in changing.get(kind.get(arg.value.id, ""), ())
            ):
                out.add(arg.value.id)
    return frozenset(out)


def _lambdas(tree: ast.Module) -> tuple[list[ast.FunctionDef], set[str]]:
    """Every lambda of ``tree`` as a function (``return body``): named by the name it is
    assigned to (``record = lambda v: hist.append(v)``), else by its place, then listed among
    the names of the functions that escape (passed to a call: a hook, a key function)."""
    named = {
        id(n.value): n.targets[0].id
        for n in ast.walk(tree)
        if isinstance(n, ast.Assign)
        and len(n.targets) == 1
        and isinstance(n.targets[0], ast.Name)
        and isinstance(n.value, ast.Lambda)
    }
    out: list[ast.FunctionDef] = []
    anonymous: set[str] = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Lambda):
            name = named.get(id(n)) or f"<lambda {n.lineno}:{n.col_offset}>"
            if id(n) not in named:
                anonymous.add(name)
            fn = ast.FunctionDef(
                name=name, args=n.args, body=[ast.Return(n.body)], decorator_list=[], returns=None
            )
            out.append(ast.copy_location(fn, n))
    return out, anonymous


def _summary(fn: ast.FunctionDef | ast.AsyncFunctionDef, owner: _Owner | None = None) -> _Summary:
    """What calling ``fn`` may change and read outside its locals; ``owner``: where ``fn`` is
    a method, its class (a change of the class through ``type(self)``, ``self.__class__``, a
    classmethod's ``cls`` or a class attribute changes it and the classes derived from it; a
    descriptor changing itself changes the classes holding it)."""
    local = _locals(fn)
    mutates = _changed(fn.body) - local
    if owner is not None:
        if _class_changed(fn, owner.shared):
            mutates |= owner.kinds
        if owner.holders and fn.args.args and fn.args.args[0].arg in _changed(fn.body):
            mutates |= owner.holders  # a descriptor's state lives in the classes holding it
    reads = set()
    for stmt in fn.body:
        reads |= _loads(stmt)
    a = fn.args
    if a.vararg is not None or a.kwarg is not None or owner is not None:
        return _Summary(frozenset(mutates), frozenset(reads - local))
    positional = tuple(x.arg for x in (*a.posonlyargs, *a.args))
    keywords = frozenset(x.arg for x in (*a.args, *a.kwonlyargs))
    # a parameter changed by the body (or rebound in it: counted, as the analysis cannot tell
    # which object a later change reaches), its defaults aside
    changes = _changed(fn.body) & (set(positional) | keywords)
    return _Summary(
        frozenset(mutates), frozenset(reads - local), positional, keywords, frozenset(changes)
    )


def _flor_aliases(tree: ast.Module) -> tuple[frozenset[str], frozenset[str]]:
    """(names bound to the flor module, names bound to its ``loop`` function)."""
    mods: set[str] = set()
    loops: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.split(".")[0] in FLOR_MODULES:
                    mods.add(a.asname or a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module in FLOR_MODULES:
            for a in node.names:
                if a.name in ("loop", "*"):
                    loops.add(a.asname or "loop")
    return frozenset(mods or {"flor"}), frozenset(loops)


class _Finder:
    def __init__(
        self, aliases: tuple[frozenset[str], frozenset[str]], escaped: _Summary = _Summary()
    ) -> None:
        self.modules, self.loop_names = aliases
        self.escaped = escaped
        self.found: list[LoopFacts] = []
        #: names bound in the scope being walked to a wrapper of a ``flor.loop`` call
        #: (``pbar = tqdm(flor.loop("step", data))``), for the ``for`` that iterates them
        self.wrapped: dict[str, tuple[str, ast.Call]] = {}
        self.wrapped_values: dict[str, ast.expr] = {}  # and the values they were bound to
        self.classes: frozenset[str] = frozenset()  # the classes the script defines
        #: the scope's bindings of a name to another name's object (:func:`_aliases_in`): a
        #: loop that adds into ``acc`` in place changes ``total`` where ``acc = total`` stands
        #: anywhere in the scope (before the loop, or in the loop around it)
        self.bound: list[tuple[str, str]] = []

    def loop_call(self, node: ast.expr) -> tuple[str, ast.Call] | None:
        """``(name, call)`` when ``node`` contains ``flor.loop("name", ...)``."""
        for sub in ast.walk(node):
            if not isinstance(sub, ast.Call) or not sub.args:
                continue
            func = sub.func
            is_loop = (
                isinstance(func, ast.Attribute)
                and func.attr == "loop"
                and isinstance(func.value, ast.Name)
                and func.value.id in self.modules
            ) or (isinstance(func, ast.Name) and func.id in self.loop_names)
            first = sub.args[0]
            if is_loop and isinstance(first, ast.Constant) and isinstance(first.value, str):
                return first.value, sub
        return None

    def scope(self, body: list[ast.stmt], name: str) -> None:
        """Find the flor loops of one scope (and, recursively, of the scopes inside it)."""
        self.wrapped, self.wrapped_values = {}, {}
        self.bound = _aliases_in(body)
        self._walk(body, name, parent=None, after=[], guarded=False)
        for node in _own_nodes(body):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                self.scope(node.body, node.name)

    def _walk(
        self,
        body: list[ast.stmt],
        scope: str,
        parent: int | None,
        after: list[list[ast.stmt]],
        guarded: bool,
        withs: tuple[ast.withitem, ...] = (),
    ) -> None:
        """Visit the statements of ``body``; ``after`` holds the statement lists that follow
        ``body`` in the same scope (innermost first), for ``read_after``; ``guarded``: a
        handler of the same scope may catch what ``body`` raises."""
        for i, stmt in enumerate(body):
            rest = [body[i + 1 :], *after]
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                target = stmt.targets[0]
                if isinstance(target, ast.Name):
                    call = self.loop_call(stmt.value)
                    if call is not None:
                        self.wrapped[target.id] = call
                        self.wrapped_values[target.id] = stmt.value
                    else:
                        self.wrapped.pop(target.id, None)
                        self.wrapped_values.pop(target.id, None)
            if isinstance(stmt, (ast.For, ast.AsyncFor)):
                found = self.loop_call(stmt.iter)
                if found is None:  # ``for x in enumerate(pbar)``, pbar wrapping a flor.loop
                    held = [self.wrapped[n] for n in _iterated(stmt.iter) if n in self.wrapped]
                    found = held[0] if len(held) == 1 else None
                if found is not None:
                    facts = self._facts(stmt, found, scope, parent, rest, guarded)
                    # (in a function, the loops it runs are entered with each call)
                    if parent is not None or scope != "<module>":
                        facts = replace(facts, entered=_stateful_items(withs, self.modules))
                    self.found.append(facts)
                    # After an inner loop come the rest of this body, the next iteration of
                    # this loop (its back edge), then what follows this loop.
                    self._walk(stmt.body, scope, stmt.lineno, [stmt.body, *rest], guarded)
                    self._walk(stmt.orelse, scope, parent, rest, guarded, withs)
                    continue
            # a with statement's one block is its body: the loops inside it are entered with it
            inner = (*withs, *stmt.items) if isinstance(stmt, (ast.With, ast.AsyncWith)) else withs
            for block in _blocks(stmt):
                self._walk(block, scope, parent, rest, guarded or _catches(stmt, block), inner)

    def _before_inner(self, node: ast.For | ast.AsyncFor) -> frozenset[str]:
        """Names ``node``'s body definitely assigns before its first statement that holds a
        flor loop (empty when none does: nothing is known to be assigned before it)."""
        prefix: list[ast.stmt] = []
        for stmt in node.body:
            if any(
                isinstance(n, (ast.For, ast.AsyncFor)) and self.loop_call(n.iter) is not None
                for n in _own_nodes([stmt])
            ):
                assigned = _flow(prefix, set(), set())
                return frozenset(assigned - _stored_names(node.target))
            prefix.append(stmt)
        return frozenset()

    def _facts(
        self,
        node: ast.For | ast.AsyncFor,
        found: tuple[str, ast.Call],
        scope: str,
        parent: int | None,
        rest: list[list[ast.stmt]],
        guarded: bool = False,
    ) -> LoopFacts:
        targets = frozenset(_stored_names(node.target))
        # A function that escaped (a hook, a callback) may run at any call the body makes.
        changed = set(targets) | _changed(node.body, self.bound) | self.escaped.mutates
        call = found[1]
        for a in call.args[1:]:
            changed |= _iterated(a)  # iterating may advance the object's own state
        changed |= _iterated(node.iter)  # a wrapper of the flor.loop (a progress bar) too
        for sub in ast.walk(node.iter):  # progress.wrap(flor.loop(...)): a method makes the
            if isinstance(sub, ast.Call) and sub is not call:  # iterator, and it runs with
                changed |= _call_mutates(sub)  # the loop (its object's state changes)
        wrappers = _wrappers(node.iter, call, self.classes)
        for held in _iterated(node.iter):  # timed = Timed(flor.loop(...)); for x in timed
            if held in self.wrapped_values:
                wrappers |= {held} | _wrappers(self.wrapped_values[held], call, self.classes)
        live_in = _reads_before_defs(node.body, set(targets)) | self.escaped.reads
        # a loop's ``else:`` runs after it (a skipped loop ends normally, so it runs then too)
        after = [*node.orelse, *(s for block in rest for s in block)]
        return LoopFacts(
            name=found[0],
            line=node.lineno,
            call_line=call.lineno,
            end_line=node.end_lineno or node.lineno,
            scope=scope,
            parent=parent,
            targets=targets,
            changed=frozenset(changed - self.modules - self.loop_names),
            live_in=frozenset(live_in),
            read_after=frozenset(_reads_before_defs(after, set()) | self.escaped.reads),
            grads_after=any(
                isinstance(n, ast.Attribute) and n.attr == "grad" and isinstance(n.ctx, ast.Load)
                for block in rest
                if not any(node is sub for stmt in block for sub in ast.walk(stmt))  # back edge
                for stmt in block
                for n in ast.walk(stmt)
            ),
            backprop_after=any(
                _backpropagates(n)
                for block in _until_back_edge(rest, node)
                for stmt in block
                for n in ast.walk(stmt)
            ),
            left_safely=not (node.orelse or guarded or _leaves_scope(node.body)),
            yields=any(isinstance(n, (ast.Yield, ast.YieldFrom)) for n in _own_nodes(node.body)),
            before_inner=self._before_inner(node),
            wrappers=frozenset(wrappers - self.modules - self.loop_names),
            body_withs=_stateful_items(
                tuple(
                    item
                    for n in _own_nodes(node.body)
                    if isinstance(n, (ast.With, ast.AsyncWith))
                    for item in n.items
                ),
                self.modules,
            ),
        )


def _catches(stmt: ast.stmt, block: list[ast.stmt]) -> bool:
    """Whether ``stmt`` may catch an exception raised in its ``block``: the body of a ``try``
    with handlers, or of ``with contextlib.suppress(...)``."""
    if isinstance(stmt, ast.Try) or type(stmt).__name__ == "TryStar":
        return block is getattr(stmt, "body", None) and bool(getattr(stmt, "handlers", []))
    if isinstance(stmt, (ast.With, ast.AsyncWith)):
        for item in stmt.items:
            call = item.context_expr
            func = call.func if isinstance(call, ast.Call) else call
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name == "suppress":
                return True
    return False


def _leaves_scope(body: list[ast.stmt]) -> bool:
    """``body`` has a ``return``, ``yield`` or ``yield from`` of its own scope."""
    return any(isinstance(n, (ast.Return, ast.Yield, ast.YieldFrom)) for n in _own_nodes(body))


def _blocks(stmt: ast.stmt) -> Iterator[list[ast.stmt]]:
    """The statement lists nested in a compound statement of the same scope."""
    for attr in ("body", "orelse", "finalbody"):
        value = getattr(stmt, attr, None)
        if isinstance(value, list) and not isinstance(stmt, _SCOPES):
            yield value
    for handler in getattr(stmt, "handlers", []) or []:
        yield handler.body
    for case in getattr(stmt, "cases", []) or []:
        yield case.body


def _own_nodes(body: list[ast.stmt]) -> Iterator[ast.AST]:
    """Nodes of ``body`` that belong to its scope (not inside a nested def, class or lambda);
    a nested def or class itself is yielded."""
    stack: list[ast.AST] = list(reversed(body))
    while stack:
        node = stack.pop()
        yield node
        if isinstance(node, (*_SCOPES, *_COMPREHENSIONS)):
            continue
        stack.extend(reversed(list(ast.iter_child_nodes(node))))


def _stored_names(target: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}


def _until_back_edge(rest: list[list[ast.stmt]], node: ast.AST) -> list[list[ast.stmt]]:
    """The blocks of ``rest`` that run after ``node`` in the same iteration of the loop around
    it: up to the back edge (the first block that holds ``node``), or all of them."""
    out = []
    for block in rest:
        if any(node is sub for stmt in block for sub in ast.walk(stmt)):
            break
        out.append(block)
    return out


def _backpropagates(node: ast.AST) -> bool:
    """A call that back-propagates: ``x.backward()``, ``torch.autograd.grad(...)``,
    ``autograd.backward(...)``, ``scaler.scale(loss).backward()``."""
    if not isinstance(node, ast.Call):
        return False
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    return name == "backward" or (name == "grad" and "autograd" in ast.dump(func))


def _root(node: ast.AST) -> str | None:
    """``a`` for ``a``, ``a.b.c``, ``a[i].b``, ``a.m()``, ``getattr(a, "b").c``..."""
    while True:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred)):
            node = node.value
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "getattr" and node.args:
                # an attribute by name (session 45: ``getattr(stats, "train").append(v)``
                # changed ``getattr``, not ``stats``; a replay read the list the script's
                # start made: 0 for 20, silently)
                node = node.args[0]
            else:
                node = func
        else:
            return None


def _aliases_in(body: list[ast.stmt]) -> list[tuple[str, str]]:
    """(name, root) for each binding in ``body``'s own scope of a name to (a part of) another
    name's object: ``acc = total``, ``m = meters["train"]``, ``for m in meters.values()``."""
    aliases: list[tuple[str, str]] = []
    for node in _own_nodes(body):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for target in targets:
                aliases += _aliased(target, node.value)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            iterable = node.iter
            if (
                isinstance(iterable, ast.Call)
                and isinstance(iterable.func, ast.Attribute)
                and iterable.func.attr in ("values", "items")
            ):
                iterable = iterable.func.value
            for source in _part_roots(iterable):
                aliases += [(n, source) for n in _stored_names(node.target)]
    return aliases


def _changed(body: list[ast.stmt], bound: Iterable[tuple[str, str]] = ()) -> set[str]:
    """Names ``body`` binds, and roots of objects it may mutate, in its own scope.

    A name bound to a part of another object (``m = meters["train"]``, ``m = self.meter``,
    ``for m in meters.values()``) is an alias: mutating it (``m.total += v``) mutates that
    object too, so its root counts as changed. ``bound``: such bindings made elsewhere in the
    scope (``acc = total`` before the loop, or in the loop around it, ``acc += x`` in it)."""
    out: set[str] = set()
    mutated: set[str] = set()  # roots of objects mutated in place (not only rebound)
    # (name, root of the object it was bound to part of)
    aliases: list[tuple[str, str]] = [*_aliases_in(body), *bound]
    for node in _own_nodes(body):
        if isinstance(node, ast.AugAssign) and isinstance(node.target, ast.Name):
            # ``acc += x`` on a tensor, an array or a list changes its object in place: where
            # ``acc = total`` made it another name's, that name changes too (on a number it
            # only rebinds: one name saved too many)
            mutated.add(node.target.id)
        hooked = _dunders_run(node)
        out |= hooked
        mutated |= hooked
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            out.add(node.id)
        elif isinstance(node, (ast.Attribute, ast.Subscript)) and isinstance(
            node.ctx, (ast.Store, ast.Del)
        ):
            named = _globals_key(node)
            if named:
                out.add(named)  # globals()["last_loss"] = v binds the global
            if _main_attr(node):
                out.add(node.attr)  # type: ignore[union-attr]  # __main__.cnt += 1 (s44)
            root = _root(node)
            if root:
                out.add(root)
                mutated.add(root)
            reached = _reached_through_calls(node.value)
            out |= reached
            mutated |= reached
        elif isinstance(node, (ast.Attribute, ast.Subscript)) and isinstance(node.ctx, ast.Load):
            hidden = _HIDDEN.get()
            if (isinstance(node, ast.Attribute) and node.attr in hidden.properties) or (
                isinstance(node, ast.Subscript) and _root(node.value) in hidden.subscripted
            ):
                root = _root(node)  # a read that runs a getter changing its object
                if root:
                    out.add(root)
                    mutated.add(root)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out.update((a.asname or a.name).split(".")[0] for a in node.names if a.name != "*")
        elif isinstance(node, ast.ExceptHandler) and node.name:
            out.add(node.name)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            out |= _iterated(node.iter)  # iterating may advance the object's own state
        elif isinstance(node, _COMPREHENSIONS):
            local = {n for g in node.generators for n in _stored_names(g.target)}
            inside: set[str] = set()
            for sub in ast.walk(node):
                if isinstance(sub, ast.comprehension):
                    out |= _iterated(sub.iter)
                elif isinstance(sub, ast.Call):
                    inside.update(_call_mutates(sub))
                elif isinstance(sub, ast.NamedExpr):
                    out.add(sub.target.id)
            for g in node.generators:  # [m.update() for m in [meters["grad"]]]
                if _stored_names(g.target) & inside:
                    parts = _part_roots(g.iter)
                    out |= parts
                    mutated |= parts
            out |= inside - local
        elif isinstance(node, ast.Call):
            found = _call_mutates(node)
            out.update(found)
            mutated.update(found)
        elif isinstance(node, ast.NamedExpr):
            out.add(node.target.id)
        if isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:  # ``with section:`` runs its __enter__ and __exit__
                expr = item.context_expr
                root = None if isinstance(expr, ast.Call) else _root(expr)
                if root and root not in STATELESS_CONTEXTS:
                    out.add(root)
                    mutated.add(root)
    grown = True
    while grown:  # aliases of aliases
        grown = False
        for name, source in aliases:
            if name in mutated and source not in mutated:
                mutated.add(source)
                out.add(source)
                grown = True
    return out


#: In-place operator methods, run by an augmented assignment of any name or attribute.
_INPLACE_DUNDERS = (
    "__iadd__", "__isub__", "__imul__", "__imatmul__", "__itruediv__", "__ifloordiv__",
    "__imod__", "__ipow__", "__ilshift__", "__irshift__", "__iand__", "__ixor__", "__ior__",
)  # fmt: skip


def _dunders_run(node: ast.AST) -> set[str]:
    """What the script's own special methods that ``node`` runs implicitly may change: an
    attribute store runs a class's ``__setattr__`` (and a descriptor's ``__set__``), an
    attribute read a descriptor's ``__get__``, an augmented assignment ``__iadd__`` and its
    kin. Which object's class it is is not known here, so every such method of the script
    counts (session 44: a ``__setattr__`` appending to a class list, an ``__iadd__`` adding to
    a class total, a descriptor keeping its value: each read after the step loop came back as
    the checkpoint's start, silently)."""
    callees = _CALLEES.get()
    if not callees:
        return set()
    names: tuple[str, ...] = ()
    if isinstance(node, ast.Attribute):
        names = ("__setattr__", "__set__") if isinstance(node.ctx, ast.Store) else ("__get__",)
        if isinstance(node.ctx, ast.Del):
            names = ("__delattr__", "__delete__")
    elif isinstance(node, ast.AugAssign):
        names = _INPLACE_DUNDERS
    elif (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "setattr"
    ):
        names = ("__setattr__", "__set__")
    out: set[str] = set()
    for name in names:
        known = callees.get(name)
        if known is not None:
            out |= known.mutates
    return out


def _main_attr(node: ast.AST) -> bool:
    """Whether ``node`` is ``__main__.x`` (after ``import __main__``): the script's global
    ``x``, when the script runs as ``__main__`` (session 44: ``__main__.cnt += 1`` in a
    function was not seen to change ``cnt``; 6 for a full re-run's 9, silently)."""
    return (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "__main__"
    )


def _globals_key(node: ast.AST) -> str | None:
    """``x`` for ``globals()["x"]``."""
    if (
        isinstance(node, ast.Subscript)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Name)
        and node.value.func.id == "globals"
        and isinstance(node.slice, ast.Constant)
        and isinstance(node.slice.value, str)
    ):
        return node.slice.value
    return None


def _reached_through_calls(node: ast.AST) -> set[str]:
    """The free names of the script's functions whose result an expression reaches into
    (``meter("train")`` in ``meter("train").update(v)``): the object returned may be one any
    of them holds (``return meters[name]``), so changing it changes them."""
    out: set[str] = set()
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Starred, ast.Call)):
        if isinstance(node, ast.Call):
            callee = _callee(node) if isinstance(node.func, ast.Name) else None
            if callee is not None:
                out |= callee.reads
            node = node.func
        else:
            node = node.value
    return out


def _part_roots(node: ast.AST) -> set[str]:
    """The roots of the objects iterating ``node`` may give: ``meters`` for ``meters``,
    ``meters.values()``, ``[meters["train"], meters["val"]]``."""
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return {r for e in node.elts for r in _part_roots(e)}
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in _PART_ITERATORS
    ):
        return _part_roots(node.func.value)
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in _PASSING_ITERATORS
    ):
        # ``zip(ema.parameters(), net.parameters())``: a target may be a part of either
        return {r for a in node.args for r in _part_roots(a)}
    root = _alias_root(node)
    return {root} if root else set()


#: Methods whose iteration gives parts of their object (a module's parameters and buffers
#: share its storage: ``for p in ema.parameters(): p.mul_(d)`` changes ``ema``).
_PART_ITERATORS = frozenset(
    {
        "values",
        "items",
        "parameters",
        "named_parameters",
        "buffers",
        "named_buffers",
        "modules",
        "named_modules",
        "children",
        "named_children",
        "state_dict",
    }
)

#: Builtins that iterate what they are given and pass its items on.
_PASSING_ITERATORS = frozenset({"zip", "enumerate", "reversed", "list", "tuple", "sorted", "iter"})


def _aliased(target: ast.AST, value: ast.AST) -> list[tuple[str, str]]:
    """(name, root) for each name ``target = value`` binds to a part of an existing object,
    element by element for tuples (``tr, va = meters["train"], meters["val"]``)."""
    if isinstance(target, (ast.Tuple, ast.List)) and isinstance(value, (ast.Tuple, ast.List)):
        if len(target.elts) == len(value.elts):
            return [p for t, v in zip(target.elts, value.elts, strict=True) for p in _aliased(t, v)]
        return []
    source = _alias_root(value)
    return [(target.id, source)] if source and isinstance(target, ast.Name) else []


#: Methods that return a part of their object (``tr = history.get("train")``).
_PART_METHODS = frozenset({"get", "setdefault", "__getitem__"})


def _alias_root(node: ast.AST) -> str | None:
    """The root of an expression that names (a part of) an existing object: ``meter``,
    ``self.meter``, ``meters["train"]``, ``history.get("train")``, ``getattr(self, "m")``;
    not another call's result."""
    if isinstance(node, (ast.Name, ast.Attribute, ast.Subscript)):
        return _root(node)
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in _PART_METHODS:
            return _alias_root(func.value)
        if isinstance(func, ast.Name) and func.id == "getattr" and node.args:
            return _alias_root(node.args[0])
    return None


#: Context managers known to keep no state between entry and exit that a value depends on,
#: by the root name of their call (``torch.no_grad()``, ``tqdm(total=n)``, ``open(path)``).
STATELESS_CONTEXTS = frozenset(
    {
        "torch", "tqdm", "trange", "open", "contextlib", "warnings", "nullcontext", "suppress",
        "redirect_stdout", "redirect_stderr", "catch_warnings", "no_grad", "enable_grad",
        "inference_mode", "autocast", "set_grad_enabled", "np", "numpy", "wandb", "mlflow",
        "logging", "os", "time", "threading",
    }
)  # fmt: skip


def _stateful_items(items: tuple[ast.withitem, ...], flor: frozenset[str]) -> tuple[str, ...]:
    """The context managers of ``items`` not known to be stateless (``flor``: the names of
    florsql's module, whose ``checkpointing`` keeps none), as source text."""
    out = []
    for item in items:
        expr = item.context_expr
        root = _root(expr)
        if root in STATELESS_CONTEXTS or root in flor:
            continue
        out.append(ast.unparse(expr))
    return tuple(out)


def _wrappers(node: ast.AST, call: ast.Call, classes: frozenset[str]) -> set[str]:
    """What the callables ``call`` (the ``flor.loop(...)``) is passed through in ``node`` (a
    ``for`` header, or the value a name iterated there was bound to) may change as the loop
    ends, after its checkpoint is taken: ``progress`` of ``progress.wrap(flor.loop(...))``, the
    globals a generator function of the script changes (``counting(flor.loop(...))``), and a
    class of the script with what its ``__iter__``/``__next__`` change (``Window(...)``)."""
    out: set[str] = set()
    callees = _CALLEES.get() or {}

    def changes(name: str) -> frozenset[str]:
        summary = callees.get(name)
        return summary.mutates if summary is not None else frozenset()

    def visit(n: ast.AST) -> bool:  # whether ``call`` is inside ``n``
        if n is call:
            return True
        inside = False
        for child in ast.iter_child_nodes(n):
            inside = visit(child) or inside
        func = n.func if isinstance(n, ast.Call) else None
        if not inside or func is None or _contains(func, call):
            return inside
        if isinstance(func, ast.Attribute) and func.attr not in PURE_METHODS:
            root = _root(func.value)
            if root:
                out.add(root)
            out.update(changes(func.attr))
        elif isinstance(func, ast.Name):
            out.update(changes(func.id))  # a generator function of the script
            if func.id in classes:
                out.add(func.id)
                out.update(changes("__iter__") | changes("__next__"))
        return inside

    visit(node)
    return out


def _contains(node: ast.AST, target: ast.AST) -> bool:
    return any(n is target for n in ast.walk(node))


def _iterated(node: ast.AST) -> set[str]:
    """Names whose objects iterating ``node`` may advance: ``loader`` in ``loader``,
    ``enumerate(loader)``, ``tqdm(loader)``; not the result of a call (``range(n)``)."""
    if isinstance(node, (ast.Name, ast.Attribute, ast.Subscript, ast.Starred)):
        root = _root(node)
        if not root:
            return set()
        # a DataLoader iterates the dataset and sampler it was given: their methods run
        return {root} | _HIDDEN.get().feeds.get(root, frozenset())
    if isinstance(node, ast.Call):
        out = set()
        for arg in [*node.args, *(k.value for k in node.keywords)]:
            if isinstance(arg, (ast.Name, ast.Attribute, ast.Subscript, ast.Call, ast.Starred)):
                out |= _iterated(arg)
        return out
    return set()


def _call_mutates(call: ast.Call) -> set[str]:
    out: set[str] = set()
    func = call.func
    callee = _callee(call)
    if callee is not None:
        out |= callee.mutates  # what a function of the script changes outside itself
    if isinstance(func, ast.Attribute):
        root = _root(func.value)
        if root and func.attr not in PURE_METHODS:
            out.add(root)
            out |= _reached_through_calls(func.value)
    pure = isinstance(func, ast.Name) and func.id in PURE_CALLS
    if isinstance(func, ast.Name) and not pure and func.id not in _PLAIN.get():
        out.add(func.id)  # calling an object (a module's forward, a closure) may change it
    if isinstance(func, ast.Call):
        root = _root(func)  # ``getattr(log, "append")(v)``: a method taken by name (s45)
        if root and root != "getattr":
            out.add(root)
    if isinstance(func, ast.Subscript):
        root = _root(func)  # ``hooks["loss"](v)``: a bound method kept there changes its
        if root:  # object, which the container holds (session 44: silently)
            out.add(root)
    if isinstance(func, ast.Name) and func.id in ITERATING_CALLS:
        for arg in call.args:
            out |= _iterated(arg)
    if isinstance(func, ast.Name) and func.id == "print":
        # ``print(..., file=logf)`` writes to ``logf``: its position (``logf.tell()``), an
        # ``io.StringIO``'s contents (``buf.getvalue()``)
        for k in call.keywords:
            root = _root(k.value) if k.arg == "file" else None
            if root:
                out.add(root)
    if not pure:
        spared = _left_alone(call)
        for arg in [*call.args, *(k.value for k in call.keywords)]:
            if id(arg) in spared:
                continue
            if isinstance(arg, (ast.Name, ast.Attribute, ast.Subscript, ast.Starred)):
                root = _root(arg)
                if root:
                    out.add(root)
    return out


def _left_alone(call: ast.Call) -> set[int]:
    """Ids of the arguments of ``call`` that it surely does not change: those a plain
    function of the script (:func:`_plain_functions`) takes as parameters its body never
    changes (session 47: ``evaluate(net, XV, YV)`` counted as changing the held-out set,
    which no checkpoint captures, so the task ran from the run's start)."""
    func = call.func
    if not isinstance(func, ast.Name) or func.id not in _PLAIN.get():
        return set()
    callee = (_CALLEES.get() or {}).get(func.id)
    if callee is None or callee.params is None:
        return set()
    out: set[int] = set()
    for k, arg in enumerate(call.args):
        if isinstance(arg, ast.Starred):
            return set()  # where the rest go, no one can tell
        if k < len(callee.params) and callee.params[k] not in callee.changes:
            out.add(id(arg))
    for kw in call.keywords:
        if kw.arg is not None and kw.arg in callee.keywords and kw.arg not in callee.changes:
            out.add(id(kw.value))
    return out


def _callee(call: ast.Call) -> _Summary | None:
    """The summary of the script's function ``call`` may call (by name or method name); for a
    call of anything else (an object: ``net(x)``, ``self.head(h)``), what the script's
    ``__call__`` and ``forward`` methods do (a module's forward counting into a global or a
    class attribute runs through ``nn.Module.__call__``)."""
    callees = _CALLEES.get()
    if not callees:
        return None
    func = call.func
    found = None
    if isinstance(func, ast.Name):
        found = callees.get(func.id)  # the script's own function first, whatever its name
        if found is None and func.id in PURE_CALLS:
            return None
    elif isinstance(func, ast.Attribute):
        found = callees.get(func.attr)
    if found is not None:
        return found
    runs = [callees[m] for m in ("__call__", "forward") if m in callees]
    if not runs:
        return None
    return _Summary(
        frozenset().union(*(r.mutates for r in runs)), frozenset().union(*(r.reads for r in runs))
    )


def _loads(node: ast.AST) -> set[str]:
    """Names read by an expression or simple statement (inside lambdas and comprehensions
    too: they read the enclosing scope), and the free names of the script's functions it
    calls."""
    local = {
        name
        for sub in ast.walk(node)
        if isinstance(sub, ast.comprehension)
        for name in _stored_names(sub.target)
    }
    names: set[str] = set()
    for n in ast.walk(node):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
            names.add(n.id)
        elif isinstance(n, ast.Attribute) and _main_attr(n):
            names.add(n.attr)  # __main__.cnt reads the global cnt
        elif isinstance(n, ast.Call):
            callee = _callee(n)
            if callee is not None:
                names |= callee.reads
    return names - local


def reads_before_assigned(body: Iterable[ast.stmt], defined: set[str]) -> set[str]:
    """Names ``body`` may read before a definite assignment in it (``defined``: already
    assigned): what it reads from before it."""
    return _reads_before_defs(body, defined)


def _reads_before_defs(body: Iterable[ast.stmt], defined: set[str]) -> set[str]:
    """Names ``body`` may read before a definite assignment in it (given ``defined``)."""
    reads: set[str] = set()
    _flow(list(body), set(defined), reads)
    return reads


def _flow(body: list[ast.stmt], defined: set[str], reads: set[str]) -> set[str]:
    """Walk ``body`` in order, adding to ``reads``; returns the names definitely assigned."""
    for stmt in body:
        _stmt_flow(stmt, defined, reads)
    return defined


def _read(node: ast.AST | None, defined: set[str], reads: set[str]) -> None:
    if node is not None:
        reads.update(_loads(node) - defined)


def _stmt_flow(stmt: ast.stmt, defined: set[str], reads: set[str]) -> None:
    if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        # A nested def reads the enclosing scope when called: count its free reads now.
        for d in [*stmt.decorator_list, *getattr(stmt, "bases", [])]:
            _read(d, defined, reads)
        reads.update(_loads(stmt) - defined - _changed(stmt.body) - _args(stmt))
        defined.add(stmt.name)
    elif isinstance(stmt, ast.Assign):
        _read(stmt.value, defined, reads)
        for t in stmt.targets:
            _read_target(t, defined, reads)
        for t in stmt.targets:
            defined.update(n for n in _bare_names(t))
    elif isinstance(stmt, ast.AnnAssign):
        _read(stmt.value, defined, reads)
        _read_target(stmt.target, defined, reads)
        if stmt.value is not None:
            defined.update(_bare_names(stmt.target))
    elif isinstance(stmt, ast.AugAssign):
        _read(stmt.value, defined, reads)
        reads.update(_loads_of_target(stmt.target) - defined)
        if isinstance(stmt.target, ast.Name) and stmt.target.id not in defined:
            reads.add(stmt.target.id)
    elif isinstance(stmt, (ast.For, ast.AsyncFor)):
        _read(stmt.iter, defined, reads)
        inner = set(defined) | _stored_names(stmt.target)
        _flow(stmt.body, inner, reads)
        _flow(stmt.orelse, set(defined), reads)
    elif isinstance(stmt, ast.While):
        _read(stmt.test, defined, reads)
        _flow(stmt.body, set(defined), reads)
        _flow(stmt.orelse, set(defined), reads)
    elif isinstance(stmt, ast.If):
        _read(stmt.test, defined, reads)
        a = _flow(stmt.body, set(defined), reads)
        b = _flow(stmt.orelse, set(defined), reads)
        defined |= a & b
    elif isinstance(stmt, (ast.With, ast.AsyncWith)):
        for item in stmt.items:
            _read(item.context_expr, defined, reads)
            if item.optional_vars is not None:
                defined.update(_bare_names(item.optional_vars))
        _flow(stmt.body, defined, reads)
    elif isinstance(stmt, ast.Try) or type(stmt).__name__ == "TryStar":
        body_defs = _flow(getattr(stmt, "body", []), set(defined), reads)
        for handler in getattr(stmt, "handlers", []):
            _read(handler.type, defined, reads)
            scope = set(defined) | ({handler.name} if handler.name else set())
            _flow(handler.body, scope, reads)
        _flow(getattr(stmt, "orelse", []), set(body_defs), reads)
        _flow(getattr(stmt, "finalbody", []), defined, reads)
    elif isinstance(stmt, ast.Match):
        _read(stmt.subject, defined, reads)
        for case in stmt.cases:
            _read(case.guard, defined, reads)
            _flow(case.body, set(defined), reads)
    elif isinstance(stmt, (ast.Import, ast.ImportFrom)):
        defined.update((a.asname or a.name).split(".")[0] for a in stmt.names if a.name != "*")
    else:
        _read(stmt, defined, reads)


def _args(fn: ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) -> set[str]:
    if isinstance(fn, ast.ClassDef):
        return set()
    a = fn.args
    every = [*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg]
    return {x.arg for x in every if x is not None}


def _bare_names(target: ast.AST) -> set[str]:
    """Names a target assigns as a whole (``a``, ``a, b``), not through ``a.x``/``a[i]``."""
    if isinstance(target, ast.Name):
        return {target.id}
    if isinstance(target, (ast.Tuple, ast.List)):
        return {n for elt in target.elts for n in _bare_names(elt)}
    if isinstance(target, ast.Starred):
        return _bare_names(target.value)
    return set()


def _loads_of_target(target: ast.AST) -> set[str]:
    """Names an assignment target reads (``a`` in ``a.x = ...``, ``i`` in ``b[i] = ...``)."""
    if isinstance(target, ast.Name):
        return set()
    if isinstance(target, (ast.Tuple, ast.List)):
        return {n for elt in target.elts for n in _loads_of_target(elt)}
    if isinstance(target, ast.Starred):
        return _loads_of_target(target.value)
    return {n.id for n in ast.walk(target) if isinstance(n, ast.Name)}


def _read_target(target: ast.AST, defined: set[str], reads: set[str]) -> None:
    reads.update(_loads_of_target(target) - defined)


@lru_cache(maxsize=64)
def for_statements(source: str) -> tuple[tuple[int, int, int], ...]:
    """Every ``for`` statement of a script as ``(first line, last header line, last line)``
    (empty when it does not parse): where a loop's header and body lie, so the recording can
    tell that the code running in a frame has left the ``for`` that iterates a ``flor.loop``.

    Example:
        >>> for_statements("for x in (\\n  data\\n):\\n    pass\\nz = 1\\n")
        ((1, 3, 4),)
    """
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return ()
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.For, ast.AsyncFor)):
            end = node.end_lineno or node.lineno
            # The body's first line may share the header's (``for x in y: f(x)``).
            header = max(node.iter.end_lineno or 0, node.body[0].lineno - 1, node.lineno)
            out.append((node.lineno, header, end))
    return tuple(sorted(out))
