"""The block model of one Python file: every statement list, with the chain of scopes around it.

A *block* is a list of statements (a module, a function body, a loop body, an ``else:``...). Its
*chain* names the scopes around it from the outside in: functions and classes by name,
``for ... in flor.loop("step", ...)`` by its loop name, other blocks by their header.

The model is built on :mod:`ast`, which gives exact line ranges cheaply; nothing here rewrites code.
"""

from __future__ import annotations

import ast
import gc
import re
from bisect import bisect_right
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property, lru_cache

from florsql.propagate.normalize import header, normalize, normalize_header, normalize_in

#: characters ``str.splitlines`` breaks lines at that Python's tokenizer does not
_ODD_BREAKS = re.compile("[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")

FLOR_MODULES = frozenset({"florsql", "flordb", "flor"})
#: Calls that may read any name of the file.
_DYNAMIC = frozenset({"locals", "vars", "globals", "eval", "exec"})
_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
HARD_KINDS = frozenset({"def", "class", "loop"})
_NEWLINE = re.compile(r"\n")
_COMPOUND = (
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.For,
    ast.AsyncFor,
    ast.While,
    ast.If,
    ast.With,
    ast.AsyncWith,
    ast.Try,
    ast.TryStar,
    ast.Match,
)


@dataclass(frozen=True, eq=False)
class Frame:
    """One scope around a block.

    ``kind`` is def, class, loop (a ``flor.loop``), for, while, with, if, else, try, except,
    finally or case. Hard frames have a ``name``; soft ones a ``node`` (the statement, handler
    or case whose header opens the block; an ``else`` frame has the frame it belongs to as
    ``parent``). A *transparent* frame is a helper function seen from its single call site.
    ``key`` and ``label`` are computed on first use: most frames are never compared.
    """

    kind: str
    name: str = ""
    node: ast.AST | None = None
    parent: Frame | None = None
    transparent: bool = False

    @property
    def hard(self) -> bool:
        """Functions, classes and flor loops: frames matched by name, never by similarity."""
        return self.kind in HARD_KINDS

    @cached_property
    def label(self) -> str:
        """The frame for people: ``train()``, ``flor.loop('step')``, ``if step % 10 == 0``."""
        if self.kind == "def":
            return f"{self.name}()"
        if self.kind == "loop":
            return f"flor.loop({self.name!r})"
        if self.name:
            return self.name
        if self.parent is not None:
            return f"else of {self.parent.label}"
        if isinstance(self.node, ast.ExceptHandler):
            return ("except " + (ast.unparse(self.node.type) if self.node.type else "")).strip()
        if isinstance(self.node, ast.match_case):
            return "case " + ast.unparse(self.node.pattern)
        return header(self.node) if isinstance(self.node, ast.stmt) else self.kind

    @cached_property
    def key(self) -> str:
        """What identifies the frame: the name of a hard frame, else the normalized header."""
        return self.name if self.hard else normalize_header(self.label)


Body = tuple[list[ast.stmt], Frame]
HardKey = tuple[str, str] | None


def innermost_hard(chain: tuple[Frame, ...]) -> int | None:
    """Index of the innermost function, class or flor loop of ``chain``, if any."""
    return next((i for i in range(len(chain) - 1, -1, -1) if chain[i].hard), None)


def hard_key(chain: tuple[Frame, ...]) -> HardKey:
    """Kind and name of the innermost hard frame (None at module level)."""
    i = innermost_hard(chain)
    return None if i is None else (chain[i].kind, chain[i].name)


@dataclass(eq=False)
class Block:
    """A statement list and where it sits."""

    stmts: list[ast.stmt]
    chain: tuple[Frame, ...]
    scopes: tuple[ast.AST, ...]  # the module, then each enclosing def/class, outermost first
    #: the file's lines (empty: unknown), to remember normal forms by text
    lines: list[str] = field(default_factory=list, repr=False)

    @cached_property
    def norms(self) -> list[str]:
        """Normal forms of the statements, computed on first use."""
        if not self.lines:
            return [normalize(s) for s in self.stmts]
        return [normalize_in(s, self.lines) for s in self.stmts]

    def first_line(self, index: int) -> int:
        """1-based first line of statement ``index``, its decorators included."""
        stmt = self.stmts[index]
        decorators = getattr(stmt, "decorator_list", [])
        return min([stmt.lineno, *(d.lineno for d in decorators)])

    def insert_line(self, slot: int) -> int:
        """1-based line that a statement inserted before statement ``slot`` starts at."""
        if slot == 0:
            return self.first_line(0)
        previous = self.stmts[slot - 1]
        return (previous.end_lineno or previous.lineno) + 1


@dataclass(eq=False)
class SourceFile:
    """A parsed file: its text, lines, tree, blocks and flor module aliases."""

    text: str
    lines: list[str]
    tree: ast.Module
    blocks: list[Block]
    aliases: frozenset[str]
    defs: dict[str, list[ast.stmt]] = field(default_factory=dict)
    homes: dict[int, tuple[Block, int]] = field(default_factory=dict)  # id(stmt) -> (block, i)

    @cached_property
    def imported(self) -> frozenset[str]:
        """The names the file's imports bind (``torch`` for ``import torch.nn``), anywhere in
        it: computed once per file (a propagation asks for every statement it places)."""
        return frozenset(
            a.asname or a.name.split(".")[0]
            for node in self.nodes
            if isinstance(node, ast.Import | ast.ImportFrom)
            for a in node.names
        )

    @cached_property
    def plain_lines(self) -> bool:
        """Whether ``lines`` are the parser's lines: no character that ``str.splitlines``
        breaks at and Python does not (form feed, ``\\x1c``, ``\\u2028``, ...)."""
        return _ODD_BREAKS.search(self.text) is None

    def home(self, stmt: ast.stmt) -> tuple[Block, int]:
        """The block holding ``stmt`` and its index there."""
        return self.homes[id(stmt)]

    @cached_property
    def nodes(self) -> tuple[ast.AST, ...]:
        """Every node of the tree in :func:`ast.walk` order, walked once (several questions
        below scan the whole file, and a walk costs more than the scans)."""
        return tree_nodes(self.tree)

    @cached_property
    def identifiers(self) -> frozenset[str]:
        """Every name and attribute name the file spells (``self.ep_loss``: ``self``,
        ``ep_loss``), keyword arguments and definitions included."""
        out: set[str] = set()
        for node in self.nodes:
            if isinstance(node, ast.Name):
                out.add(node.id)
            elif isinstance(node, ast.Attribute):
                out.add(node.attr)
            elif isinstance(node, ast.arg | ast.keyword) and node.arg is not None:
                out.add(node.arg)
            elif isinstance(node, _DEFS):
                out.add(node.name)
        return frozenset(out)

    @cached_property
    def string_constants(self) -> frozenset[str]:
        """Every string constant of the file (a key, a log name, an f-string's parts)."""
        return frozenset(
            n.value for n in self.nodes if isinstance(n, ast.Constant) and isinstance(n.value, str)
        )

    @cached_property
    def _names_scan(self) -> tuple[frozenset[str], dict[str, int], frozenset[str] | None]:
        """:attr:`bound_names`, :attr:`binding_counts` and :attr:`read_names` in one pass over
        the nodes (three passes were a tenth of placing into 100 versions)."""
        bound: dict[str, int] = {}
        read: set[str] = set()
        dynamic = False
        store, defs, imports = ast.Store, _DEFS, (ast.Import, ast.ImportFrom)
        scoped = (ast.Global, ast.Nonlocal)
        for node in self.nodes:  # exact types: ast's node classes are never subclassed
            kind = type(node)
            if kind is ast.Name:
                name = node.id  # type: ignore[attr-defined]
                if type(node.ctx) is store:  # type: ignore[attr-defined]
                    bound[name] = bound.get(name, 0) + 1
                else:
                    if name in _DYNAMIC:
                        dynamic = True
                    read.add(name)
            elif kind is ast.arg:
                name = node.arg  # type: ignore[attr-defined]
                bound[name] = bound.get(name, 0) + 1
            elif kind in defs:
                name = node.name  # type: ignore[attr-defined]
                bound[name] = bound.get(name, 0) + 1
            elif kind in imports:
                for a in node.names:  # type: ignore[attr-defined]
                    name = a.asname or a.name.split(".")[0]
                    bound[name] = bound.get(name, 0) + 1
            elif kind in scoped:
                read.update(node.names)  # type: ignore[attr-defined]
        return frozenset(bound), bound, None if dynamic else frozenset(read)

    @property
    def bound_names(self) -> frozenset[str]:
        """Every name the file binds anywhere (assignments, loop targets, imports, defs)."""
        return self._names_scan[0]

    @property
    def binding_counts(self) -> dict[str, int]:
        """How many places of the file bind each name (assignment and loop targets, augmented
        assignments, parameters, definitions, imports)."""
        return self._names_scan[1]

    @property
    def read_names(self) -> frozenset[str] | None:
        """Every name the file reads or deletes anywhere, or declares ``global``/``nonlocal``;
        None where it may read any (a call of ``locals``, ``vars``, ``globals``, ``eval`` or
        ``exec``). A name it binds and never reads is thrown away (``l, _, out = step()``)."""
        return self._names_scan[2]

    @cached_property
    def unparsed(self) -> frozenset[str]:
        """Every simple statement of the file as :func:`ast.unparse` writes it (formatting and
        quotes made alike)."""
        return frozenset(
            ast.unparse(n) for n in self.nodes if isinstance(n, ast.stmt) and not hasattr(n, "body")
        )

    @cached_property
    def stored_attributes(self) -> frozenset[str]:
        """Every attribute name the file sets somewhere (``self.seen = 0`` gives ``seen``;
        ``setattr(opt, "lr_scale", 0.5)`` gives ``lr_scale``)."""
        return frozenset(
            n.attr
            for n in self.nodes
            if isinstance(n, ast.Attribute) and isinstance(n.ctx, ast.Store)
        ) | frozenset(
            n.args[1].value
            for n in self.nodes
            if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Name)
            and n.func.id == "setattr"
            and len(n.args) == 3
            and isinstance(n.args[1], ast.Constant)
            and isinstance(n.args[1].value, str)
        )

    @cached_property
    def imported_names(self) -> frozenset[str]:
        """Names the file binds by importing (modules: calling a function of one changes no
        name of the file), the flor aliases too."""
        out = set(self.aliases)
        for node in self.nodes:
            if isinstance(node, ast.Import | ast.ImportFrom):
                out |= {a.asname or a.name.split(".")[0] for a in node.names}
        return frozenset(out)

    @cached_property
    def parents(self) -> dict[int, tuple[Block, int]]:
        """id(block) -> the block holding the compound statement it is a body of, and that
        statement's index there (module-level blocks have none)."""
        out: dict[int, tuple[Block, int]] = {}
        for block in self.blocks:
            if block.stmts:
                owner = self.deepest_owner(block.stmts[0])
                if owner is not None:
                    out[id(block)] = self.homes[id(owner)]
        return out

    def deepest_owner(self, stmt: ast.stmt) -> ast.stmt | None:
        """The compound statement whose body (or ``else``, handler...) holds ``stmt``."""
        return self._owners.get(id(stmt))

    @cached_property
    def _owners(self) -> dict[int, ast.stmt]:
        found: dict[int, ast.stmt] = {}
        for block in self.blocks:
            for stmt in block.stmts:
                for body, _ in _bodies(stmt, self.aliases):
                    for inner in body:
                        found[id(inner)] = stmt
        return found

    @cached_property
    def deepest(self) -> dict[int, ast.stmt]:
        """The innermost statement on each 1-based line (blocks come outermost first)."""
        found: dict[int, ast.stmt] = {}
        for block in self.blocks:
            for stmt in block.stmts:
                for line in range(stmt.lineno, (stmt.end_lineno or stmt.lineno) + 1):
                    found[line] = stmt
        return found

    @cached_property
    def _line_starts(self) -> list[int]:
        return [0] + [m.end() for m in _NEWLINE.finditer(self.text)]

    def lines_matching(self, pattern: re.Pattern[str]) -> list[tuple[int, re.Match[str]]]:
        """Each match of ``pattern`` in the text with its 1-based line."""
        starts = self._line_starts
        return [(bisect_right(starts, m.start()), m) for m in pattern.finditer(self.text)]


def flor_aliases(tree: ast.Module) -> frozenset[str]:
    """Names the file binds to the florsql (or FlorDB) module; ``flor`` when none is imported."""
    found = {
        alias.asname or alias.name
        for node in tree.body
        if isinstance(node, ast.Import)
        for alias in node.names
        if alias.name in FLOR_MODULES
    }
    return frozenset(found or {"flor"})


def flor_call_name(expr: ast.AST, aliases: frozenset[str], func: str) -> str | None:
    """The literal name of the first ``<alias>.<func>("name", ...)`` call inside ``expr``."""
    for node in ast.walk(expr):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == func
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in aliases
        ):
            arg = node.args[0] if node.args else None
            if arg is None:
                arg = next((k.value for k in node.keywords if k.arg == "name"), None)
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                return arg.value
    return None


def _bodies(stmt: ast.stmt, aliases: frozenset[str]) -> list[Body]:
    """The statement lists inside ``stmt`` with the frame each one adds."""
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
        return [(stmt.body, Frame("def", stmt.name))]
    if isinstance(stmt, ast.ClassDef):
        return [(stmt.body, Frame("class", stmt.name))]
    if isinstance(stmt, ast.For | ast.AsyncFor | ast.While | ast.If):
        name = None
        if isinstance(stmt, ast.For | ast.AsyncFor):
            name = flor_call_name(stmt.iter, aliases, "loop")
        kind = {ast.While: "while", ast.If: "if"}.get(type(stmt), "for")
        first = Frame("loop", name, node=stmt) if name else Frame(kind, node=stmt)
        return [(stmt.body, first), (stmt.orelse, Frame("else", node=stmt, parent=first))]
    if isinstance(stmt, ast.With | ast.AsyncWith):
        return [(stmt.body, Frame("with", node=stmt))]
    if isinstance(stmt, ast.Try | ast.TryStar):
        out: list[Body] = [(stmt.body, Frame("try", "try", stmt))]
        out += [(h.body, Frame("except", node=h)) for h in stmt.handlers]
        out.append((stmt.orelse, Frame("else", "else of try", stmt)))
        return [*out, (stmt.finalbody, Frame("finally", "finally", stmt))]
    if isinstance(stmt, ast.Match):
        return [(c.body, Frame("case", node=c)) for c in stmt.cases]
    return []


def _collect(
    src: SourceFile, stmts: list[ast.stmt], chain: tuple[Frame, ...], scopes: tuple[ast.AST, ...]
) -> None:
    block = Block(stmts, chain, scopes, src.lines if src.plain_lines else [])
    src.blocks.append(block)
    for i, stmt in enumerate(stmts):
        src.homes[id(stmt)] = (block, i)
        inner = (
            (*scopes, stmt)
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            else scopes
        )
        if not isinstance(stmt, _COMPOUND):
            continue
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef):
            src.defs.setdefault(stmt.name, []).append(stmt)
        for body, frame in _bodies(stmt, src.aliases):
            if body:
                _collect(src, body, (*chain, frame), inner)


@lru_cache(maxsize=16)
def tree_nodes(tree: ast.Module) -> tuple[ast.AST, ...]:
    """:func:`walk` of a whole module, memoized (the tree's analyses and the conditions'
    questions share one walk)."""
    return walk(tree)


def walk(tree: ast.AST, parents: dict[int, ast.AST] | None = None) -> tuple[ast.AST, ...]:
    """The nodes of ``tree`` in :func:`ast.walk`'s order (breadth first) less the expression
    contexts (``Load``, ``Store``: shared leaves, a third of the nodes, which a node's ``ctx``
    gives), as a tuple, in about a third of :func:`ast.walk`'s time. ``parents``: filled with
    each node's parent by id.

    >>> [type(n).__name__ for n in walk(ast.parse("x = f(1)"))]
    ['Module', 'Assign', 'Name', 'Call', 'Name', 'Constant']
    """
    out: list[ast.AST] = [tree]
    append, AST = out.append, ast.AST
    fields: dict[type, tuple[str, ...]] = {}
    i = 0
    while i < len(out):
        node = out[i]
        i += 1
        kind = type(node)
        names = fields.get(kind)
        if names is None:
            names = fields[kind] = tuple(f for f in kind._fields if f != "ctx")
        first = len(out)
        for name in names:
            value = getattr(node, name, None)
            if isinstance(value, list):
                for v in value:
                    if isinstance(v, AST):
                        append(v)
            elif isinstance(value, AST):
                append(value)
        if parents is not None:  # (its children are the nodes it just appended)
            for child in out[first:]:
                parents[id(child)] = node
    return tuple(out)


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector: a parse allocates ~100k acyclic objects, and the
    collections they trigger (scanning every cached tree) cost a third of the time."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


@lru_cache(maxsize=16)
def analyze(text: str) -> SourceFile:
    """Parse ``text`` into its block model (cached by text). Raises :class:`SyntaxError`."""
    with _gc_paused():
        tree = ast.parse(text)
        src = SourceFile(text, text.splitlines(keepends=True), tree, [], flor_aliases(tree))
        _collect(src, tree.body, (), (tree,))
    return src
