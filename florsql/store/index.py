"""The DuckDB index: every run's files gathered into queryable tables, rebuildable at any time.

One process owns ``index.duckdb`` at a time (DuckDB allows nothing else), guarded by a lock
file; a second opener gets a :class:`~florsql.errors.StoreError` or waits. :meth:`Index.refresh`
ingests only what changed since the last refresh (new segments, a rewritten run.json, a longer
checkpoint manifest) and is idempotent. Deleting the file and refreshing gives the same tables.

A refresh never fails on a damaged file of the store and never changes one: it skips what cannot
be read and returns each newly met damaged file in :attr:`RefreshStats.damaged` (see
:mod:`florsql.store.ingest`); the engine turns them into warnings.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from florsql.errors import StoreError, StoreWarning
from florsql.store import layout
from florsql.store.ingest import (
    DAMAGE_SQL,
    Damage,
    RunFiles,
    ingest_run_json,
    ingest_segments,
    ingested_now,
    load_manifest,
)
from florsql.store.ingest_replays import REPLAY_SQL, ingest_replays
from florsql.store.schema import SCHEMA_SQL, SCHEMA_VERSION, define_views

if TYPE_CHECKING:
    import duckdb


@dataclass(frozen=True)
class RefreshStats:
    """What one :meth:`Index.refresh` ingested."""

    runs: int
    new_segments: int
    new_rows: int
    replay_tasks: int = 0
    #: (path relative to the repo, what was skipped, why) per damaged file met for the first
    #: time by this index.
    damaged: tuple[tuple[str, str, str], ...] = ()

    def damage_messages(self) -> list[str]:
        """One message per damaged file, naming it and what was skipped."""
        return [damage_message(*d) for d in self.damaged]


def damage_message(path: str, skipped: str, reason: str) -> str:
    """The warning text for one damaged file.

    Example:
        >>> damage_message("r1/02.arrow", "its rows", "ArrowInvalid: ...")
        'cannot read r1/02.arrow (ArrowInvalid: ...); skipped: its rows; the file is left as it is'
    """
    return f"cannot read {path} ({reason}); skipped: {skipped}; the file is left as it is"


class Index:
    """The query side's DuckDB index over ``<repo>/.florsql``.

    Example:
        >>> with Index.open(repo) as ix:  # doctest: +SKIP
        ...     ix.refresh()
        ...     ix.con.sql("SELECT run_id, status FROM runs").fetchall()
    """

    def __init__(self, repo: Path, con: duckdb.DuckDBPyConnection, lock: Any) -> None:
        self.repo = Path(repo)
        self.con = con
        self._lock = lock

    @classmethod
    def open(cls, repo: Path | str, *, wait: float = 0.0, path: Path | None = None) -> Index:
        """Open (creating if needed) the index of ``repo``; ``wait`` seconds for another owner."""
        import duckdb
        from filelock import FileLock

        repo = Path(repo)
        store = layout.ensure_store(repo)
        db_path = path or store / layout.INDEX_FILE
        lock = FileLock(str(store / layout.INDEX_LOCK))
        if not _acquire(lock, wait, store):
            if _owner_pid(store) == os.getpid():
                raise StoreError(
                    f"the florsql index of {repo} is already in use in this process (a "
                    "florsql.connect(), Engine or flor.dataframe() call not closed yet): use "
                    "that connection (it makes any number of cursors; flor.dataframe(..., "
                    "engine=con) reads through it), or close it first (con.close(), or "
                    "`with florsql.connect(...) as con:`); florsql.connect(..., wait=SECONDS) "
                    "waits for another thread to close it"
                )
            owner = _read_owner(store)
            raise StoreError(
                f"the florsql index of {repo} is in use by another process{owner}; close "
                "that REPL, server or script, or wait for it: `florsql --wait SECONDS ...` "
                "on the command line, florsql.connect(..., wait=SECONDS) in Python"
            )
        try:
            (store / "index.owner").write_text(str(os.getpid()))
            con = _connect(duckdb, db_path)
        except BaseException:
            lock.release()
            raise
        return cls(repo, con, lock)

    def close(self) -> None:
        try:
            self.con.close()
        finally:
            self._lock.release()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def refresh(self) -> RefreshStats:
        """Ingest what changed under ``.florsql/runs`` since the last refresh."""
        runs_root = layout.runs_dir(self.repo)
        folders = sorted(p for p in runs_root.iterdir() if p.is_dir()) if runs_root.is_dir() else []
        files = [f for f in map(RunFiles.scan, folders) if f is not None]
        damage = Damage(self.con, self.repo)
        self.con.execute("BEGIN TRANSACTION")
        try:
            runs_changed = _forget_gone(self.con, {f.run_id for f in files})
            seen = ingested_now(self.con)
            for f in files:
                runs_changed |= ingest_run_json(self.con, f, damage, seen)
                load_manifest(self.con, f, damage, seen)
            segs, rows = ingest_segments(self.con, files, damage)
            tasks = ingest_replays(self.con, self.repo, damage)
            _mark_dead_runs(self.con)
            if runs_changed:  # new args may be new columns of ``runs``; else they stand
                define_views(self.con)
            self.con.execute("COMMIT")
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        return RefreshStats(
            runs=len(files),
            new_segments=segs,
            new_rows=rows,
            replay_tasks=tasks,
            damaged=tuple(damage.notes),
        )


def _connect(duckdb: Any, db_path: Path) -> duckdb.DuckDBPyConnection:
    try:
        str(db_path).encode("utf-8")
    except UnicodeEncodeError:
        # DuckDB opens UTF-8 paths only (a byte that is not UTF-8, caf\xe9_project, failed as
        # "RuntimeError: std::bad_cast"; session 45). Recording works there; querying cannot.
        shown = os.fsencode(db_path).decode("utf-8", "backslashreplace")
        raise StoreError(
            f"cannot open the florsql index {shown}: its path is not UTF-8, and DuckDB opens "
            "UTF-8 paths only; rename the folder (or query a copy of the repository under a "
            "UTF-8 path)"
        ) from None
    try:
        con = duckdb.connect(str(db_path))
        version, ddl = _schema_version(con)
    except duckdb.Error as e:
        if _held(e) or not db_path.exists():
            raise StoreError(f"cannot open the florsql index {db_path}: {e}") from e
        # The index is derived data: an unreadable one is rebuilt from the run files (a
        # damaged block too: "in block at location ..." read as a lock before session 46, and
        # every command failed until the file was deleted by hand).
        warnings.warn(f"rebuilding the florsql index ({e})", StoreWarning, stacklevel=3)
        with contextlib.suppress(Exception):
            con.close()
        _remove(db_path)
        con = duckdb.connect(str(db_path))
        version, ddl = _schema_version(con)
    if version not in (None, SCHEMA_VERSION):
        con.close()
        _remove(db_path)
        con = duckdb.connect(str(db_path))
        ddl = None
    if ddl == ddl_digest():
        return con  # made by this very schema code: nothing to (re)create, nothing written
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(SCHEMA_SQL)
        con.execute(REPLAY_SQL)
        con.execute(DAMAGE_SQL)
        define_views(con)
        con.execute(
            "INSERT OR REPLACE INTO meta VALUES ('schema_version', ?), ('ddl', ?)",
            [str(SCHEMA_VERSION), ddl_digest()],
        )
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return con


def _held(error: Exception) -> bool:
    """Whether DuckDB could not open the file because another process holds it."""
    text = str(error).lower()
    return "could not set lock" in text or "conflicting lock" in text


def ddl_digest() -> str:
    """A digest of the code that creates the index's tables and views: an index whose ``meta``
    holds it was made by this code, and opening it runs no DDL (~20 ms and a checkpoint at
    close saved per open, measured). Another florsql (an upgrade) re-runs the DDL once."""
    global _DDL
    if _DDL is None:
        import hashlib

        from florsql.store import schema

        h = hashlib.sha256()
        for text in (SCHEMA_SQL, REPLAY_SQL, DAMAGE_SQL, str(SCHEMA_VERSION)):
            h.update(text.encode() + b"\0")
        try:
            h.update(Path(schema.__file__ or "").read_bytes())  # define_views and its helpers
        except OSError:
            import marshal

            h.update(marshal.dumps(schema.define_views.__code__))
        _DDL = h.hexdigest()[:32]
    return _DDL


_DDL: str | None = None


def _schema_version(con: duckdb.DuckDBPyConnection) -> tuple[int | None, str | None]:
    """The index's schema version and :func:`ddl_digest` as stored (None where absent)."""
    try:
        rows = dict(
            con.execute(
                "SELECT key, value FROM meta WHERE key IN ('schema_version', 'ddl')"
            ).fetchall()
        )
    except Exception:
        return None, None
    version = rows.get("schema_version")
    try:
        return (int(version) if version is not None else None), rows.get("ddl")
    except ValueError:
        return -1, None  # not a version this code wrote: rebuilt


def _remove(db_path: Path) -> None:
    for p in (db_path, Path(str(db_path) + ".wal")):
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _acquire(lock: Any, timeout: float, store: Path | None = None) -> bool:
    from filelock import Timeout

    try:
        lock.acquire(timeout=0)
        return True
    except Timeout:
        if timeout <= 0:
            return False
    notice = layout.INDEX_WAIT_NOTICE
    if notice is not None and store is not None and _owner_pid(store) != os.getpid():
        notice(
            f"the index is in use by another process{_read_owner(store)}; waiting up to "
            f"{timeout:g} s for it (--wait SECONDS; Ctrl-C to stop)"
        )
    try:
        lock.acquire(timeout=timeout)
    except Timeout:
        return False
    return True


def _owner_pid(store: Path) -> int | None:
    try:
        return int((store / "index.owner").read_text().strip())
    except (OSError, ValueError):
        return None


def _read_owner(store: Path) -> str:
    try:
        return f" (pid {(store / 'index.owner').read_text().strip()})"
    except OSError:
        return ""


#: The index's tables of a run's own records (a replay's are kept: inert without the run).
_RUN_TABLES = (
    "run_meta", "data_inputs", "args", "loops", "ctx_path", "log_records", "checkpoints",
    "ingested",
)  # fmt: skip


def _forget_gone(con: duckdb.DuckDBPyConnection, present: set[str]) -> bool:
    """Drop from the index the runs whose folders are gone from ``.florsql/runs`` (deleted by
    hand, by ``git clean -fdx``); True if any was. Before session 46 they stayed: ``runs`` and
    ``logs`` answered them as ``finished`` in this index and not in a fresh one, and a
    hindsight query failed on the missing ``run.json`` ("this is a florsql bug"). A folder
    that comes back is ingested again as new."""
    known = {
        r[0]
        for r in con.execute(
            "SELECT run_id FROM run_meta UNION SELECT run_id FROM ingested"
        ).fetchall()
    }
    gone = sorted(known - present)
    if not gone:
        return False
    con.execute("CREATE OR REPLACE TEMP TABLE __flor_gone (run_id VARCHAR)")
    con.executemany("INSERT INTO __flor_gone VALUES (?)", [[r] for r in gone])
    for table in _RUN_TABLES:
        con.execute(f"DELETE FROM {table} WHERE run_id IN (SELECT run_id FROM __flor_gone)")
    con.execute("DROP TABLE __flor_gone")
    return True


def _mark_dead_runs(con: duckdb.DuckDBPyConnection) -> None:
    """A run still 'running' whose process is gone on this host was killed (kill -9, OOM)."""
    import platform

    rows = con.execute(
        "SELECT run_id, pid, pid_start FROM run_meta WHERE status = 'running' AND host = ?",
        [platform.node()],
    ).fetchall()
    for run_id, pid, pid_start in rows:
        if not _alive(pid, pid_start):
            con.execute("UPDATE run_meta SET status = 'killed' WHERE run_id = ?", [run_id])


def _alive(pid: int | None, pid_start: str | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    now = layout.process_start(pid)
    return now is None or pid_start is None or now == pid_start
