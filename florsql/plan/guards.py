"""Whether today's log statement runs in every iteration of its ``flor.loop``.

Where it does, a run that ended an iteration of that loop without a recorded value of the name
lacks it there, even where the run recorded it in other iterations: the old version logged it
under ``if epoch % 2 == 0:``, or in a helper it called only every other epoch (sessions 50 and
51, sweeps S and T: those iterations stayed NULL, said nowhere). Where today's statement is
guarded itself, an iteration without a value is one where it would not have logged either.

"Runs in every iteration" is decided on the text alone, conservatively (a statement taken as
guarded leaves the old behaviour: coverage by any recorded value):

- from the statement up to the body of the ``flor.loop`` ``for`` holding it, every enclosing
  block is the loop's body, a ``with`` (not ``contextlib.suppress``), a ``try``'s ``finally``,
  or the ``if __name__ == "__main__":`` guard, or a branch of an ``if`` whose other branch logs
  the name too (an ``else`` that does; ``elif`` chains alike); an ``if``, ``match``, ``while``,
  a ``try`` body,
  an ``except``, a loop's ``else`` or a plain ``for`` (it may iterate nothing) is a guard;
- no statement before it in those blocks may leave early (``break``, ``continue``, ``return``
  outside a nested loop or function: ``if epoch < warmup: continue``); a ``raise`` ends the
  run in that iteration, which stays open (no run that ended it lacks a value there);
- the call is a statement of its own, or the value of an assignment (``cond and flor.log(...)``,
  ``... if c else ...``, a comprehension or a lambda around it is a guard);
- inside a function, the function's body is read the same way, and every call of it the file
  makes (by name, 4 calls deep) must run in every iteration of its own loop;
- where the file has several ``flor.loop`` loops of one name (two training phases, each
  ``for epoch in flor.loop("epoch", ...)``), statements of the name run in every iteration of
  each: iterations are known by the loop's name and index, so an iteration without a value may
  be the other loop's.
"""

from __future__ import annotations

import ast
from functools import lru_cache

from florsql.fold import fold
from florsql.propagate.conditions import Conditions, conditions, leaves_early, main_guard

__all__ = [
    "always_runs",
    "conditions_at",
    "every_iteration",
    "other_conditions",
    "other_statement",
    "top_loops",
]

_DEPTH = 4

_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)
_LOOPS = (ast.For, ast.AsyncFor, ast.While)
_GUARDING_EXPR = (
    ast.BoolOp,
    ast.IfExp,
    ast.ListComp,
    ast.SetComp,
    ast.DictComp,
    ast.GeneratorExp,
    ast.Lambda,
)


def always_runs(text: str, name: str) -> bool:
    """Whether some ``flor.log("<name>", ...)`` statement of ``text`` (names ignore case) runs
    in every iteration of the innermost ``flor.loop`` around it (see the module's notes).
    False where ``text`` does not parse or has no such statement inside a loop."""
    return fold(name) in every_iteration(text)


@lru_cache(maxsize=64)
def every_iteration(text: str) -> frozenset[str]:
    """The names (case folded) of ``text`` with a statement that runs in every iteration."""
    from florsql.plan.scan_ast import _aliases, _Scanner

    try:
        module = ast.parse(text)
    except (SyntaxError, ValueError):
        return frozenset()
    scanner = _Scanner(text, _aliases(module))
    parents: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(module):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    functions: dict[str, list[ast.AST]] = {}
    calls: dict[str, list[ast.Call]] = {}
    logs: list[tuple[str, ast.Call]] = []
    for node in ast.walk(module):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            functions.setdefault(node.name, []).append(node)
        elif isinstance(node, ast.Call):
            logged = scanner._flor_call(node, "log")
            if logged is not None:
                logs.append((fold(logged), node))
            elif isinstance(node.func, ast.Name | ast.Attribute):
                callee = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
                calls.setdefault(callee, []).append(node)
    walker = _Walker(scanner, parents, functions, calls, _suppressing(module), module)
    held: dict[str, set[ast.AST]] = {}  # name -> the flor.loop nodes it runs in every iteration of
    for name, call in logs:
        loops = walker.loops_of(call, 0)
        if loops is not None:
            held.setdefault(name, set()).update(loops)
    # Iterations are told apart by the loop's name and index only: where the file has another
    # flor.loop of the same name (two phases, each ``for epoch in flor.loop("epoch", ...)``)
    # whose iterations the statement does not run in, an iteration of that name without a
    # value may be one of the other loop's (session 57: "last2: NULL at epoch 3 ... the old
    # code does not get to it" where epoch 3 was the first phase's).
    label: dict[ast.AST, str] = {}  # each flor.loop ``for`` of the file -> its name, folded
    for node in ast.walk(module):
        if walker._flor_loop(node):
            label[node] = fold(str(scanner._loop_name(node.iter)))  # type: ignore[attr-defined]
    return frozenset(
        name
        for name, loops in held.items()
        if all(other in loops for other, n in label.items() if n in {label[x] for x in loops})
    )


class _Walker:
    def __init__(
        self,
        scanner: object,
        parents: dict[ast.AST, ast.AST],
        functions: dict[str, list[ast.AST]],
        calls: dict[str, list[ast.Call]],
        suppressing: frozenset[str] = frozenset(),
        module: ast.Module | None = None,
    ) -> None:
        self.suppressing = suppressing
        self.through = _passing_through(module) if module is not None else frozenset()
        self.scanner = scanner
        self.parents = parents
        self.functions = functions
        self.calls = calls

    def _flor_loop(self, node: ast.AST) -> bool:
        if not isinstance(node, ast.For | ast.AsyncFor):
            return False
        return self.scanner._loop_name(node.iter) is not None  # type: ignore[attr-defined]

    def every_iteration(self, call: ast.Call, depth: int, name: str = "") -> bool:
        """Whether ``call`` runs each time the body of its ``flor.loop`` (or, in a function,
        of each loop its calls run in) runs, or, in one branch of an ``if``, the other branch
        logs ``name`` too (the log's name, folded)."""
        return self.loops_of(call, depth, name) is not None

    def loops_of(self, call: ast.Call, depth: int, name: str = "") -> frozenset[ast.AST] | None:
        """The ``flor.loop`` ``for`` nodes ``call`` runs in every iteration of (through the
        calls of the function holding it), as :meth:`every_iteration`; None where it does not."""
        name = name or fold(self.scanner._flor_call(call, "log") or "")  # type: ignore[attr-defined]
        stmt = self._statement_of(call)
        if stmt is None:
            return None
        node: ast.AST = stmt
        while True:
            parent = self.parents.get(node)
            if parent is None:
                return None  # the module's top level: no loop around it
            if not self._reached(parent, node, name):
                return None
            if self._flor_loop(parent):
                return frozenset((parent,))  # (``_reached`` took it by its body)
            if isinstance(parent, ast.FunctionDef | ast.AsyncFunctionDef):
                return self._each_call(parent, depth, name)
            node = parent

    def _each_call(
        self, fn: ast.FunctionDef | ast.AsyncFunctionDef, depth: int, name: str
    ) -> frozenset[ast.AST] | None:
        if depth >= _DEPTH or len(self.functions.get(fn.name, ())) != 1:
            return None  # too deep, or two functions of one name: which is called is unknown
        if any(not _plain_decorator(d, self.through) for d in fn.decorator_list):
            return None  # a decorator may skip the call (``@every(2)``: sweep Z2 F2)
        sites = [c for c in self.calls.get(fn.name, ()) if not _inside(c, fn, self.parents)]
        out: set[ast.AST] = set()
        for site in sites:
            loops = self.loops_of(site, depth + 1, name)
            if loops is None:
                return None
            out |= loops
        return frozenset(out) if sites else None

    def _logs_always(self, block: list[ast.stmt], name: str) -> bool:
        """Whether ``block`` logs ``name`` each time it runs: a statement of it that is a log
        of the name, or an ``if`` both of whose branches do, before anything leaves early."""
        for stmt in block:
            if leaves_early(stmt):
                return False
            value = stmt.value if isinstance(stmt, ast.Expr | ast.Assign) else None
            if isinstance(value, ast.Call):
                logged = self.scanner._flor_call(value, "log")  # type: ignore[attr-defined]
                if logged is not None and fold(logged) == name:
                    return True
            if (
                isinstance(stmt, ast.If)
                and self._logs_always(stmt.body, name)
                and self._logs_always(stmt.orelse, name)
            ):
                return True
        return False

    def _statement_of(self, call: ast.Call) -> ast.stmt | None:
        """The statement ``call`` is the whole of (an expression statement, an assignment's
        value), else None: a guard inside an expression."""
        node: ast.AST = call
        while True:
            parent = self.parents.get(node)
            if parent is None:
                return None
            if isinstance(parent, ast.stmt):
                if isinstance(parent, ast.Expr | ast.Assign | ast.AnnAssign | ast.AugAssign):
                    return parent if getattr(parent, "value", None) is node else None
                return None
            if isinstance(parent, _GUARDING_EXPR):
                return None
            if isinstance(parent, ast.Await) or (
                isinstance(parent, ast.Call) and node is not parent.func
            ):
                node = parent  # an argument of another call: runs when it does
                continue
            if isinstance(parent, ast.Call | ast.Attribute | ast.Subscript | ast.Tuple):
                node = parent
                continue
            return None

    def _reached(self, parent: ast.AST, child: ast.AST, name: str = "") -> bool:
        """Whether ``child`` (a statement of ``parent``'s) runs every time ``parent``'s block
        holding it starts: not a guarded block, and nothing before it leaves early. A branch of
        an ``if`` whose other branch logs ``name`` too counts as running (``if eval_mode:
        flor.log("val", a) else: flor.log("val", b)``: sweep W)."""
        for field in ("body", "orelse", "finalbody", "handlers", "cases"):
            block = getattr(parent, field, None)
            if isinstance(block, list) and child in block:
                break
        else:
            return False  # an expression, a decorator: not a block of statements
        if isinstance(parent, ast.If) and not main_guard(parent) and name:
            other = parent.orelse if field == "body" else parent.body
            if field not in ("body", "orelse") or not self._logs_always(other, name):
                return False
            return not any(leaves_early(s) for s in block[: block.index(child)])
        if field == "body":
            if isinstance(parent, ast.If):
                if not main_guard(parent):
                    return False
            elif isinstance(parent, ast.With | ast.AsyncWith):
                if any(_may_suppress(i.context_expr, self.suppressing) for i in parent.items):
                    return False
            elif isinstance(parent, ast.For | ast.AsyncFor):
                if not self._flor_loop(parent):
                    return False
            elif not isinstance(parent, ast.FunctionDef | ast.AsyncFunctionDef | ast.Module):
                return False  # a while, a try body, a handler, a case, a class
        elif field != "finalbody":
            return False
        before = block[: block.index(child)]
        return not any(leaves_early(s) for s in before)


def _plain_decorator(node: ast.expr, through: frozenset[str]) -> bool:
    from florsql.plan.patched import _plain_decorator as plain

    return plain(node, through)


def _passing_through(module: ast.Module) -> frozenset[str]:
    from florsql.plan.patched import _passing_through as passing

    return passing(module)


def _may_suppress(expr: ast.expr, local: frozenset[str] = frozenset()) -> bool:
    """Whether a ``with`` item may swallow an exception (``contextlib.suppress(...)``, or a
    context manager of the file's that may: ``local``, :func:`_suppressing`)."""
    names = local | {"suppress"}
    for node in ast.walk(expr):
        if isinstance(node, ast.Name) and node.id in names:
            return True
        if isinstance(node, ast.Attribute) and node.attr in names:
            return True
    return False


def _suppressing(module: ast.Module) -> frozenset[str]:
    """Names of the file's own context managers that may swallow an exception: a
    ``@contextmanager`` function that catches one (``try: yield`` / ``except ...: pass``), a
    class whose ``__exit__`` may return a true value (sweep W, session 51: ``with safe():``
    around today's statement was taken for running every epoch, and runs of today's own
    script were replayed, warned "the old code does not get to it")."""
    out: set[str] = set()
    for node in ast.walk(module):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            decorated = any(
                (isinstance(d, ast.Name) and "contextmanager" in d.id)
                or (isinstance(d, ast.Attribute) and "contextmanager" in d.attr)
                for d in node.decorator_list
            )
            if decorated and any(
                isinstance(t, ast.Try | ast.TryStar) and t.handlers for t in ast.walk(node)
            ):
                out.add(node.name)
        elif isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef) and item.name in (
                    "__exit__",
                    "__aexit__",
                ):
                    for r in ast.walk(item):
                        value = r.value if isinstance(r, ast.Return) else None
                        quiet = isinstance(value, ast.Constant) and value.value in (None, False)
                        if value is not None and not quiet:
                            out.add(node.name)
    return frozenset(out)


def _inside(node: ast.AST, fn: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Whether ``node`` lies inside ``fn`` (a recursive call is not a call site)."""
    while node is not None:
        if node is fn:
            return True
        node = parents.get(node)  # type: ignore[assignment]
    return False


@lru_cache(maxsize=64)
def top_loops(text: str) -> tuple[tuple[int, tuple[str, ...]], ...]:
    """For each ``flor.log`` call of ``text`` outside every ``flor.loop``: its line, and the
    names of the top ``flor.loop`` loops (no other one holds them) of its own function (or of
    the module) that come after it, in source order (the test loop after training): where a
    run failed in one of those, the statement was reached (:mod:`florsql.plan.replay_set`). A
    statement in a helper is not placed so: where it runs is its calls' business (sweep X: a
    helper defined above ``fit()`` took ``fit``'s loop for one after it, and a run that failed
    in that loop was replayed at every query for a value it never reached)."""
    from florsql.plan.scan_ast import _aliases, _Scanner

    try:
        module = ast.parse(text)
    except (SyntaxError, ValueError):
        return ()
    scanner = _Scanner(text, _aliases(module))
    loops: dict[int, list[tuple[str, int]]] = {}  # id(scope) -> its top loops
    logs: list[tuple[int, int]] = []  # (line, id(scope)) of the logs outside every loop

    def visit(node: ast.AST, scope: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                visit(child, child)
                continue
            if isinstance(child, ast.For | ast.AsyncFor):
                name = scanner._loop_name(child.iter)
                if name is not None:
                    loops.setdefault(id(scope), []).append((name, child.lineno))
                    continue  # what it holds is in the loop
            if isinstance(child, ast.Call) and scanner._flor_call(child, "log") is not None:
                logs.append((child.lineno, id(scope)))
            visit(child, scope)

    visit(module, module)
    return tuple(
        (line, tuple(n for n, at in loops.get(scope, []) if at > line)) for line, scope in logs
    )


@lru_cache(maxsize=256)
def _log_calls(text: str) -> dict[str, frozenset[str]]:
    """Per name (case folded), the ``flor.log`` calls of ``text`` logging it, as
    :func:`ast.unparse` writes them (no comments, no layout)."""
    from florsql.plan.scan_ast import _aliases, _Scanner

    try:
        module = ast.parse(text)
    except (SyntaxError, ValueError):
        return {}
    scanner = _Scanner(text, _aliases(module))
    out: dict[str, set[str]] = {}
    for node in ast.walk(module):
        if isinstance(node, ast.Call):
            name = scanner._flor_call(node, "log")
            if name is not None:
                out.setdefault(fold(name), set()).add(ast.unparse(node))
    return {k: frozenset(v) for k, v in out.items()}


Chain = tuple[str, ...] | None

#: ``other_statement``'s ``chain`` when every chain of today's statements is compared
EVERY_CHAIN: Chain = ("*",)


#: where a statement sits among the statements around it that may change what it logs: those
#: before it and those after it, in the body of its innermost ``flor.loop`` (else of its
#: function, else of the module), each as ``(label, text)``: the label is what it changes of
#: what the statement reads (``= w``), however written, else its text (:func:`ast.unparse`)
Placement = tuple[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]]

#: calls that change nothing a log statement could read
_QUIET_CALLS = frozenset(
    {
        "abs", "bool", "dict", "enumerate", "float", "format", "int", "isinstance", "len",
        "list", "max", "min", "print", "range", "repr", "round", "set", "sorted", "str",
        "tuple", "zip",
    }
)  # fmt: skip
_QUIET_METHODS = frozenset(
    {"debug", "info", "warning", "warn", "error", "set_postfix", "set_description", "write"}
)


@lru_cache(maxsize=256)
def _calls_by_chain(text: str) -> dict[str, dict[Chain, frozenset[tuple[str, Placement | None]]]]:
    """Per name (case folded) and loop chain (:mod:`florsql.plan.scan_ast`'s, ``()`` outside
    loops, None unknown), the ``flor.log`` calls of ``text`` there (:func:`_log_calls`'s text),
    each with its :data:`Placement` (None where the call is not a statement's whole value)."""
    from florsql.plan.scan_ast import _aliases, _Scanner, scan_ast

    try:
        module = ast.parse(text)
        code = scan_ast(text, "<old>")
    except (SyntaxError, ValueError, RecursionError):
        return {}
    if code is None:
        return {}
    scanner = _Scanner(text, _aliases(module))
    parents: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(module):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    by_line: dict[tuple[str, int], set[tuple[str, Placement | None]]] = {}
    for node in ast.walk(module):
        if isinstance(node, ast.Call):
            name = scanner._flor_call(node, "log")
            if name is not None:
                at = _placement(node, parents, scanner)
                by_line.setdefault((fold(name), node.lineno), set()).add((ast.unparse(node), at))
    out: dict[str, dict[Chain, set[tuple[str, Placement | None]]]] = {}
    for site in code.sites:
        calls = by_line.get((fold(site.name), site.line), set())
        out.setdefault(fold(site.name), {}).setdefault(site.chain, set()).update(calls)
    return {n: {c: frozenset(v) for c, v in per.items()} for n, per in out.items()}


def _placement(
    call: ast.Call, parents: dict[ast.AST, ast.AST], scanner: object
) -> Placement | None:
    """``call``'s :data:`Placement`: the simple statements of the body of the innermost
    ``flor.loop`` around it (else of its function or the module), nested blocks included,
    nested functions and classes not, that may change what the call logs (they bind or change
    a name it reads, or make a call other than printing, logging and pure builtins: a call may
    change anything, ``optimizer.step()`` the model an ``evaluate(net)`` reads)."""
    from florsql.propagate.slice import assigned, changes, reads, relevant

    stmt: ast.AST = call
    while not isinstance(stmt, ast.stmt):
        up = parents.get(stmt)
        if up is None:
            return None
        stmt = up
    region: ast.AST = stmt
    while True:
        up = parents.get(region)
        if up is None:
            return None
        if isinstance(up, ast.FunctionDef | ast.AsyncFunctionDef | ast.Module):
            region = up
            break
        if (
            isinstance(up, ast.For | ast.AsyncFor)
            and region in up.body
            and scanner._loop_name(up.iter) is not None  # type: ignore[attr-defined]
        ):
            region = up
            break
        region = up
    body = _simple_statements(getattr(region, "body", []))
    # what it reads, and what the statements of the body that bind those read (``acc`` and,
    # through ``acc = round(w, 9)``, ``w``)
    read = set(reads(stmt)) if isinstance(stmt, ast.stmt) else set()
    for _ in range(8):
        more = {n for o in body if o is not stmt and assigned(o) & read for n in reads(o)} - read
        if not more:
            break
        read |= more
    before: list[tuple[str, str]] = []
    after: list[tuple[str, str]] = []
    at = (stmt.lineno, stmt.col_offset)
    # a loop around no part of it is one unit: an edit inside it moves nothing, and the
    # statement is before or after the whole loop (a flor.loop's body is the step of the
    # next; 'loop' labels keep its header)
    for other in _simple_statements(getattr(region, "body", []), stmt):
        if other is stmt:
            continue
        if isinstance(other, _LOOPS):
            inner = _simple_statements(other.body + other.orelse)
            if not any(_may_change(o, read, scanner, changes, relevant) for o in inner):
                continue
            head = ast.unparse(other).splitlines()[0]
            label = f"loop {head}"
        else:
            found = _may_change(other, read, scanner, changes, relevant)
            if found is None:
                continue
            label, head = found, ast.unparse(other)
        side = before if (other.lineno, other.col_offset) < at else after
        side.append((label, head))
    return tuple(sorted(before)), tuple(sorted(after))


def _simple_statements(body: list[ast.stmt], around: ast.AST | None = None) -> list[ast.stmt]:
    """The simple statements of ``body``, nested blocks included, functions and classes not;
    with ``around``, a loop that does not hold it is kept whole instead."""
    out: list[ast.stmt] = []
    for stmt in body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            continue
        if (
            around is not None
            and isinstance(stmt, _LOOPS)
            and not any(n is around for n in ast.walk(stmt))
        ):
            out.append(stmt)
            continue
        inner = [
            b
            for f in ("body", "orelse", "finalbody", "handlers", "cases")
            for b in getattr(stmt, f, None) or []
        ]
        if not inner:
            out.append(stmt)
            continue
        for b in inner:
            out += _simple_statements(
                b.body if isinstance(b, ast.ExceptHandler | ast.match_case) else [b], around
            )
    return out


#: statements that change no value a log statement reads (an import binds a module or its
#: names: ``flor`` of ``flor.log``)
_INERT = (ast.Pass, ast.Continue, ast.Break, ast.Global, ast.Nonlocal, ast.Import, ast.ImportFrom)


def _may_change(
    stmt: ast.stmt, read: set[str], scanner: object, changes: object, relevant: object
) -> str | None:
    """``stmt``'s label where it may change what a statement reading ``read`` logs (what it
    binds or changes of ``read``: ``= w``, so ``w = 1.5 * w`` is ``w = w * 1.5``; else, for a
    call that may change anything, its text), else None."""
    if isinstance(stmt, _INERT):
        return None
    if (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Call)
        and any(
            scanner._flor_call(stmt.value, a) is not None  # type: ignore[attr-defined]
            for a in ("log", "arg", "commit")
        )
    ):
        return None  # (``flor.log`` is a method call on ``flor``, which the log reads too)
    kills, updates = changes(stmt)  # type: ignore[operator]
    if relevant(kills, updates, read):  # type: ignore[operator]
        hit = sorted(
            c
            for c in kills | updates
            if relevant(frozenset({c}), frozenset(), read)  # type: ignore[operator]
            or relevant(frozenset(), frozenset({c}), read)  # type: ignore[operator]
        )
        # ``=``: it binds or stores into what the log reads (a new one travels with the log
        # into the old version, as its slice); ``~``: only a method call on it (``net.eval()``:
        # a slice carries none on a name the old version binds)
        strong = relevant(*changes(stmt, frozenset()), read)  # type: ignore[operator]
        return ("= " if strong else "~ ") + ", ".join(hit)
    for node in ast.walk(stmt):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Name) and node.func.id in _QUIET_CALLS:
            continue
        if isinstance(node.func, ast.Attribute) and node.func.attr in _QUIET_METHODS:
            continue
        if any(
            scanner._flor_call(node, a) is not None  # type: ignore[attr-defined]
            for a in ("log", "arg", "commit")
        ):
            continue
        return ast.unparse(stmt)
    return None


def _moved(old: Placement | None, new: Placement | None) -> str | None:
    """Where ``old`` (an old statement's placement) and ``new`` (today's) differ in what comes
    before the statement, by label (``w = w * 1.5`` only after the old log, ``w = 1.5 * w``
    only before today's): a label both versions have, before it a different number of times
    (a label before and after it in both, ``net.train()`` before the step loop and again after
    the evaluation, tells nothing: sweep Z), or a change of what it reads that only today's
    code has before it (carried along with it into the old version); the old one's text (or
    today's) and which side the old statement is on, else None."""
    if old is None or new is None:
        return None
    from collections import Counter

    def count(side: tuple[tuple[str, str], ...]) -> Counter[str]:
        return Counter(label for label, _ in side)

    old_before, new_before = count(old[0]), count(new[0])
    old_all, new_all = old_before + count(old[1]), new_before + count(new[1])

    def text(
        label: str, mine: tuple[tuple[str, str], ...], theirs: tuple[tuple[str, str], ...]
    ) -> str:
        own = [t for lb, t in mine if lb == label]
        fresh = [t for t in own if (label, t) not in theirs]
        return (fresh or own)[0]

    for label in sorted(set(old_all) | set(new_all)):
        moved = label in old_all and label in new_all and old_before[label] != new_before[label]
        added = label not in old_all and label.startswith("= ") and new_before[label] > 0
        if not (moved or added):
            continue
        if old_before[label] > new_before[label]:
            return f"placed after `{text(label, old[0], new[0])}`, where today's is not"
        return f"placed otherwise: today's comes after `{text(label, new[0], old[0])}`"
    return None


def other_statement(today: str, old: str, name: str, chain: Chain = EVERY_CHAIN) -> str | None:
    """The old file's statement of ``name`` where, at the same loop chain (``chain``; by
    default each chain today's file logs it at), it logs the name only otherwise than today's
    file does (``flor.log("val", w * 3)`` for today's ``w * 4``), or the same call in another
    place (before ``w = w * 1.5`` where today's is after it: sweep W's W2), else None (the
    same statement there, or no statement of the name there, which tells nothing). A run that
    recorded the name with it in some iterations keeps those values: today's filling the
    others would mix two definitions in one column of one run (sweep W: ``10.5, 15.0,
    14.625`` where ``*3`` and ``*4`` took turns, silently). Per chain: an unchanged statement
    of the name after the loop hid an edited one in the loop (sweep Y)."""
    mine = _calls_by_chain(today).get(fold(name), {})
    theirs = _calls_by_chain(old).get(fold(name), {})
    chains = list(mine) if chain == EVERY_CHAIN else [chain]
    for at in chains:
        new_calls, old_calls = mine.get(at), theirs.get(at)
        if not new_calls or not old_calls:
            continue
        moved = None
        same = [
            (o, n)
            for o in sorted(old_calls, key=str)
            for n in new_calls
            if _args(o[0]) == _args(n[0])
        ]
        for (call, was), (_, now) in same:
            moved = _moved(was, now)
            if moved is None:
                break
            moved = f"{call}, {moved}"
        else:
            if same:
                return moved
            return sorted(c for c, _ in old_calls)[0]
    return None


@lru_cache(maxsize=1024)
def _args(call: str) -> str:
    """What a ``flor.log`` call (as :func:`ast.unparse` wrote it) logs: its arguments, the
    function's spelling aside (``flor.log``, ``florsql.log``, ``log``)."""
    node = ast.parse(call, mode="eval").body
    if not isinstance(node, ast.Call):
        return call
    kwargs = sorted((k.arg or "**", ast.unparse(k.value)) for k in node.keywords)
    return repr(([ast.unparse(a) for a in node.args], kwargs))


@lru_cache(maxsize=256)
def _flor_loops(text: str) -> tuple[ast.Module, frozenset[int], dict[int, ast.stmt]] | None:
    """``text``'s tree, the ``flor.loop`` ``for`` statements (by id) and its ``flor.log``
    statements by the line of their call (a line with two is left out)."""
    from florsql.plan.scan_ast import _aliases, _Scanner

    try:
        module = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError):
        return None
    scanner = _Scanner(text, _aliases(module))
    parents: dict[ast.AST, ast.AST] = {}
    for node in ast.walk(module):
        for child in ast.iter_child_nodes(node):
            parents[child] = node
    walker = _Walker(scanner, parents, {}, {})
    loops = frozenset(id(n) for n in ast.walk(module) if walker._flor_loop(n))
    by_line: dict[int, ast.stmt | None] = {}
    for node in ast.walk(module):
        if isinstance(node, ast.Call) and scanner._flor_call(node, "log") is not None:
            stmt = walker._statement_of(node)
            by_line[node.lineno] = None if node.lineno in by_line else stmt
    return module, loops, {k: v for k, v in by_line.items() if v is not None}


@lru_cache(maxsize=1024)
def conditions_at(text: str, line: int) -> Conditions | None:
    """The :data:`~florsql.propagate.conditions.Conditions` of the ``flor.log`` statement of
    ``text`` whose call starts at ``line``; None where there is none, it is not a statement of
    its own (``c and flor.log(...)``), two calls start there, or it sits in a function outside
    every ``flor.loop`` of it (a helper: its calls decide where it runs)."""
    parsed = _flor_loops(text)
    if parsed is None or line not in parsed[2]:
        return None
    module, loops, stmts = parsed
    return conditions(module, stmts[line], lambda n: id(n) in loops)


def other_conditions(today: str, old: str, name: str, chain: Chain) -> bool:
    """Whether the old file logs ``name`` at loop chain ``chain`` under other conditions than
    today's file does there (``if epoch % 2 == 0:`` where today's has ``if epoch % 3 == 0:``,
    a warmup ``continue`` only one has): a run of it lacks the name in iterations where
    today's statement may log it. False where either file has no statement of the name there,
    or one whose conditions cannot be told (in a helper, inside an expression)."""
    mine, theirs = _signatures(today, fold(name), chain), _signatures(old, fold(name), chain)
    return mine is not None and theirs is not None and mine != theirs


@lru_cache(maxsize=256)
def _signatures(text: str, name: str, chain: Chain) -> frozenset[Conditions] | None:
    """The conditions of ``text``'s statements of ``name`` (folded) at ``chain``; None where
    there is none or one cannot be told (memoized: the catalog asks per run of a version)."""
    from florsql.plan.scan_ast import scan_ast

    try:
        code = scan_ast(text, "<file>")
    except (SyntaxError, ValueError, RecursionError):
        return None
    if code is None:
        return None
    lines = [
        s.line
        for s in code.sites
        # (a chain-less site: a module's function called from another file, session 54)
        if fold(s.name) == name and (s.chain == chain or s.chain is None)
    ]
    found = [conditions_at(text, line) for line in lines]
    if not found or any(c is None for c in found):
        return None
    return frozenset(c for c in found if c is not None)
