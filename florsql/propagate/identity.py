"""What identifies a log name's statements in the latest code: one key per statement.

A replayed value is only as current as the statement that computed it. The planner serves a
replayed value of a name only while the latest code still has, for that name, the statements
the replay ran, placed the same way; :func:`statement_keys` gives each ``flor.log`` statement
a key that changes when what propagation places for it may change (docs/replay.md):

- the statement itself, as code (``ast.dump``: formatting and comments do not count, constants
  do), and the flor aliases of the file;
- the statements that may travel with it (:func:`florsql.propagate.slice.carried` chooses
  among them per old version): every statement before it that assigns or changes in place a
  name it reads, directly or through another such statement, as code: in its block, inside the
  compound statements before it (``total += x`` in the step loop), in its loop's tail, and up
  through the blocks around it in the same function;
- the normal forms of the blocks inside its block that hold such statements (an update travels
  by its neighbours in the step loop); not those of the blocks around it;
- where it sits: the scope chains of its block (through helper call sites, as propagation
  sees them) and the normal forms of the other statements of its block, before and after it.
  Other ``flor.log`` statements are left out of that context: propagation skips the statements
  it places (adding a second new statement beside the first leaves the first's key alone),
  while a log statement the old version already has is an anchor there. So each neighbour
  log statement of the block gets an *anchor key* of its own (:func:`statement_anchors`: its
  code, where it sits among the block's other statements, and on which side of the statement);
  the planner folds in the anchor keys of the neighbours whose names some run recorded
  (:func:`florsql.plan.hindsight.statement_fingerprints`): editing or moving such a neighbour
  replays the name again, adding a new one does not.

Edits in other blocks or files leave the key alone. Only :mod:`ast` is used.
"""

from __future__ import annotations

import ast

from florsql.fold import fold
from florsql.propagate.cache import CACHE_VERSION, digest, nested_context
from florsql.propagate.callees import Reader, calls_may_draw, calls_uneven, parsed, walk_own
from florsql.propagate.find import LogStatement, find_logs
from florsql.propagate.helpers import helpers_of
from florsql.propagate.slice import may_carry
from florsql.propagate.source import SourceFile, analyze

__all__ = [
    "KEY_VERSION",
    "pieces_quiet",
    "pieces_uneven",
    "statement_anchors",
    "statement_keys",
    "statement_quiet",
]

#: Bump when what a key covers changes: every replayed value is then computed again.
KEY_VERSION = "1"


def statement_keys(new_source: str) -> list[tuple[str, str]]:
    """``(name in lower case, key)`` of each literal-named ``flor.log`` statement of
    ``new_source``, in source order (``[]`` when it does not parse).

    Example:
        >>> src = "import florsql as flor\\nfor e in flor.loop('epoch', range(2)):\\n"
        >>> a = statement_keys(src + "    flor.log('a', e)\\n")
        >>> b = statement_keys(src + "    flor.log('a', e)  # same\\n    flor.log('b', 1)\\n")
        >>> c = statement_keys(src + "    flor.log('a', e + 1)\\n")
        >>> a[0] == b[0], a[0] == c[0], [n for n, _ in b]
        (True, False, ['a', 'b'])
    """
    try:
        src = analyze(new_source)
    except (SyntaxError, ValueError, RecursionError):
        return []
    logs = find_logs(src)
    placed = {id(s.stmt) for s in logs}
    return [(fold(log.name), _key(src, log, placed)) for log in logs if log.name is not None]


def statement_anchors(new_source: str) -> list[tuple[str, str, str]]:
    """``(name, neighbour's name, anchor key)``, names in lower case, for each literal-named
    ``flor.log`` statement of ``new_source`` and each other literal-named log statement of its
    block (another name's): what moves the statement's placement in an old version that logs
    the neighbour already (``[]`` when it does not parse).

    Example:
        >>> src = "import florsql as flor\\nfor e in flor.loop('epoch', range(2)):\\n"
        >>> a = statement_anchors(src + "    flor.log('a',e)\\n    x = e\\n    flor.log('l',x)\\n")
        >>> b = statement_anchors(src + "    flor.log('a',e)\\n    flor.log('l',x)\\n    x = e\\n")
        >>> [(n, m) for n, m, _ in a], a[0] == b[0]
        ([('a', 'l'), ('l', 'a')], False)
    """
    try:
        src = analyze(new_source)
    except (SyntaxError, ValueError, RecursionError):
        return []
    found = find_logs(src)
    placed = {id(s.stmt) for s in found}
    named = [(fold(log.name), log) for log in found if log.name is not None]
    out = []
    for name, log in named:
        for other_name, other in named:
            if other.block is not log.block or other_name == name:
                continue
            block = other.block
            slot = sum(1 for s in block.stmts[: other.index] if id(s) not in placed)
            side = "before" if other.index < log.index else "after"
            key = digest(KEY_VERSION, "anchor", side, str(slot), ast.dump(other.stmt))
            out.append((name, other_name, key))
    return out


def statement_quiet(new_source: str) -> frozenset[str]:
    """The names (lower case) whose every literal-named ``flor.log`` statement in
    ``new_source`` surely draws from no RNG: neither it nor what may travel with it calls
    anything but the ``flor.log`` itself, value builtins and tensor reads by name (names,
    constants, operators, attribute and subscript reads: ``flor.log("w4", w * 4)``,
    ``flor.log("w0", round(float(net[0].weight.sum()), 6))``; :func:`_calls_only_log`), and
    it sits directly in the module or in the body of a ``for`` over ``flor.loop(...)`` (a new
    ``if``, ``with`` or helper around it may call).
    Every other statement may draw: a replay of a name runs such statements of today's that
    its version lacks beside it (session 35, gap 2), and its fingerprint covers them.

    Example:
        >>> src = "import florsql as flor\\nfor e in flor.loop('epoch', range(2)):\\n"
        >>> src += "    flor.log('a', e * 2)\\n    flor.log('b', f(e))\\n"
        >>> src += "    flor.log('c', [x for x in e])\\n    flor.log('d', round(e.item(), 3))\\n"
        >>> sorted(statement_quiet(src))
        ['a', 'd']
    """
    try:
        src = analyze(new_source)
    except (SyntaxError, ValueError, RecursionError):
        return frozenset()
    logs = [log for log in find_logs(src) if log.name is not None]
    placed = {id(s.stmt) for s in find_logs(src)}
    bodies = _loop_bodies(src)
    loud: set[str] = set()
    for log in logs:
        name = fold(log.name) if log.name is not None else ""
        if id(log.block.stmts) not in bodies or not _calls_only_log(
            (*may_carry(log.block, log.index, placed, src), log.stmt), src.aliases
        ):
            loud.add(name)
    return frozenset(fold(log.name) for log in logs if log.name is not None) - loud


def pieces_quiet(source: str, pieces: tuple[tuple[int, int], ...]) -> bool:
    """Whether the texts propagation put into ``source`` (a patched old file) for one
    statement, ``pieces`` (first and last 1-based lines of each: the statement and the code
    carried with it), surely draw nothing, as :func:`statement_quiet` judges a statement."""
    try:
        aliases = analyze(source).aliases
    except (SyntaxError, ValueError, RecursionError):
        return False
    stmts = _piece_statements(source, pieces)
    return bool(stmts) and _calls_only_log(tuple(stmts or ()), aliases)


def _piece_statements(source: str, pieces: tuple[tuple[int, int], ...]) -> list[ast.stmt] | None:
    """The statements of ``source``'s lines ``pieces`` (each dedented; None: one does not
    parse alone)."""
    import textwrap

    lines = source.splitlines()
    stmts: list[ast.stmt] = []
    for first, last in pieces:
        try:
            stmts += ast.parse(textwrap.dedent("\n".join(lines[first - 1 : last]))).body
        except (SyntaxError, ValueError, RecursionError):
            return None
    return stmts


#: Nodes that make what runs differ between executions of a piece: a branch, a loop that may
#: stop early, an exception handler, a short-circuit. (A ``for`` over a ``DataLoader`` draws at
#: its start whatever its body does; its body's branches count.)
_BRANCHING = (
    ast.If, ast.IfExp, ast.BoolOp, ast.While, ast.Try, ast.Match, ast.Break, ast.Continue,
    ast.Return, ast.Raise, ast.Assert,
)  # fmt: skip


def pieces_uneven(
    source: str,
    pieces: tuple[tuple[int, int], ...],
    path: str = "",
    read: Reader | None = None,
) -> str | None:
    """Whether the texts propagation put into ``source`` (a patched old file) for one
    statement, ``pieces`` (first and last 1-based lines of each), may draw from an RNG in some
    executions and not in others, where a task that skips iterations would not see it:

    - ``None``: they surely draw nothing (:func:`pieces_quiet`), they branch nowhere and call
      nothing that may draw (:func:`florsql.propagate.callees.calls_may_draw`; before
      session 48 any text that branched nowhere: what it drew in the iterations a task ran
      was assumed of those it skipped), or they sit in the module's own body outside any
      loop or function (they run in every task: before the loop, or after it);
    - ``"gated"``: one ``if`` without ``else`` around the statement, nothing else branching
      (``if epoch % 5 == 0: flor.log("val", evaluate(net))``): the statement's values come
      from the executions that may draw, so a task asked only for them sees each draw that
      precedes a value it stores... except draws in iterations it skipped whose values it was
      not asked for, which the caller rules out by asking for this statement alone;
    - ``"uneven"``: anything else that may draw and branches (``if epoch % 2 == 1: noise =
      random.random()`` beside a value logged every epoch), and texts calling code that may
      (:func:`florsql.propagate.callees.calls_uneven`: a helper of ``source``'s, or of the
      version's other files ``read`` reads, with a branch around a draw; ``torch.dropout(h,
      0.5, epoch % 2 == 1)``; session 46).

    A task that restored a checkpoint past such an iteration trains on the recorded generator
    where a run of today's script drew (session 45): :func:`florsql.replay.runner._from_the_start`
    replays the run from its start unless an earlier replay of the same code from the start
    saw no draw that far.

    Example:
        >>> head = "import florsql as flor\\nfor e in flor.loop('epoch', range(2)):\\n"
        >>> pieces_uneven(head + "    if e % 2:\\n        flor.log('v', f(e))\\n", ((3, 4),))
        'gated'
        >>> body = "    if e % 2:\\n        n = f(e)\\n    flor.log('v', n)\\n"
        >>> pieces_uneven(head + body, ((3, 5),))
        'uneven'
        >>> pieces_uneven(head + "    flor.log('v', f(e))\\n", ((3, 3),))  # f may draw
        'uneven'
        >>> print(pieces_uneven(head + "    flor.log('v', abs(e))\\n", ((3, 3),)))
        None
    """
    if pieces_quiet(source, pieces):
        return None
    tree = parsed(source)
    if tree is None:
        return "uneven"
    stmts = _piece_statements(source, pieces)
    if stmts is None:
        return "uneven"
    if all(_module_level(tree, first) for first, _ in pieces):
        return None  # run by every task, in full: before the loop, or after it
    # a carried ``def`` only defines: its body's branches count where it is called
    # (calls_uneven follows the call), not where it is placed (session 46)
    defining = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    run = [s for s in stmts if not isinstance(s, defining)]
    branching = [n for n in walk_own(run) if isinstance(n, _BRANCHING)]
    if calls_uneven(source, stmts, path, read):
        return "uneven"
    if not branching:
        # what library code draws may change between iterations with no branch of the
        # user's (a dropout ``p`` the old loop anneals to 0; a model in eval mode every other
        # epoch; a draw sized by the data): before session 48 a task saw no draw in the
        # iterations it ran and restored past the draws of those it skipped, silently
        # (sweep P); only texts that surely draw nothing are even now
        return "uneven" if calls_may_draw(source, run, path, read) else None
    if (
        len(stmts) == 1
        and isinstance(stmts[0], ast.If)
        and not stmts[0].orelse
        and branching == [stmts[0]]
    ):
        return "gated"
    return "uneven"


def _module_level(tree: ast.Module, line: int) -> bool:
    """Whether ``line`` lies in the module's own code, outside any loop, function or class
    (inside ``with`` and ``if`` blocks of the module too)."""
    body: list[ast.stmt] = tree.body
    while True:
        for node in body:
            if node.lineno <= line <= (node.end_lineno or node.lineno):
                break
        else:
            return True
        if isinstance(node, ast.For | ast.AsyncFor | ast.While | ast.FunctionDef):
            return False
        if isinstance(node, ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda):
            return False
        inner = [
            b
            for field in ("body", "orelse", "finalbody")
            for b in [getattr(node, field, None)]
            if isinstance(b, list)
        ]
        inner += [h.body for h in getattr(node, "handlers", [])]
        nested = [s for b in inner for s in b]
        if not nested or node.lineno == line:
            return True
        body = nested


def _loop_bodies(src: SourceFile) -> set[int]:
    """``id`` of the module's statement list and of each ``for`` body over ``flor.loop``."""
    out = {id(src.tree.body)}
    for node in ast.walk(src.tree):
        if isinstance(node, ast.For | ast.AsyncFor) and isinstance(node.iter, ast.Call):
            f = node.iter.func
            if (
                isinstance(f, ast.Attribute)
                and f.attr == "loop"
                and isinstance(f.value, ast.Name)
                and f.value.id in src.aliases
            ):
                out.add(id(node.body))
    return out


#: Builtins that call at most a dunder method of their argument (``__float__``, ``__round__``),
#: taken to draw nothing as operators are; not those that iterate (``sum``, ``max``, ``list``:
#: iterating a ``DataLoader`` draws its base seed).
DRAWLESS_BUILTINS = frozenset({"abs", "bool", "float", "int", "len", "repr", "round", "str"})
#: Methods, by name, that read a tensor or an array without drawing (``loss.item()``,
#: ``net[0].weight.sum()``): a call of a method so named is taken to draw nothing, whatever
#: its receiver (a method of the user's so named that draws is not seen: documented).
DRAWLESS_METHODS = frozenset({
    "abs", "cpu", "detach", "dim", "double", "float", "item", "max", "mean", "min", "norm",
    "numel", "numpy", "size", "std", "sum", "tolist", "var",
})  # fmt: skip


#: Methods whose result is a module's own tensors or submodules (``net.parameters()``): iterating
#: it draws nothing, so a generator over it (``sum(p.grad.norm() for p in net.parameters())``,
#: a gradient norm) and the builtins of :data:`REDUCING_BUILTINS` over such a generator are taken
#: to draw nothing (session 41: judged loud, such a statement in the step loop beside an
#: epoch-level one turned every epoch-level replay into a full one). A method of the user's so
#: named that draws is not seen, as for :data:`DRAWLESS_METHODS`.
DRAWLESS_ITERABLES = frozenset({
    "buffers", "children", "modules", "named_buffers", "named_children", "named_modules",
    "named_parameters", "parameters",
})  # fmt: skip
#: Builtins that iterate their argument: drawless over a generator of :data:`DRAWLESS_ITERABLES`.
REDUCING_BUILTINS = frozenset({"all", "any", "list", "max", "min", "sorted", "sum", "tuple"})


def _drawless_iterable(node: ast.expr) -> bool:
    """A call of a :data:`DRAWLESS_ITERABLES` method, or a generator or comprehension whose
    every ``for`` iterates one."""
    if isinstance(node, ast.Call):
        return isinstance(node.func, ast.Attribute) and node.func.attr in DRAWLESS_ITERABLES
    if isinstance(node, ast.GeneratorExp | ast.ListComp | ast.SetComp):
        return all(_drawless_iterable(g.iter) for g in node.generators)
    return False


def _calls_only_log(stmts: tuple[ast.stmt, ...], aliases: frozenset[str]) -> bool:
    """Whether ``stmts`` surely draw nothing: their only calls are ``<flor alias>.log(...)``,
    ``<flor alias>.arg(...)`` and those of :data:`DRAWLESS_BUILTINS` and
    :data:`DRAWLESS_METHODS`, and they iterate nothing (no comprehension, loop, ``in``,
    unpacking) and enter no ``with``."""
    iterating = (
        ast.comprehension, ast.Starred, ast.For, ast.AsyncFor, ast.While, ast.With,
        ast.AsyncWith, ast.Await, ast.Yield, ast.YieldFrom, ast.Lambda, ast.Try,
    )  # fmt: skip
    for stmt in stmts:
        for node in ast.walk(stmt):
            if isinstance(node, ast.comprehension) and not node.is_async:
                if _drawless_iterable(node.iter):
                    continue  # over a module's own tensors (its ifs and element: walked)
                return False
            if isinstance(node, iterating):
                return False
            if isinstance(node, ast.Compare) and any(
                isinstance(op, ast.In | ast.NotIn) for op in node.ops
            ):
                return False
            if isinstance(node, ast.Call) and not _drawless_call(node, aliases):
                return False
    return True


def _drawless_call(node: ast.Call, aliases: frozenset[str]) -> bool:
    f = node.func
    if isinstance(f, ast.Name):
        if f.id in REDUCING_BUILTINS:
            return len(node.args) == 1 and not node.keywords and _drawless_iterable(node.args[0])
        return f.id in DRAWLESS_BUILTINS
    if not isinstance(f, ast.Attribute):
        return False
    if isinstance(f.value, ast.Name) and f.value.id in aliases:
        # ``flor.arg`` reads the command line: a statement reading an arg (``seed = flor.arg(
        # "seed", 0)`` travelling with ``flor.log("g", epoch * 100 + seed)``) was judged to
        # draw, so adding it changed every other name's fingerprint (session 46, sweep I)
        return f.attr in ("log", "arg")
    return f.attr in DRAWLESS_METHODS or f.attr in DRAWLESS_ITERABLES


def _key(src: SourceFile, log: LogStatement, placed: set[int]) -> str:
    block = log.block
    chains = [" > ".join(f"{f.kind}:{f.key}" for f in c) for c in helpers_of(src).variants(block)]
    keep = [k for k, s in enumerate(block.stmts) if id(s) not in placed]
    before = [block.norms[k] for k in keep if k < log.index]
    after = [block.norms[k] for k in keep if k > log.index]
    parts = [KEY_VERSION, CACHE_VERSION, log.label, repr(sorted(src.aliases))]
    parts += ["chains", *chains, "before", *before, "after", *after, "code"]
    carry = may_carry(block, log.index, placed, src)
    parts += [ast.dump(s) for s in (*carry, log.stmt)]
    parts += nested_context(src, block, carry)
    return digest(*parts)
