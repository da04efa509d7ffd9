"""PEP 249's exception hierarchy, tied to florsql's own errors.

Every class derives from :class:`Error`, itself a :class:`florsql.errors.FlorError`. The errors a
query can raise also derive from the florsql error of their stage, so code written against
either hierarchy catches them: a :class:`ParseError` is both a PEP 249 ``ProgrammingError`` and a
``florsql.errors.ParseError``.
"""

from __future__ import annotations

import florsql.errors as errors

__all__ = [
    "DataError",
    "DatabaseError",
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
    "QueryIntegrityError",
    "QueryInternalError",
    "QueryNotSupportedError",
    "QueryOperationalError",
    "ReplayError",
    "StoreError",
    "VersionError",
    "Warning",
    "wrap_error",
]


class Warning(Exception):
    """PEP 249 ``Warning``. florsql reports warnings with ``warnings.warn`` instead (categories
    in :mod:`florsql.errors`); this class exists for code that names it."""


class Error(errors.FlorError):
    """PEP 249 ``Error``: the root of every DB-API error."""


class InterfaceError(Error):
    """Misuse of the interface: a closed connection or cursor, bad parameters style."""


class DatabaseError(Error):
    """An error of the database."""


class DataError(DatabaseError):
    """A value could not be processed (a failed cast, a number out of range)."""


class OperationalError(DatabaseError):
    """The store could not be used (the index is locked, a replay failed)."""


class IntegrityError(DatabaseError):
    """Never raised by a read-only store; defined by PEP 249."""


class InternalError(DatabaseError):
    """DuckDB or florsql reached a state it should not."""


class ProgrammingError(DatabaseError):
    """The statement is wrong: syntax, unknown names, wrong number of parameters."""


class NotSupportedError(DatabaseError):
    """A feature florsql or DuckDB does not support."""


class ParseError(ProgrammingError, errors.ParseError):
    """Not valid florsql SQL, or not a read."""


class PlanError(ProgrammingError, errors.PlanError):
    """An unknown column or relation, or parameters that do not fit."""


class QueryError(ProgrammingError, errors.SqlError):
    """DuckDB refused the query (binder and catalog errors)."""


class QueryDataError(DataError, errors.SqlError):
    """DuckDB could not convert or compute a value."""


class QueryOperationalError(OperationalError, errors.SqlError):
    """DuckDB failed for a reason outside the query (memory, interruption)."""


class QueryNotSupportedError(NotSupportedError, errors.SqlError):
    """DuckDB does not implement something the query uses."""


class QueryInternalError(InternalError, errors.SqlError):
    """DuckDB reported an internal error."""


class QueryIntegrityError(IntegrityError, errors.SqlError):
    """DuckDB reported a constraint violation."""


class StoreError(OperationalError, errors.StoreError):
    """The store could not be opened or read (another process holds the index...)."""


class ReplayError(OperationalError, errors.ReplayError):
    """Replaying old runs failed."""


class VersionError(OperationalError, errors.VersionError):
    """A recorded code version is not in the repository (a clone without florsql's refs)."""


def _duckdb_class(cause: BaseException | None) -> type[Error]:
    try:
        import duckdb
    except ImportError:  # pragma: no cover - duckdb is a dependency
        return QueryError
    pairs: tuple[tuple[type[BaseException], type[Error]], ...] = (
        (duckdb.InterruptException, QueryOperationalError),
        (duckdb.DataError, QueryDataError),
        (duckdb.NotSupportedError, QueryNotSupportedError),
        (duckdb.IntegrityError, QueryIntegrityError),
        (duckdb.InternalError, QueryInternalError),
        (duckdb.OperationalError, QueryOperationalError),
    )
    for duck, ours in pairs:
        if isinstance(cause, duck):
            return ours
    if cause is not None and not type(cause).__module__.startswith(("duckdb", "_duckdb")):
        return QueryInternalError  # florsql failed in a way it did not foresee
    return QueryError


def wrap_error(error: BaseException) -> Error:
    """The DB-API error for ``error`` (a florsql error), keeping its fields.

    Example:
        >>> e = wrap_error(errors.PlanError("Unknown column 'x'.", sql="SELECT x", line=1, col=8))
        >>> isinstance(e, ProgrammingError), isinstance(e, errors.PlanError), e.col
        (True, True, 8)
    """
    if isinstance(error, Error):
        return error
    if isinstance(error, errors.SqlError):
        kind: type[Error]
        if isinstance(error, errors.ParseError):
            kind = ParseError
        elif isinstance(error, errors.PlanError):
            kind = PlanError
        elif isinstance(error, errors.QueryInterrupted):
            kind = QueryOperationalError
        else:
            kind = _duckdb_class(error.__cause__)
        made = kind(error.message, sql=error.sql, line=error.line, col=error.col)  # type: ignore[call-arg]
    elif isinstance(error, errors.StoreError):
        made = StoreError(str(error))
    elif isinstance(error, errors.ReplayError):
        made = ReplayError(str(error))
    elif isinstance(error, errors.VersionError):
        made = VersionError(str(error))
    else:
        made = InternalError(str(error))
    made.__cause__ = error.__cause__ or error
    return made
