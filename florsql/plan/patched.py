"""The one analysis of a patched old script that replay planning needs.

For a (version, script, hindsight names): propagate today's statements into that version (cached
by :mod:`florsql.propagate`), then read the patched script with :mod:`florsql.code.effects`:
where each needed statement sits relative to the ``flor.loop``\\ s, and what each loop changes and
reads. The replay planner decides from this, per outer iteration, whether skipping the inner loop
("rest") or starting from a checkpoint is sound; EXPLAIN prints the same decisions, and the
executor runs them as given.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any

from florsql.code.effects import (
    PURE_METHODS,
    SINK_METHODS,
    LoopFacts,
    ScriptFacts,
    analyze_source,
    default_state,
    imported_names,
    module_state,
    reads_before_assigned,
    value_reads,
)

__all__ = ["Patched", "analyze_patched", "module_names", "patched_script"]

#: Names no script binds: a loop cannot change them.
_BUILTINS = frozenset(dir(builtins))


@dataclass(frozen=True)
class Patched:
    """Where the needed statements of one patched script sit, and its loops' facts.

    Attributes:
        outer: the outermost ``flor.loop`` (None: the script has none).
        first_inner: the first inner loop of ``outer`` (the one an ``after:`` checkpoint skips).
        need_start: a needed statement sits before or inside ``first_inner`` (the iteration
            must run from its start).
        in_rest: a needed statement sits after ``first_inner`` in the outer body.
        head: a needed statement runs before the outer loop.
        after_loop: a needed statement runs after the outer loop.
        unknown: a needed statement sits where its loop context cannot be told (a helper
            function without its own loop, another file): the whole run replays.
        registered: names given to ``flor.checkpointing`` (restored by any checkpoint).
        failed: names propagation could not place, with the reason.
        files: the patched files (path -> text) to write over the version's tree.
        unsaved: names bound by importing the repository's own modules when those modules keep
            state of their own (:func:`florsql.code.effects.module_state`) or the script stores
            into them: no checkpoint saves a module, so a loop that calls into them changes
            what no restore brings back (replay runs those loops).
    """

    outer: LoopFacts | None = None
    first_inner: LoopFacts | None = None
    need_start: bool = False
    in_rest: bool = False
    head: bool = False
    after_loop: bool = False
    unknown: bool = False
    registered: frozenset[str] = frozenset()
    failed: dict[str, str] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)
    unsaved: frozenset[str] = frozenset()
    #: names the patched script reads as a value (``florsql.code.effects.value_reads``): a
    #: progress bar only iterated and told to print is not among them
    value_read: frozenset[str] = frozenset({"*"})
    #: why the whole run replays from the top, where :attr:`unknown`
    whole_why: str = "a statement's loop context is unknown"
    #: names today's statements before ``first_inner`` (in the outer body) read that the outer
    #: loop carries from one iteration to the next (``loss.item() if epoch > 0``, before the
    #: step loop): an iteration a task starts at in rest mode runs those statements before its
    #: restore, on the task's fresh state (unbound there), so no task starts in rest mode
    pre_carried: frozenset[str] = frozenset()
    #: the old version's names today's carried code assigns or changes: what a checkpoint of
    #: the old run holds for them is the old code's value, never restored in their place
    #: (``tot = 0.0`` carried before the step loop of a version that never read its ``tot``)
    stale: frozenset[str] = frozenset()
    #: names bound to a ``DataLoader(..., num_workers=n, persistent_workers=True)`` (see
    #: :func:`persistent_loaders`): its worker processes keep their RNGs and the dataset's
    #: state from one epoch to the next, which no checkpoint holds
    workers: frozenset[str] = frozenset()
    #: today's other statements the version lacks, placed beside the needed ones and analysed
    #: with them (run, their values not stored): one may draw from an RNG, and a run of today's
    #: script has its draws (:func:`patched_script`, ``others``)
    companions: tuple[str, ...] = ()
    #: today's other statements that may draw and that propagation cannot place into the
    #: version (name -> why): the replay runs without them, where a run of today's script
    #: has their draws; EXPLAIN says so (:func:`patched_script`)
    lost: dict[str, str] = field(default_factory=dict)
    #: needed names whose placed texts may draw in some iterations and not in others
    #: (:func:`florsql.propagate.identity.pieces_uneven`, name -> ``"gated"``/``"uneven"``):
    #: a task of theirs that skips iterations has its run replayed from the start
    #: (:func:`florsql.replay.runner._unseen`); EXPLAIN says so
    uneven: dict[str, str] = field(default_factory=dict)
    #: needed names whose placed texts call a function or class of their file that this
    #: version defines otherwise than today's file (name -> those functions): a replay runs
    #: the version's own definition, which EXPLAIN and the query's warning say (session 47)
    edited: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: needed names today's statement of which the version already has, as it is, where it
    #: belongs (guards included): propagation places nothing for them, so a replay would run
    #: the version's own statement again and compute what the run recorded, nothing more
    #: (:func:`florsql.plan.assemble.assemble` leaves their needs out for runs that ended)
    present: frozenset[str] = frozenset()

    def rest_needs(self, fresh: bool) -> frozenset[str]:
        """Names that must be restored to skip ``first_inner`` and run the rest of the body;
        ``fresh``: the iteration does not follow one that ran in the same task."""
        if self.first_inner is None:
            return frozenset()
        inner = self.first_inner
        need = set(inner.changed & inner.read_after)
        if fresh and self.outer is not None:
            need |= self.outer.changed & (self.outer.live_in | inner.read_after)
            need -= self.outer.targets
        return frozenset(need - self.registered - _BUILTINS)

    def start_needs(self, to_end: bool) -> frozenset[str]:
        """Names that must be restored to start the next outer iteration from an ``end``
        checkpoint (``to_end``: the task goes on past the loop)."""
        if self.outer is None:
            return frozenset()
        need = set(self.outer.carried)
        if to_end:
            need |= self.outer.changed & self.outer.read_after
        return frozenset(need - self.outer.targets - self.registered - _BUILTINS)


def unplaced_reason(repo: Path, filenames: Iterable[str], name: str) -> str:
    """Why no file of a version took ``name``: most often, today's statement (in one of
    ``filenames``) is a call of a function imported from florsql (``from florsql import log``),
    which is found as a column but which propagation, placing ``<module>.log(...)`` calls,
    does not see."""
    from florsql.plan.hindsight import scan_source
    from florsql.propagate.find import find_logs
    from florsql.propagate.source import analyze

    for filename in filenames:
        try:
            text = (repo / filename).read_text(encoding="utf-8")
            scanned = scan_source(text, filename)
            placeable = {s.name for s in find_logs(analyze(text)) if s.name is not None}
        except (OSError, UnicodeDecodeError, SyntaxError, ValueError, RecursionError):
            continue
        if scanned is None or name not in scanned.names() or name in placeable:
            continue
        why = _unplaceable(text, name)
        if why is not None:
            return why
        return (
            f"today's statement is a call of a function imported from florsql (`from florsql "
            f"import log`); florsql places only module calls: write it "
            f'`florsql.log("{name}", ...)` (with `import florsql`, or `flor.log` with '
            f"`import florsql as flor`) and query again"
        )
    return "no file of this version can take it"


def _unplaceable(text: str, name: str) -> str | None:
    """Why today's ``<module>.log(name, ...)`` call in ``text`` is no statement propagation
    places: inside a ``lambda``, or sharing its line with another statement (``;``)."""
    from florsql.propagate.source import flor_aliases

    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError):
        return None
    aliases = flor_aliases(tree)
    lines: dict[int, int] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.stmt) and not hasattr(node, "body"):  # simple statements
            lines[node.lineno] = lines.get(node.lineno, 0) + 1

    def calls(node: ast.AST, in_lambda: bool) -> Iterator[tuple[ast.Call, bool]]:
        if isinstance(node, ast.Call):
            f = node.func
            arg = node.args[0] if node.args else None
            if (
                isinstance(f, ast.Attribute)
                and f.attr == "log"
                and isinstance(f.value, ast.Name)
                and f.value.id in aliases
                and isinstance(arg, ast.Constant)
                and arg.value == name
            ):
                yield node, in_lambda
        for child in ast.iter_child_nodes(node):
            yield from calls(child, in_lambda or isinstance(node, ast.Lambda))

    for call, in_lambda in calls(tree, False):
        where = f"line {call.lineno}"
        if in_lambda:
            return (
                f"today's statement ({where}) is inside a lambda, whose body runs where the "
                "lambda is called, which florsql does not follow: write it as a statement (or "
                "in a def) and query again"
            )
        if lines.get(call.lineno, 0) > 1:
            return (
                f"today's statement shares {where} with another statement (`;`); florsql "
                "places one statement per line: put each on a line of its own and query again"
            )
    return None


def replay_files(
    repo: Path, vid: str, names: Sequence[str], companions: Sequence[str]
) -> tuple[dict[str, str], Any]:
    """The files a replay of ``names`` (and today's ``companions`` beside them) writes over
    version ``vid``, as its runner writes them (each placed piece between the RNG guard's
    calls; today's modules the placed imports name that the version lacks), and the
    :class:`~florsql.propagate.version.VersionPropagation` they come from. The names computed
    go in even where the version logs them (in a branch the run did not take) unless today's
    statement is there as it is; companions only where it lacks them (today's statement beside
    the version's own would run twice)."""
    import florsql.propagate as propagate
    from florsql.propagate.model import guarded

    result = propagate.for_version(repo, vid, names=[*names, *companions], again=names)
    files = {path: guarded(r).source for path, r in result.files.items() if r.placed}
    files.update({path: text for path, text in result.added.items() if path not in files})
    return files, result


def patched_script(
    repo: Path,
    vid: str,
    filename: str,
    names: tuple[str, ...],
    outer: str | None = None,
    modules: tuple[str, ...] = (),
    others: tuple[str, ...] = (),
) -> Patched:
    """Propagate ``names`` into version ``vid`` and analyse its ``filename`` (``outer``: the
    run's recorded outermost loop, when known; ``modules``: the other repository files the run
    imported).

    ``others``: today's other log names in the run's files. Those the version lacks are placed
    too (:attr:`Patched.companions`) and analysed as needed ones: a replay runs them without
    storing their values, since one may draw from an RNG and the contract's values are a run
    of the version with every one of today's statements in it (session 35, gap 2). Their
    failures are not the needed names' (``failed`` keeps only ``names``')."""
    import florsql.propagate as propagate
    from florsql.propagate.identity import pieces_quiet, pieces_uneven
    from florsql.versions import file_at, version_reader

    asked = tuple(dict.fromkeys((*names, *(o for o in others if o not in names))))
    # the needed names go in even where the version logs them, unless today's statement is
    # there as it is: a run asked for them never recorded them (session 50: an old ``if
    # do_eval:`` around the statement left the do_eval=0 run NULL, said nowhere)
    result = propagate.for_version(repo, vid, names=asked, again=names)
    files = {path: r.source for path, r in result.files.items() if r.placed}
    failed = {f.name: f.reason for r in result.files.values() for f in r.failed}
    for name in result.unplaced:
        if name in names:
            failed.setdefault(name, unplaced_reason(repo, [filename], name))
    # a companion whose texts placed here (the statement, what travelled with it) surely
    # draw nothing is left out: it cannot move a run of today's script
    placed = {
        p.name
        for r in result.files.values()
        for p in r.placed
        if p.name in names or not pieces_quiet(r.source, p.pieces)
    }
    companions = tuple(o for o in asked[len(names) :] if o in placed and o not in failed)
    lost = {n: why for n, why in failed.items() if n not in names}
    for name in result.unplaced:
        if name not in names:
            lost[name] = unplaced_reason(repo, [filename], name)
    failed = {n: why for n, why in failed.items() if n in names}
    placed_any = {p.name for r in result.files.values() for p in r.placed}
    present = frozenset(
        n
        for n in names
        if n not in placed_any
        and n not in failed
        and n not in result.unplaced
        and n in result.present
    )
    try:
        source = files.get(filename) or file_at(repo, vid, filename)
    except Exception:  # the script is not in that version: nothing can be placed
        source = ""
    wanted = tuple(n for n in names if n not in failed) + companions
    texts: dict[str, str | None] = {}
    for path in modules:
        try:
            texts[path] = files.get(path) or file_at(repo, vid, path)
        except Exception:  # not readable at that version: taken as keeping state
            texts[path] = None
    for path, text in result.added.items():  # today's, which a replay runs beside the version
        texts.setdefault(path, text)
    found = analyze_patched(source, wanted, outer, module_names(source, filename, texts))
    stale = frozenset(n for r in result.files.values() for p in r.placed for n in p.binds)
    read = version_reader(repo, result.vid, {**result.added, **files})
    uneven: dict[str, str] = {}
    for path, r in sorted(result.files.items()):
        for p in r.placed:
            if (p.name in names and p.name not in failed) or p.name in companions:
                how = pieces_uneven(r.source, p.pieces, path, read)
                if how is not None:  # two pieces of one name: not one gate
                    uneven[p.name] = "uneven" if p.name in uneven else how
    edited: dict[str, tuple[str, ...]] = {}
    for path, r in sorted(result.files.items()):
        for p in r.placed:
            if p.name in names and p.name not in failed:
                helpers = edited_calls(repo, path, r.original, r.source, p.pieces)
                helpers += imported_edited(repo, vid, path, r.source, p.pieces)
                if helpers:
                    edited[p.name] = tuple(sorted({*edited.get(p.name, ()), *helpers}))
    # today's functions a replay writes beside the version (a module new today, or ones
    # appended to a module the version has) reading the version's own names where today's
    # differ (session 47, sweep M): said as for an edited function
    behind = _version_names_read(repo, vid, result)
    if behind:
        for r in result.files.values():
            for p in r.placed:
                if p.name in names and p.name not in failed:
                    edited[p.name] = tuple(sorted({*edited.get(p.name, ()), *behind}))
    found = replace(
        found,
        failed=failed,
        files=files,
        stale=stale,
        companions=companions,
        lost=lost,
        uneven=uneven,
        edited=edited,
        present=present,
    )
    held = _parameters_of(source) & _objects_changed(
        [code for r in result.files.values() for p in r.placed for code in p.carried]
    )
    if held and wanted:
        # today's code changes an object through a parameter (``self.ep_loss = 0.0`` in a
        # method): which of the script's objects that is, no analysis here tells, and a
        # checkpoint of the old run restores it as the old code left it
        shown = ", ".join(sorted(held)[:2])
        found = replace(
            found,
            unknown=True,
            need_start=True,
            after_loop=True,
            whole_why=f"today's code changes an object through {shown} (a parameter), which a "
            "checkpoint of the old run holds as the old code left it",
        )
    return found


def _version_names_read(repo: Path, vid: str, result: Any) -> list[str]:
    """``module.name`` of the version's own names that today's code a replay writes beside
    the version reads where today's definitions differ: those an appended function reads in
    its module, and those a module new today imports from a module the version has."""
    from florsql.propagate.modules import differing, top_bindings
    from florsql.versions import file_at

    def today(path: str) -> str | None:
        try:
            return (repo / path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    out: set[str] = set()
    for path, text in result.added.items():
        module = path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        if path in result.extended:  # appended to the version's module
            old = result.extended[path]
            try:
                appended = top_bindings(ast.parse(text)) - top_bindings(ast.parse(old))
            except (SyntaxError, ValueError):
                continue
            now = today(path)
            if now is not None:
                out.update(f"{module}.{n}" for n in differing(old, now, appended))
            continue
        try:
            tree = ast.parse(text)
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):  # a new module taking names from one the version has
            if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
                continue
            other = node.module.replace(".", "/") + ".py"
            now = today(other)
            try:
                old = file_at(repo, vid, other)
            except Exception:  # not the version's (a library, or new too)
                continue
            if now is None:
                continue
            taken = [a.name for a in node.names if a.name != "*"]
            out.update(f"{node.module}.{n}" for n in differing(old, now, taken))
    return sorted(out)


def _called_by_name(tree: ast.AST, pieces: tuple[tuple[int, int], ...]) -> set[str]:
    """The plain names (``f`` of ``f(x)``) that calls on the lines of ``pieces`` (1-based
    spans) call."""
    return {
        n.func.id
        for n in ast.walk(tree)
        if isinstance(n, ast.Call)
        and isinstance(n.func, ast.Name)
        and any(a <= n.lineno <= b for a, b in pieces)
    }


def edited_calls(
    repo: Path, path: str, original: str, patched: str, pieces: tuple[tuple[int, int], ...]
) -> tuple[str, ...]:
    """The module-level functions and classes of ``path`` that the ``pieces`` (1-based line
    spans of ``patched``) call by name, which the version (``original``) defines otherwise
    than today's file: a replay runs the version's own (sweep L: an L1 ``wnorm`` edited into
    an L2 one since, replayed as L1 without a word)."""
    try:
        today = ast.parse((repo / path).read_text(encoding="utf-8"))
        old_tree, tree = ast.parse(original), ast.parse(patched)
    except (OSError, SyntaxError, ValueError, UnicodeDecodeError):
        return ()
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    old_defs = {d.name: ast.dump(d) for d in old_tree.body if isinstance(d, kinds)}
    new_defs = {d.name: ast.dump(d) for d in today.body if isinstance(d, kinds)}
    called = _called_by_name(tree, pieces)
    return tuple(
        sorted(n for n in called if n in old_defs and n in new_defs and old_defs[n] != new_defs[n])
    )


def imported_edited(
    repo: Path, vid: str, path: str, patched: str, pieces: tuple[tuple[int, int], ...]
) -> tuple[str, ...]:
    """``module.name`` of the functions the ``pieces`` call by a name the patched file takes
    from a repository module (``from utils import new_fn``, a line of its own or an old one),
    where the version's module defines it otherwise than today's: a replay runs the
    version's (sweep Q: ``new_fn`` returning -1.0 then, ``w * 100`` today, without a word)."""
    from florsql.propagate.modules import differing
    from florsql.versions import file_at

    try:
        tree = ast.parse(patched)
    except (SyntaxError, ValueError):
        return ()
    called = _called_by_name(tree, pieces)
    taken: dict[str, list[str]] = {}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and not node.level and node.module:
            for a in node.names:
                if (a.asname or a.name) in called and a.name != "*":
                    taken.setdefault(node.module, []).append(a.name)
    out: list[str] = []
    folder = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
    for module, names in sorted(taken.items()):
        rel = module.replace(".", "/") + ".py"
        for where in dict.fromkeys([folder + rel, rel]):
            try:
                old = file_at(repo, vid, where)
                now = (repo / where).read_text(encoding="utf-8")
            except Exception:  # not a module of the version's, or gone today
                continue
            out += [f"{module}.{n}" for n in differing(old, now, names)]
            break
    return tuple(out)


def _objects_changed(codes: list[str]) -> frozenset[str]:
    """The names whose objects the carried ``codes`` change through an attribute or a
    subscript (``self`` for ``self.ep_loss += x``)."""
    from florsql.propagate.slice import changes

    out: set[str] = set()
    for code in codes:
        try:
            tree = ast.parse(code)
        except (SyntaxError, ValueError, RecursionError):
            continue
        for stmt in tree.body:
            kills, updates = changes(stmt)
            out |= {p.split(".", 1)[0] for p in (*kills, *updates) if "." in p} | set(updates)
    return frozenset(out)


def _parameters_of(source: str) -> frozenset[str]:
    """Every parameter name of the functions of ``source``."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return frozenset()
    return frozenset(
        a.arg
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        for a in [
            *n.args.posonlyargs,
            *n.args.args,
            *n.args.kwonlyargs,
            n.args.vararg,
            n.args.kwarg,
        ]
        if a is not None
    )


def module_names(source: str, filename: str, modules: dict[str, str | None]) -> frozenset[str]:
    r"""The names ``source`` (the run's script, ``filename``) binds by importing the repository
    files ``modules`` (path -> text at the run's version; None: unreadable), when one of those
    modules keeps state of its own, or the script stores into what it imported
    (``config.lr = ...``): state a checkpoint never saves (:attr:`Patched.unsaved`). Empty when
    the modules only compute.

    Example:
        >>> src = "import helpers\nfor e in flor.loop('epoch', range(2)):\n    helpers.step()\n"
        >>> sorted(module_names(src, "train.py", {"helpers.py": "N = [0]\ndef step():\n"
        ...                                       "    N.append(1)\n"}))
        ['helpers']
        >>> sorted(module_names(src, "train.py", {"helpers.py": "def step():\n    return 1\n"}))
        []
    """
    if not modules:
        return frozenset()
    folder = filename.rsplit("/", 1)[0] + "/" if "/" in filename else ""
    tops = set()
    for path in modules:
        for rel in (path, path[len(folder) :] if folder and path.startswith(folder) else path):
            tops.add(rel.split("/", 1)[0].removesuffix(".py"))
    local = imported_names(source, tops)
    if not local:
        return frozenset()
    stateful = any(text is None or module_state(text) for text in modules.values())
    if stateful or _stores_into(source, local):
        return _derived(source, local)
    return frozenset()


def _derived(source: str, names: frozenset[str]) -> frozenset[str]:
    """``names`` and the names ``source`` assigns from expressions reading them, to a fixed
    point (``record, summary = meters.make_meter()``: closures whose cells the module's code
    changes, which the recording lists as code)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return names
    assigns = [
        (n.targets if isinstance(n, ast.Assign) else [n.target], n.value)
        for n in ast.walk(tree)
        if isinstance(n, (ast.Assign, ast.AnnAssign)) and n.value is not None
    ]
    out = set(names)
    grown = True
    while grown:
        grown = False
        for targets, value in assigns:
            if any(isinstance(v, ast.Name) and v.id in out for v in ast.walk(value)):
                new = {t.id for tg in targets for t in ast.walk(tg) if isinstance(t, ast.Name)}
                if not new <= out:
                    out |= new
                    grown = True
    return frozenset(out)


def _stores_into(source: str, names: frozenset[str]) -> bool:
    """Whether ``source`` changes an object a module it imported holds: stores an attribute or
    item into it (``config.lr = 0.1``, ``helpers.CALLS["n"] += 1``) or calls a method that may
    mutate it (``buffers.EMA.mul_(0.9)``). ``names``: the names bound by importing the modules.
    Passing it to a function (``init.zeros_(buffers.W)``) is not seen: module constants are
    passed to calls everywhere (``F.dropout(x, p=cfg.DROPOUT)``)."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return True

    def part_of(node: ast.AST) -> bool:  # a.b, a[i], a.b[i].c with a in names
        if not isinstance(node, (ast.Attribute, ast.Subscript)):
            return False
        while isinstance(node, (ast.Attribute, ast.Subscript)):
            node = node.value
        return isinstance(node, ast.Name) and node.id in names

    for node in ast.walk(tree):
        if isinstance(node, (ast.Attribute, ast.Subscript)) and isinstance(
            node.ctx, (ast.Store, ast.Del)
        ):
            if part_of(node):
                return True
        elif isinstance(node, ast.Call):
            func = node.func
            method = func if isinstance(func, ast.Attribute) else None
            quiet = method is None or method.attr in PURE_METHODS or method.attr in SINK_METHODS
            if method is not None and not quiet and part_of(method.value):
                return True
    return False


@lru_cache(maxsize=128)
def analyze_patched(
    source: str,
    names: tuple[str, ...],
    outer_name: str | None = None,
    unsaved: frozenset[str] = frozenset(),
) -> Patched:
    """Classify the ``flor.log`` statements of ``names`` in ``source``; ``outer_name`` is the
    outermost loop the run recorded (else the first one that holds another, or a module-level
    one, is taken). ``unsaved``: names bound to state no checkpoint saves
    (:func:`module_names`): a loop that changes one of them changes all of them.

    Example:
        >>> src = '''
        ... import florsql as flor
        ... with flor.checkpointing(model=net):
        ...     for e in flor.loop("epoch", range(3)):
        ...         for s in flor.loop("step", range(4)):
        ...             flor.log("loss", 1)
        ...         flor.log("acc", 2)
        ... flor.log("final", 3)
        ... '''
        >>> p = analyze_patched(src, ("acc",))
        >>> p.outer.name, p.first_inner.name, p.need_start, p.in_rest, p.after_loop
        ('epoch', 'step', False, True, False)
        >>> q = analyze_patched(src, ("loss", "final"))
        >>> q.need_start, q.after_loop, sorted(q.registered)
        (True, True, ['net'])
    """
    facts = analyze_source(source)
    if unsaved:  # a call into a stateful module may change any of its state
        facts = ScriptFacts(
            tuple(
                replace(lp, changed=lp.changed | unsaved) if lp.changed & unsaved else lp
                for lp in facts.loops
            )
        )
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError, RecursionError):
        return Patched(unknown=bool(names))
    outer = _outer_loop(facts, outer_name)
    inner = _first_inner(facts, outer)
    flags = {"need_start": False, "in_rest": False, "head": False, "after": False, "unknown": False}
    found: set[str] = set()
    pre_carried: set[str] = set()
    helpers: list[str] = []
    sites = _helper_sites(tree)
    for call, scope in _log_calls(tree, set(names)):
        found.add(call.args[0].value)  # type: ignore[attr-defined]
        # a statement in a helper is placed where the helper is called (session 52, sweep Y
        # N3: it replayed whole runs, ~6 s for under 1 s): each call site, 4 calls deep,
        # where every one of them is a plain call of the file's own function
        places = _call_places(call, scope, sites, outer, inner) or [(call, scope, frozenset())]
        for node, at, via in places:
            _classify(node.lineno, at, facts, outer, inner, flags, helpers)
            if (
                outer is not None
                and inner is not None
                and at == outer.scope == inner.scope
                and outer.line < node.lineno < inner.line
            ):
                pre_carried |= _carried_into(tree, outer, node, via)
    if set(names) - found:
        flags["unknown"] = True  # a statement in another file: the safe answer
    value_read = value_reads(source)
    whole_why = Patched.whole_why
    if helpers and not set(names) - found:
        # (session 50: EXPLAIN said "loop context is unknown" of a statement it had placed
        # "in epoch" a line above; since session 52 a helper is placed at its calls, where
        # they are all there is: see ``_helper_sites``)
        shown = ", ".join(f"{h}()" for h in dict.fromkeys(helpers))
        whole_why = (
            f"a statement in {shown}, a function that may run elsewhere than at its calls "
            "by name (used as a value, decorated, a generator, called from a lambda or more "
            "than 4 calls deep), so the analysis of the old version's file cannot place it"
        )
    if outer is not None and outer.wrappers and names:
        # A wrapper of the outer loop (bar = tqdm(flor.loop("epoch", ...)), a generator
        # counting in its locals) sees only the iterations a replay runs: where the script
        # reads it as a value (bar.n), every iteration must run, from the top.
        read = sorted(outer.wrappers if "*" in value_read else outer.wrappers & value_read)
        if read:
            flags["unknown"] = True
            whole_why = (
                f"reads {', '.join(read[:3])}, which a wrapper of the {outer.name} loop changes "
                "as it iterates: every iteration must run"
            )
    paired = _pairing_wrapper(tree, outer) if outer is not None and names else None
    if paired and outer is not None and not flags["unknown"]:
        # ``for n, epoch in enumerate(flor.loop("epoch", ...), start=1)``, ``zip(flor.loop(...),
        # lrs)``: the wrapper pairs each item with its own count or another iterable's next
        # item, which only a run over every iteration from the first gives (session 47, sweep
        # K: a task starting at epoch 4 numbered it 1, silently)
        flags["unknown"] = True
        whole_why = (
            f"the {outer.name} loop is iterated through {paired}, which pairs each iteration "
            "with its own count or another iterable's items: every iteration must run"
        )
    kept = default_state(tree) if names else ()
    if kept and not flags["unknown"]:
        # a default argument the script's code changes (``def smoothed(v, _state={})``), a
        # cache of drawn values: a replay from a checkpoint gets what a fresh start makes
        # (session 43)
        flags["unknown"] = True
        whole_why = (
            f"state in a function no checkpoint saves ({', '.join(kept[:2])}): "
            "every iteration must run"
        )
    if flags["unknown"]:
        flags["need_start"] = flags["after"] = True
    return Patched(
        outer=outer,
        first_inner=inner,
        need_start=flags["need_start"],
        in_rest=flags["in_rest"],
        head=flags["head"],
        after_loop=flags["after"],
        unknown=flags["unknown"],
        registered=_registered(tree),
        unsaved=unsaved,
        value_read=value_read,
        whole_why=whole_why,
        pre_carried=frozenset(pre_carried - _registered(tree) - _BUILTINS),
        workers=persistent_loaders(tree),
    )


def persistent_loaders(tree: ast.Module) -> frozenset[str]:
    r"""Names the script binds to a torch ``DataLoader`` whose worker processes persist across
    epochs (``persistent_workers`` not ``False``, ``num_workers`` not ``0``), directly or from
    a call to one of the script's functions that makes one (``train_loader, val_loader =
    make_loaders(cfg)``). Each worker was seeded once, as it started; the random augmentations
    of the dataset's ``__getitem__`` (or a ``worker_init_fn``'s numpy seed) then draw from its
    RNGs epoch after epoch, and whatever the dataset keeps lives in the worker. No checkpoint
    holds that: a replay starting at one starts new workers, seeded from the RNGs as they are
    there, and gets other batches. (Runs recorded since session 34 also note such a loader as
    a miss in each checkpoint, however it was made; this covers the earlier ones.)

    Example:
        >>> src = "dl = DataLoader(ds, num_workers=2, persistent_workers=True)\n"
        >>> sorted(persistent_loaders(ast.parse(src)))
        ['dl']
        >>> src = "dl = DataLoader(ds, num_workers=0, persistent_workers=True)\n"
        >>> sorted(persistent_loaders(ast.parse(src)))
        []
        >>> src = (
        ...     "def make(bs):\n"
        ...     "    return DataLoader(ds, bs, num_workers=n, persistent_workers=True), None\n"
        ...     "tr, va = make(8)\n"
        ... )
        >>> sorted(persistent_loaders(ast.parse(src)))
        ['tr', 'va']
    """
    makers = {
        fn.name
        for fn in ast.walk(tree)
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
        and any(isinstance(n, ast.Call) and _persistent_call(n) for n in ast.walk(fn))
    }
    out: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Assign, ast.AnnAssign)) or not isinstance(
            node.value, ast.Call
        ):
            continue
        func = node.value.func
        callee = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
        if not _persistent_call(node.value) and callee not in makers:
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        for t in targets:
            for n in ast.walk(t):
                if isinstance(n, ast.Name):
                    out.add(n.id)
    return frozenset(out)


def _persistent_call(call: ast.Call) -> bool:
    """``DataLoader(..., num_workers=n, persistent_workers=p)`` with ``n`` not ``0`` and ``p``
    not ``False`` (not constants: taken as set)."""
    func = call.func
    callee = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    if callee != "DataLoader":
        return False
    kw = {k.arg: k.value for k in call.keywords if k.arg}
    persistent, workers = kw.get("persistent_workers"), kw.get("num_workers")
    if persistent is None or (isinstance(persistent, ast.Constant) and not persistent.value):
        return False
    return workers is not None and not (isinstance(workers, ast.Constant) and not workers.value)


def _carried_into(
    tree: ast.Module, outer: LoopFacts, call: ast.Call, more: frozenset[str] = frozenset()
) -> set[str]:
    """Names ``call`` (in ``outer``'s body, before its first inner loop) reads that hold, where
    it runs, what the previous iteration left: changed by the loop and not assigned before it
    in the same iteration (``loss`` of the step loop below; not ``lr = base * 0.9 ** epoch``
    just above). ``more``: names it reads besides its own (a helper's it calls)."""
    loop = next(
        (
            n
            for n in ast.walk(tree)
            if isinstance(n, (ast.For, ast.AsyncFor)) and n.lineno == outer.line
        ),
        None,
    )
    if loop is None:
        return set()
    prefix = []
    for stmt in loop.body:
        prefix.append(stmt)
        if stmt.lineno <= call.lineno <= (stmt.end_lineno or stmt.lineno):
            break
    loads = {n.id for n in ast.walk(call) if isinstance(n, ast.Name)} | set(more)
    live = reads_before_assigned(prefix, set(outer.targets)) | set(more)
    return loads & live & outer.changed - outer.targets


#: Calls a ``flor.loop`` may be passed through in a ``for`` header that hand its items on one
#: for one, unchanged: a replay that skips iterations skips them for the wrapper too (progress
#: bars; what they count is handled as ``LoopFacts.wrappers``).
_ITEM_WRAPPERS = frozenset({"tqdm", "trange", "iter", "track", "wrap", "progress", "auto"})


def _pairing_wrapper(tree: ast.Module, outer: LoopFacts) -> str | None:
    """The call (as ``name(...)``) around the outer ``flor.loop`` in its ``for`` header (or in
    the value of the name that header iterates) that may pair each item with state of its own
    (``enumerate``, ``zip``, ``itertools.islice``, a generator of the script's), or None where
    the loop is iterated as itself or through a progress bar."""
    loop = next(
        (
            n
            for n in ast.walk(tree)
            if isinstance(n, ast.For | ast.AsyncFor) and n.lineno == outer.line
        ),
        None,
    )
    if loop is None:
        return None
    exprs: list[ast.expr] = [loop.iter]
    if isinstance(loop.iter, ast.Name):  # it = enumerate(flor.loop(...)); for n, e in it:
        exprs += [
            a.value
            for a in ast.walk(tree)
            if isinstance(a, ast.Assign)
            and any(isinstance(t, ast.Name) and t.id == loop.iter.id for t in a.targets)
        ]
    for expr in exprs:
        for node in ast.walk(expr):
            if not isinstance(node, ast.Call) or _is_flor_loop(node):
                continue
            if not any(isinstance(c, ast.Call) and _is_flor_loop(c) for c in ast.walk(node)):
                continue
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            if name not in _ITEM_WRAPPERS:
                return f"{name or 'a call'}(...)"
    return None


def _is_flor_loop(call: ast.Call) -> bool:
    func = call.func
    return isinstance(func, ast.Attribute) and func.attr == "loop"


def _outer_loop(facts: ScriptFacts, name: str | None) -> LoopFacts | None:
    outermost = facts.outermost()
    named = [lp for lp in outermost if lp.name == name]
    with_inner = [lp for lp in outermost if facts.children(lp)]
    module = [lp for lp in outermost if lp.scope == "<module>"]
    candidates = named or with_inner or module or outermost
    return candidates[0] if candidates else None


def _first_inner(facts: ScriptFacts, outer: LoopFacts | None) -> LoopFacts | None:
    """The first flor loop run inside ``outer``: in its body, or in a function it calls."""
    if outer is None:
        return None
    children = facts.children(outer)
    if children:
        return children[0]
    others = [lp for lp in facts.loops if lp.parent is None and lp is not outer]
    nested = [lp for lp in others if lp.scope != outer.scope]  # in a function the body calls
    return nested[0] if nested else None


def _classify(
    line: int,
    scope: str,
    facts: ScriptFacts,
    outer: LoopFacts | None,
    inner: LoopFacts | None,
    flags: dict[str, bool],
    helpers: list[str] | None = None,
) -> None:
    def inside(lp: LoopFacts | None) -> bool:
        return lp is not None and lp.scope == scope and lp.line <= line <= lp.end_line

    if outer is not None and outer.yields and scope != outer.scope:
        # the outer loop yields to its caller (``def epochs(): k = 0; for e in flor.loop(
        # ...): k += 1; yield e, k``), where the statement is: the generator's own state
        # counts iterations a replay skips (session 47, sweep M: k 1 for 4, silently)
        flags["unknown"] = True
        return

    if outer is not None and inside(outer):
        if inner is not None and inner.scope == scope and line > inner.end_line:
            flags["in_rest"] = True
        else:
            flags["need_start"] = True
        return
    if inner is not None and inner.scope == scope and inner.scope != (outer and outer.scope):
        # in the helper function that owns the inner loop
        if line > inner.end_line:
            flags["in_rest"] = True
        else:
            flags["need_start"] = True
        return
    if outer is None or scope != outer.scope:
        flags["unknown"] = True  # a function called from who knows where: the safe answer
        if helpers is not None and scope and scope != "<module>":
            helpers.append(scope)
        return
    if line < outer.line:
        flags["head"] = True
    else:
        flags["after"] = True


#: decorators that leave each call of a helper running its body as written
_PLAIN_DECORATORS = frozenset(
    {"no_grad", "inference_mode", "enable_grad", "staticmethod", "classmethod", "wraps"}
)


@dataclass(frozen=True)
class _Helper:
    """A function of the file as a statement in it is reached: its calls (the call, the scope
    it sits in) and the names its body reads from outside; None in :func:`_helper_sites`
    where it may run elsewhere than at a call of it by name."""

    calls: tuple[tuple[ast.Call, str], ...]
    reads: frozenset[str]


def _helper_sites(tree: ast.Module) -> dict[str, _Helper | None]:
    """Per function name of ``tree``: its :class:`_Helper`, or None where a call of it by name
    is not all there is: it is also used as a value (a callback, ``hook = self.evaluate``),
    called from a ``lambda``, decorated (``lru_cache`` may skip its body), a generator (its
    body runs as it is consumed), or its name is also a class's."""
    from florsql.propagate.slice import reads

    fns: dict[str, list[ast.FunctionDef | ast.AsyncFunctionDef]] = {}
    classes: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            fns.setdefault(node.name, []).append(node)
        elif isinstance(node, ast.ClassDef):
            classes.add(node.name)
    calls: dict[str, list[tuple[ast.Call, str]]] = {}
    escaped: set[str] = set()
    in_call: set[int] = set()

    def visit(node: ast.AST, scope: str, in_lambda: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                for d in child.decorator_list:
                    visit(d, scope, in_lambda)
                visit(child, child.name, False)
                continue
            if isinstance(child, ast.Call):
                func = child.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
                if name in fns:
                    in_call.add(id(func))
                    if in_lambda:
                        escaped.add(name)
                    calls.setdefault(name, []).append((child, scope))
            elif (
                isinstance(child, ast.Name)
                and child.id in fns
                and isinstance(child.ctx, ast.Load)
                and id(child) not in in_call
            ) or (
                isinstance(child, ast.Attribute) and child.attr in fns and id(child) not in in_call
            ):
                escaped.add(child.id if isinstance(child, ast.Name) else child.attr)
            visit(child, scope, in_lambda or isinstance(child, ast.Lambda))

    visit(tree, "<module>", False)
    out: dict[str, _Helper | None] = {}
    through = _passing_through(tree)
    for name, defs in fns.items():
        plain = all(
            not any(isinstance(n, ast.Yield | ast.YieldFrom | ast.Await) for n in ast.walk(fn))
            and not isinstance(fn, ast.AsyncFunctionDef)
            and all(_plain_decorator(d, through) for d in fn.decorator_list)
            for fn in defs
        )
        if name in escaped or name in classes or not plain or not calls.get(name):
            out[name] = None
            continue
        out[name] = _Helper(
            tuple(calls[name]), frozenset(n for fn in defs for n in reads(fn) - {fn.name})
        )
    return out


def _plain_decorator(node: ast.expr, through: frozenset[str] = frozenset()) -> bool:
    if isinstance(node, ast.Name) and node.id in through:
        return True
    target = node.func if isinstance(node, ast.Call) else node
    name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
    return name in _PLAIN_DECORATORS


def _passing_through(tree: ast.Module) -> frozenset[str]:
    """The file's own decorators (module-level functions of one parameter, used bare:
    ``@timed``) that return a wrapper calling the function exactly once, unconditionally, as
    a statement of its body (``r = fn(*a, **k)``, ``return fn(*a, **k)``), and using it
    otherwise only by attribute (``fn.__name__``) or in ``functools.wraps(fn)``: each call
    of what they decorate runs its body once (sweep Z F5: a timing decorator on
    ``evaluate()`` replayed whole runs)."""
    out = set()
    for fn in tree.body:
        if not isinstance(fn, ast.FunctionDef) or fn.decorator_list:
            continue
        a = fn.args
        if len(a.args) != 1 or a.posonlyargs or a.kwonlyargs or a.vararg or a.kwarg:
            continue
        param = a.args[0].arg
        inner = [s for s in fn.body if isinstance(s, ast.FunctionDef)]
        rest = [s for s in fn.body if not isinstance(s, ast.FunctionDef)]
        if len(inner) != 1 or len(rest) != 1 or not isinstance(rest[0], ast.Return):
            continue
        wrapper = inner[0]
        ret = rest[0].value
        if not (isinstance(ret, ast.Name) and ret.id == wrapper.name):
            continue
        if not all(_wraps_of(d, param) for d in wrapper.decorator_list) or not _calls_once(
            wrapper, param
        ):
            continue
        out.add(fn.name)
    return frozenset(out)


def _wraps_of(node: ast.expr, param: str) -> bool:
    """``functools.wraps(param)`` or ``wraps(param)``."""
    return (
        isinstance(node, ast.Call)
        and (getattr(node.func, "attr", None) or getattr(node.func, "id", None)) == "wraps"
        and len(node.args) == 1
        and isinstance(node.args[0], ast.Name)
        and node.args[0].id == param
    )


def _calls_once(wrapper: ast.FunctionDef, param: str) -> bool:
    calls = [
        s
        for s in wrapper.body
        if isinstance(s, ast.Expr | ast.Assign | ast.Return)
        and isinstance(s.value, ast.Call)
        and isinstance(s.value.func, ast.Name)
        and s.value.func.id == param
    ]
    if len(calls) != 1:
        return False
    seen = [
        n for n in ast.walk(wrapper) if isinstance(n, ast.Name) and n.id == param
    ]  # the call's own name, ``wraps(param)``, and ``param.attr`` reads only
    attrs = {
        id(n.value)
        for n in ast.walk(wrapper)
        if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
    }
    allowed = {id(calls[0].value.func)} | attrs  # type: ignore[union-attr]
    allowed |= {id(d.args[0]) for d in wrapper.decorator_list if isinstance(d, ast.Call)}
    before = wrapper.body[: wrapper.body.index(calls[0])]
    leaves = any(
        isinstance(n, ast.Return | ast.Raise | ast.Yield | ast.YieldFrom)
        for s in before
        for n in ast.walk(s)
    )
    return not leaves and all(id(n) in allowed for n in seen)


def _call_places(
    call: ast.Call,
    scope: str,
    sites: dict[str, _Helper | None],
    outer: LoopFacts | None,
    inner: LoopFacts | None,
) -> list[tuple[ast.Call, str, frozenset[str]]] | None:
    """Where a statement in a helper (``scope``) runs: the calls that reach it from the scope
    of ``outer`` (or of the function holding ``inner``), with the names the helpers on the way
    read; None where it is not in a helper, or a helper on the way may run otherwise (see
    :func:`_helper_sites`), or calls reach it from more than 4 helpers deep."""
    home = {lp.scope for lp in (outer, inner) if lp is not None}
    if not home or scope in home or scope == "<module>":
        return None
    out: list[tuple[ast.Call, str, frozenset[str]]] = []
    todo: list[tuple[str, frozenset[str], int, frozenset[str]]] = [
        (scope, frozenset(), 0, frozenset())
    ]
    while todo:
        fn, read, depth, seen = todo.pop()
        helper = sites.get(fn)
        if helper is None or depth >= 4 or fn in seen:
            return None
        read = read | helper.reads
        for site, at in helper.calls:
            if at in home or at == "<module>":
                out.append((site, at, read))
            else:
                todo.append((at, read, depth + 1, seen | {fn}))
    return out or None


def _log_calls(tree: ast.Module, names: set[str]) -> list[tuple[ast.Call, str]]:
    """``flor.log("<name>", ...)`` calls of ``names``, with the name of their scope."""
    out: list[tuple[ast.Call, str]] = []

    def visit(node: ast.AST, scope: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                visit(child, child.name)
                continue
            if (
                isinstance(child, ast.Call)
                and isinstance(child.func, (ast.Attribute, ast.Name))
                and (getattr(child.func, "attr", None) or getattr(child.func, "id", None)) == "log"
                and child.args
                and isinstance(child.args[0], ast.Constant)
                and child.args[0].value in names
            ):
                out.append((child, scope))
            visit(child, scope)

    visit(tree, "<module>")
    return out


def _registered(tree: ast.Module) -> frozenset[str]:
    """Names passed to ``flor.checkpointing(...)``: restored by every checkpoint."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, (ast.Attribute, ast.Name))
            and (getattr(node.func, "attr", None) or getattr(node.func, "id", None))
            == "checkpointing"
        ):
            out.update(k.value.id for k in node.keywords if isinstance(k.value, ast.Name))
    return frozenset(out)
