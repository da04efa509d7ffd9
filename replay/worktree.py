"""Isolated trees for replay: a recorded version's files, the patched scripts, and the user's
ignored data within reach. Never the user's own tree.

A worktree is ``.florsql/worktrees/<vid12>-<patch12>/``: the snapshot extracted with
``git archive`` (no git metadata of the user's repository changes), patched files written over
it, and symlinks to the top-level paths git ignores in the user's tree (``data/``, caches) so a
script reads them at the same relative paths. Trees are reused across tasks and queries and
pruned oldest first.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import shutil
import tarfile
import time
from pathlib import Path

from florsql.store import layout
from florsql.versions.git import run_git

READY = ".florsql-ready"
#: Worktrees kept after pruning (each is a copy of one version's files).
KEEP = int(os.environ.get("FLORSQL_KEEP_WORKTREES", "16"))


def worktrees_dir(repo: Path) -> Path:
    return layout.store_dir(repo) / "worktrees"


def patch_hash(patches: dict[str, str]) -> str:
    h = hashlib.sha256()
    for path in sorted(patches):
        h.update(path.encode() + b"\0" + patches[path].encode() + b"\0")
    return h.hexdigest()


def prepare(repo: Path, vid: str, patches: dict[str, str]) -> Path:
    """The worktree of ``vid`` with ``patches`` (path -> source) applied, created if needed."""
    tree = worktrees_dir(repo) / f"{vid[:12]}-{patch_hash(patches)[:12]}"
    if (tree / READY).exists():
        os.utime(tree / READY)
        _link_ignored(repo, tree)  # data ignored since the tree was made (or, before, missed)
        return tree
    tmp = tree.with_name(tree.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    data = run_git(repo, "archive", "--format=tar", vid)
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(tmp, filter="tar")
    for rel, source in patches.items():
        target = tmp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(source)
    _link_ignored(repo, tmp)
    (tmp / READY).write_text(vid)
    try:
        os.rename(tmp, tree)
    except OSError:  # another process made the same tree meanwhile: use theirs
        shutil.rmtree(tmp, ignore_errors=True)
    prune(repo)
    return tree


def head_gitdir(repo: Path, head: str | None) -> Path | None:
    """A git directory for replay tasks whose ``HEAD`` is ``head`` (the commit the run's
    checkout had: run.json's ``head``), sharing the repository's objects and refs through its
    ``commondir`` file, with an index of that commit; None when ``head`` is unknown or not a
    commit of the repository. The executors hand it to a task as ``GIT_DIR`` (its worktree as
    ``GIT_WORK_TREE``), so a script that asks git for its commit (``git rev-parse HEAD``, to
    log it) gets its run's, not today's: before session 34 a task's git found the user's
    repository around the worktree and answered today's HEAD for every old run, silently.
    Nothing of the user's repository changes (no ``git worktree`` is registered)."""
    if not head or any(c not in "0123456789abcdef" for c in head) or len(head) < 40:
        return None
    try:
        run_git(repo, "cat-file", "-e", f"{head}^{{commit}}")
        common = run_git(repo, "rev-parse", "--git-common-dir").decode().strip()
    except Exception:  # not a commit here (rewritten history), or no git: leave git alone
        return None
    common_dir = Path(common) if os.path.isabs(common) else (repo / common)
    gitdir = layout.store_dir(repo) / "replay-git" / head
    if (gitdir / READY).exists():
        return gitdir
    tmp = gitdir.with_name(gitdir.name + f".tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    (tmp / "HEAD").write_text(head + "\n")
    (tmp / "commondir").write_text(str(common_dir.resolve()) + "\n")
    with contextlib.suppress(Exception):  # no index: git status shows every file deleted
        run_git(repo, "read-tree", head, env={"GIT_DIR": str(tmp)})
    (tmp / READY).write_text(head)
    try:
        os.rename(tmp, gitdir)
    except OSError:  # made by another process meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    return gitdir


def _link_ignored(repo: Path, tree: Path) -> None:
    """Symlink the user's ignored paths (data folders) into ``tree``: each at its shallowest
    folder the version's files do not hold, so ``data/raw/`` ignored under a tracked ``data/``
    package is linked as ``data/raw`` (linking only top-level paths left it out)."""
    out = run_git(
        repo, "ls-files", "-z", "--others", "--ignored", "--exclude-standard", "--directory"
    )
    paths = {p.rstrip("/") for p in out.decode("utf-8", "surrogateescape").split("\0") if p}
    for path in sorted(paths):
        parts = path.split("/")
        if parts[0] in (layout.STORE_DIRNAME, ".git"):
            continue
        for depth in range(1, len(parts) + 1):
            rel = "/".join(parts[:depth])
            src, dst = repo / rel, tree / rel
            if dst.is_symlink() or not src.exists():
                break  # linked already (a folder above), or gone
            if not dst.exists():
                with contextlib.suppress(FileExistsError):  # another task linked it meanwhile
                    dst.symlink_to(src.resolve(), target_is_directory=src.is_dir())
                break
            if not (dst.is_dir() and src.is_dir()):
                break  # the version has a file there: it wins


def prune(repo: Path, keep: int = KEEP) -> list[Path]:
    """Remove all but the ``keep`` most recently used worktrees; returns what was removed."""
    root = worktrees_dir(repo)
    if not root.is_dir():
        return []
    trees = [p for p in root.iterdir() if (p / READY).exists()]
    trees.sort(key=lambda p: (p / READY).stat().st_mtime, reverse=True)
    removed = trees[keep:]
    for p in removed:
        shutil.rmtree(p, ignore_errors=True)
    for p in root.iterdir():  # leftovers of interrupted preparations older than an hour
        if ".tmp" in p.name and time.time() - p.stat().st_mtime > 3600:
            shutil.rmtree(p, ignore_errors=True)
    return removed
