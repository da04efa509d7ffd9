"""Keeping the catalog, the planner's helper relations and the materialized pivot current.

The pivot of all log records (:func:`florsql.plan.pivot.wide_select`) is materialized once per
index generation as the temporary table ``__flor_wide``; each query's ``logs`` CTE then filters
it to its row grain. Measured at 1M records, a query over the materialized pivot costs 1.0-1.2x
the same query over a hand-built flat table, against 20-30x when every query pivots the log
records itself. The index is refreshed only when a run folder changed (a cheap ``stat`` pass),
and the catalog is re-read when the index or a script with runs changed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from florsql.plan.catalog import Catalog, build_catalog
from florsql.plan.pivot import WIDE_TABLE, wide_select
from florsql.plan.stats import Generation, fingerprint, rebuild_stats
from florsql.store import layout
from florsql.store.replays import replays_dir

if TYPE_CHECKING:
    from florsql.engine.sandbox import Sandbox

__all__ = ["CacheState", "folder_signature"]

Signature = tuple[tuple[str, int, int, int], ...]


def folder_signature(repo: Path) -> Signature:
    """Per run folder: the mtimes of run.json, segments/ and the checkpoint manifest; and the
    replays folder's (a finished replay adds a folder there)."""
    root = layout.runs_dir(repo)
    out = [("<replays>", _mtime(str(replays_dir(repo))), 0, 0)]
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError:
        return tuple(out)
    for entry in entries:
        if not entry.is_dir():
            continue
        run_json, segments, manifest = (_mtime(os.path.join(entry.path, p)) for p in _WATCHED)
        out.append((entry.name, run_json, segments, manifest))
    return tuple(out)


_WATCHED = (
    layout.RUN_JSON,
    layout.SEGMENTS,
    os.path.join(layout.CHECKPOINTS, layout.MANIFEST),
)


def _mtime(path: str) -> int:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


@dataclass
class CacheState:
    """What the engine has built for the current index contents."""

    box: Sandbox
    repo: Path
    use_cache: bool = True
    signature: Signature | None = None
    generation: Generation | None = None
    scripts_key: tuple[tuple[str, int, int], ...] = ()
    catalog: Catalog | None = None
    wide_built: bool = False
    refreshes: int = field(default=0)
    filenames: tuple[str, ...] = ()

    def current(self, *, force: bool = False) -> Catalog:
        """The catalog for the index as it is now, refreshing what changed."""
        signature = folder_signature(self.repo)
        if force or signature != self.signature or self.generation is None:
            self.box.index.refresh()
            self.signature = signature
            self.refreshes += 1
            generation = fingerprint(self.box.con)
            if generation != self.generation:
                rebuild_stats(self.box.con)
                self.generation = generation
                self.catalog = None
                self.wide_built = False
                self.filenames = self._filenames()
        key = self._scripts_key()
        if self.catalog is None or key != self.scripts_key:
            self.catalog = build_catalog(self.box.con, self.repo, self.generation)
            self.scripts_key = key
        if self.use_cache and not self.wide_built:
            self.box.con.execute(
                f"CREATE OR REPLACE TEMP TABLE {WIDE_TABLE} AS {wide_select(self.catalog)}"
            )
            self.wide_built = True
        return self.catalog

    def invalidate(self) -> None:
        """Forget everything: the next :meth:`current` refreshes and rebuilds."""
        self.signature = None
        self.generation = None
        self.catalog = None
        self.wide_built = False

    def _filenames(self) -> tuple[str, ...]:
        rows = self.box.con.execute(
            "SELECT DISTINCT filename FROM run_meta WHERE filename IS NOT NULL ORDER BY 1"
        ).fetchall()
        return tuple(r[0] for r in rows)

    def _scripts_key(self) -> tuple[tuple[str, int, int], ...]:
        """Size and mtime of each script with runs: its log statements may have changed."""
        out = []
        for name in self.filenames:
            try:
                st = (self.repo / name).stat()
                out.append((name, st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((name, 0, 0))
        return tuple(out)
