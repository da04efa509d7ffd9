"""Keeping the catalog, the planner's helper relations and the materialized pivot current.

The pivot of all log records (:func:`florsql.plan.pivot.wide_select`) is materialized once per
index generation as the table ``flor.main.__flor_wide`` (in the attached in-memory database
every cursor sees, beside the helper relations of :mod:`florsql.plan.stats`); each query's
``logs`` CTE then filters it to its row grain. Measured at 1M records, a query over the
materialized pivot costs 1.0-1.2x the same query over a hand-built flat table, against 20-30x
when every query pivots the log records itself. The index is refreshed only when a run folder
changed (a cheap ``stat`` pass), and the catalog is re-read when the index or a script with
runs changed. The helper relations depend on the scripts too: a replayed value counts only
while today's statements for its name have the fingerprint its replay recorded
(docs/replay.md), so when an edit changes a fingerprint, the relations that say which replayed
values count (``__flor_cover``, ``__flor_names``) are rebuilt, and the pivot with them.

Not thread-safe by itself: the engine calls :meth:`CacheState.current` (which rebuilds) only
under its write lock, and reads ``catalog`` under its read lock; :meth:`CacheState.stale` only
looks (``stat`` calls), so it may run anywhere.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from florsql.engine.sandbox import HELPERS
from florsql.plan.catalog import Catalog, build_catalog, recorded_anchors, scan_scripts
from florsql.plan.hindsight import statement_fingerprints
from florsql.plan.pivot import WIDE_TABLE, wide_select
from florsql.plan.stats import Generation, fingerprint, rebuild_code_stats, rebuild_stats
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
    #: What the helper relations were last built from in full (kept by :meth:`invalidate`:
    #: they stay built)
    built: Generation | None = None
    scripts_key: tuple[tuple[str, int, int], ...] = ()
    catalog: Catalog | None = None
    #: today's statement fingerprints the helper relations were built with (None: not built)
    fingerprints: dict[str, str] | None = None
    wide_built: bool = False
    refreshes: int = field(default=0)
    filenames: tuple[str, ...] = ()
    #: damaged store files met by refreshes, not yet reported: (message, path, what skipped)
    damage: list[tuple[str, str, str]] = field(default_factory=list)
    _damage_lock: threading.Lock = field(default_factory=threading.Lock)

    def take_damage(self) -> list[tuple[str, str, str]]:
        """The damaged files met since the last call (each file once per index)."""
        with self._damage_lock:
            taken, self.damage = self.damage, []
        return taken

    def stale(self) -> bool:
        """Whether :meth:`current` would refresh or rebuild anything (looks, changes nothing)."""
        if self.catalog is None or self.generation is None:
            return True
        if self.use_cache and not self.wide_built:
            return True
        return folder_signature(self.repo) != self.signature or (
            self._scripts_key() != self.scripts_key
        )

    def current(self, *, force: bool = False) -> Catalog:
        """The catalog for the index as it is now, refreshing what changed."""
        con = self.box.admin
        signature = folder_signature(self.repo)
        if force or signature != self.signature or self.generation is None:
            stats = self.box.index.refresh()
            with self._damage_lock:
                self.damage += [
                    (text, d[0], d[1])
                    for text, d in zip(stats.damage_messages(), stats.damaged, strict=True)
                ]
            self.signature = signature
            self.refreshes += 1
            generation = fingerprint(con)
            if generation != self.generation:
                self.catalog, self.wide_built, self.generation = None, False, None
                self.fingerprints = None
                self.filenames = self._filenames()
                self.generation = generation
        key = self._scripts_key()
        if self.catalog is None or key != self.scripts_key or self.fingerprints is None:
            self.catalog, self.wide_built = None, False  # consistent if building fails
            helpers = f"{HELPERS}.main"
            scripts = scan_scripts(con, self.repo)
            prints = statement_fingerprints(scripts.values(), recorded_anchors(con, scripts))
            if self.fingerprints is None:
                # Only replayed values new (a replay's refresh, the common case): the relations
                # of the recorded loops, the size of every run's contexts, stay as they are.
                was, now, self.built = self.built, self.generation, None
                same = (
                    was is not None
                    and now is not None
                    and (was.sources, was.mtime_sum, was.size_sum)
                    == (now.sources, now.mtime_sum, now.size_sum)
                )
                rebuild_stats(
                    con,
                    schema=helpers,
                    index_db=self.box.index_db,
                    fingerprints=prints,
                    replays_only=same,
                )
                self.built = now
            elif prints != self.fingerprints:  # a statement changed: which replays count
                self.fingerprints = None  # consistent if rebuilding fails
                rebuild_code_stats(con, prints, schema=helpers, index_db=self.box.index_db)
            self.fingerprints = prints
            self.catalog = build_catalog(con, self.repo, self.generation, scripts)
            self.scripts_key = key
        if self.use_cache and not self.wide_built:
            wide = f"{HELPERS}.main.{WIDE_TABLE}"
            con.execute(f"CREATE OR REPLACE TABLE {wide} AS {wide_select(self.catalog)}")
            self.wide_built = True
        return self.catalog

    def invalidate(self) -> None:
        """Forget everything: the next :meth:`current` refreshes and rebuilds."""
        self.signature = None
        self.generation = None
        self.catalog = None
        self.fingerprints = None
        self.wide_built = False

    def _filenames(self) -> tuple[str, ...]:
        rows = self.box.admin.execute(
            "SELECT DISTINCT unnest(files) FROM run_meta WHERE files IS NOT NULL ORDER BY 1"
        ).fetchall()
        return tuple(r[0] for r in rows)

    def _scripts_key(self) -> tuple[tuple[str, int, int], ...]:
        """Size and mtime of each file some run executed: its log statements may have changed."""
        out = []
        for name in self.filenames:
            try:
                st = (self.repo / name).stat()
                out.append((name, st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((name, 0, 0))
        return tuple(out)
