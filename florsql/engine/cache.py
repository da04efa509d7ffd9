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
values count (``__flor_cover``, ``__flor_names``) are rebuilt, and the pivot with them. When
only counted replayed values changed, the pivot is updated in place
(:meth:`CacheState._update_wide`).

Not thread-safe by itself: the engine calls :meth:`CacheState.current` (which rebuilds) only
under its write lock, and reads ``catalog`` under its read lock; :meth:`CacheState.stale` only
looks (``stat`` calls), so it may run anywhere.
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from florsql.engine.sandbox import HELPERS
from florsql.fold import fold_sql
from florsql.plan.catalog import (
    Catalog,
    RecordedMemo,
    build_catalog,
    code_fingerprints,
    scan_scripts,
)
from florsql.plan.hindsight import scan_script
from florsql.plan.pivot import WIDE_TABLE, ctx_column, wide_delta, wide_select
from florsql.plan.stats import (
    REPLAY_RECORDS,
    VALID,
    Generation,
    fingerprint,
    rebuild_code_stats,
    rebuild_stats,
)
from florsql.propagate.modules import module_digests
from florsql.store import layout
from florsql.store.replays import replays_dir
from florsql.store.schema import quote

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
    scripts_key: tuple[tuple[str, str], ...] = ()
    catalog: Catalog | None = None
    #: today's statement fingerprints the helper relations were built with (None: not built)
    fingerprints: dict[str, str] | None = None
    wide_built: bool = False
    #: the catalog the pivot table was made for (None: none, or one
    #: a failed step left unknown)
    wide_from: Catalog | None = None
    #: set by a refresh that only added replayed values: what the pivot held before it, whose
    #: counted replays ``__flor_valid_was`` keeps (the pivot is then updated, not rebuilt)
    _delta_base: Catalog | None = None
    #: how the pivot was last made: 'full' or 'delta' (tests and benchmarks read it)
    wide_how: str = ""
    refreshes: int = field(default=0)
    filenames: tuple[str, ...] = ()
    #: damaged store files met by refreshes, not yet reported: (message, path, what skipped)
    damage: list[tuple[str, str, str]] = field(default_factory=list)
    _damage_lock: threading.Lock = field(default_factory=threading.Lock)
    #: what the catalog learnt about the recorded runs (kept while they are the same)
    memo: RecordedMemo = field(default_factory=RecordedMemo)

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
            prints = code_fingerprints(con, self.repo, scripts, self.memo, self.generation)
            # What the pivot table holds, and the replayed values that counted when it was
            # made: if only counted replayed values and the catalog change (a replay's refresh,
            # an edited statement), it is updated, not rebuilt (_update_wide).
            base, self.wide_from, self._delta_base = self.wide_from, None, None
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
                kept = same and base is not None
                if kept:
                    self._keep_valid()
                rebuild_stats(
                    con,
                    schema=helpers,
                    index_db=self.box.index_db,
                    fingerprints=prints,
                    replays_only=same,
                    since=f"{helpers}.__flor_valid_was" if kept else None,
                )
                self.built = now
                self._delta_base = base if same else None
            else:  # the same records (the same generation)
                if base is not None:
                    self._keep_valid()
                if prints != self.fingerprints:  # a statement changed: which replays count
                    self.fingerprints = None  # consistent if rebuilding fails
                    rebuild_code_stats(
                        con,
                        prints,
                        schema=helpers,
                        index_db=self.box.index_db,
                        since=f"{helpers}.__flor_valid_was" if base is not None else None,
                    )
                self._delta_base = base
            self.fingerprints = prints
            self.catalog = build_catalog(con, self.repo, self.generation, scripts, self.memo)
            self.scripts_key = key
        if self.use_cache and not self.wide_built:
            before, self._delta_base = self._delta_base, None
            added = wide_delta(before, self.catalog) if before is not None else None
            self.wide_from = None
            if added is None or not self._update_wide(added):
                wide = f"{HELPERS}.main.{WIDE_TABLE}"
                con.execute(f"CREATE OR REPLACE TABLE {wide} AS {wide_select(self.catalog)}")
                self.wide_how = "full"
            self.wide_from = self.catalog
            self.wide_built = True
        return self.catalog

    def _keep_valid(self) -> None:
        """Copy ``__flor_valid`` (the replayed values the pivot table counts) before a
        rebuild of the helper relations changes it."""
        helpers = f"{HELPERS}.main"
        self.box.admin.execute(
            f"CREATE OR REPLACE TABLE {helpers}.__flor_valid_was AS SELECT * FROM {helpers}.{VALID}"
        )

    def _update_wide(self, added: list[str]) -> bool:
        """Bring the pivot table up to date after a refresh that only added replayed values:
        re-pivot the contexts that gained counted values and add the columns of names only
        they carry (:func:`florsql.plan.pivot.wide_delta`). Measured at 100k records, this is
        19-28 ms where rebuilding the pivot takes 50-75 ms. False (nothing changed that matters:
        the caller rebuilds) when the counted replays lost one, or a column's type differs."""
        assert self.catalog is not None
        con = self.box.admin
        helpers = f"{HELPERS}.main"
        wide = f"{helpers}.{WIDE_TABLE}"
        src = f"{quote(self.box.index_db)}.main"
        counts = con.execute(
            f"SELECT (SELECT count(*) FROM (SELECT * FROM {helpers}.__flor_valid_was "
            f"EXCEPT SELECT * FROM {helpers}.{VALID})), "
            f"(SELECT count(*) FROM (SELECT * FROM {helpers}.{VALID} "
            f"EXCEPT SELECT * FROM {helpers}.__flor_valid_was))"
        ).fetchone()
        if counts is None or counts[0]:
            return False  # a replayed value counted before no longer does
        if not counts[1] and not added:  # the same counted values (an edit adding a statement)
            con.execute(f"DROP TABLE IF EXISTS {helpers}.__flor_valid_was")
            self.wide_how = "delta"
            return True
        tables = {
            r[0]
            for r in con.execute(
                "SELECT table_name FROM duckdb_tables() WHERE database_name = ?",
                [self.box.index_db],
            ).fetchall()
        }
        if REPLAY_RECORDS in tables:
            touched = f"""SELECT DISTINCT r.run_id, r.ctx_id FROM {src}.{REPLAY_RECORDS} r
                JOIN (SELECT * FROM {helpers}.{VALID}
                      EXCEPT SELECT * FROM {helpers}.__flor_valid_was) v
                  ON v.replay_id = r.replay_id AND v.task_id = r.task_id
                 AND v.name = {fold_sql("r.name")}"""
        else:
            touched = "SELECT NULL::VARCHAR AS run_id, NULL::BIGINT AS ctx_id WHERE false"
        con.execute(f"CREATE OR REPLACE TABLE {helpers}.__flor_touched AS {touched}")
        delta = f"{helpers}.__flor_wide_delta"
        con.execute(
            f"CREATE OR REPLACE TABLE {delta} AS "
            f"{wide_select(self.catalog, contexts=f'{helpers}.__flor_touched')}"
        )
        have = dict(
            con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {wide})").fetchall()
        )
        new = con.execute(f"SELECT column_name, column_type FROM (DESCRIBE {delta})").fetchall()
        if any(have.get(c, t) != t for c, t in new) or {c for c, _ in new} - set(have) != set(
            added
        ):
            return False  # a column's type moved, or the columns are not the ones expected
        self.wide_how = ""  # unknown until done: a failure below rebuilds in full
        for column, sql_type in new:
            if column not in have:
                con.execute(f"ALTER TABLE {wide} ADD COLUMN {quote(column)} {sql_type}")
        con.execute(
            f"DELETE FROM {wide} w USING {helpers}.__flor_touched t "
            f"WHERE w.run_id = t.run_id AND w.{ctx_column(self.catalog)} = t.ctx_id"
        )
        con.execute(f"INSERT INTO {wide} BY NAME SELECT * FROM {delta}")
        for table in ("__flor_wide_delta", "__flor_touched", "__flor_valid_was"):
            con.execute(f"DROP TABLE IF EXISTS {helpers}.{table}")
        self.wide_how = "delta"
        return True

    def invalidate(self) -> None:
        """Forget everything: the next :meth:`current` refreshes and rebuilds."""
        self.signature = None
        self.generation = None
        self.catalog = None
        self.fingerprints = None
        self.wide_built = False
        self._delta_base = None  # wide_from stays: it says what the pivot table holds

    def _filenames(self) -> tuple[str, ...]:
        rows = self.box.admin.execute(
            "SELECT DISTINCT unnest(files) FROM run_meta WHERE files IS NOT NULL ORDER BY 1"
        ).fetchall()
        return tuple(r[0] for r in rows)

    def _scripts_key(self) -> tuple[tuple[str, str], ...]:
        """The content digest of each file some run executed: its log statements may have
        changed. Not its size and mtime: an edit that keeps both (saved within one timestamp
        tick, put back by ``cp -p``) kept the old statement's fingerprints, and its replayed
        values were served as the new statement's. Scripts are small: hashing them is cheap."""
        out = []
        for name in self.filenames:
            try:
                digest = hashlib.sha256((self.repo / name).read_bytes()).hexdigest()
            except OSError:
                digest = ""
            out.append((name, digest))
            # the repository modules its statements read: one new today is replayed as it is
            # now, so its edits change the fingerprints too (session 47)
            code = scan_script(self.repo, name) if digest else None
            if code is not None and code.modules:
                mods = [(dotted, level) for _, dotted, level in code.modules]
                parts = module_digests(self.repo, name, mods, lambda *_: True)
                out += [(f"{name}\0module", part) for part in parts]
        return tuple(out)
