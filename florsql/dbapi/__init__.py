"""PEP 249 (DB-API 2.0) access to florsql: ``florsql.connect(repo=".")``.

Example:
    >>> import florsql
    >>> con = florsql.connect("path/to/repo")  # doctest: +SKIP
    >>> cur = con.cursor()  # doctest: +SKIP
    >>> cur.execute("SELECT epoch, avg(loss) FROM logs WHERE lr >= ? GROUP BY ALL", [0.01])

The module globals, exceptions and type objects load with the package; ``connect``,
``Connection`` and ``Cursor`` (and with them the query engine: duckdb, sqlglot, pyarrow) load on
first use, so ``florsql.Error`` or ``florsql.STRING`` costs no engine import.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from florsql.dbapi.exceptions import (
    DatabaseError,
    DataError,
    Error,
    IntegrityError,
    InterfaceError,
    InternalError,
    NotSupportedError,
    OperationalError,
    ParseError,
    PlanError,
    ProgrammingError,
    QueryDataError,
    QueryError,
    ReplayError,
    StoreError,
    VersionError,
    Warning,
)
from florsql.dbapi.types import (
    BINARY,
    DATETIME,
    NUMBER,
    ROWID,
    STRING,
    Binary,
    Date,
    DateFromTicks,
    Time,
    TimeFromTicks,
    Timestamp,
    TimestampFromTicks,
)

if TYPE_CHECKING:
    from florsql.dbapi.connection import Connection, connect
    from florsql.dbapi.cursor import Cursor

apilevel = "2.0"
threadsafety = 1  # threads may share the module, not connections
paramstyle = "qmark"

__all__ = [
    "BINARY",
    "DATETIME",
    "NUMBER",
    "ROWID",
    "STRING",
    "Binary",
    "Connection",
    "Cursor",
    "DataError",
    "DatabaseError",
    "Date",
    "DateFromTicks",
    "Error",
    "IntegrityError",
    "InterfaceError",
    "InternalError",
    "NotSupportedError",
    "OperationalError",
    "ParseError",
    "PlanError",
    "ProgrammingError",
    "QueryDataError",
    "QueryError",
    "ReplayError",
    "StoreError",
    "Time",
    "TimeFromTicks",
    "Timestamp",
    "TimestampFromTicks",
    "VersionError",
    "Warning",
    "apilevel",
    "connect",
    "paramstyle",
    "threadsafety",
]


def __getattr__(name: str) -> Any:
    # The engine is heavy (duckdb, sqlglot, pyarrow): load it only when a connection is asked for.
    if name in ("connect", "Connection"):
        from florsql.dbapi import connection

        return getattr(connection, name)
    if name == "Cursor":
        from florsql.dbapi.cursor import Cursor

        return Cursor
    raise AttributeError(f"module 'florsql.dbapi' has no attribute {name!r}")
