"""The scanner behind :func:`florsql.plan.hindsight.scan_source`, on :mod:`ast`.

It finds what :mod:`florsql.plan.scan_code` (the libcst scanner it replaced on the query path)
finds, in about a twentieth of the time and without importing libcst: a query's planning scans
every script a user just edited, before its first replay task can start. The two agree on every
script of the test corpus and on generated ones (tests/test_scan_ast.py); a file :mod:`ast`
cannot parse (newer syntax than this interpreter's) is scanned with libcst.

What counts, as in the libcst scanner:

- a log site is a call ``flor.log("<name>", ...)`` (or of a name imported from florsql) whose
  name argument, as the call binds it (the first positional argument, else ``name=``: so
  ``flor.log(value=v, name="x")`` logs ``x``, as it does when it runs), is one plain string
  literal (not implicitly concatenated, not an f-string);
- its chain is the ``flor.loop`` loops around it; a loop is a ``for`` whose iterable contains a
  ``flor.loop("<name>", ...)`` call (the first such call in source order names it);
- inside a function (its decorators, defaults and annotations included), a site takes the chains
  of the function's call sites, matched by name, up to 4 calls deep; a ``def`` inside a loop
  adds nothing of that loop itself (its call sites' chains hold it).
"""

from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from florsql.plan.hindsight import FLOR_MODULES, LogSite, ScriptCode, Where

__all__ = ["RawSite", "finish", "loose_loop", "scan_ast"]

CallSite = tuple[tuple[str, ...], str | None, int]  # (loop chain, enclosing def, line)


@dataclass
class RawSite:
    name: str
    line: int
    chain: tuple[str, ...]
    function: str | None  # the innermost enclosing def, if any


def scan_ast(text: str, filename: str) -> ScriptCode | None:
    """The log statements and loops of ``text``; raises SyntaxError (or ValueError) when
    :mod:`ast` cannot parse it."""
    module = ast.parse(text)
    scanner = _Scanner(text, _aliases(module))
    for fn in ast.walk(module):
        if isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef) and _yields(fn):
            names = [scanner._flor_call(c, "loop") for c in ast.walk(fn) if isinstance(c, ast.Call)]
            found = [n for n in names if n is not None]
            if found:
                scanner.looping.setdefault(fn.name, found[0])
    scanner.block(module.body, (), None)
    sites = [s for _, s in sorted(scanner.sites, key=lambda p: p[0])]
    calls: dict[str, list[CallSite]] = {}
    for _, callee, site in sorted(scanner.calls, key=lambda p: p[0]):
        calls.setdefault(callee, []).append(site)
    first: dict[str | None, int] = {}
    for owner, line in scanner.top_loops:
        first[owner] = min(line, first.get(owner, line))
    fetched = [(c, s) for _, c, s in sorted(scanner.fetched, key=lambda p: p[0])]
    return finish(filename, sites, calls, set(scanner.chains), first, fetched, scanner.generators)


def loose_loop(text: str) -> int | None:
    """The line of a ``flor.loop(...)`` call that no ``for`` (or comprehension) iterates: not
    in such an iterable, nor bound to a name one iterates (``pbar = tqdm(flor.loop(...))``,
    then ``for x in pbar``); None where every one is, or where :mod:`ast` cannot parse
    ``text``. ``it = iter(flor.loop(...))``, then ``next(it)`` in a ``while`` loop, is one:
    the chains a scan finds leave that loop out.

    Example:
        >>> loose_loop("import florsql as flor\\nfor e in flor.loop('e', range(2)):\\n    pass\\n")
        >>> loose_loop("import florsql as flor\\nit = iter(flor.loop('e', range(2)))\\nnext(it)\\n")
        2
    """
    try:
        module = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return None
    scanner = _Scanner(text, _aliases(module))
    consumed: set[int] = set()
    iterated: set[str] = set()
    bound: dict[int, str] = {}
    for node in ast.walk(module):
        if isinstance(node, (ast.For, ast.AsyncFor, ast.comprehension)):
            for sub in ast.walk(node.iter):
                consumed.add(id(sub))
                if isinstance(sub, ast.Name):
                    iterated.add(sub.id)
        elif (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            for sub in ast.walk(node.value):
                bound[id(sub)] = node.targets[0].id
    for node in ast.walk(module):
        if not isinstance(node, ast.Call) or id(node) in consumed:
            continue
        if scanner._flor_call(node, "loop") is None:
            continue
        if bound.get(id(node)) in iterated:
            continue
        return node.lineno
    return None


def finish(
    filename: str,
    raw_sites: list[RawSite],
    calls: dict[str, list[CallSite]],
    chains: set[tuple[str, ...]],
    first_loops: Mapping[str | None, int],
    fetched: Sequence[tuple[str, CallSite]] = (),
    generators: Collection[str] = frozenset(),
) -> ScriptCode:
    """The scan's result from what a scanner collected, in source order (shared by both).

    ``fetched``: ``(callee, call site)`` of the calls in a ``flor.loop``'s iterable, the site's
    chain holding that loop; those of a generator function (``generators``: the functions
    with a ``yield`` of their own) count as its call sites too. What a generator's body logs as
    the loop fetches an item belongs to the iteration the item starts (session 45), so a
    statement in ``def epochs(n): ... flor.log("h", e); yield e`` iterated by ``flor.loop(
    "epoch", epochs(4))`` is in the epoch loop (session 46: "outside loops" before, so a query
    ``WHERE epoch = 2`` replayed nothing for it and answered NULL). Its code after the last
    ``yield`` logs to the loop's parent: the plain call site keeps that chain."""
    calls = {k: list(v) for k, v in calls.items()}
    for callee, site in fetched:
        if callee in generators:
            calls.setdefault(callee, []).append(site)
    sites = []
    for raw in raw_sites:
        for chain, head in _resolve(raw.function, raw.chain, raw.line, calls, 0, first_loops):
            where: Where = "loop" if chain is not None else "unknown"
            if chain == ():
                where = "head" if head else "tail"
            sites.append(LogSite(raw.name, raw.line, chain, where, filename))
            if chain is not None:
                chains.update(chain[: i + 1] for i in range(len(chain)))
    loops = tuple(sorted(chains, key=lambda c: (len(c), c)))
    return ScriptCode(filename=filename, sites=tuple(dict.fromkeys(sites)), loops=loops)


def _resolve(
    function: str | None,
    chain: tuple[str, ...],
    line: int,
    calls: dict[str, list[CallSite]],
    depth: int,
    first_loops: Mapping[str | None, int],
) -> list[tuple[tuple[str, ...] | None, bool]]:
    """(full chain, whether it runs before the outer loop) of a site, through its function's
    callers. A statement outside loops comes before the outer loop where the first
    ``flor.loop`` of its own function (``first_loops``: the module's under None) comes after
    it; in a function with none, where its call does. Before session 50 only the module's
    loops counted: in a script whose loop is in ``main()``, every statement before it was
    taken as after the loop (sweep T: a run that failed in its loop got none replayed)."""
    own = first_loops.get(function)
    if function is None:
        return [(chain, own is not None and line < own)]
    sites = calls.get(function, [])
    if not sites or depth > 3:
        return [(None, False)]  # a function never called here (or too deep): context unknown
    out: list[tuple[tuple[str, ...] | None, bool]] = []
    for outer, caller, call_line in sites:
        for full, head in _resolve(caller, outer, call_line, calls, depth + 1, first_loops):
            if own is not None:
                head = line < own
            item = (None if full is None else full + chain, head)
            if item not in out:
                out.append(item)
    return out


def _aliases(module: ast.Module) -> tuple[frozenset[str], dict[str, str]]:
    """(names bound to the flor module, {name bound to florsql.log/loop: "log"/"loop"})."""
    mods: set[str] = set()
    direct: dict[str, str] = {}
    for node in ast.walk(module):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in FLOR_MODULES:
                    mods.add(a.asname or a.name)
        elif isinstance(node, ast.ImportFrom) and node.module in FLOR_MODULES:
            for a in node.names:
                if a.name == "*":
                    direct.update({"log": "log", "loop": "loop"})
                elif a.name in ("log", "loop"):
                    direct[a.asname or a.name] = a.name
    return frozenset(mods or {"flor"}), direct


#: Where a node starts, then how deep it is: the libcst scanner's visiting order (source order,
#: an enclosing call before the calls it starts with).
_Order = tuple[int, int, int]


class _Scanner:
    def __init__(self, text: str, aliases: tuple[frozenset[str], dict[str, str]]) -> None:
        self.lines = text.splitlines(keepends=True)
        self.modules, self.direct = aliases
        self.sites: list[tuple[_Order, RawSite]] = []
        self.calls: list[tuple[_Order, str, CallSite]] = []
        self.chains: set[tuple[str, ...]] = set()
        #: (enclosing def, line) of the flor loops outside every flor loop (of the module:
        #: None; of a function: in its own body)
        self.top_loops: list[tuple[str | None, int]] = []
        #: calls in a flor.loop's iterable, with the loop's chain (:func:`finish`)
        self.fetched: list[tuple[_Order, str, CallSite]] = []
        self.generators: set[str] = set()  # functions with a ``yield`` of their own
        #: (enclosing def, name) -> the flor.loop a wrapper bound to that name holds
        #: (``pbar = tqdm(flor.loop("step", data))``), for the ``for`` that iterates it
        self.wrapped: dict[tuple[str | None, str], str] = {}
        #: generator functions of the script that yield from inside a ``flor.loop`` of theirs,
        #: with that loop's name
        self.looping: dict[str, str] = {}

    def block(self, stmts: list[ast.stmt], chain: tuple[str, ...], fn: str | None) -> None:
        for stmt in stmts:
            self.node(stmt, chain, fn, 0)

    def node(self, node: ast.AST, chain: tuple[str, ...], fn: str | None, depth: int) -> None:
        if isinstance(node, (ast.For, ast.AsyncFor)):
            name = self._loop_name(node.iter)
            if name is None:  # ``for x in enumerate(pbar)``, pbar wrapping a flor.loop
                held = {
                    self.wrapped[(fn, n.id)]
                    for n in ast.walk(node.iter)
                    if isinstance(n, ast.Name) and (fn, n.id) in self.wrapped
                }
                name = held.pop() if len(held) == 1 else None
            if name is not None:
                if not chain:
                    self.top_loops.append((fn, node.lineno))
                self.node(node.iter, chain, fn, depth + 1)
                inner = (*chain, name)
                for d, call in _walk(node.iter, depth + 1):
                    if isinstance(call, ast.Call) and isinstance(
                        call.func, ast.Name | ast.Attribute
                    ):
                        f = call.func
                        callee = f.id if isinstance(f, ast.Name) else f.attr
                        order = (call.lineno, call.col_offset, d)
                        self.fetched.append((order, callee, (inner, fn, call.lineno)))
                self.chains.add(inner)
                self.block(node.body, inner, fn)
                self.block(node.orelse, chain, fn)
                return
            hidden = [
                c.func.id
                for c in ast.walk(node.iter)
                if isinstance(c, ast.Call)
                and isinstance(c.func, ast.Name)
                and c.func.id in self.looping
            ]
            if hidden:
                # ``for epoch, k in epochs():`` where ``epochs`` yields from inside its own
                # flor.loop: the body runs inside that loop, whose iterations the generator's
                # own state may count (``k += 1``): its statements' context is unknown, so a
                # query replays whole runs (session 47, sweep M: 0 rows, no word, before)
                self.node(node.iter, chain, fn, depth + 1)
                inner = (*chain, self.looping[hidden[0]])
                self.block(node.body, inner, f"<in {hidden[0]}()>")
                self.block(node.orelse, chain, fn)
                return
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            fn = node.name  # its decorators, defaults and annotations count as inside it
            if _yields(node):
                self.generators.add(fn)
            # A body runs where the function is called, not where the ``def`` is: a function
            # defined in a loop's body takes its call sites' chains, as any other (they hold
            # that loop already).
            chain = ()
        elif isinstance(node, ast.Lambda):
            # its body runs where it is called, which names do not tell: context unknown
            # (session 54, sweep AC: ``evaluate = lambda x: flor.log(...)`` called in the
            # epoch loop was taken as logging outside every loop, and ``WHERE epoch >= 1``
            # replayed nothing: no rows, said nowhere)
            fn, chain = "<lambda>", ()
        elif isinstance(node, ast.Call):
            self._call(node, chain, fn, depth)
        elif (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
        ):
            wraps = self._loop_name(node.value)
            if wraps is not None:
                self.wrapped[(fn, node.targets[0].id)] = wraps
            else:
                self.wrapped.pop((fn, node.targets[0].id), None)
        for child in ast.iter_child_nodes(node):
            self.node(child, chain, fn, depth + 1)

    def _call(self, node: ast.Call, chain: tuple[str, ...], fn: str | None, depth: int) -> None:
        order = (node.lineno, node.col_offset, depth)
        name = self._flor_call(node, "log")
        if name is not None:
            self.sites.append((order, RawSite(name, node.lineno, chain, fn)))
        elif isinstance(node.func, (ast.Name, ast.Attribute)):
            # ``fit()`` or a method, ``self.train_epoch()``: matched by name (a name shared
            # by two functions gives both their call sites: more replay, never less)
            callee = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
            self.calls.append((order, callee, (chain, fn, node.lineno)))

    def _loop_name(self, iterable: ast.expr) -> str | None:
        """The name of the first ``flor.loop`` call in ``iterable``, in source order."""
        found = []
        for depth, node in _walk(iterable, 0):
            if isinstance(node, ast.Call):
                name = self._flor_call(node, "loop")
                if name is not None:
                    found.append(((node.lineno, node.col_offset, depth), name))
        return min(found)[1] if found else None

    def _flor_call(self, node: ast.Call, attr: str) -> str | None:
        """The literal first argument of ``flor.<attr>(...)``, else None."""
        func = node.func
        ok = (
            isinstance(func, ast.Attribute)
            and func.attr == attr
            and isinstance(func.value, ast.Name)
            and func.value.id in self.modules
        ) or (isinstance(func, ast.Name) and self.direct.get(func.id) == attr)
        if not ok:
            return None
        first = _first_argument(node)
        if (
            isinstance(first, ast.Constant)
            and isinstance(first.value, str)
            and first.value
            and _utf8(first.value)
        ):
            # (an empty name is refused when the call runs: no column; as a quoted identifier
            # it made every query over the repository fail, 'zero-length delimited identifier';
            # so did a lone surrogate, "\ud800", which DuckDB cannot hold, until s37)
            return first.value if self._one_literal(first) else None
        return None

    def _one_literal(self, node: ast.Constant) -> bool:
        """Whether ``node`` is written as one string literal (``"a" "b"`` is two)."""
        end_line, end_col = node.end_lineno, node.end_col_offset
        if end_line is None or end_col is None:
            return False
        if end_line == node.lineno:
            text = _segment(self.lines[node.lineno - 1], node.col_offset, end_col)
        else:
            parts = [_segment(self.lines[node.lineno - 1], node.col_offset, None)]
            parts += self.lines[node.lineno : end_line - 1]
            parts.append(_segment(self.lines[end_line - 1], 0, end_col))
            text = "".join(parts)
        try:
            tokens = [
                t
                for t in tokenize.generate_tokens(io.StringIO(text).readline)
                if t.type not in _SKIPPED
            ]
        except (tokenize.TokenError, SyntaxError):
            return False
        return len(tokens) == 1 and tokens[0].type == tokenize.STRING


_SKIPPED = frozenset(
    {tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.COMMENT, tokenize.INDENT}
)


def _yields(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    """Whether ``fn`` has a ``yield`` of its own (not one of a function defined in it)."""
    todo: list[ast.AST] = list(fn.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Yield | ast.YieldFrom):
            return True
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
            todo.extend(ast.iter_child_nodes(node))
    return False


def _segment(line: str, start: int, end: int | None) -> str:
    """``line[start:end]`` where the offsets count UTF-8 bytes, as :mod:`ast`'s do."""
    raw = line.encode("utf-8")
    return raw[start:end].decode("utf-8")


def _first_argument(node: ast.Call) -> ast.expr | None:
    """The name parameter's argument, as the call binds it: the first positional argument (a
    ``*x`` there: unknown), else the ``name=`` keyword."""
    if node.args:
        first = node.args[0]
        return None if isinstance(first, ast.Starred) else first
    return next((k.value for k in node.keywords if k.arg == "name"), None)


def _walk(node: ast.AST, depth: int) -> list[tuple[int, ast.AST]]:
    out = [(depth, node)]
    for child in ast.iter_child_nodes(node):
        out.extend(_walk(child, depth + 1))
    return out


def _utf8(text: str) -> bool:
    """Whether ``text`` is valid UTF-8 text (no lone surrogate): a name DuckDB can hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
