"""Fingerprints of the files a run read from outside git (data), and comparing them later.

A recorded input is its repository-relative path, size, modification time and a content hash:
sha256 of the whole file up to :data:`FULL_HASH_BYTES`, of its size and evenly spaced samples
above. A run's ``data_fingerprint`` is one digest over (path, size, hash) of all its inputs.
Replay compares each input with the file as it is today (:func:`compare_inputs`).
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "FULL_HASH_BYTES",
    "HASH_BUDGET_BYTES",
    "MAX_INPUTS",
    "InputFile",
    "candidates",
    "combined_digest",
    "compare_inputs",
    "file_hash",
    "fingerprint",
    "git_path",
    "inside",
    "recorded_inputs",
]

#: Files up to this size are hashed whole; larger ones by samples.
FULL_HASH_BYTES = 1 << 20
#: Content bytes read for hashing at one commit, in all files together.
HASH_BUDGET_BYTES = 64 << 20
#: At most this many inputs are listed in run.json (the open watch keeps 50,000 paths at most).
MAX_INPUTS = 10_000
_SAMPLES = 64
_SAMPLE_BYTES = 16 << 10


@dataclass(frozen=True)
class InputFile:
    """One file a run read from an ignored path, as it was at the run's commit.

    Attributes:
        path: POSIX path relative to the repository root.
        bytes: its size.
        mtime_ns: its modification time.
        hash: ``sha256:<hex>`` of the content, or ``sampled:<hex>`` of samples and size.
    """

    path: str
    bytes: int
    mtime_ns: int
    hash: str

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> InputFile:
        return cls(str(doc["path"]), int(doc["bytes"]), int(doc["mtime_ns"]), str(doc["hash"]))


def candidates(repo: Path, read: set[str], written: set[str]) -> list[str]:
    """Repository-relative paths of regular files read (never written) that may be data.

    A path counts as inside the repository as it was opened (``data/x.csv`` where ``data`` is a
    symlink to a data disk is inside) or once resolved. Python's own files (sources, bytecode,
    extension modules, anything under ``sys.prefix`` or a ``site-packages``), git's metadata and
    florsql's store are never data.
    """
    roots = sorted({os.path.abspath(repo), os.path.realpath(repo)}, key=len, reverse=True)
    prefixes = {os.path.realpath(p) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    prefixes -= set(roots)
    dirs: dict[str, str] = {}  # a folder's resolved path: a process reads thousands of files
    written_real = {_realpath(w, dirs) for w in written}  # from a few hundred folders
    out = []
    for path in sorted(read - written):
        rel = inside(path, roots)
        real = _realpath(path, dirs)
        if rel is None:
            rel = inside(real, roots)
        if rel is None or real in written_real:
            continue
        if any(real.startswith(p + os.sep) for p in prefixes):
            continue
        parts = rel.split("/")
        if parts[0] in (".git", ".florsql") or "__pycache__" in parts:
            continue
        if "site-packages" in parts or "dist-packages" in parts:
            continue
        if rel.endswith((".py", ".pyc", ".pyo", ".so", ".pyd", ".pth")):
            continue
        if os.path.isfile(real):
            out.append(rel)
    return sorted(set(out))


def _realpath(path: str, dirs: dict[str, str]) -> str:
    """``os.path.realpath(path)`` for an absolute ``path``, each folder resolved once
    (``dirs`` caches them: a process reads thousands of files from a few hundred folders), so
    a path costs one ``lstat`` instead of one per component."""
    folder, name = os.path.split(path)
    if not name or name in (".", "..") or not folder.startswith(os.sep):
        return os.path.realpath(path)
    real_folder = dirs.get(folder)
    if real_folder is None:
        real_folder = folder if folder == os.sep else _realpath(folder, dirs)
        dirs[folder] = real_folder
    joined = os.path.join(real_folder, name)
    return os.path.realpath(joined) if os.path.islink(joined) else joined


def inside(path: str, roots: list[str]) -> str | None:
    """``path`` relative to the first of ``roots`` it lies under (POSIX form), else None."""
    for root in roots:
        if path.startswith(root + os.sep):
            return os.path.relpath(path, root).replace(os.sep, "/")
    return None


def git_path(repo: Path, rel: str) -> str:
    """The part of ``rel`` git can be asked about: up to its first symlinked folder, if any
    (git refuses paths beyond a symbolic link; a ``data`` symlink is what is ignored)."""
    parts = rel.split("/")
    for k in range(1, len(parts)):
        if (repo / "/".join(parts[:k])).is_symlink():
            return "/".join(parts[:k])
    return rel


def file_hash(path: Path, size: int | None = None) -> str:
    """``sha256:<hex>`` of a file up to :data:`FULL_HASH_BYTES`; above, ``sampled:<hex>`` of
    its size and 64 evenly spaced 16 KiB samples (first and last bytes included).

    Example:
        >>> import tempfile
        >>> with tempfile.NamedTemporaryFile(delete=False) as f:
        ...     _ = f.write(b"a,b\\n1,2\\n")
        >>> file_hash(Path(f.name))[:15]
        'sha256:5e4ac3a9'
    """
    size = path.stat().st_size if size is None else size
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if size <= FULL_HASH_BYTES:
            for block in iter(lambda: f.read(1 << 16), b""):
                h.update(block)
            return f"sha256:{h.hexdigest()}"
        h.update(str(size).encode())
        last = size - _SAMPLE_BYTES
        for k in range(_SAMPLES):
            f.seek(last * k // (_SAMPLES - 1))
            h.update(f.read(_SAMPLE_BYTES))
    return f"sampled:{h.hexdigest()}"


#: The hash of an input modified after its run started (by the run itself, through a writer
#: the open watch does not see, as ``torch.save``, or by another process): what the run read
#: is not known, so a replay always reports it changed.
DURING = "during:"


def fingerprint(
    repo: Path, paths: Iterable[str], budget: int = HASH_BUDGET_BYTES, since_ns: int | None = None
) -> list[InputFile]:
    """Size, modification time and hash of each of ``paths`` (relative to ``repo``) now;
    files that vanished meanwhile are left out. A file modified at or after ``since_ns`` (the
    run's start) gets ``during:<mtime_ns>``: its content now may not be what the run read.

    Content hashing reads at most ``budget`` bytes in all (a data set of a million images is
    not read at a run's exit): files beyond it get ``stat:<mtime_ns>`` instead of a content
    hash, and are compared by size and modification time only.
    """
    out = []
    for rel in paths:
        p = repo / rel
        try:
            st = p.stat()
            cost = st.st_size if st.st_size <= FULL_HASH_BYTES else _SAMPLES * _SAMPLE_BYTES
            if since_ns is not None and st.st_mtime_ns >= since_ns:
                digest = f"{DURING}{st.st_mtime_ns}"
            elif cost <= budget:
                budget -= cost
                digest = file_hash(p, st.st_size)
            else:
                digest = f"stat:{st.st_mtime_ns}"
            out.append(InputFile(rel, st.st_size, st.st_mtime_ns, digest))
        except OSError:
            continue
    return out


def combined_digest(inputs: Iterable[InputFile]) -> str | None:
    """One stable digest over (path, size, hash) of every input; None when there are none.
    Modification times are left out: copying data unchanged keeps the fingerprint.

    Example:
        >>> combined_digest([]) is None
        True
        >>> len(combined_digest([InputFile("data/a.csv", 3, 0, "sha256:00")]) or "")
        16
    """
    items = sorted((i.path, i.bytes, i.hash) for i in inputs)
    if not items:
        return None
    h = hashlib.sha256()
    for path, size, digest in items:
        h.update(f"{path}\0{size}\0{digest}\n".encode())
    return h.hexdigest()[:16]


def compare_inputs(repo: Path, recorded: Iterable[InputFile]) -> list[tuple[str, str]]:
    """(path, "changed" or "missing") for each recorded input that differs today; an input
    its run modified (``during:``) is always reported.

    Size and modification time unchanged count as unchanged; otherwise the content hash
    decides (a file copied back unchanged is not a change).
    """
    out = []
    for inp in recorded:
        p = Path(repo) / inp.path
        try:
            st = p.stat()
        except OSError:
            out.append((inp.path, "missing"))
            continue
        if inp.hash.startswith(DURING):
            out.append((inp.path, "changed while its run ran: what it read is not known"))
            continue
        if st.st_size == inp.bytes and st.st_mtime_ns == inp.mtime_ns:
            continue
        try:
            same = (
                st.st_size == inp.bytes
                and not inp.hash.startswith("stat:")
                and file_hash(p, st.st_size) == inp.hash
            )
        except OSError:
            same = False
        if not same:
            out.append((inp.path, "changed"))
    return out


def recorded_inputs(doc: dict[str, Any]) -> list[InputFile]:
    """The inputs a run.json lists (none for runs recorded before florsql fingerprinted data)."""
    out = []
    for item in doc.get("inputs") or []:
        try:
            out.append(InputFile.from_json(item))
        except (KeyError, TypeError, ValueError):
            continue
    return out
