"""The repository modules today's statements import that an old version lacks (session 47).

Today's ``flor.log("wn", wnorm(net))`` may call a helper of a module that is new today
(``from metrics import wnorm``, ``metrics.py`` added after the version was recorded).
Propagation carries the import into the old file, and a replay of that version then needs
today's module beside it: before session 47 every task failed with ``ModuleNotFoundError``
and the values were NULL.

:func:`added_modules` finds, for the imports propagation put into a version's files, the
repository modules the version does not have and today's tree does (with the packages above
them and the new modules they import in turn); a replay writes them into its worktree
beside the version's own files. A module the version has is the version's: today's edits of
it are not replayed, as for any other file of the version.

:func:`statement_modules` and :func:`module_digests` give the planner what today's text of
such a module is: a statement's values count only while the modules it reads (and the ones
they import) are as they were when it was replayed, where some recorded version lacks them.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import functools
import hashlib
import posixpath
import weakref
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from florsql.fold import fold
from florsql.propagate.conditions import Ref, parents_of

__all__ = [
    "added_modules",
    "guard_modules_differ",
    "helper_calls_differ",
    "imported",
    "module_digests",
    "resolve",
    "statement_modules",
]

#: ``(dotted module, level)`` of an import as written (``from .a import b``: ``("a", 1)``).
Imported = tuple[str, int]


def imported(tree: ast.AST, names: Iterable[str] | None = None) -> list[Imported]:
    """The modules ``tree``'s imports name (each also as a package of its names: ``from pkg
    import metrics`` may import ``pkg/metrics.py``), in order; only the imports that bind one
    of ``names`` when given (None: every import)."""
    wanted = None if names is None else set(names)
    out: list[Imported] = []
    for node in _imports(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                bound = a.asname or a.name.split(".")[0]
                if wanted is None or bound in wanted:
                    out.append((a.name, 0))
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            for a in node.names:
                if wanted is not None and (a.asname or a.name) not in wanted and a.name != "*":
                    continue
                out.append((base, node.level))
                if a.name != "*":
                    out.append((f"{base}.{a.name}" if base else a.name, node.level))
    return list(dict.fromkeys(m for m in out if m[0] or m[1]))


#: :func:`_imports` of a tree, kept while the tree lives
_IMPORTS: weakref.WeakKeyDictionary[ast.AST, tuple[ast.Import | ast.ImportFrom, ...]] = (
    weakref.WeakKeyDictionary()
)


def _imports(tree: ast.AST) -> tuple[ast.Import | ast.ImportFrom, ...]:
    """The import statements of ``tree``, in :func:`ast.walk`'s order, walked once per tree
    (:func:`statement_modules` asks per log statement and per attribute it reads)."""
    known = _IMPORTS.get(tree)
    if known is None:
        known = _IMPORTS[tree] = tuple(
            n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)
        )
    return known


def resolve(
    module: Imported, importer: str, script: str, exists: Callable[[str], bool]
) -> list[str]:
    """The repository paths of ``module`` as ``importer`` (a path) imports it when ``script``
    runs (its folder first on ``sys.path``, then the repository root): the module's file
    and the ``__init__.py`` of each package above it that ``exists``; ``[]`` when no
    candidate exists (a library)."""
    dotted, level = module
    rel = dotted.replace(".", "/")
    if level:
        base = posixpath.dirname(importer)
        for _ in range(level - 1):
            base = posixpath.dirname(base)
        bases = [base]
    else:
        bases = list(dict.fromkeys([posixpath.dirname(script), ""]))
    for base in bases:
        stem = posixpath.join(base, rel) if rel else base
        for cand in (f"{stem}.py", posixpath.join(stem, "__init__.py")):
            cand = posixpath.normpath(cand).lstrip("/")
            if cand.startswith("..") or not exists(cand):
                continue
            found = [cand]
            parts = (dotted.split(".") if dotted else [])[:-1]
            folder = base
            for part in parts:  # the packages above it, outermost first
                folder = posixpath.join(folder, part)
                init = posixpath.join(folder, "__init__.py").lstrip("/")
                if exists(init):
                    found.append(init)
            return found
    return []


def _import_nodes(tree: ast.AST) -> list[str]:
    return [ast.dump(n) for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]


def added_modules(
    patched: Mapping[str, tuple[str, str]],
    has: Callable[[str], bool],
    today: Callable[[str], str | None],
    version_text: Callable[[str], str | None] | None = None,
) -> dict[str, str]:
    """Today's text of the repository modules a replay of a version needs beside its files:
    those the imports propagation added to ``patched`` (path -> (old text, patched text)) name,
    that the version lacks (``has``) and today's tree holds (``today``: its text, None where
    absent or, for a path the version lacks, where the user's tree gives it to every replay
    already, as an ignored file),
    with the packages above them and the modules they import that the version lacks too.

    With ``version_text`` (the version's text of a path it has): a module the version has that
    lacks a function or class the placed code takes from it (``from metrics import f1``, or
    ``metrics.f1(...)``, where today's ``metrics.py`` added ``f1``) is the version's text with
    today's definition appended, and what it needs that the old module does not bind (today's
    functions and classes it calls, the imports and constant assignments it reads); nothing is
    appended where a name it needs is bound otherwise today (the replay then fails as before,
    with ``ImportError``). A definition the version has is the version's.

    Example:
        >>> old = "import florsql as flor\\nflor.log('a', 1)\\n"
        >>> new = "import florsql as flor\\nfrom metrics import f\\nflor.log('a', 1)\\n"
        >>> texts = {"metrics.py": "from helpers import g\\nf = g\\n", "helpers.py": "g = 1\\n"}
        >>> sorted(added_modules({"train.py": (old, new)}, lambda p: p == "train.py", texts.get))
        ['helpers.py', 'metrics.py']
    """
    added: dict[str, str] = {}

    def exists(path: str) -> bool:
        return has(path) or path in added or today(path) is not None

    todo: list[tuple[str, str, list[Imported]]] = []
    wanted: dict[str, set[str]] = {}  # a module the version has -> names taken from it
    for path, (old, new) in sorted(patched.items()):
        try:
            before = set(_import_nodes(ast.parse(old)))
            tree = ast.parse(new)
        except (SyntaxError, ValueError):
            continue
        fresh = ast.Module(
            body=[
                n
                for n in ast.walk(tree)
                if isinstance(n, ast.Import | ast.ImportFrom) and ast.dump(n) not in before
            ],
            type_ignores=[],
        )
        todo.append((path, path, imported(fresh)))
        if version_text is not None:
            for module, name in _taken(tree, fresh):
                for where in resolve(module, path, path, exists)[:1]:
                    if has(where) and not resolve(
                        (f"{module[0]}.{name}", module[1]), path, path, exists
                    ):
                        wanted.setdefault(where, set()).add(name)
    while todo:
        importer, script, modules = todo.pop()
        for module in modules:
            for path in resolve(module, importer, script, exists):
                if has(path) or path in added:
                    continue
                text = today(path)
                if text is None:
                    continue
                added[path] = text
                # one that does not parse: the replay reports it as a run of today's would
                with contextlib.suppress(SyntaxError, ValueError):
                    todo.append((path, script, imported(ast.parse(text))))
    for path, names in sorted(wanted.items()):
        old_text, new_text = (version_text or _none)(path), today(path)
        if old_text is None or new_text is None:
            continue
        extended = extend_module(old_text, new_text, names)
        if extended is not None:
            added[path] = extended
    return added


def _none(path: str) -> str | None:
    return None


def _taken(tree: ast.Module, fresh: ast.Module) -> list[tuple[Imported, str]]:
    """``(module, name)`` for each name the fresh imports take from a module (``from m import
    f``) and each attribute read of a name an import of ``tree`` binds to a module
    (``m.f``)."""
    out: list[tuple[Imported, str]] = []
    for stmt in fresh.body:
        if isinstance(stmt, ast.ImportFrom) and (stmt.module or stmt.level):
            out += [((stmt.module or "", stmt.level), a.name) for a in stmt.names if a.name != "*"]
    modules: dict[str, Imported] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.asname:
                    modules[a.asname] = (a.name, 0)
                elif "." not in a.name:
                    modules[a.name] = (a.name, 0)
        elif isinstance(node, ast.ImportFrom):
            for a in node.names:  # ``from pkg import utils``: maybe a module
                base = node.module or ""
                modules.setdefault(
                    a.asname or a.name, (f"{base}.{a.name}" if base else a.name, node.level)
                )
    for sub in ast.walk(tree):
        if (
            isinstance(sub, ast.Attribute)
            and isinstance(sub.value, ast.Name)
            and sub.value.id in modules
        ):
            out.append((modules[sub.value.id], sub.attr))
    return list(dict.fromkeys(out))


def top_bindings(tree: ast.Module) -> frozenset[str]:
    """The names a module's own body binds (in its ``if``/``try``/``with``/``for`` blocks too;
    ``*`` for a star import or a module ``__getattr__``: it may bind anything)."""
    out: set[str] = set()

    def body(stmts: list[ast.stmt]) -> None:
        for stmt in stmts:
            if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                out.add(stmt.name)
                if stmt.name == "__getattr__":
                    out.add("*")
            elif isinstance(stmt, ast.Import | ast.ImportFrom):
                for a in stmt.names:
                    out.add("*" if a.name == "*" else (a.asname or a.name.split(".")[0]))
            else:
                for node in ast.walk(stmt):
                    if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                        out.add(node.id)
                for field in ("body", "orelse", "finalbody"):
                    inner = getattr(stmt, field, None)
                    if isinstance(inner, list):
                        body([s for s in inner if isinstance(s, ast.stmt)])
                for handler in getattr(stmt, "handlers", []) or []:
                    body(handler.body)

    body(tree.body)
    return frozenset(out)


def _own_globals(node: ast.AST) -> set[str]:
    """The names a definition reads that it does not bind itself (its globals, roughly)."""
    loads: set[str] = set()
    bound: set[str] = set()
    for sub in ast.walk(node):
        if isinstance(sub, ast.Name):
            (loads if isinstance(sub.ctx, ast.Load) else bound).add(sub.id)
        elif isinstance(sub, ast.arg):
            bound.add(sub.arg)
        elif (
            isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and sub is not node
        ):
            bound.add(sub.name)
        elif isinstance(sub, ast.Import | ast.ImportFrom):
            bound.update(a.asname or a.name.split(".")[0] for a in sub.names)
    return loads - bound


_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
_LITERALS = (ast.Constant, ast.Tuple, ast.List, ast.UnaryOp, ast.BinOp)


def differing(old: str, new: str, names: Iterable[str]) -> list[str]:
    """The names that today's top-level definitions of ``names`` (in ``new``) read, those
    included, which ``old`` (the version's text of the module) binds at its top level by
    another statement than today's (a ``def``, ``class``, import or assignment written
    otherwise): what a replay of that version computes with the version's, not today's
    (session 47, sweep M: an appended ``new_fn`` read the old ``EPS`` and ``_h``)."""
    try:
        old_tree, new_tree = ast.parse(old), ast.parse(new)
    except (SyntaxError, ValueError):
        return []

    def bindings(tree: ast.Module) -> dict[str, str]:
        out: dict[str, str] = {}
        for stmt in tree.body:
            if isinstance(stmt, _DEFS):
                out[stmt.name] = ast.dump(stmt)
            elif isinstance(stmt, ast.Import | ast.ImportFrom):
                for a in stmt.names:
                    out[a.asname or a.name.split(".")[0]] = ast.dump(a) + str(
                        getattr(stmt, "module", "")
                    )
            elif isinstance(stmt, ast.Assign):
                for t in stmt.targets:
                    if isinstance(t, ast.Name):
                        out[t.id] = ast.dump(stmt.value)
        return out

    was, now = bindings(old_tree), bindings(new_tree)
    defs = {d.name: d for d in new_tree.body if isinstance(d, _DEFS)}
    todo, seen, out = list(names), set(), []
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        if name in was and name in now and was[name] != now[name]:
            out.append(name)
        if name in defs and name not in was:  # appended: what it reads counts too
            todo += sorted(_own_globals(defs[name]))
    return sorted(out)


def extend_module(old: str, new: str, names: Iterable[str]) -> str | None:
    r"""``old`` (a module's text at a version) with today's definitions of ``names`` from
    ``new`` appended, and what they need that ``old`` does not bind: None where ``old`` binds
    them all already, where ``new`` does not define one as a function or class, or where a
    name they need is bound in ``new`` by anything but a ``def``, a ``class``, an import or a
    constant.

    Example:
        >>> old = "import math\n\ndef f(x):\n    return x\n"
        >>> new = "import math\nEPS = 1e-8\n\ndef f(x):\n    return x\n\n"
        >>> new += "def g(x):\n    return math.sqrt(x) + EPS + f(x)\n"
        >>> print(extend_module(old, new, ["g"]).split("\n\n\n", 1)[1], end="")
        # added for a replay by florsql: today's definitions this version lacks
        EPS = 1e-8
        <BLANKLINE>
        def g(x):
            return math.sqrt(x) + EPS + f(x)
    """
    import builtins

    try:
        old_tree, new_tree = ast.parse(old), ast.parse(new)
    except (SyntaxError, ValueError):
        return None
    old_bound = top_bindings(old_tree)
    if "*" in old_bound:
        return None  # a star import or a module __getattr__: what it lacks, no one can tell
    defs: dict[str, ast.stmt] = {}
    imports: dict[str, ast.stmt] = {}
    constants: dict[str, ast.stmt] = {}
    for stmt in new_tree.body:
        if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            defs[stmt.name] = stmt
        elif isinstance(stmt, ast.Import | ast.ImportFrom):
            for a in stmt.names:
                bound = a.asname or a.name.split(".")[0]
                one = copy.copy(stmt)
                one.names = [a]
                imports[bound] = one
        elif (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
            and isinstance(stmt.value, _LITERALS)
            and not any(isinstance(n, ast.Name | ast.Call) for n in ast.walk(stmt.value))
        ):
            constants[stmt.targets[0].id] = stmt
    names = [n for n in names if n not in old_bound]
    if not names or any(n not in defs for n in names):
        return None
    chosen: dict[int, ast.stmt] = {}
    todo, done = list(names), set()
    while todo:
        name = todo.pop()
        if name in done or name in old_bound:
            continue
        done.add(name)
        if name in defs:
            chosen[id(defs[name])] = defs[name]
            todo += sorted(_own_globals(defs[name]))
        elif name in imports:
            chosen[id(imports[name])] = imports[name]
        elif name in constants:
            chosen[id(constants[name])] = constants[name]
        elif name in dir(builtins) or name.startswith("__"):
            continue
        else:
            return None  # bound some other way today (or nowhere): not carried
    lines = new.splitlines()
    parts = []
    order = [s for s in new_tree.body if id(s) in chosen] + [
        s for s in chosen.values() if s not in new_tree.body
    ]
    # imports first: a default argument or a decorator runs as the module is imported (sweep
    # M: ``def new_fn(net, s=math.sqrt(2.0))`` before the appended ``import math`` failed)
    order.sort(key=lambda s: not isinstance(s, ast.Import | ast.ImportFrom))
    for stmt in order:
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            parts.append(ast.unparse(stmt))
        else:
            first = min([stmt.lineno, *(d.lineno for d in getattr(stmt, "decorator_list", []))])
            parts.append("\n".join(lines[first - 1 : stmt.end_lineno]))
    head = "# added for a replay by florsql: today's definitions this version lacks"
    return old.rstrip("\n") + "\n\n\n" + head + "\n" + "\n\n".join(parts) + "\n"


def statement_modules(source: str) -> dict[str, tuple[Imported, ...]]:
    """Per log name (lower case) of ``source`` (today's file): the modules its statements may
    read through the file's imports: those binding a name the statement, the code it may carry
    or a function of the file it calls reads."""
    from florsql.propagate.find import find_logs
    from florsql.propagate.slice import may_carry
    from florsql.propagate.source import analyze

    try:
        src = analyze(source)
    except (SyntaxError, ValueError, RecursionError):
        return {}
    tree = src.tree
    bound = {
        a.asname or (a.name.split(".")[0] if isinstance(n, ast.Import) else a.name)
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for a in n.names
    }
    if not bound:
        return {}
    defs = {
        n.name: n
        for n in ast.walk(tree)
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
    }
    logs = find_logs(src)
    placed = {id(s.stmt) for s in logs}
    out: dict[str, list[Imported]] = {}
    for log in logs:
        if log.name is None:
            continue
        nodes: list[ast.AST] = [*may_carry(log.block, log.index, placed, src), log.stmt]
        read: set[str] = set()
        attrs: set[tuple[str, str]] = set()  # ``m.f``: f may be today's addition to m
        seen: set[str] = set()
        while nodes:
            node = nodes.pop()
            for sub in ast.walk(node):
                if isinstance(sub, ast.Attribute) and isinstance(sub.value, ast.Name):
                    attrs.add((sub.value.id, sub.attr))
                if isinstance(sub, ast.Name) and sub.id not in read:
                    read.add(sub.id)
                    if sub.id in defs and sub.id not in seen:  # a helper it calls
                        seen.add(sub.id)
                        nodes.append(defs[sub.id])
        # the function around the statement reads them too (a parameter's default, its
        # decorators are not followed: the statement's own names suffice)
        mods = imported(tree, read & bound)
        for name, attr in sorted(attrs):
            if name in bound:
                mods += [(f"{d}.{attr}" if d else attr, v) for d, v in imported(tree, {name})]
        if mods:
            out.setdefault(fold(log.name), []).extend(mods)
    return {n: tuple(dict.fromkeys(m)) for n, m in out.items()}


def module_digests(
    repo: Path,
    script: str,
    modules: Iterable[Imported],
    lacking: Callable[[str, str | None], bool],
) -> list[str]:
    """``path\\0sha256`` of today's text of each repository module ``modules`` name from
    ``script`` (and of those they import in turn), where ``lacking(path, None)`` (some
    recorded version lacks it, so its replays run today's text), or, for a name taken from a
    module (``m.f``, not a module itself), ``lacking(path, "f")`` (some recorded version's
    ``m`` lacks ``f``: its replays run today's definition, :func:`extend_module`); sorted."""

    def text(path: str) -> str | None:
        try:
            return (repo / path).read_text(encoding="utf-8", errors="surrogateescape")
        except OSError:
            return None

    found: dict[str, bool] = {}

    def exists(path: str) -> bool:
        known = found.get(path)
        if known is None:  # (each library module is looked for at each of its imports)
            known = found[path] = (repo / path).is_file()
        return known

    out: dict[str, str] = {}
    todo: list[tuple[str, list[Imported]]] = [(script, list(modules))]
    seen: set[tuple[str, str | None]] = set()
    while todo:
        importer, mods = todo.pop()
        for module in mods:
            paths, name = resolve(module, importer, script, exists), None
            if not paths and "." in module[0]:  # ``m.f``: a name of module m
                parent, name = module[0].rsplit(".", 1)
                paths = resolve((parent, module[1]), importer, script, exists)[:1]
            for path in paths:
                if (path, name) in seen:
                    continue
                seen.add((path, name))
                body = text(path)
                if body is None or not lacking(path, name):
                    continue
                out[path] = hashlib.sha256(body.encode("utf-8", "surrogateescape")).hexdigest()
                with contextlib.suppress(SyntaxError, ValueError):
                    todo.append((path, imported(ast.parse(body))))
    return sorted(f"{p}\0{d}" for p, d in out.items())


Reader = Callable[[str], "str | None"]

#: What a guard reads by a file's name (:func:`florsql.propagate.conditions._file_like`).
_SUFFIXES = (".json", ".yaml", ".yml", ".toml", ".ini", ".cfg", ".conf", ".txt")


@functools.lru_cache(maxsize=256)
def _guard_refs(text: str, name: str) -> frozenset[Ref]:
    """What the conditions of ``text``'s statements of ``name`` (folded) read from other
    modules (:data:`~florsql.propagate.conditions.Ref`)."""
    from florsql.propagate.conditions import conditions_in
    from florsql.propagate.find import find_logs
    from florsql.propagate.source import analyze

    try:
        src = analyze(text)
    except (SyntaxError, ValueError, RecursionError):
        return frozenset()
    sink: set[Ref] = set()
    for log in find_logs(src):
        if log.name is not None and fold(log.name) == fold(name):
            conditions_in(src, log.stmt, sink=sink)
    return frozenset(sink)


@functools.lru_cache(maxsize=256)
def _parsed(text: str) -> ast.Module | None:
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError, RecursionError):
        return None


def _bindings(read: Reader, importer: str, refs: Iterable[Ref], depth: int = 0) -> dict[str, str]:
    """``module path:name`` -> what that module binds the name to (:func:`~florsql.propagate.
    conditions.refs_of`'s text; a whole module by its text), for each repository module
    ``refs`` name from ``importer`` (libraries left out), and what those read in turn (3
    modules deep)."""
    from florsql.propagate.conditions import refs_of

    out: dict[str, str] = {}

    def exists(path: str) -> bool:
        return read(path) is not None

    for module, level, path in sorted(refs):
        if level < 0:  # a file read by name: the importer's folder, then the root
            for cand in dict.fromkeys(
                [posixpath.normpath(posixpath.join(posixpath.dirname(importer), path[0])), path[0]]
            ):
                text = read(cand)
                if text is not None:
                    out[cand] = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
                    break
            continue
        while True:
            files = resolve((module, level), importer, importer, exists)
            if not files:
                break
            text = read(files[0]) or ""
            if not path:
                out[files[0]] = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
                break
            tree = _parsed(text)
            key = path[1] if len(path) > 1 and path[1].startswith("[") else None
            bound, more = refs_of(tree, path[0], key) if tree is not None else ("", frozenset())
            if bound or more:
                out[f"{files[0]}:{path[0]}"] = bound.strip()
                if more and depth < 3:
                    out.update(_bindings(read, files[0], more, depth + 1))
                break
            # not a name of the module: a module of the package (``from conf import settings``)
            module, path = (f"{module}.{path[0]}" if module else path[0]), path[1:]
    return out


def guard_modules_differ(
    today: Reader, old: Reader, path: str, today_text: str, old_text: str, name: str
) -> str | None:
    """Why the guards of the statements of ``name`` in ``path`` (its texts today and in a
    version) read something of the repository's other modules that the version binds
    otherwise than today (``from config import EVERY`` in both, ``config.py`` changed: the
    statement is the same, the iterations it logs in are not; session 55), else None.
    ``today``/``old`` read a file of today's tree / of the version (None: no such file).
    Conditions (:mod:`florsql.propagate.conditions`) are one file's; this is the rest."""
    refs = _guard_refs(today_text, name) | _guard_refs(old_text, name)
    if not refs:
        return None
    mine, theirs = _bindings(today, path, refs), _bindings(old, path, refs)
    # (a file the version lacks is not compared: an untracked data file is read today only)
    files = {k for k in mine if ":" not in k and k not in theirs and k.endswith(_SUFFIXES)}
    mine = {k: v for k, v in mine.items() if k not in files}
    if mine == theirs:
        return None
    for key in sorted(set(mine) | set(theirs)):
        if mine.get(key) != theirs.get(key):
            file, _, bound = key.partition(":")
            what = f"`{bound}` of {file}" if bound else file
            if not bound:
                return (
                    f"its guard reads {file}, whose text in the old version is not today's: "
                    "placed there, today's statement would read the old one; florsql places "
                    "log statements, not what their guards read"
                )
            return (
                f"its guard reads {what}, bound otherwise in the old version "
                f"({_said(theirs.get(key), bound)}) than today ({_said(mine.get(key), bound)}): "
                "placed there, today's statement would read the old one; florsql places log "
                "statements, not what their guards read from other modules"
            )
    return None


def _said(text: str | None, bound: str) -> str:
    if text is None:
        return "not at all"
    if not bound:
        return "another text"
    text = " ".join(text.strip(" []").split())
    return f"`{text[:77] + '...' if len(text) > 80 else text}`"


#: Per function called from other files: the parameters its statement's own guards read and
#: its positional parameters in order (how a call passes them).
_Params = tuple[tuple[str, tuple[frozenset[str], tuple[str, ...]]], ...]


@functools.lru_cache(maxsize=256)
def _called_from_elsewhere(text: str, name: str) -> _Params:
    """The functions of ``text`` whose calls in other files decide where its statements of
    ``name`` (folded) run, each with the parameters their calls give that count:

    - one holding such a statement that its own file never calls
      (:data:`~florsql.propagate.conditions.ELSEWHERE`; a method too): the parameters the
      statement's guards read (``def evaluate(epoch, w, every=1): if epoch % every == 0:``);
    - one whose parameter a guard reads through its signature (``def fit(self, every=2)``
      around the ``flor.loop``, ``def __init__(self, every=2)`` behind ``self.every``, by
      the class's name): every parameter (session 55, sweep AD: ``EvalCallback(every=3)``
      or ``Trainer(every=3).fit()`` in ``train.py`` for ``every=2`` was silent)."""
    from florsql.propagate.conditions import ELSEWHERE, conditions_in
    from florsql.propagate.find import find_logs
    from florsql.propagate.source import analyze

    try:
        src = analyze(text)
    except (SyntaxError, ValueError, RecursionError):
        return ()
    tree = src.tree
    parents = parents_of(tree)
    defs = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    out: dict[str, tuple[frozenset[str], tuple[str, ...]]] = {}

    def add(key: str, read: frozenset[str], positional: tuple[str, ...]) -> None:
        before = out.get(key, (frozenset(), ()))[0]
        out[key] = (before | read, positional or out.get(key, (frozenset(), ()))[1])

    for log in find_logs(src):
        if log.name is None or fold(log.name) != fold(name):
            continue
        found = conditions_in(src, log.stmt)
        if not found:
            continue
        if found[0].startswith(ELSEWHERE):
            fn_name = found[0][len(ELSEWHERE) :].strip().removesuffix("()")
            fn = _enclosing(parents, log.stmt, fn_name)
            if fn is None:
                add(fn_name, frozenset(), ())
            else:
                params, positional = _signature(fn, parents)
                add(fn_name, _guard_names(fn, log.stmt, parents) & params, positional)
        exact = {k for k in out}  # (their guards' parameters are known: those alone)
        for fn in defs:
            if fn.name in exact:
                continue
            if any(f"def {fn.name}({ast.unparse(fn.args)})" in c for c in found):
                owner = parents.get(id(fn))
                key = (
                    owner.name
                    if fn.name == "__init__" and isinstance(owner, ast.ClassDef)
                    else fn.name
                )
                params, positional = _signature(fn, parents)
                add(key, params, positional)
    return tuple(sorted(out.items()))


def _enclosing(
    parents: dict[int, ast.AST], node: ast.AST, fn_name: str
) -> ast.FunctionDef | ast.AsyncFunctionDef | None:
    """The function named ``fn_name`` around ``node``."""
    at = parents.get(id(node))
    while at is not None:
        if isinstance(at, ast.FunctionDef | ast.AsyncFunctionDef) and at.name == fn_name:
            return at
        at = parents.get(id(at))
    return None


def _signature(
    fn: ast.FunctionDef | ast.AsyncFunctionDef, parents: dict[int, ast.AST]
) -> tuple[frozenset[str], tuple[str, ...]]:
    """``fn``'s parameters and its positional ones as a call gives them (a method's ``self``
    left out, a static method's kept)."""
    a = fn.args
    positional = [p.arg for p in (*a.posonlyargs, *a.args)]
    static = any(
        (d.id if isinstance(d, ast.Name) else getattr(d, "attr", "")) == "staticmethod"
        for d in fn.decorator_list
    )
    if isinstance(parents.get(id(fn)), ast.ClassDef) and positional and not static:
        positional = positional[1:]
    return frozenset({*positional, *(p.arg for p in a.kwonlyargs)}), tuple(positional)


def _guard_names(
    fn: ast.FunctionDef | ast.AsyncFunctionDef, stmt: ast.stmt, parents: dict[int, ast.AST]
) -> frozenset[str]:
    """The names the guards around ``stmt`` in ``fn`` read (tests of ``if`` and ``while``,
    statements before it that may leave early), and those the assignments of ``fn`` binding
    them read in turn (3 deep)."""
    from florsql.propagate.conditions import leaves_early

    read: set[str] = set()
    node: ast.AST = stmt
    while node is not fn:
        parent = parents.get(id(node))
        if parent is None:
            break
        test = getattr(parent, "test", None)
        if isinstance(parent, ast.If | ast.While) and test is not None:
            read |= {n.id for n in ast.walk(test) if isinstance(n, ast.Name)}
        for field in ("body", "orelse", "finalbody"):
            block = getattr(parent, field, None) or []
            if any(c is node for c in block):
                for s in block[: next(i for i, c in enumerate(block) if c is node)]:
                    if leaves_early(s):
                        read |= {n.id for n in ast.walk(s) if isinstance(n, ast.Name)}
        node = parent
    for _ in range(3):
        for n in ast.walk(fn):
            if isinstance(n, ast.Assign | ast.AnnAssign | ast.AugAssign) and n.value is not None:
                targets = n.targets if isinstance(n, ast.Assign) else [n.target]
                if any(isinstance(t, ast.Name) and t.id in read for t in targets):
                    read |= {m.id for m in ast.walk(n.value) if isinstance(m, ast.Name)}
    return frozenset(read)


#: One call of a helper: its conditions (None: not told) and the arguments it gives to the
#: parameters the statement's guards read, with what they are bound to.
_Call = tuple[tuple[str, ...] | None, str]


@functools.lru_cache(maxsize=256)
def _calls_of(text: str, functions: _Params) -> tuple[tuple[_Call, ...], frozenset[Ref]]:
    """The calls in ``text`` of one of ``functions`` by name, sorted, and what their guards
    (and the arguments counted) read from other modules."""
    from florsql.propagate.conditions import bound_text, conditions_in
    from florsql.propagate.source import analyze

    try:
        src = analyze(text)
    except (SyntaxError, ValueError, RecursionError):
        return (), frozenset()
    wanted = dict(functions)
    parents = parents_of(src.tree)
    found: list[_Call] = []
    sink: set[Ref] = set()
    for node in ast.walk(src.tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
        if called not in wanted:
            continue
        at: ast.AST | None = node
        while at is not None and not isinstance(at, ast.stmt):
            at = parents.get(id(at))
        if not isinstance(at, ast.stmt):
            continue
        read, positional = wanted[called]
        given = _arguments(node, read, positional)
        how = "; ".join(ast.unparse(g) + bound_text(src.tree, g, sink) for g in given)
        found.append((conditions_in(src, at, sink=sink), how))
    return tuple(sorted(found, key=repr)), frozenset(sink)


def _arguments(call: ast.Call, read: frozenset[str], positional: tuple[str, ...]) -> list[ast.AST]:
    """The arguments ``call`` gives the parameters ``read`` (by position or keyword; a
    ``*args``/``**kwargs`` given counts whole)."""
    if not read:
        return []
    out: list[ast.AST] = []
    for i, a in enumerate(call.args):
        if isinstance(a, ast.Starred) or (i < len(positional) and positional[i] in read):
            out.append(a)
    out += [k for k in call.keywords if k.arg is None or k.arg in read]
    return out


def helper_calls_differ(
    today: Reader,
    old: Reader,
    files: Iterable[str],
    path: str,
    today_text: str,
    old_text: str,
    name: str,
) -> str | None:
    """Why the calls of the function holding ``name``'s statement in module ``path`` (one its
    own file never calls), made by ``files`` (the script, the run's other modules), run under
    other conditions in the version than today (``if epoch % 2 == 0: evaluate(w)`` in the
    old ``train.py``, ``% 3`` today, ``utils.py`` the same: the statement is today's as it
    is, where it runs is not; session 55), pass other arguments where the statement's guard
    reads a parameter (``evaluate(epoch, w, every=2)``), or read something of another module
    bound otherwise there; else None."""
    functions = tuple(
        sorted(
            {
                **dict(_called_from_elsewhere(old_text, name)),
                **dict(_called_from_elsewhere(today_text, name)),
            }.items()
        )
    )
    if not functions:
        return None
    shown = ", ".join(f"{f}()" for f, _ in functions)
    for file in sorted(set(files) - {path}):
        mine_text, theirs_text = today(file), old(file)
        if not mine_text or not theirs_text:
            continue
        if not any(f in mine_text or f in theirs_text for f, _ in functions):
            continue
        if not (
            _imports_path(mine_text, file, path, today)
            or _imports_path(theirs_text, file, path, old)
        ):
            continue
        mine, refs = _calls_of(mine_text, functions)
        theirs, refs_old = _calls_of(theirs_text, functions)
        # today's calls all unguarded: the old code's calls decide where it runs, as for a
        # helper of the script itself (api._same_conditions)
        guarded = not all(c == () for c, _ in mine)
        if guarded and [c for c, _ in mine] != [c for c, _ in theirs]:
            return (
                f"it is in {shown}, which {file} calls under other conditions in the old version "
                f"({_said_calls(theirs)}) than today ({_said_calls(mine)}); florsql places log "
                "statements, not the calls and branches around them"
            )
        if [a for _, a in mine] != [a for _, a in theirs]:
            return (
                f"its guard reads a parameter of {shown}, which {file} calls with other "
                f"arguments in the old version ({_said_args(theirs)}) than today "
                f"({_said_args(mine)}); florsql places log statements, not the calls around them"
            )
        refs |= refs_old
        args = any(a for _, a in (*mine, *theirs))
        if (
            (guarded or args)
            and refs
            and _bindings(today, file, refs) != _bindings(old, file, refs)
        ):
            return (
                f"it is in {shown}, whose calls in {file} (their guards, or the arguments "
                "its guard reads) read what another module binds otherwise in the old version "
                "than today; florsql places log statements, not what their guards read from "
                "other modules"
            )
    return None


def _said_calls(found: tuple[_Call, ...]) -> str:
    texts = [" > ".join(c) if c else "unguarded" for c, _ in found if c is not None]
    return "; ".join(f"`{t}`" for t in dict.fromkeys(texts)) or "no call"


def _said_args(found: tuple[_Call, ...]) -> str:
    texts = [" ".join(a.split())[:80] for _, a in found if a]
    return "; ".join(f"`{t}`" for t in dict.fromkeys(texts)) or "no argument"


def _imports_path(text: str, importer: str, path: str, read: Reader) -> bool:
    """Whether ``text`` (the file ``importer``) imports the module ``path``."""
    tree = _parsed(text)
    if tree is None:
        return False

    def exists(p: str) -> bool:
        return read(p) is not None

    return any(path in resolve(m, importer, importer, exists)[:1] for m in imported(tree))
