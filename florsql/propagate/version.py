"""Propagation over a recorded code version: every file whose latest text logs names it lacks.

The unit is one file at one version: a statement added to ``trainer.py`` goes into the old
``trainer.py``, whichever script imports it. The latest code is the working tree as it is now.
"""

from __future__ import annotations

import ast
import contextlib
import difflib
import hashlib
import re
import textwrap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from florsql.errors import VersionError
from florsql.propagate.api import propagate
from florsql.propagate.cache import PropagationCache, digest, statements_key
from florsql.propagate.find import LogStatement, find_logs
from florsql.propagate.model import Failure, PlacementError, Propagation
from florsql.propagate.modules import added_modules, guard_modules_differ, helper_calls_differ
from florsql.propagate.source import analyze
from florsql.versions import file_at, files_at, resolve_version
from florsql.versions.git import run_git

_CACHES: dict[Path, PropagationCache] = {}
_COMMIT_ID = re.compile(r"[0-9a-f]{7,40}")
_LISTINGS: dict[tuple[str, str], tuple[str, list[str]]] = {}


@dataclass(frozen=True)
class VersionPropagation:
    """Propagation into every changed file of version ``vid`` (a full commit id), by path."""

    vid: str
    files: Mapping[str, Propagation] = field(default_factory=dict)
    unplaced: tuple[str, ...] = ()  # names asked for that no file of this version can take
    #: path -> sha256 of the latest text each propagation read (what it placed is from these)
    read: Mapping[str, str] = field(default_factory=dict, compare=False)
    #: path -> today's text of the repository modules the placed imports name that this
    #: version lacks (:func:`florsql.propagate.modules.added_modules`): a replay writes them
    #: beside the version's files
    added: Mapping[str, str] = field(default_factory=dict, compare=False)
    #: path -> the version's own text of each of ``added`` that it has (a module today's
    #: definitions were appended to)
    extended: Mapping[str, str] = field(default_factory=dict, compare=False)
    #: names of ``again`` that some file of the version already logs with today's very
    #: statement, where it belongs (nothing placed for them there)
    present: frozenset[str] = field(default_factory=frozenset, compare=False)

    def failure_messages(self) -> list[str]:
        """One line per failure, prefixed by its file (or by the name, for ``unplaced``)."""
        where = f"logged only in files that code version {self.vid[:12]} does not have"
        placed = [f"{path}: {f}" for path, p in self.files.items() for f in p.failed]
        return placed + [f"{name}: {where}" for name in self.unplaced]

    def raise_for_failures(self) -> None:
        """Raise a :class:`PlacementError` listing every file's failures, if any."""
        failures = [f for p in self.files.values() for f in p.failed]
        if failures or self.unplaced:
            raise PlacementError(failures, messages=self.failure_messages())

    def diff(self, path: str | None = None) -> str:
        """The patched files (or just ``path``) as a unified diff against this version."""
        texts = {name: (p.original, p.source) for name, p in self.files.items()}
        texts.update({name: (self.extended.get(name, ""), t) for name, t in self.added.items()})
        return "".join(
            render_diff(old, new, name, added=name in self.added and name not in self.extended)
            for name, (old, new) in sorted(texts.items())
            if path is None or name == path
        )


def render_diff(old_source: str, patched_source: str, path: str, *, added: bool = False) -> str:
    """A unified diff from ``old_source`` to ``patched_source``, ``a/path`` to ``b/path``
    (``/dev/null`` to ``b/path`` for a file the version lacks, ``added``).

    Example:
        >>> print(render_diff("a = 1\\n", "a = 1\\nflor.log('a', a)\\n", "train.py"), end="")
        --- a/train.py
        +++ b/train.py
        @@ -1 +1,2 @@
         a = 1
        +flor.log('a', a)
    """
    lines = difflib.unified_diff(
        _lines(old_source),
        _lines(patched_source),
        fromfile="/dev/null" if added else f"a/{path}",
        tofile=f"b/{path}",
    )
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _lines(text: str) -> list[str]:
    lines = text.splitlines(keepends=True)
    if lines and not lines[-1].endswith(("\n", "\r")):
        lines[-1] += "\n\\ No newline at end of file\n"
    return lines


def _listing(repo: Path, vid: str) -> tuple[str, list[str]]:
    """The full id and the Python files of a version.

    Memoized when ``vid`` is a commit id (a version never changes); a ref name may move.
    """
    key = (str(repo.resolve()), vid)
    if key in _LISTINGS:
        return _LISTINGS[key]
    sha = resolve_version(repo, vid)
    listing = (sha, [p for p in files_at(repo, sha) if p.endswith(".py")])
    if _COMMIT_ID.fullmatch(vid):
        _LISTINGS[key] = listing
    return listing


def _latest(repo: Path, path: str) -> str | None:
    """The working-tree text of ``path`` when it exists and logs something."""
    try:
        text = (repo / path).read_text(encoding="utf-8", errors="surrogateescape")
    except OSError:
        return None
    if ".log" not in text:
        return None
    try:
        return text if find_logs(analyze(text)) else None
    except SyntaxError:
        return text  # propagate() reports it


def repo_cache(repo: Path) -> PropagationCache:
    """This process's cache for ``repo``, backed by ``<repo>/.florsql/cache/propagate/``."""
    root = repo.resolve()
    if root not in _CACHES:
        _CACHES[root] = PropagationCache(root / ".florsql" / "cache" / "propagate")
    return _CACHES[root]


def for_version(
    repo: Path | str,
    vid: str,
    names: Iterable[str] | None = None,
    *,
    again: Iterable[str] = (),
    cache: PropagationCache | None = None,
) -> VersionPropagation:
    """Propagate into every Python file of version ``vid`` whose latest text logs names it lacks.

    Results are cached per (version, file, new statements): asking again after an unrelated
    edit of the latest file reads no old file and parses nothing.

    Args:
        repo: The repository root.
        vid: A recorded code version (a snapshot commit id or a unique prefix).
        names: Only these log names (default: all).
        again: Names placed even where a file of the version logs them, unless today's
            statement is there as it is (:func:`florsql.propagate.propagate`): a replay asks
            so for the names its run never recorded.
        cache: Where results are kept (default: :func:`repo_cache`).

    Returns:
        The files that had something to place or that failed, each with its
        :class:`Propagation`.
    """
    repo = Path(repo)
    wanted = None if names is None else sorted(set(names))
    forced = sorted(set(again))
    cache = repo_cache(repo) if cache is None else cache
    sha, paths = _listing(repo, vid)
    files: dict[str, Propagation] = {}
    seen: set[str] = set()
    present: set[str] = set()
    read: dict[str, str] = {}
    for path in paths:
        new = _latest(repo, path)
        if new is not None:
            read[path] = hashlib.sha256(new.encode("utf-8", "surrogateescape")).hexdigest()
        here = None if new is None else _names_here(new, wanted)
        seen.update(here or [])
        if new is None or here == []:
            continue
        mine = [n for n in forced if here is None or n in here]
        key = digest(sha, path, statements_key(new, here), *(["again", *mine] if mine else []))
        result = cache.get(key)
        if result is None:
            result = propagate(new, file_at(repo, sha, path), here, mine)
            cache.put(key, result)
        if mine:
            result = _guard_modules(repo, sha, path, new, result, here, mine, paths)
        if result.placed:
            result = _other_modules_change(repo, sha, path, new, result, here, mine, paths)
        present.update(n for n in mine if n in result.present)
        if result.placed or result.failed:
            files[path] = result
    unplaced = tuple(n for n in wanted or [] if n not in seen)
    added = _added(repo, sha, files)
    extended = {p: file_at(repo, sha, p) for p in added if p in _listing(repo, sha)[1]}
    return VersionPropagation(sha, files, unplaced, read, added, extended, frozenset(present))


def _added(repo: Path, sha: str, files: Mapping[str, Propagation]) -> dict[str, str]:
    """Today's modules the placed imports of ``files`` need that version ``sha`` lacks."""
    patched = {path: (p.original, p.source) for path, p in files.items() if p.placed}
    if not patched or not any("import" in new for _, new in patched.values()):
        return {}
    version = set(_listing(repo, sha)[1])  # its Python files: a module is one
    ignored: dict[str, bool] = {}

    def today(path: str) -> str | None:
        try:
            text = (repo / path).read_text(encoding="utf-8", errors="surrogateescape")
        except OSError:
            return None
        if path in version:
            return text
        if path not in ignored:  # an ignored file is linked into every replay's tree already
            ignored[path] = is_ignored(repo, path)
        return None if ignored[path] else text

    def old(path: str) -> str | None:
        try:
            return file_at(repo, sha, path)
        except VersionError:
            return None

    return added_modules(patched, version.__contains__, today, old)


def _guard_modules(
    repo: Path,
    sha: str,
    path: str,
    new: str,
    result: Propagation,
    here: list[str] | None,
    again: list[str],
    files: list[str],
) -> Propagation:
    """``result`` less the names of ``again`` whose guards read something of another module
    that version ``sha`` binds otherwise than today's tree (:func:`~florsql.propagate.modules.
    guard_modules_differ`), each failed with that reason: placed or taken for today's
    statement as it is, the statement would run in the old run's iterations, not today's
    (session 55: ``from config import EVERY`` with ``config.py`` changed left the run's
    other iterations NULL, said nowhere); so are those in a module's function that ``files``
    (the version's) call under other conditions than today
    (:func:`~florsql.propagate.modules.helper_calls_differ`)."""

    def today(p: str) -> str | None:
        try:
            return (repo / p).read_text(encoding="utf-8", errors="surrogateescape")
        except OSError:
            return None

    def old(p: str) -> str | None:
        try:
            return file_at(repo, sha, p)
        except Exception:  # (no such file in the version)
            return None

    def why(n: str) -> str | None:
        return guard_modules_differ(
            today, old, path, new, result.original, n
        ) or helper_calls_differ(today, old, files, path, new, result.original, n)

    refused = {n: reason for n in again if (reason := why(n)) is not None}
    if not refused:
        return result
    try:
        logs = find_logs(analyze(new))
        logged = {s.name for s in find_logs(analyze(result.original))}
    except SyntaxError:
        return result
    # (only names the version logs here: a statement new to it runs where the old code
    # runs it, what its guard reads included, as in one file: api._Session.again)
    refused = {n: reason for n, reason in refused.items() if n in logged}
    if not refused:
        return result
    return _without(new, result, here, again, refused, logs)


def _without(
    new: str,
    result: Propagation,
    here: list[str] | None,
    again: list[str],
    refused: dict[str, str],
    logs: list[LogStatement],
) -> Propagation:
    """``result`` propagated again without the names of ``refused``, each failed with its
    reason (``logs``: today's log statements of the file)."""
    names = [n for n in (here if here is not None else {s.name for s in logs}) if n]
    names = [n for n in names if n not in refused]
    kept = [n for n in again if n not in refused]
    redone = (
        propagate(new, result.original, names, kept)
        if names
        else Propagation(result.original, result.original)
    )
    lines = {s.name: s.line for s in reversed(logs)}
    failed = tuple(Failure(n, lines.get(n, 0), why) for n, why in sorted(refused.items()))
    return replace(
        redone,
        failed=redone.failed + failed,
        present=tuple(n for n in redone.present if n not in refused),
    )


def _other_modules_change(
    repo: Path,
    sha: str,
    path: str,
    new: str,
    result: Propagation,
    here: list[str] | None,
    again: list[str],
    files: list[str],
) -> Propagation:
    """``result`` less the placed names whose statements (with the code carried along) read an
    attribute that today's text of another module of the version changes inside a function,
    by code that module's old text lacks: ``flor.log("steps", net.steps)`` in ``train.py``
    with ``self.steps += 1`` new in ``Net.forward`` of ``model.py``. A replay runs the
    version's ``model.py``, so the statement would read the old value (``net.steps`` 0 in every
    epoch where a re-run of today's code logs 3, 6, 9), silently; each such name is refused
    with that reason (session 61: the rule of ``slice._attributes_changed_elsewhere``, which
    reads the statement's own file, for the other files)."""
    from florsql.propagate.slice import _attribute_changes, read_paths

    try:
        src = analyze(new)
    except SyntaxError:
        return result
    wanted: dict[str, set[str]] = {}
    for placement in result.placed:
        stmts = [n for n in src.nodes if isinstance(n, ast.stmt) and n.lineno == placement.new_line]
        for code in placement.carried:
            with contextlib.suppress(SyntaxError):
                stmts += ast.parse(textwrap.dedent(code)).body
        attrs = wanted.setdefault(placement.name, set())
        for stmt in stmts:
            for read in read_paths(stmt):
                root, _, attr = read.partition(".")
                if attr and root not in src.aliases:
                    attrs.add(attr)
    attrs_read = set().union(*wanted.values())
    if not attrs_read:
        return result
    refused: dict[str, str] = {}
    for other in sorted(set(files) - {path}):
        if not other.endswith(".py"):
            continue
        try:
            mine = (repo / other).read_text(encoding="utf-8", errors="surrogateescape")
            if not any("." + a.split(".")[0] in mine for a in attrs_read):
                continue
            theirs = file_at(repo, sha, other)
        except (OSError, VersionError):
            continue
        if mine == theirs:
            continue
        try:
            today_src, old_src = analyze(mine), analyze(theirs)
        except SyntaxError:
            continue
        # the version's own changes of an attribute, by class, function, object and name: an
        # edit of one (``self.fc1 = nn.Linear(4, 12)`` for ``(4, 8)`` in ``__init__``) is the
        # version's own way of computing it, which its replay runs, as a full re-run of the
        # patched version would; only a change new in that function is today's alone
        own = {
            (getattr(c, "name", None), f.name, r, a)
            for c, f, _, r, a in _attribute_changes(old_src, None, old_src.imported_names)
        }
        for cls, fn, stmt, root, attr in _attribute_changes(
            today_src, None, today_src.imported_names
        ):
            if ast.unparse(stmt) in old_src.unparsed:
                continue
            if (getattr(cls, "name", None), fn.name, root, attr) in own:
                continue
            where = f"{cls.name}.{fn.name}" if cls is not None else fn.name
            for name, attrs in wanted.items():
                if attr in attrs and name not in refused:
                    refused[name] = (
                        f"it reads .{attr}, which today's {other} changes inside {where}() "
                        f"(line {stmt.lineno}: {ast.unparse(stmt)}) and the version's "
                        f"{other} does not; a replay runs the version's {other}, so the "
                        "statement would read the old value"
                    )
    if not refused:
        return result
    try:
        logs = find_logs(src)
    except SyntaxError:
        return result
    return _without(new, result, here, again, refused, logs)


def _names_here(new: str, wanted: list[str] | None) -> list[str] | None:
    """The wanted names this file logs (a name logged in another file is not asked here)."""
    if wanted is None:
        return None
    try:
        logged = {s.name for s in find_logs(analyze(new))}
    except SyntaxError:
        return wanted
    return [n for n in wanted if n in logged]


def version_diff(
    repo: Path | str,
    vid: str,
    path: str | None = None,
    names: Iterable[str] | None = None,
    again: Iterable[str] = (),
) -> str:
    """What ``florsql propagate --version VID [FILE]`` prints: the patched files as a diff.

    ``path`` may be relative to the repository root or to the current directory, or absolute;
    one that is not a Python file of the version is a :class:`VersionError`. The diff is empty
    when there is nothing to place. ``again``: as :func:`for_version`'s (what a replay of a
    run that never recorded those names runs).
    """
    repo = Path(repo)
    rel = None if path is None else repo_relative(repo, path)
    if rel is not None and rel not in _listing(repo, vid)[1]:
        sha = _listing(repo, vid)[0]
        raise VersionError(f"{rel} is not a Python file of code version {sha[:12]}")
    return for_version(repo, vid, names, again=again).diff(rel)


def version_failures(
    repo: Path | str,
    vid: str,
    path: str | None = None,
    names: Iterable[str] | None = None,
    again: Iterable[str] = (),
) -> tuple[str, list[str]]:
    """:func:`version_diff` and, beside it, why each of today's statements (of ``path``, or
    every file) could not be placed into the version (``path: name (line N of the new
    version): reason``); ``[]`` where everything was placed."""
    repo = Path(repo)
    rel = None if path is None else repo_relative(repo, path)
    diff = version_diff(repo, vid, path, names, again)
    result = for_version(repo, vid, names, again=again)
    failures = [
        f"{name}: {f}"
        for name, p in sorted(result.files.items())
        if rel is None or name == rel
        for f in p.failed
    ]
    if rel is None:
        failures += [f"{name}: logged only in files this version lacks" for name in result.unplaced]
    return diff, failures


def repo_relative(repo: Path, path: str) -> str:
    """``path`` as a POSIX path relative to ``repo`` (absolute, ``./x`` and ``sub/../x`` too)."""
    given = Path(path)
    root = repo.resolve()
    if not given.is_absolute():
        in_cwd = Path.cwd() / given
        given = (
            in_cwd if in_cwd.resolve().is_relative_to(root) and in_cwd.exists() else root / given
        )
    try:
        return given.resolve().relative_to(root).as_posix()
    except ValueError:
        return PurePosixPath(path).as_posix()


def is_ignored(repo: Path, path: str) -> bool:
    """Whether git ignores ``path`` in the user's tree (``git check-ignore``)."""
    try:
        run_git(repo, "check-ignore", "-q", "--", path)
    except VersionError:
        return False  # exit 1: not ignored (or no git answer: treat as a file of the tree)
    return True
