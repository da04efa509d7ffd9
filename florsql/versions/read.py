"""Reading a recorded version: its files and their contents."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from pathlib import Path

from florsql.errors import VersionError
from florsql.versions.git import run_git


def resolve_version(repo: Path, vid: str) -> str:
    """The full commit id of version ``vid`` (a full id or a unique prefix)."""
    out = run_git(repo, "rev-parse", "--verify", "-q", f"{vid}^{{commit}}", check=False)
    sha = out.decode().strip()
    if not sha:
        hint = "see `florsql runs` for recorded versions"
        if _FULL_ID.fullmatch(vid):  # a recorded run's: its snapshot did not come with the repo
            hint = (
                "a run recorded it, but its snapshot is not in this repository's git objects: "
                "snapshots live on refs/florsql/versions/*, which `git clone` and `git push` "
                "do not carry; fetch them from the repository the runs were recorded in: "
                "git fetch <remote> 'refs/florsql/*:refs/florsql/*'"
            )
        raise VersionError(f"unknown code version {vid!r}: {hint}")
    return sha


def files_at(repo: Path, vid: str) -> list[str]:
    """Every file path (relative to the repo root) in version ``vid``."""
    out = run_git(repo, "ls-tree", "-r", "-z", "--name-only", resolve_version(repo, vid))
    return [n for n in out.decode("utf-8", "surrogateescape").split("\0") if n]


def file_at(repo: Path, vid: str, path: str) -> str:
    """The text of ``path`` at version ``vid``; a :class:`VersionError` if it is not there.

    A full commit id's files never change: their texts are remembered (two ``git``
    processes each otherwise, on every query that replays that version)."""
    if _FULL_ID.fullmatch(vid):
        return _file_at_commit(str(Path(repo).resolve()), vid, path)
    return _read(repo, vid, path)


def text_reader(repo: Path | None) -> Callable[[str | None, str], str | None]:
    """Reads a file's text by ``(vid, path)``, remembered per pair: ``vid`` None for today's
    working tree, else the version's; None where it cannot be read (no such file, not UTF-8,
    no ``repo``). The planner's comparisons of today's statements with a version's (the
    catalog's partially recorded names, the replay set, the read-time warnings) read through
    one of these per question."""
    from florsql.errors import FlorError

    texts: dict[tuple[str | None, str], str | None] = {}

    def text(vid: str | None, path: str) -> str | None:
        if repo is None:
            return None
        if (vid, path) not in texts:
            try:
                texts[(vid, path)] = (
                    (Path(repo) / path).read_text(encoding="utf-8")
                    if vid is None
                    else file_at(Path(repo), vid, path)
                )
            except (FlorError, OSError, UnicodeDecodeError):
                texts[(vid, path)] = None
        return texts[(vid, path)]

    return text


def version_reader(
    repo: Path, vid: str, patched: Mapping[str, str] | None = None
) -> Callable[[str], str | None]:
    """Reads the files of version ``vid`` by path as a replay runs them (``patched``: path ->
    patched text, taken first); None for a path the version lacks. The version's files are
    listed once, at the first read of a file not in ``patched``."""
    listing: list[frozenset[str]] = []
    patched = dict(patched or {})

    def read(path: str) -> str | None:
        if path in patched:
            return patched[path]
        if not listing:
            listing.append(frozenset(files_at(repo, vid)))
        if path not in listing[0]:
            return None
        try:
            return file_at(repo, vid, path)
        except VersionError:
            return None

    return read


_FULL_ID = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


@lru_cache(maxsize=256)
def _file_at_commit(repo: str, sha: str, path: str) -> str:
    return _read(Path(repo), sha, path)  # an error is not remembered: lru_cache keeps returns


def _read(repo: Path, vid: str, path: str) -> str:
    sha = resolve_version(repo, vid)
    out = run_git(repo, "cat-file", "blob", f"{sha}:{path}", check=False)
    if not out and path not in files_at(repo, sha):
        raise VersionError(f"{path} is not part of code version {sha[:12]}")
    return out.decode("utf-8", "surrogateescape")
