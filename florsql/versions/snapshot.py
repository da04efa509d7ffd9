"""Code snapshots: the repo's files committed onto a hidden ref through a temporary index."""

from __future__ import annotations

import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

from florsql.errors import RecordWarning, VersionError
from florsql.versions.git import _SNAPSHOT_ENV, head_commit, run_git

#: Files larger than this are left out of a snapshot (with a warning).
DEFAULT_MAX_FILE_BYTES = 10 * 1024 * 1024
#: Untracked, not ignored files past this total in a snapshot are named in a warning: git keeps
#: them in .git for as long as the version's ref lives (session 45: a forgotten data folder of
#: 20 files of 5 MB grew .git from 164 KB to 96 MB, silently).
UNTRACKED_WARN_BYTES = 50 * 1024 * 1024
REF_PREFIX = "refs/florsql/versions/"
STORE_DIRNAME = ".florsql"


@dataclass(frozen=True)
class Snapshot:
    """One code version: ``vid`` is the snapshot commit, a function of the files' contents."""

    vid: str
    tree: str
    head: str | None
    dirty: bool
    skipped: tuple[str, ...]


def snapshot(repo: Path, max_file_bytes: int = DEFAULT_MAX_FILE_BYTES) -> Snapshot:
    """Commit the work tree's tracked and untracked-not-ignored files onto ``refs/florsql/``.

    Reads the work tree, writes git objects and one ref. HEAD, the branch, the index, the
    working tree and the stash are untouched. Identical files give an identical ``vid``.
    """
    repo = Path(repo)
    files = _candidate_files(repo)
    kept, skipped = [], []
    sizes: dict[str, int] = {}
    for rel in files:
        path = repo / rel
        try:
            st = path.lstat()
        except OSError:
            continue  # deleted in the work tree but still in the index
        if not path.is_symlink() and not path.is_file():
            continue
        if st.st_size > max_file_bytes:
            skipped.append(rel)
            continue
        kept.append(rel)
        sizes[rel] = st.st_size
    if sum(sizes.values()) > UNTRACKED_WARN_BYTES:
        _warn_untracked(repo, sizes)
    if skipped:
        warnings.warn(
            f"florsql left {len(skipped)} file(s) over {max_file_bytes // (1024 * 1024)} MB out "
            f"of the code snapshot: {', '.join(skipped[:5])}"
            + (" ..." if len(skipped) > 5 else ""),
            RecordWarning,
            stacklevel=3,
        )
    tree = _write_tree(repo, kept)
    commit = (
        run_git(repo, "commit-tree", tree, "-m", "florsql code snapshot", env=_SNAPSHOT_ENV)
        .decode()
        .strip()
    )
    _update_ref(repo, REF_PREFIX + commit, commit)
    head = head_commit(repo)
    dirty = True
    if head is not None:
        head_tree = run_git(repo, "rev-parse", f"{head}^{{tree}}").decode().strip()
        dirty = head_tree != tree
    return Snapshot(vid=commit, tree=tree, head=head, dirty=dirty, skipped=tuple(skipped))


def _warn_untracked(repo: Path, sizes: dict[str, int]) -> None:
    """Name the largest untracked files the snapshot holds where they pass
    :data:`UNTRACKED_WARN_BYTES` in all (tracked files are in git already)."""
    out = run_git(repo, "ls-files", "-z", "--others", "--exclude-standard")
    untracked = {p for p in out.decode("utf-8", "surrogateescape").split("\0") if p}
    held = sorted(((sizes[p], p) for p in untracked if p in sizes), reverse=True)
    total = sum(size for size, _ in held)
    if total <= UNTRACKED_WARN_BYTES:
        return
    shown = ", ".join(f"{p} ({size / 2**20:.1f} MB)" for size, p in held[:3])
    warnings.warn(
        f"florsql's code snapshot holds {total / 2**20:.0f} MB of untracked files that git does "
        f"not ignore ({len(held)} files: {shown}{' ...' if len(held) > 3 else ''}); git keeps "
        "them in .git under refs/florsql/versions/: if they are data, add them to .gitignore",
        RecordWarning,
        stacklevel=4,
    )


def _candidate_files(repo: Path) -> list[str]:
    out = run_git(
        repo,
        "ls-files",
        "-z",
        "--cached",
        "--others",
        "--exclude-standard",
        "--",
        ".",
        f":(exclude){STORE_DIRNAME}",
    )
    names = sorted({n for n in out.decode("utf-8", "surrogateescape").split("\0") if n})
    return [n for n in names if not n.startswith(STORE_DIRNAME + "/")]


def _write_tree(repo: Path, files: list[str]) -> str:
    fd, index_path = tempfile.mkstemp(prefix="florsql-index-")
    os.close(fd)
    os.unlink(index_path)  # git wants to create the index file itself
    env = {"GIT_INDEX_FILE": index_path}
    try:
        payload = b"".join(f.encode("utf-8", "surrogateescape") + b"\0" for f in files)
        run_git(repo, "update-index", "--add", "-z", "--stdin", env=env, input=payload)
        return run_git(repo, "write-tree", env=env).decode().strip()
    finally:
        for p in (index_path, index_path + ".lock"):
            if os.path.exists(p):
                os.unlink(p)


def _update_ref(repo: Path, ref: str, commit: str) -> None:
    # Concurrent runs of identical code race for the same ref; a ref already at this commit wins.
    for _ in range(5):
        out = run_git(repo, "update-ref", ref, commit, check=False)
        del out
        current = run_git(repo, "rev-parse", "--verify", "-q", ref, check=False).decode().strip()
        if current == commit:
            return
    raise VersionError(f"could not write the snapshot ref {ref} in {repo}")
