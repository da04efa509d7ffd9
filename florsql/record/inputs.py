"""What a recording run executed and read: the repository modules it imported, and the files
it read from paths git ignores (data), fingerprinted at commit
(see :mod:`florsql.store.fingerprints`).

The open watch of :mod:`.watch` only collects paths; everything here runs once, at commit, on
the writer thread.
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

from florsql.record.watch import OpenWatch, write_through
from florsql.store.fingerprints import MAX_INPUTS, candidates, fingerprint, git_path, inside

__all__ = ["imported_files", "record_inputs", "record_outputs"]


def record_inputs(
    repo: Path,
    watch: OpenWatch,
    since_ns: int | None = None,
    modules: list[str] | tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """The run.json form of what ``watch`` saw: the ignored files read, fingerprinted (those
    modified at or after ``since_ns``, the run's start, marked: see ``fingerprint``).

    ``modules``: repository-relative paths of Python files the run imported that its code
    version lacks (git ignores them: a ``localcfg.py`` of settings); they are inputs as data
    files are, so a replay says it ran with one that changed since (session 45: today's
    ``DECAY = 0.9`` was replayed where the run had 0.5, without a word)."""
    from florsql.versions.git import run_git

    read, written = watch.snapshot()
    # a file ``torch.save`` wrote before the run read it holds what the run wrote: no data
    paths = candidates(repo, read, written | watch.own_first)
    paths += [m for m in modules if m not in paths]
    if not paths:
        return []
    asked = {p: git_path(repo, p) for p in paths}
    queries = sorted(set(asked.values()))
    out = run_git(repo, "check-ignore", "-z", "--stdin", input=_z(queries), check=False)
    ignored = {p for p in out.decode("utf-8", "surrogateescape").split("\0") if p}
    kept = [p for p in paths if asked[p] in ignored][:MAX_INPUTS]
    return [asdict(i) for i in fingerprint(repo, kept, since_ns=since_ns)]


def record_outputs(
    repo: Path, watch: OpenWatch
) -> tuple[list[str], list[str], dict[str, list[Any]], list[str]] | None:
    """The run.json form of the files ``watch`` saw written (``outputs``), of those
    written while an outer loop ran (``loop_outputs``), of the appended ones' starts
    (``append_starts``) and of those not there when first written (``created_outputs``,
    since session 49): repository-relative paths for those
    inside ``repo`` (florsql's store and git's metadata aside), absolute real paths for those
    outside it (since session 44: a resume file ``/tmp/last.pt``; the system's folders, caches
    and ``tempfile``'s files aside, :func:`florsql.record.watch.write_through`), sorted. None
    where the lists may be incomplete (the watch kept its limit of paths; more than
    ``MAX_INPUTS`` inside the repository). Past ``MAX_INPUTS`` outside it, those outside are
    left out (a replay then does not know them: as before session 44)."""
    _read, written = watch.snapshot()
    written |= set(watch.saved)
    if len(watch._raw) >= watch.LIMIT or len(watch.saved) >= watch.LIMIT:
        return None
    roots = sorted({os.path.abspath(repo), os.path.realpath(repo)}, key=len, reverse=True)
    out: dict[str, str] = {}
    outside: dict[str, str] = {}
    for path in written:
        rel = inside(path, roots) or inside(os.path.realpath(path), roots)
        if rel is None:
            outside[path] = os.path.realpath(path)
        elif rel.split("/", 1)[0] not in (".git", ".florsql"):
            out[path] = rel
    if len(out) > MAX_INPUTS:
        return None
    if outside:
        kept = [os.path.join(os.path.realpath(p), "") for p in write_through()]
        outside = {
            p: real
            for p, real in outside.items()
            if not any(os.path.join(real, "").startswith(k) for k in kept)
        }
        if len(outside) <= MAX_INPUTS:
            out.update(outside)
    in_loop = {out[p] for p in set(watch.in_loop) if p in out}
    starts = {out[p]: [size, digest] for p, (size, digest) in watch.starts.items() if p in out}
    created = {out[p] for p in set(watch.absent) if p in out}
    return sorted(set(out.values())), sorted(in_loop), starts, sorted(created)


def _z(paths: list[str]) -> bytes:
    return b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in paths)


def imported_files(repo: Path, main: str | None) -> list[str]:
    """Repository-relative paths of the Python files this process imported from the
    repository (its ``sys.modules`` now), the main script first.

    Only absolute ``__file__`` paths under the root count (torch's ``_ops``-like pseudo-modules
    carry relative ones), compared as strings: no file system call per module.
    """
    roots = sorted({os.path.abspath(repo), os.path.realpath(repo)}, key=len, reverse=True)
    starts = tuple(r + os.sep for r in roots)
    found: list[str] = [main] if main and main.endswith(".py") else []
    for module in list(sys.modules.values()):
        try:
            file = getattr(module, "__file__", None)
        except Exception:  # a lazy module object may raise on any attribute
            continue
        if not isinstance(file, str) or not file.startswith(starts) or not file.endswith(".py"):
            continue
        rel = inside(os.path.normpath(file), roots)
        if rel is None:
            continue
        parts = rel.split("/")
        if parts[0] in (".git", ".florsql") or "site-packages" in parts:
            continue
        if rel not in found:
            found.append(rel)
    return found[:1] + sorted(found[1:])
