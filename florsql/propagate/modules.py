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
import hashlib
import posixpath
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from florsql.fold import fold

__all__ = ["added_modules", "imported", "module_digests", "resolve", "statement_modules"]

#: ``(dotted module, level)`` of an import as written (``from .a import b``: ``("a", 1)``).
Imported = tuple[str, int]


def imported(tree: ast.AST, names: Iterable[str] | None = None) -> list[Imported]:
    """The modules ``tree``'s imports name (each also as a package of its names: ``from pkg
    import metrics`` may import ``pkg/metrics.py``), in order; only the imports that bind one
    of ``names`` when given (None: every import)."""
    wanted = None if names is None else set(names)
    out: list[Imported] = []
    for node in ast.walk(tree):
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
) -> dict[str, str]:
    """Today's text of the repository modules a replay of a version needs beside its files:
    those the imports propagation added to ``patched`` (path -> (old text, patched text)) name,
    that the version lacks (``has``) and today's tree holds (``today``: its text, None where
    absent or where the user's tree gives it to every replay already, as an ignored file),
    with the packages above them and the modules they import that the version lacks too.

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
    return added


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
        seen: set[str] = set()
        while nodes:
            node = nodes.pop()
            for sub in ast.walk(node):
                if isinstance(sub, ast.Name) and sub.id not in read:
                    read.add(sub.id)
                    if sub.id in defs and sub.id not in seen:  # a helper it calls
                        seen.add(sub.id)
                        nodes.append(defs[sub.id])
        # the function around the statement reads them too (a parameter's default, its
        # decorators are not followed: the statement's own names suffice)
        mods = imported(tree, read & bound)
        if mods:
            out.setdefault(fold(log.name), []).extend(mods)
    return {n: tuple(dict.fromkeys(m)) for n, m in out.items()}


def module_digests(
    repo: Path,
    script: str,
    modules: Iterable[Imported],
    lacking: Callable[[str], bool],
) -> list[str]:
    """``path\\0sha256`` of today's text of each repository module ``modules`` name from
    ``script`` (and of those they import in turn), where ``lacking(path)`` (some recorded
    version lacks it, so its replays run today's text), sorted."""

    def text(path: str) -> str | None:
        try:
            return (repo / path).read_text(encoding="utf-8", errors="surrogateescape")
        except OSError:
            return None

    def exists(path: str) -> bool:
        return (repo / path).is_file()

    out: dict[str, str] = {}
    todo: list[tuple[str, list[Imported]]] = [(script, list(modules))]
    seen: set[str] = set()
    while todo:
        importer, mods = todo.pop()
        for module in mods:
            for path in resolve(module, importer, script, exists):
                if path in seen:
                    continue
                seen.add(path)
                body = text(path)
                if body is None or not lacking(path):
                    continue
                out[path] = hashlib.sha256(body.encode("utf-8", "surrogateescape")).hexdigest()
                with contextlib.suppress(SyntaxError, ValueError):
                    todo.append((path, imported(ast.parse(body))))
    return sorted(f"{p}\0{d}" for p, d in out.items())
