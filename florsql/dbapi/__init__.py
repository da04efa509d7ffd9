"""PEP 249 (DB-API 2.0) access to florsql: ``florsql.connect(repo=".")``.

Example:
    >>> import florsql
    >>> con = florsql.connect("path/to/repo")  # doctest: +SKIP
    >>> cur = con.cursor()  # doctest: +SKIP
    >>> cur.execute("SELECT epoch, avg(loss) FROM logs WHERE lr >= ? GROUP BY ALL", [0.01])
"""

from __future__ import annotations

from florsql.dbapi.connection import Connection, connect
from florsql.dbapi.cursor import Cursor
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
    "Warning",
    "apilevel",
    "connect",
    "paramstyle",
    "threadsafety",
]
