"""florsql: multiversion hindsight logging.

In a training script::

    import florsql as flor

    lr = flor.arg("lr", 1e-3)
    with flor.checkpointing(model=net, optimizer=opt):
        for epoch in flor.loop("epoch", range(5)):
            for x, y in flor.loop("step", loader):
                flor.log("loss", train_step(x, y))

Importing florsql is light: the query side (duckdb, sqlglot) and torch load only when used.

``florsql`` is also a PEP 249 module: ``connect``, ``apilevel``, ``threadsafety``,
``paramstyle``, the exception classes (``Error``, ``ProgrammingError``...) and the type objects
and constructors (``STRING``, ``NUMBER``, ``Date``, ``Binary``...) are its attributes, loaded
on first use from :mod:`florsql.dbapi`.
"""

from __future__ import annotations

from typing import Any

from florsql.errors import FlorError
from florsql.record.api import arg, checkpointing, commit, log, loop

#: PEP 249 names served by :mod:`florsql.dbapi` (``connect`` among them).
DBAPI_NAMES = (
    "connect",
    "apilevel",
    "threadsafety",
    "paramstyle",
    "Warning",
    "Error",
    "InterfaceError",
    "DatabaseError",
    "DataError",
    "OperationalError",
    "IntegrityError",
    "InternalError",
    "ProgrammingError",
    "NotSupportedError",
    "Date",
    "Time",
    "Timestamp",
    "DateFromTicks",
    "TimeFromTicks",
    "TimestampFromTicks",
    "Binary",
    "STRING",
    "BINARY",
    "NUMBER",
    "DATETIME",
    "ROWID",
)

__all__ = [
    "FlorError",
    "__version__",
    "arg",
    "checkpointing",
    "commit",
    "dataframe",
    "log",
    "loop",
    *DBAPI_NAMES,
]

__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # The query side is heavy (duckdb, sqlglot): load it only when a script asks for it.
    if name in DBAPI_NAMES:
        from florsql import dbapi

        return getattr(dbapi, name)
    if name in ("_save_modes", "_restore_modes"):  # hindsight code's mode switches
        from florsql.record import modes

        return getattr(modes, name[1:])
    if name in ("_hindsight_begin", "_hindsight_end"):  # around hindsight code in a replay
        from florsql.record import api

        found = globals()[name] = getattr(api, name)  # once: a replay calls them per statement
        return found
    if name == "dataframe":
        from florsql.engine.frame import dataframe

        return dataframe
    raise AttributeError(f"module 'florsql' has no attribute {name!r}")
