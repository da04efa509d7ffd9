"""Exact results: DuckDB's Arrow export, with every type whose export loses or garbles the value
replaced by one that keeps it.

DuckDB 2 exports most types to their natural Arrow type, exactly. A few it does not:

- ``BIGNUM`` (an integer literal past ``HUGEINT``'s range) as an opaque binary blob of DuckDB's
  own encoding;
- ``UHUGEINT`` as ``decimal128(38, 0)``, which wraps values past 2**127 to negative numbers, and
  ``HUGEINT`` as ``decimal128(38, 0)`` holding 39-digit values, which Arrow calls invalid;
- ``BIT`` as binary in DuckDB's internal layout (a padding byte, then the bits);
- ``TIME WITH TIME ZONE`` as a plain ``time64``, without its offset.

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

import functools
import re

import duckdb
import pyarrow as pa
from duckdb.sqltypes import DuckDBPyType

__all__ = [
    "TYPE_KEY",
    "children",
    "members",
    "parse_type",
    "run_exact",
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


def run_exact(
    con: duckdb.DuckDBPyConnection, sql: str
) -> tuple[pa.Table, tuple[DuckDBPyType, ...]]:
    """Run ``sql`` and return its rows as exact Arrow (see the module) and its DuckDB types."""
    rel = con.sql(sql)
    types = tuple(rel.types)
    wired = [wire_sql_type(t) for t in types]
    if all(w is None for w in wired):
        table = rel.to_arrow_table()
    else:
        names = [f"c{i}" for i in range(len(types))]
        select = ", ".join(
            f"{n}" if w is None else f"CAST({n} AS {w})" for n, w in zip(names, wired, strict=True)
        )
        aliases = ", ".join(names)
        table = con.sql(f"SELECT {select} FROM ({sql}) AS __flor_exact({aliases})").to_arrow_table()
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
