"""Exact results: DuckDB's Arrow export, with every type whose export loses or garbles the value
replaced by one that keeps it.

DuckDB 2 exports most types to their natural Arrow type, exactly. A few it does not:

- ``BIGNUM`` (an integer literal past ``HUGEINT``'s range) as an opaque binary blob of DuckDB's
  own encoding;
- ``UHUGEINT`` as ``decimal128(38, 0)``, which wraps values past 2**127 to negative numbers, and
  ``HUGEINT`` as ``decimal128(38, 0)`` holding 39-digit values, which Arrow calls invalid;
- ``BIT`` as binary in DuckDB's internal layout (a padding byte, then the bits);
- ``TIME WITH TIME ZONE`` as a plain ``time64``, without its offset;
- ``INTERVAL`` with more than 292 years of microseconds as ``month_day_nano`` whose int64
  nanoseconds wrapped around (a top-level column gets its whole days moved to the days first:
  :func:`_interval_sql`).

Every query florsql runs goes through :func:`run_exact`: those columns (also inside lists,
structs, unnamed structs, maps, unions and arrays) are cast to ``VARCHAR`` in DuckDB, and
``HUGEINT`` and ``UHUGEINT`` then become Arrow ``decimal256(39, 0)``. So the Arrow types are:

============================  =================================================
DuckDB                        Arrow
============================  =================================================
BIGNUM                        string: the decimal digits (``-123...``)
HUGEINT, UHUGEINT             decimal256(39, 0)
BIT                           string of ``0``/``1``
TIME WITH TIME ZONE           string, DuckDB's text (``12:34:56+05:30``)
everything else               DuckDB's own export (exact)
============================  =================================================

Each field carries its DuckDB type in the metadata key ``florsql.type``, which
:mod:`florsql.engine.pyvalues` reads to hand out the Python values DuckDB's own API gives.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
from collections.abc import Callable, Iterator

import duckdb
import pyarrow as pa
from duckdb.sqltypes import DuckDBPyType

__all__ = [
    "TYPE_KEY",
    "ExactStream",
    "children",
    "members",
    "parse_type",
    "run_exact",
    "stream_exact",
    "type_name",
    "wire_sql_type",
]

#: The Arrow field metadata key holding the column's DuckDB type.
TYPE_KEY = b"florsql.type"

_AS_TEXT = frozenset({"bignum", "hugeint", "uhugeint", "bit", "time with time zone"})
_AS_DECIMAL = frozenset({"hugeint", "uhugeint"})
_WIDE = pa.decimal256(39, 0)


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def wire_sql_type(t: DuckDBPyType) -> str | None:
    """The DuckDB type to cast a column of type ``t`` to before the Arrow export; None when
    DuckDB exports ``t`` exactly.

    Example:
        >>> wire_sql_type(duckdb.sqltype("STRUCT(a UHUGEINT, b INTEGER)"))
        'STRUCT("a" VARCHAR, "b" INTEGER)'
        >>> wire_sql_type(duckdb.sqltype("DOUBLE[]")) is None
        True
    """
    if t.id in _AS_TEXT:
        return "VARCHAR"
    kids = children(t)
    if t.id == "list":
        child = wire_sql_type(kids[0])
        return None if child is None else f"{child}[]"
    if t.id == "array":
        child = wire_sql_type(kids[0])
        return None if child is None else f"{child}[{dict(t.children)['size']}]"
    if t.id == "map":
        key, value = wire_sql_type(kids[0]), wire_sql_type(kids[1])
        if key is None and value is None:
            return None
        return f"MAP({key or kids[0]}, {value or kids[1]})"
    if t.id in ("struct", "union", "tuple"):
        named = members(t)
        wired = [wire_sql_type(c) for _, c in named]
        if all(w is None for w in wired):
            return None
        if t.id == "tuple":  # an unnamed struct (row(1, 'a')): its members have no names
            return (
                f"TUPLE({', '.join(str(w or c) for (_, c), w in zip(named, wired, strict=True))})"
            )
        inner = ", ".join(f"{_quote(n)} {w or c}" for (n, c), w in zip(named, wired, strict=True))
        return f"{t.id.upper()}({inner})"
    return None


#: Past this many microseconds an INTERVAL's Arrow export (``month_day_nano``: nanoseconds in
#: an int64) wraps around: ``INTERVAL 3000000 HOUR`` came out as -88,503 days.
_NANOS_LIMIT = (2**63 - 1) // 1000


def _interval_sql(name: str) -> str:
    """An INTERVAL column whose microseconds Arrow's nanoseconds cannot hold (over 292 years of
    them: ``to_seconds(12345678901)``, ``INTERVAL 3000000 HOUR``) with its whole days moved from
    the microseconds to the days: the same length, equal to the original in DuckDB
    (``INTERVAL 25 HOUR = INTERVAL '1 day 1 hour'``), where DuckDB's own export wrapped it
    around (before s36 the DB-API, ``fetch_arrow_table`` and Flight answered ``INTERVAL 3000000
    HOUR`` as -88,503 days, silently). Any other interval is exported as it is. Only a
    top-level column: an interval inside a list or struct still wraps (docs/interfaces.md)."""
    micros = (
        f"(date_part('hour', {name})::HUGEINT * 3600000000"
        f" + date_part('minute', {name}) * 60000000 + date_part('microseconds', {name}))"
    )
    days = f"({micros} // 86400000000)::BIGINT"
    return (
        f"CASE WHEN abs({micros}) > {_NANOS_LIMIT} THEN {name} - to_microseconds({days} * "
        f"86400000000) + to_days({days}) ELSE {name} END"
    )


def members(t: DuckDBPyType) -> list[tuple[str, DuckDBPyType]]:
    """The named types nested in ``t``: a list's or array's ``child``, a map's ``key`` and
    ``value``, a struct's fields (an unnamed struct's, ``TUPLE``, named ``''``), a union's
    members (without its tag)."""
    if t.id not in ("list", "array", "map", "struct", "union", "tuple"):
        return []
    named = [(n, c) for n, c in t.children if isinstance(c, DuckDBPyType)]  # not an ARRAY size
    return named[1:] if t.id == "union" else named


def children(t: DuckDBPyType) -> list[DuckDBPyType]:
    """The types nested in ``t`` (see :func:`members`).

    Example:
        >>> [str(c) for c in children(duckdb.sqltype("MAP(VARCHAR, HUGEINT[2])"))]
        ['VARCHAR', 'HUGEINT[2]']
    """
    return [c for _, c in members(t)]


def _has_decimal(t: DuckDBPyType) -> bool:
    return t.id in _AS_DECIMAL or any(_has_decimal(c) for c in children(t))


def _arrow_target(arrow: pa.DataType, t: DuckDBPyType) -> pa.DataType:
    """``arrow`` (the export of the cast column) with each HUGEINT/UHUGEINT leaf, exported as
    text, made ``decimal256(39, 0)``."""
    if t.id in _AS_DECIMAL:
        return _WIDE
    if not _has_decimal(t):
        return arrow
    if isinstance(arrow, pa.ListType | pa.LargeListType | pa.FixedSizeListType):
        f = arrow.value_field
        child = f.with_type(_arrow_target(f.type, children(t)[0]))
        if isinstance(arrow, pa.FixedSizeListType):
            return pa.list_(child, arrow.list_size)
        return pa.large_list(child) if isinstance(arrow, pa.LargeListType) else pa.list_(child)
    if isinstance(arrow, pa.MapType):
        key_type, value_type = children(t)
        key = arrow.key_field.with_type(_arrow_target(arrow.key_type, key_type))
        item = arrow.item_field.with_type(_arrow_target(arrow.item_type, value_type))
        return pa.map_(key, item, keys_sorted=arrow.keys_sorted)
    if isinstance(arrow, pa.StructType):
        kids = children(t)
        return pa.struct(
            [arrow.field(i).with_type(_arrow_target(arrow.field(i).type, kids[i])) for i in
             range(arrow.num_fields)]
        )  # fmt: skip
    return arrow  # a union holding a HUGEINT keeps it as text (pyarrow cannot cast unions)


_NULL_TYPE = re.compile(r'"NULL"(?=$|[\[,)])')


def type_name(t: DuckDBPyType) -> str:
    """DuckDB's name of ``t``, with its untyped NULL written ``NULL`` as florsql states it
    everywhere (``SHOW COLUMNS``, ``information_schema``, the DB-API, Flight SQL's
    ``TYPE_NAME``): DuckDB's ``str`` quotes it (``"NULL"``, ``"NULL"[]``) like an identifier.

    Example:
        >>> type_name(duckdb.sqltype("INTEGER[]"))
        'INTEGER[]'
        >>> [type_name(t) for t in duckdb.sql("SELECT NULL, [NULL], {'NULL': NULL}").types]
        ['NULL', 'NULL[]', 'STRUCT("NULL" NULL)']
    """
    return _NULL_TYPE.sub("NULL", str(t))


_BARE_NULL = re.compile(r'(?<![\w"])NULL(?=$|[\[,)])')


def parse_type(name: str) -> DuckDBPyType:
    """The DuckDB type :func:`type_name` (or DuckDB) names.

    Example:
        >>> str(parse_type('STRUCT("NULL" NULL[], b INTEGER)'))
        'STRUCT("NULL" "NULL"[], b INTEGER)'
    """
    spelled = _BARE_NULL.sub('"NULL"', name)
    simple = _simple_types().get(spelled)
    # ``duckdb.sqltype`` starts DuckDB's default connection at its first call (~20 ms of a
    # one-shot query's rendering, measured); the plain types need none.
    return simple if simple is not None else duckdb.sqltype(spelled)


@functools.cache
def _simple_types() -> dict[str, DuckDBPyType]:
    """The types without parameters or children, by the name DuckDB gives them."""
    from duckdb import sqltypes

    found = (getattr(sqltypes, n) for n in dir(sqltypes) if n.isupper())
    return {str(t): t for t in found if isinstance(t, DuckDBPyType)}


def _exact_query(sql: str, types: tuple[DuckDBPyType, ...]) -> str | None:
    """``sql`` with each column whose Arrow export is not exact rewritten (see the module);
    None when every column's is (``sql`` runs as it is)."""
    wired = [wire_sql_type(t) for t in types]
    intervals = [t.id == "interval" for t in types]
    if all(w is None for w in wired) and not any(intervals):
        return None
    names = [f"c{i}" for i in range(len(types))]
    select = ", ".join(
        _interval_sql(n) if iv else n if w is None else f"CAST({n} AS {w})"
        for n, w, iv in zip(names, wired, intervals, strict=True)
    )
    return f"SELECT {select} FROM ({sql}) AS __flor_exact({', '.join(names)})"


def run_exact(
    con: duckdb.DuckDBPyConnection, sql: str
) -> tuple[pa.Table, tuple[DuckDBPyType, ...]]:
    """Run ``sql`` and return its rows as exact Arrow (see the module) and its DuckDB types."""
    rel = con.sql(sql)
    types = tuple(rel.types)
    wired = [wire_sql_type(t) for t in types]
    query = _exact_query(sql, types)
    if query is None:
        table = rel.to_arrow_table()
    else:
        table = con.sql(query).to_arrow_table()
        table = table.rename_columns(rel.columns)
        for i, t in enumerate(types):
            if wired[i] is not None and _has_decimal(t):
                column = table.column(i)
                target = _arrow_target(column.type, t)
                if target != column.type:
                    table = table.set_column(
                        i, table.field(i).with_type(target), column.cast(target)
                    )
    fields = [
        f.with_metadata({**(f.metadata or {}), TYPE_KEY: type_name(t).encode()})
        for f, t in zip(table.schema, types, strict=True)
    ]
    schema = pa.schema(fields, metadata=table.schema.metadata)
    return pa.Table.from_arrays(table.columns, schema=schema), types


#: Rows per batch DuckDB hands a stream (:func:`stream_exact`): its own vector size times 60.
STREAM_ROWS = 122_880


class ExactStream:
    """The rows of a query as they are computed: ``schema`` (as :func:`run_exact`'s table has
    it), then its record batches, each read once. Whoever holds it closes it (:meth:`close`),
    read to the end or not: that stops DuckDB and then runs the hooks given to
    :meth:`on_close` (the engine's cursor goes back), once. Reading it to its end, or an error
    while reading, closes it too."""

    def __init__(
        self, schema: pa.Schema, batches: Iterator[pa.RecordBatch], empty: pa.Table | None = None
    ) -> None:
        self.schema = schema
        #: no rows, this schema (``schema.empty_table()`` cannot make every type: a union)
        self.empty = empty if empty is not None else schema.empty_table()
        self._source = batches  # DuckDB's reader: closed first
        self._batches = batches
        self._hooks: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._done = False
        self._first: list[pa.RecordBatch | None] | None = None  # from :meth:`prefetch`
        self.closed = False

    def on_close(self, hook: Callable[[], None]) -> None:
        with self._lock:
            if not self._done:
                self._hooks.append(hook)
                return
        hook()

    def with_metadata(self, metadata: dict[bytes, bytes]) -> ExactStream:
        """This stream, its schema's metadata replaced (before it is read)."""
        schema = self.schema.with_metadata(metadata)
        batches = self._batches
        self.schema = schema
        self.empty = self.empty.replace_schema_metadata(metadata)
        self._batches = (_retag(b, schema) for b in batches)
        if self._first is not None and self._first[0] is not None:
            self._first = [_retag(self._first[0], schema)]
        return self

    def prefetch(self) -> None:
        """Compute the first batch now (it is kept for the reader): a query that must see
        every row before its first (an aggregate, a sort) does all its work here, where the
        caller can time and interrupt it. Errors raise here, and close the stream."""
        if self._first is not None or self.closed:
            return
        try:
            self._first = [next(iter(self._batches), None)]
        except BaseException:
            self.close()
            raise

    def __iter__(self) -> Iterator[pa.RecordBatch]:
        try:
            first, self._first = self._first, None
            if first is not None:
                if first[0] is None:
                    return
                yield first[0]
            for batch in self._batches:
                if self.closed:
                    return
                yield batch
        finally:
            self.closed = True
            self._finish()

    def read_all(self) -> pa.Table:
        """Every batch not read yet, as one table of :attr:`schema`."""
        return pa.Table.from_batches(list(self), schema=self.schema)

    def close(self) -> None:
        """Stop the stream. From another thread while it is being read: it stops after the
        batch being read, and the hooks run then."""
        self.closed = True
        self._finish()

    def _finish(self) -> None:
        close = getattr(self._source, "close", None)
        try:
            if close is not None:
                close()
        except ValueError:  # being read on another thread now: that thread finishes
            return
        with self._lock:
            if self._done:
                return
            self._done = True
            hooks, self._hooks = self._hooks, []
        for hook in hooks:
            hook()


def _retag(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(batch.columns, schema=schema)


def stream_exact(
    con: duckdb.DuckDBPyConnection,
    sql: str,
    *,
    rename: Callable[[list[str]], list[str]] | None = None,
    translate: Callable[[Exception], Exception] | None = None,
    batch_rows: int = STREAM_ROWS,
) -> tuple[ExactStream, tuple[DuckDBPyType, ...]]:
    """:func:`run_exact` as a stream: the same types and values, batch by batch, computed as
    they are read (a result of any size in bounded memory). ``rename`` maps DuckDB's column
    names to the result's (asked before the stream opens, so it may query ``con``);
    ``translate`` turns an error DuckDB raises while the rows are read into the one to raise.

    Here the query is bound and its schema found (``LIMIT 0``: binding errors raise here) in
    a transaction of ``con``, which then pins what the rows are read from: they are the data
    as it was here, however long the stream waits to be read and whatever changes meanwhile.
    Nothing runs until the first batch is asked for, so a stream never read costs an open
    transaction, no work. ``con`` runs nothing else until the stream is closed, which ends the
    transaction.

    Example:
        >>> con = duckdb.connect()
        >>> stream, types = stream_exact(con, "SELECT 1::UHUGEINT << 127 AS x FROM range(3)")
        >>> stream.schema.field("x").type, [str(t) for t in types], stream.read_all().num_rows
        (Decimal256Type(decimal256(39, 0)), ['UHUGEINT'], 3)
    """
    con.execute("BEGIN TRANSACTION")
    try:
        rel = con.sql(sql)
        types = tuple(rel.types)
        columns = list(rel.columns)
        names = rename(columns) if rename is not None else columns
        wired = [wire_sql_type(t) for t in types]
        query = _exact_query(sql, types) or sql
        found = con.sql(f"SELECT * FROM ({query}) AS __flor_schema LIMIT 0").to_arrow_table()
    except BaseException:
        with contextlib.suppress(Exception):
            con.execute("ROLLBACK")
        raise
    targets: list[pa.DataType | None] = []
    fields = []
    for i, (f, t) in enumerate(zip(found.schema, types, strict=True)):
        target = _arrow_target(f.type, t) if wired[i] is not None and _has_decimal(t) else None
        targets.append(target if target is not None and target != f.type else None)
        field = pa.field(names[i], targets[-1] or f.type, f.nullable, f.metadata)
        fields.append(field.with_metadata({**(f.metadata or {}), TYPE_KEY: type_name(t).encode()}))
    schema = pa.schema(fields, metadata=found.schema.metadata)

    def batches() -> Iterator[pa.RecordBatch]:
        reader = None
        try:
            reader = con.sql(query).to_arrow_reader(batch_rows)
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                arrays = [
                    col if target is None else col.cast(target)
                    for col, target in zip(batch.columns, targets, strict=True)
                ]
                yield pa.RecordBatch.from_arrays(arrays, schema=schema)
        except Exception as e:
            raise (translate(e) if translate is not None else e) from e
        finally:
            if reader is not None:
                reader.close()

    def end() -> None:
        with contextlib.suppress(Exception):  # the connection may be closed already
            con.execute("ROLLBACK")

    empty = pa.Table.from_arrays(
        [c if t is None else c.cast(t) for c, t in zip(found.columns, targets, strict=True)],
        schema=schema,
    )
    stream = ExactStream(schema, batches(), empty)
    stream.on_close(end)
    return stream, types
