"""A replay task imports the version's own code, never the user's checkout of today.

A run's script may import its repository's modules from somewhere other than its own folder:
a ``src/`` layout on ``PYTHONPATH``, a package installed editable (``pip install -e .``: a
``.pth`` line naming ``src/`` or the repository, or setuptools' finder with its ``MAPPING`` of
package names to folders), a ``.pth`` file of the user's. Each names a path in the user's
checkout. A replay task runs the version's files in a worktree, so such a path would give an
old version today's code, silently (measured: a v1 replay computed its hindsight value with v2's
``mypkg``). Before the task's script runs, :func:`follow_worktree` points each of them at the
same place in the worktree, and forgets modules already imported from the checkout.

Left alone: paths the worktree does not hold as the version's own files (ignored folders, such
as a ``.venv`` or data inside the repository, which the worktree links to the originals), the
store (``.florsql/``) and the worktree itself. Standard library only (and
``florsql.store.checkout``, which is too): it runs in every task before the script, warm or
cold.
"""

from __future__ import annotations

import json
import os
import runpy
import subprocess
import sys

from florsql.store.checkout import ROOTS, CheckoutMapper

__all__ = [
    "ORIGINS",
    "ROOTS",
    "follow_from_environ",
    "follow_worktree",
    "know_origins",
    "main",
    "unshadow",
]


def follow_worktree(repo: str, tree: str, recorded: list[list[str]] | None = None) -> list[str]:
    """Point the import system's paths into ``repo`` (the user's checkout) at ``tree``
    instead, and put back the entries inside the repository its run had on its import path
    (``recorded``: ``[[relative path, "front" | "end"], ...]``, run.json's ``import_path``)
    that this process lacks; returns what was changed (for tests)."""
    m = CheckoutMapper(repo, tree)
    changed: list[str] = []
    for i, entry in enumerate(list(sys.path)):
        new = m.moved(entry)
        if new is not None and new != entry:
            sys.path[i] = new
            changed.append(f"sys.path {entry} -> {new}")
    front = 1
    for rel, where in recorded or ():
        path = m.in_tree(os.path.normpath(rel))
        if path is None or path in sys.path:
            continue
        if where == "front":  # after the script's folder, in the recorded order
            sys.path.insert(front, path)
            front += 1
        else:
            sys.path.append(path)
        changed.append(f"sys.path + {path}")
    roots = tuple(m.roots)
    for key in list(sys.path_importer_cache):
        folder = _FOLDERS.get(key)
        if folder is not None and not (folder[0].startswith(roots) or folder[1].startswith(roots)):
            continue  # noted by the warm worker: outside the repository by both spellings
        if m.moved(key, folder[1] if folder is not None else None) is not None:
            del sys.path_importer_cache[key]
    # setuptools' editable installs: a module ``__editable___<dist>_finder`` whose MAPPING
    # (package -> folder) and NAMESPACES (package -> [folders]) its finder reads at each import
    for name in [n for n in sys.modules if n.startswith("__editable__") and n.endswith("_finder")]:
        module = sys.modules[name]
        mapping = getattr(module, "MAPPING", None)
        if isinstance(mapping, dict):
            for pkg, folder in list(mapping.items()):
                new = m.moved(folder)
                if new is not None:
                    mapping[pkg] = new
                    changed.append(f"{name}.MAPPING[{pkg!r}] -> {new}")
        spaces = getattr(module, "NAMESPACES", None)
        if isinstance(spaces, dict):
            for pkg, folders in list(spaces.items()):
                if isinstance(folders, list):
                    spaces[pkg] = [m.moved(f) or f for f in folders]
    # modules imported from the checkout before the script (a warm worker that preloaded one
    # through a path the planner did not see as the repository's): imported afresh. Those
    # the warm worker noted first, by prefix (a module outside both spellings of the
    # repository is never moved), without touching the modules themselves.
    # One search of one string first: whether any noted module lies in the repository at all
    # (in a forked task each object read by Python is a page copied: walking the 2,000
    # entries took 6-7 ms there, measured; the search touches one object).
    mentioned = any(f"\n{r}\n" in _TEXT or f"\n{os.path.join(r, '')}" in _TEXT for r in roots)
    for name, origin, spelled, resolved in ORIGINS if mentioned else ():
        if spelled.startswith(roots) or resolved.startswith(roots):
            current = getattr(sys.modules.get(name), "__file__", None)
            if current and m.moved(current, resolved if current == origin else None) is not None:
                del sys.modules[name]
                changed.append(f"forgot {name}")
    for name in sys.modules.keys() - _NOTED.keys():  # loaded since (or no warm worker)
        file = getattr(sys.modules.get(name), "__file__", None)
        if file and m.moved(file) is not None:
            del sys.modules[name]
            changed.append(f"forgot {name}")
    return changed


#: ``(name, file, absolute file, real file)`` of each module loaded in a warm worker, noted
#: after its imports (:func:`know_origins`) and inherited by the tasks it forks: their
#: :func:`follow_worktree` reads this list instead of resolving the files of every module
#: torch loaded again in each task (about 2,000 ``realpath`` calls, 20,000 ``lstat``: 70-140
#: ms of each warm task's start, measured in session 41). A loaded module does not move.
ORIGINS: list[tuple[str, str, str, str]] = []
_NOTED: dict[str, set[object]] = {}  # name -> the files noted for it (None: a module without)
#: ``sys.path_importer_cache``'s folders as noted then: folder -> (absolute, real)
_FOLDERS: dict[str, tuple[str, str]] = {}
#: The absolute and real files of :data:`ORIGINS`, one a line, between newlines
_TEXT = "\n"


def know_origins() -> None:
    """Note the files of the modules loaded now that are not noted yet (:data:`ORIGINS`), and
    the real paths of the folders the import system has looked in."""
    global _TEXT
    lines = []
    for name, module in list(sys.modules.items()):
        origin = getattr(module, "__file__", None)
        if origin in _NOTED.get(name, ()):
            continue
        if isinstance(origin, str) and origin:
            try:
                spelled = os.path.abspath(origin)
                real = os.path.realpath(spelled)
            except (OSError, ValueError):
                continue
            ORIGINS.append((name, origin, spelled, real))
            lines += [spelled, real]
        _NOTED.setdefault(name, set()).add(origin if isinstance(origin, str) and origin else None)
    if lines:
        _TEXT += "\n".join(lines) + "\n"
    for key in list(sys.path_importer_cache):
        if isinstance(key, str) and key and key not in _FOLDERS:
            try:
                spelled = os.path.abspath(key)
                _FOLDERS[key] = (spelled, os.path.realpath(spelled))
            except (OSError, ValueError):
                continue


def startup_modules() -> subprocess.Popen[str]:
    """Start asking a fresh interpreter like this one which modules it has loaded before a
    script's first line (its ``site``, ``encodings``...); :func:`read_startup` reads the answer.
    A warm worker asks once, as it starts, for :func:`unshadow`."""
    return subprocess.Popen(
        [sys.executable, "-c", "import sys; print(' '.join(sys.modules))"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def read_startup(proc: subprocess.Popen[str]) -> set[str]:
    """The top-level names :func:`startup_modules` answered (empty if it failed: then
    :func:`unshadow` forgets nothing)."""
    out, _ = proc.communicate()
    if proc.returncode != 0:
        return set()
    return {m.split(".", 1)[0] for m in out.split()}


def unshadow(startup: set[str]) -> list[str]:
    """Forget the modules this warm worker imported (the standard library's ``profile``,
    ``statistics``, ``secrets`` among them, which torch's companions import) that a folder
    ahead of the standard library on the task's path holds a module of the same name, as a
    fresh interpreter's script would import its own ``profile.py`` there; ``startup``: what a
    fresh interpreter has loaded before the script (those the script could not shadow either;
    empty: unknown, nothing forgotten). Returns the names forgotten."""
    if not startup:
        return []
    loaded = {m.split(".", 1)[0] for m in sys.modules} - startup - {"florsql", "__main__"}
    stdlib = os.path.realpath(os.path.dirname(os.__file__))
    local: set[str] = set()
    for entry in sys.path:
        path = os.path.realpath(entry or os.curdir)
        if path == stdlib or path.endswith(".zip"):
            break
        try:
            names = os.listdir(path)
        except OSError:
            continue
        for n in names:
            stem = n.split(".", 1)[0]
            if stem in loaded and (
                n.endswith((".py", ".so", ".pyd"))
                or os.path.isfile(os.path.join(path, n, "__init__.py"))
            ):
                local.add(stem)
    for name in list(sys.modules):
        if name.split(".", 1)[0] in local:
            del sys.modules[name]
    return sorted(local)


def follow_from_environ() -> list[str]:
    """:func:`follow_worktree` with the roots a replay task's environment names (none: no-op)."""
    try:
        roots = json.loads(os.environ.get(ROOTS) or "{}")
        repo, tree = str(roots["repo"]), str(roots["tree"])
        recorded = [[str(r), str(w)] for r, w in roots.get("path") or ()]
    except (ValueError, TypeError, KeyError, AttributeError):
        return []
    return follow_worktree(repo, tree, recorded)


def main() -> None:
    """``python -m florsql.replay.imports SCRIPT ARGS...`` (or ``-m MODULE ARGS...``): a replay
    task in a fresh interpreter, run as ``python SCRIPT`` runs it, after
    :func:`follow_from_environ`. (The warm worker's fork does the same in
    :mod:`florsql.replay.zygote`.)"""
    args = sys.argv[1:]
    if not args:
        raise SystemExit("usage: python -m florsql.replay.imports SCRIPT [ARGS...] | -m MODULE")
    follow_from_environ()
    if args[0] == "-m" and len(args) > 1:
        sys.argv = [args[1], *args[2:]]
        sys.path[0] = os.getcwd()  # as ``python -m`` puts the folder it ran in first
        runpy.run_module(args[1], run_name="__main__", alter_sys=True)
    else:
        sys.argv = list(args)
        sys.path[0] = os.path.dirname(os.path.abspath(args[0]))  # as ``python script``
        runpy.run_path(args[0], run_name="__main__")


if __name__ == "__main__":
    main()
