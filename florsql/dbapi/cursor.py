"""The PEP 249 cursor: runs statements through the engine, hands rows out from Arrow."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from florsql.dbapi.exceptions import (
    InterfaceError,
    NotSupportedError,
    ProgrammingError,
    QueryDataError,
    wrap_error,
)
from florsql.engine.pyvalues import InexactValueError, python_columns
from florsql.errors import FlorError
from florsql.grammar.placeholders import ACCEPTED

if TYPE_CHECKING:
    from florsql.dbapi.connection import Connection
    from florsql.engine.result import Result

__all__ = ["Cursor", "arrow_type_name"]

Description = tuple[str, str, None, None, None, None, bool]
_BATCH = 1024


def arrow_type_name(t: pa.DataType) -> str:
    """A DuckDB type name for an Arrow type (for tables DuckDB did not produce)."""
    checks = (
        (pa.types.is_boolean, "BOOLEAN"),
        (pa.types.is_integer, "BIGINT"),
        (pa.types.is_floating, "DOUBLE"),
        (pa.types.is_timestamp, "TIMESTAMP"),
        (pa.types.is_date, "DATE"),
        (pa.types.is_binary, "BLOB"),
        (pa.types.is_list, "VARCHAR[]"),
        (pa.types.is_null, "NULL"),
    )
    if pa.types.is_timestamp(t) and t.tz is not None:
        return "TIMESTAMP WITH TIME ZONE"
    for check, name in checks:
        if check(t):
            return name
    return "VARCHAR"


class Cursor:
    """A PEP 249 cursor over a florsql :class:`~florsql.dbapi.connection.Connection`.

    Besides PEP 249: :meth:`fetch_arrow_table`, :attr:`messages` (the warnings of the last
    statement, also sent through ``warnings``), :attr:`plan` (its replay plan) and iteration.

    Example:
        >>> cur = con.cursor()  # doctest: +SKIP
        >>> cur.execute("SELECT run_id, avg(loss) FROM logs WHERE lr > ? GROUP BY ALL", [0.01])
        >>> cur.fetchall()  # doctest: +SKIP
    """

    arraysize: int = 1

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self._result: Result | None = None
        self._table: pa.Table | None = None
        self._pos = 0
        self._rows: list[tuple[Any, ...]] = []
        self._rows_start = 0
        self.closed = False
        self.messages: list[tuple[type[Warning], str]] = []
        self.lastrowid = None

    # -- PEP 249 attributes --------------------------------------------------------------------
    @property
    def description(self) -> list[Description] | None:
        """One 7-tuple per column (name, type_code, None x4, null_ok), None without a result."""
        if self._result is None or self._table is None or self._result.kind == "set":
            return None
        types = self._result.types
        fields = self._table.schema
        out = []
        for i, f in enumerate(fields):
            code = types[i] if i < len(types) else arrow_type_name(f.type)
            out.append((f.name, code, None, None, None, None, True))
        return out

    @property
    def rowcount(self) -> int:
        return -1 if self._result is None else self._result.rowcount

    @property
    def rownumber(self) -> int | None:
        return None if self._table is None else self._pos

    @property
    def plan(self) -> Any:
        return None if self._result is None else self._result.plan

    # -- execution -----------------------------------------------------------------------------
    def execute(self, operation: str, parameters: Sequence[Any] | None = None) -> Cursor:
        """Run one statement; ``?`` placeholders take ``parameters`` in order."""
        self._check()
        self._clear()  # a failed statement leaves no result (not the previous one's)
        if not isinstance(operation, str):
            # before s37 an int, None or bytes failed inside the engine, as "a florsql bug"
            raise ProgrammingError(
                f"execute() takes the SQL text as a str, not {type(operation).__name__}"
            )
        params = _params(parameters)
        try:
            result = self.connection._engine().execute(operation, params)
        except FlorError as e:
            raise wrap_error(e) from e.__cause__
        self._set(result)
        return self

    def executemany(self, operation: str, seq_of_parameters: Sequence[Sequence[Any]]) -> Cursor:
        """Run ``operation`` once per parameter sequence; the last result stays readable (none
        when ``seq_of_parameters`` is empty)."""
        self._check()
        self._clear()
        if isinstance(seq_of_parameters, str | bytes | Mapping) or not isinstance(
            seq_of_parameters, Iterable
        ):  # before s37 None failed with a bare TypeError
            raise ProgrammingError(
                "executemany() takes a sequence of parameter lists (one list per run of the "
                f"statement), not {type(seq_of_parameters).__name__}"
            )
        for parameters in seq_of_parameters:
            self.execute(operation, parameters)
        return self

    def _clear(self) -> None:
        self._result, self._table = None, None
        self._pos = 0
        self._rows, self._rows_start = [], 0
        self.messages = []

    def _set(self, result: Result) -> None:
        self._result = result
        self._table = result.table
        self._pos = 0
        self._rows, self._rows_start = [], 0
        self.messages = list(result.warning_records)

    # -- fetching ------------------------------------------------------------------------------
    def fetchone(self) -> tuple[Any, ...] | None:
        rows = self.fetchmany(1)
        return rows[0] if rows else None

    def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        table = self._readable()
        n = self.arraysize if size is None else size
        if isinstance(n, bool) or not isinstance(n, int):
            raise ProgrammingError(f"fetchmany() takes a whole number of rows, not {n!r}")
        if n < 0:
            # PEP 249 leaves it undefined; sqlite3 answers every row, DuckDB refuses: refused.
            asked = f"fetchmany({n})" if size is not None else f"fetchmany(): arraysize is {n}"
            raise ProgrammingError(
                f"{asked}: the number of rows must be 0 or more; use fetchall() for every row"
            )
        out: list[tuple[Any, ...]] = []
        while len(out) < n and self._pos < table.num_rows:
            if self._pos >= self._rows_start + len(self._rows):
                self._load(table)
            start = self._pos - self._rows_start
            take = self._rows[start : start + (n - len(out))]
            out += take
            self._pos += len(take)
        return out

    def fetchall(self) -> list[tuple[Any, ...]]:
        table = self._readable()
        return self.fetchmany(table.num_rows - self._pos)

    def fetch_arrow_table(self) -> pa.Table:
        """The rows not fetched yet, as one Arrow table (no conversion to Python objects)."""
        table = self._readable()
        rest = table.slice(self._pos)
        self._pos = table.num_rows
        return rest

    def __arrow_c_stream__(self, requested_schema: object = None) -> object:
        """The rows not fetched yet as an Arrow C stream (the PyCapsule interface), so Arrow
        readers take the result with its exact types: ``polars.DataFrame(cur)``,
        ``pyarrow.table(cur)``. ``polars.read_database(sql, connection=con)`` cannot: it knows
        florsql as a plain DB-API driver and types each column from its name in
        ``description`` and its Python values, so an empty result's ``TIMESTAMP WITH TIME
        ZONE`` column came out of type Null and a ``STRUCT`` column failed to load."""
        return self.fetch_arrow_table().__arrow_c_stream__(requested_schema)

    def _load(self, table: pa.Table) -> None:
        chunk = table.slice(self._pos, _BATCH)
        try:
            columns = python_columns(chunk)
        except InexactValueError as e:
            raise QueryDataError(e.message, sql=self._result.sql if self._result else None) from e
        self._rows = list(zip(*columns, strict=True)) if columns else [()] * chunk.num_rows
        self._rows_start = self._pos

    def _readable(self) -> pa.Table:
        self._check()
        if self._table is None or self._result is None or self._result.kind == "set":
            raise ProgrammingError("no result to fetch: execute a query first")
        return self._table

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return self

    def __next__(self) -> tuple[Any, ...]:
        row = self.fetchone()
        if row is None:
            raise StopIteration
        return row

    # -- the rest of PEP 249 -------------------------------------------------------------------
    def setinputsizes(self, sizes: Any) -> None:
        """Accepted and ignored (PEP 249 allows it)."""

    def setoutputsize(self, size: int, column: int | None = None) -> None:
        """Accepted and ignored (PEP 249 allows it)."""

    def callproc(self, procname: str, parameters: Sequence[Any] = ()) -> Sequence[Any]:
        """florsql has no stored procedures (PEP 249 makes the method optional)."""
        self._check()
        raise NotSupportedError(
            f"florsql has no stored procedures ({procname!r}): run a query with execute()"
        )

    def nextset(self) -> None:
        """None: a statement answers one result set (PEP 249's answer when there is no next)."""
        self._readable()

    def close(self) -> None:
        self.closed = True
        self._table = None

    def __enter__(self) -> Cursor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check(self) -> None:
        if self.closed:
            raise InterfaceError("the cursor is closed")
        self.connection._check()


def _params(parameters: Sequence[Any] | None) -> tuple[Any, ...]:
    if parameters is None:
        return ()
    message = f"{ACCEPTED} (a list or tuple)"
    if isinstance(parameters, Mapping):
        names = ", ".join(map(str, list(parameters)[:3]))
        raise ProgrammingError(f"named parameters ({names}) are not supported: {message}")
    if isinstance(parameters, str | bytes | bytearray | memoryview):
        kind = type(parameters).__name__
        raise ProgrammingError(
            f"{message}, not a {kind}: one {kind} parameter is a sequence of one, "
            f"execute(sql, [{parameters!r:.40}])"
        )
    if isinstance(parameters, AbstractSet):  # {0.1, 0.2} would bind in whatever order it iterates
        raise ProgrammingError(f"{message}, not a {type(parameters).__name__}: a set has no order")
    try:
        return tuple(parameters)
    except TypeError:
        raise ProgrammingError(f"{message}, not a {type(parameters).__name__}") from None
