"""Where things live under ``<repo>/.florsql`` (docs/record.md), and atomic file writes.

Imports only the standard library: the record path uses it at a run's first call.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

STORE_DIRNAME = ".florsql"
RUN_JSON = "run.json"
SEGMENTS = "segments"
CHECKPOINTS = "checkpoints"
MANIFEST = "manifest.jsonl"
INDEX_FILE = "index.duckdb"
INDEX_LOCK = "index.lock"
#: Called with a line to show when the index's lock is held by another process and a caller
#: waits for it (:meth:`florsql.store.index.Index.open`; the CLI prints it on stderr, session
#: 46); None: wait without a word.
INDEX_WAIT_NOTICE: Callable[[str], None] | None = None


def store_dir(repo: Path) -> Path:
    return Path(repo) / STORE_DIRNAME


def runs_dir(repo: Path) -> Path:
    return store_dir(repo) / "runs"


def run_dir(repo: Path, run_id: str) -> Path:
    return runs_dir(repo) / run_id


def ensure_store(repo: Path) -> Path:
    """Create ``.florsql/`` with a ``.gitignore`` of ``*`` so git never sees the store.

    The nested ``.gitignore`` keeps ``git status`` clean without editing the user's own
    ``.gitignore`` or ``.git/info/exclude``.
    """
    root = store_dir(repo)
    root.mkdir(parents=True, exist_ok=True)
    ignore = root / ".gitignore"
    if not ignore.exists():
        atomic_write_text(ignore, "# florsql's store: never part of a code snapshot\n*\n")
    return root


def atomic_write_text(path: Path, text: str, *, fsync: bool = False) -> None:
    """Write ``text`` to ``path`` so readers see the old file or the new one, never half."""
    write_bytes_atomic(path, text.encode("utf-8"), fsync=fsync)


def write_bytes_atomic(
    path: Path, data: bytes, *, fsync: bool = False, prefix: str | None = None
) -> None:
    """Write ``data`` to a temporary file beside ``path`` (named ``prefix``..., a dot-file by
    default) and rename it into place: a reader sees the whole file or none."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=prefix or f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj: Any, *, fsync: bool = False) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1, sort_keys=True, default=str), fsync=fsync)


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def process_start(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (Linux), so a reused pid is not taken for a live run."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
