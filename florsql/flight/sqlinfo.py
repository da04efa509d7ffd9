"""``CommandGetSqlInfo``: what the server says about itself, in the spec's dense-union shape."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version

import pyarrow as pa

__all__ = ["SQL_INFO_SCHEMA", "Int32", "server_info", "sql_info_table"]

#: The value union of the spec: type code i is the i-th child.
VALUE_TYPE = pa.dense_union(
    [
        pa.field("string_value", pa.utf8()),
        pa.field("bool_value", pa.bool_()),
        pa.field("bigint_value", pa.int64()),
        pa.field("int32_bitmask", pa.int32()),
        pa.field("string_list", pa.list_(pa.utf8())),
        pa.field("int32_to_int32_list_map", pa.map_(pa.int32(), pa.list_(pa.int32()))),
    ]
)
SQL_INFO_SCHEMA = pa.schema(
    [pa.field("info_name", pa.uint32(), nullable=False), pa.field("value", VALUE_TYPE, False)]
)


@dataclass(frozen=True)
class Int32:
    """An ``int32_bitmask`` value (enum ordinals and bitmasks), as opposed to a ``bigint``."""

    value: int


InfoValue = str | bool | int | Int32 | list[str]

# SqlInfo codes (the protocol's SqlInfo enum) and values of the enums they return.
SERVER_NAME, SERVER_VERSION, SERVER_ARROW_VERSION, SERVER_READ_ONLY = 0, 1, 2, 3
SERVER_SQL, SERVER_SUBSTRAIT, SERVER_TRANSACTION, SERVER_CANCEL = 4, 5, 8, 9
STATEMENT_TIMEOUT, TRANSACTION_TIMEOUT = 100, 101
DDL_CATALOG, DDL_SCHEMA, DDL_TABLE, IDENTIFIER_CASE, IDENTIFIER_QUOTE_CHAR = 500, 501, 502, 503, 504
QUOTED_IDENTIFIER_CASE, ALL_TABLES_SELECTABLE, NULL_ORDERING, KEYWORDS = 505, 506, 507, 508
SEARCH_STRING_ESCAPE, COLUMN_ALIASING, SCHEMA_TERM, CATALOG_TERM = 513, 515, 529, 531
TRANSACTIONS_SUPPORTED = 563
CASE_INSENSITIVE, NULLS_AT_END, TRANSACTION_NONE = 1, 3, 0

#: Statements florsql adds to DuckDB's SQL.
FLORSQL_KEYWORDS = ["EXPLAIN", "SHOW RUNS", "SHOW COLUMNS", "SET REPLAY"]


def _florsql_version() -> str:
    try:
        return version("florsql")
    except PackageNotFoundError:  # running from a checkout that was never installed
        return "0+unknown"


def server_info() -> dict[int, InfoValue]:
    """Every piece of SqlInfo the server answers, by code."""
    return {
        SERVER_NAME: "florsql",
        SERVER_VERSION: _florsql_version(),
        SERVER_ARROW_VERSION: pa.__version__,
        SERVER_READ_ONLY: True,
        SERVER_SQL: True,
        SERVER_SUBSTRAIT: False,
        SERVER_TRANSACTION: Int32(TRANSACTION_NONE),
        SERVER_CANCEL: True,  # CancelFlightInfo, CancelQuery; a running call: cancel it
        STATEMENT_TIMEOUT: Int32(600_000),  # prepared statements unused this long (ms) expire
        TRANSACTION_TIMEOUT: Int32(0),
        DDL_CATALOG: False,
        DDL_SCHEMA: False,
        DDL_TABLE: False,
        IDENTIFIER_CASE: Int32(CASE_INSENSITIVE),
        IDENTIFIER_QUOTE_CHAR: '"',
        QUOTED_IDENTIFIER_CASE: Int32(CASE_INSENSITIVE),
        ALL_TABLES_SELECTABLE: True,
        NULL_ORDERING: Int32(NULLS_AT_END),
        KEYWORDS: FLORSQL_KEYWORDS,
        SEARCH_STRING_ESCAPE: "\\",
        COLUMN_ALIASING: True,
        SCHEMA_TERM: "schema",
        CATALOG_TERM: "catalog",
        TRANSACTIONS_SUPPORTED: False,
    }


def _type_code(value: InfoValue) -> int:
    if isinstance(value, str):
        return 0
    if isinstance(value, bool):
        return 1
    if isinstance(value, int):
        return 2
    if isinstance(value, Int32):
        return 3
    return 4


def sql_info_table(wanted: Iterable[int] = ()) -> pa.Table:
    """The rows for the codes asked for (all known codes when none), unknown codes skipped.

    Example:
        >>> t = sql_info_table([0, 3, 9999])
        >>> t.column("info_name").to_pylist(), t.column("value").to_pylist()
        ([0, 3], ['florsql', True])
    """
    info = server_info()
    codes = [c for c in (list(wanted) or sorted(info)) if c in info]
    children: list[list[object]] = [[] for _ in VALUE_TYPE]
    type_ids: list[int] = []
    offsets: list[int] = []
    for code in codes:
        value = info[code]
        tid = _type_code(value)
        type_ids.append(tid)
        offsets.append(len(children[tid]))
        children[tid].append(value.value if isinstance(value, Int32) else value)
    arrays = [pa.array(vals, type=VALUE_TYPE.field(i).type) for i, vals in enumerate(children)]
    union = pa.UnionArray.from_dense(
        pa.array(type_ids, pa.int8()),
        pa.array(offsets, pa.int32()),
        arrays,
        [f.name for f in VALUE_TYPE],
        list(range(len(arrays))),
    )
    return pa.Table.from_arrays([pa.array(codes, pa.uint32()), union], schema=SQL_INFO_SCHEMA)
