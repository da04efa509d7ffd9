"""The query connections: the index opened, then locked down before any user SQL runs.

DuckDB lets one process open the index file, and ``SET enable_external_access = false`` cannot
be undone on a database instance. So the engine opens the index (the only file DuckDB itself
reads or writes), attaches an in-memory database :data:`HELPERS` for the planner's helper
relations and the materialized pivot, switches external access off for the instance, turns off
Python replacement scans (a query must not see Python variables by name) for every connection,
and locks the configuration, so no later statement can turn any of it back on. Refreshing the
index still works: it reads segment files with pyarrow, not DuckDB, and writes only the index.

Every query runs on a cursor (a DuckDB connection to the same instance, from
:meth:`Sandbox.cursor`), one per thread: the helper relations are ordinary tables and views of
the attached database, so every cursor sees the same ones (TEMP objects would be visible to the
connection that made them only), and the index file never changes for a query. A cursor's
``search_path`` puts :data:`HELPERS` first, so the planner's SQL names them unqualified.

The alternative measured, a separate in-memory instance that ATTACHes the index read-only, is
not possible in one process while the index is open for writing (DuckDB refuses a second handle
on the file), and would need closing the index for every refresh.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from florsql.store.index import Index

if TYPE_CHECKING:
    import duckdb

__all__ = ["HELPERS", "Sandbox", "open_sandbox"]

#: The attached in-memory database holding the helper relations (see florsql.plan.stats).
HELPERS = "flor"
SETUP = (f"ATTACH ':memory:' AS {HELPERS}",)
LOCKDOWN = (
    "SET enable_external_access = false",
    # Global, so cursors opened after the lock inherit it; it cannot be set there any more.
    "SET GLOBAL python_enable_replacements = false",
)


@dataclass
class Sandbox:
    """The index (for refreshes), the instance's query connections and who opened which.

    Attributes:
        index: the store's index; refreshes run on ``index.con``.
        con: the engine's own query cursor (``Engine.execute`` without a cursor).
        admin: the cursor that rebuilds the helper relations (engine SQL only, never a user's).
        index_db: the index's catalog name in DuckDB (its file's stem), unquoted.
    """

    index: Index
    con: duckdb.DuckDBPyConnection
    admin: duckdb.DuckDBPyConnection
    index_db: str
    _cursors: set[duckdb.DuckDBPyConnection] = field(default_factory=set)
    _guard: threading.Lock = field(default_factory=threading.Lock)

    def cursor(self) -> duckdb.DuckDBPyConnection:
        """A new query connection to the same instance, configured like every other."""
        cur = self.index.con.cursor()
        cur.execute(f"SET search_path = '{HELPERS}.main,{self.index_db}.main'")
        with self._guard:
            self._cursors.add(cur)
        return cur

    def release(self, cur: duckdb.DuckDBPyConnection) -> None:
        """Close a cursor from :meth:`cursor`."""
        with self._guard:
            self._cursors.discard(cur)
        cur.close()

    def interrupt_all(self) -> None:
        """Interrupt whatever runs on any query cursor now."""
        with self._guard:
            cursors = [self.con, *self._cursors]
        for cur in cursors:
            cur.interrupt()

    def close(self) -> None:
        try:
            with self._guard:
                cursors, self._cursors = [*self._cursors, self.admin, self.con], set()
            for cur in cursors:
                cur.close()
        finally:
            self.index.close()


def open_sandbox(
    repo: Path | str, *, wait: float = 0.0, settings: dict[str, str] | None = None
) -> Sandbox:
    """Open ``repo``'s index and query connections that cannot read or write files.

    ``settings`` (e.g. ``{"memory_limit": "2GB", "threads": "4"}``) are set on the instance
    before its configuration is locked.

    Example:
        >>> box = open_sandbox(repo)  # doctest: +SKIP
        >>> box.cursor().sql("SELECT * FROM read_csv('/etc/passwd')")  # doctest: +SKIP
        Traceback (most recent call last):
        duckdb.PermissionException: Permission Error: ... file system operations are disabled
    """
    index = Index.open(Path(repo), wait=wait)
    try:
        row = index.con.execute("SELECT current_database()").fetchone()
        assert row is not None
        index_db = str(row[0])
        for statement in (*SETUP, *LOCKDOWN):
            index.con.execute(statement)
        for name, value in (settings or {}).items():
            index.con.execute(f"SET GLOBAL {name} = ?", [value])
        index.con.execute("SET lock_configuration = true")
        box = Sandbox(index=index, con=index.con, admin=index.con, index_db=index_db)
        box.con = box.cursor()
        box.admin = box.cursor()
        with box._guard:
            box._cursors.clear()
    except BaseException:
        index.close()
        raise
    return box
