"""PEP 249 type objects and constructors.

A column's ``type_code`` in ``Cursor.description`` is its DuckDB type name (``"DOUBLE"``,
``"VARCHAR"``, ``"TIMESTAMP WITH TIME ZONE"``); it compares equal to the type object of its kind.
"""

from __future__ import annotations

import datetime
import time

__all__ = [
    "BINARY",
    "DATETIME",
    "NUMBER",
    "ROWID",
    "STRING",
    "Binary",
    "DBAPITypeObject",
    "Date",
    "DateFromTicks",
    "Time",
    "TimeFromTicks",
    "Timestamp",
    "TimestampFromTicks",
    "base_type",
]


def base_type(type_code: str) -> str:
    """``"DECIMAL(18,3)"`` -> ``"DECIMAL"``; list and struct types keep their outer form.

    Example:
        >>> base_type("decimal(18, 3)"), base_type("VARCHAR[]")
        ('DECIMAL', 'VARCHAR[]')
    """
    name = type_code.upper().strip()
    if name.endswith("]"):
        return name
    return name.split("(")[0].strip()


class DBAPITypeObject:
    """A set of DuckDB type names that compares equal to each of them."""

    def __init__(self, *names: str) -> None:
        self.names = frozenset(names)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DBAPITypeObject):
            return self.names == other.names
        if isinstance(other, str):
            return base_type(other) in self.names
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.names)

    def __repr__(self) -> str:
        return f"DBAPITypeObject({', '.join(sorted(self.names))})"


STRING = DBAPITypeObject("VARCHAR", "CHAR", "BPCHAR", "TEXT", "STRING", "JSON", "UUID", "ENUM")
BINARY = DBAPITypeObject("BLOB", "BYTEA", "VARBINARY", "BIT", "BITSTRING")
NUMBER = DBAPITypeObject(
    "BOOLEAN", "TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
    "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE", "DECIMAL", "REAL", "VARINT", "BIGNUM",
)  # fmt: skip
DATETIME = DBAPITypeObject(
    "DATE", "TIME", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ", "TIMESTAMP_S",
    "TIMESTAMP_MS", "TIMESTAMP_NS", "TIME WITH TIME ZONE", "TIMETZ", "INTERVAL",
)  # fmt: skip
ROWID = DBAPITypeObject()  # logs has no row ids

Date = datetime.date
Time = datetime.time
Timestamp = datetime.datetime
Binary = bytes


def DateFromTicks(ticks: float) -> datetime.date:
    return Date(*time.localtime(ticks)[:3])


def TimeFromTicks(ticks: float) -> datetime.time:
    return Time(*time.localtime(ticks)[3:6])


def TimestampFromTicks(ticks: float) -> datetime.datetime:
    return Timestamp(*time.localtime(ticks)[:6])
