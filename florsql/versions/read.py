"""Reading a recorded version: its files and their contents."""

from __future__ import annotations

from pathlib import Path

from florsql.errors import VersionError
from florsql.versions.git import run_git


def resolve_version(repo: Path, vid: str) -> str:
    """The full commit id of version ``vid`` (a full id or a unique prefix)."""
    out = run_git(repo, "rev-parse", "--verify", "-q", f"{vid}^{{commit}}", check=False)
    sha = out.decode().strip()
    if not sha:
        raise VersionError(
            f"unknown code version {vid!r}: see `florsql runs` for recorded versions"
        )
    return sha


def files_at(repo: Path, vid: str) -> list[str]:
    """Every file path (relative to the repo root) in version ``vid``."""
    out = run_git(repo, "ls-tree", "-r", "-z", "--name-only", resolve_version(repo, vid))
    return [n for n in out.decode("utf-8", "surrogateescape").split("\0") if n]


def file_at(repo: Path, vid: str, path: str) -> str:
    """The text of ``path`` at version ``vid``; a :class:`VersionError` if it is not there."""
    sha = resolve_version(repo, vid)
    out = run_git(repo, "cat-file", "blob", f"{sha}:{path}", check=False)
    if not out and path not in files_at(repo, sha):
        raise VersionError(f"{path} is not part of code version {sha[:12]}")
    return out.decode("utf-8", "surrogateescape")
