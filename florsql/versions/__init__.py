"""Code versions: snapshots on hidden refs, files at a version, worktrees for replay."""

from __future__ import annotations

from florsql.versions.git import find_repo_root, head_commit
from florsql.versions.read import (
    file_at,
    files_at,
    resolve_version,
    text_reader,
    version_reader,
)
from florsql.versions.snapshot import REF_PREFIX, Snapshot, snapshot

__all__ = [
    "REF_PREFIX",
    "Snapshot",
    "file_at",
    "files_at",
    "find_repo_root",
    "head_commit",
    "resolve_version",
    "snapshot",
    "text_reader",
    "version_reader",
]
