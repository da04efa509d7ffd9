"""The query connection: the index opened, then locked down before any user SQL runs.

DuckDB lets one process open the index file, and ``SET enable_external_access = false`` cannot
be undone on a database instance. So the engine opens the index (the only file DuckDB itself
reads or writes), switches external access off for that instance, turns off Python replacement
scans (a query must not see Python variables by name) on the connection queries use, and locks
the configuration, so no later statement can turn any of it back on. Refreshing the index still
works: it reads segment files with pyarrow, not DuckDB, and writes only the index itself.

The alternative measured, a separate in-memory instance that ATTACHes the index read-only, is
not possible in one process while the index is open for writing (DuckDB refuses a second handle
on the file), and would need closing the index for every refresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from florsql.store.index import Index

if TYPE_CHECKING:
    import duckdb

__all__ = ["Sandbox", "open_sandbox"]

LOCKDOWN = ("SET enable_external_access = false",)
PER_CONNECTION = ("SET python_enable_replacements = false",)


@dataclass
class Sandbox:
    """The index (for refreshes) and the locked-down connection user queries run on."""

    index: Index
    con: duckdb.DuckDBPyConnection

    def close(self) -> None:
        try:
            self.con.close()
        finally:
            self.index.close()


def open_sandbox(repo: Path | str, *, wait: float = 0.0) -> Sandbox:
    """Open ``repo``'s index and a query connection that cannot read or write files.

    Example:
        >>> box = open_sandbox(repo)  # doctest: +SKIP
        >>> box.con.sql("SELECT * FROM read_csv('/etc/passwd')")  # doctest: +SKIP
        Traceback (most recent call last):
        duckdb.PermissionException: Permission Error: ... file system operations are disabled
    """
    index = Index.open(Path(repo), wait=wait)
    try:
        for statement in LOCKDOWN:
            index.con.execute(statement)
        con = index.con.cursor()
        for statement in PER_CONNECTION:
            con.execute(statement)
        index.con.execute("SET lock_configuration = true")
    except BaseException:
        index.close()
        raise
    return Sandbox(index=index, con=con)
