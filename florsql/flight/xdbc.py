"""Column types as JDBC/ODBC (XDBC) tools see them: ``GetXdbcTypeInfo`` and the Flight SQL
column metadata (``ARROW:FLIGHT:SQL:TYPE_NAME``, ``PRECISION``, ...) on every schema the server
sends, so that ADBC's ``get_objects`` (``xdbc_type_name``), SQLAlchemy and JDBC tools show the
SQL type of each column instead of NULL.

Type names are DuckDB's (florsql answers in DuckDB's SQL): ``BIGINT``, ``DOUBLE``, ``VARCHAR``,
``TIMESTAMP WITH TIME ZONE``, ``DECIMAL(18,3)``, ``DOUBLE[]``...
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pyarrow as pa

__all__ = [
    "XDBC_TYPE_INFO_SCHEMA",
    "SqlType",
    "annotate",
    "sql_type",
    "xdbc_type_info",
]

PREFIX = "ARROW:FLIGHT:SQL:"

# XdbcDataType codes of the spec (the JDBC/ODBC ones).
UNKNOWN, DECIMAL, INTEGER, SMALLINT, REAL, DOUBLE, VARCHAR = 0, 3, 4, 5, 7, 8, 12
DATE, TIME, TIMESTAMP, VARBINARY, BIGINT, TINYINT, BIT = 91, 92, 93, -3, -5, -6, -7
NULLABLE, SEARCHABLE_FULL, SEARCHABLE_BASIC = 1, 3, 2

XDBC_TYPE_INFO_SCHEMA = pa.schema(
    [
        pa.field("type_name", pa.utf8(), nullable=False),
        pa.field("data_type", pa.int32(), nullable=False),
        pa.field("column_size", pa.int32()),
        pa.field("literal_prefix", pa.utf8()),
        pa.field("literal_suffix", pa.utf8()),
        pa.field("create_params", pa.list_(pa.field("item", pa.utf8(), nullable=False))),
        pa.field("nullable", pa.int32(), nullable=False),
        pa.field("case_sensitive", pa.bool_(), nullable=False),
        pa.field("searchable", pa.int32(), nullable=False),
        pa.field("unsigned_attribute", pa.bool_()),
        pa.field("fixed_prec_scale", pa.bool_(), nullable=False),
        pa.field("auto_increment", pa.bool_()),
        pa.field("local_type_name", pa.utf8()),
        pa.field("minimum_scale", pa.int32()),
        pa.field("maximum_scale", pa.int32()),
        pa.field("sql_data_type", pa.int32(), nullable=False),
        pa.field("datetime_subcode", pa.int32()),
        pa.field("num_prec_radix", pa.int32()),
        pa.field("interval_precision", pa.int32()),
    ]
)


@dataclass(frozen=True)
class SqlType:
    """One SQL type: its name, XDBC code, precision (digits, bits or characters) and scale."""

    name: str
    code: int
    precision: int | None = None
    scale: int | None = None
    radix: int | None = None
    unsigned: bool | None = None
    quote: str | None = None  # the literal's prefix and suffix

    @property
    def textual(self) -> bool:
        return self.code == VARCHAR


#: The types florsql's results have, as GetXdbcTypeInfo lists them.
TYPES: tuple[SqlType, ...] = (
    SqlType("BOOLEAN", BIT, 1),
    SqlType("TINYINT", TINYINT, 3, 0, 10, False),
    SqlType("UTINYINT", TINYINT, 3, 0, 10, True),
    SqlType("BIGINT", BIGINT, 19, 0, 10, False),
    SqlType("UBIGINT", BIGINT, 20, 0, 10, True),
    SqlType("BLOB", VARBINARY, quote="'"),
    SqlType("DECIMAL", DECIMAL, 38, None, 10, False),
    SqlType("INTEGER", INTEGER, 10, 0, 10, False),
    SqlType("UINTEGER", INTEGER, 10, 0, 10, True),
    SqlType("SMALLINT", SMALLINT, 5, 0, 10, False),
    SqlType("USMALLINT", SMALLINT, 5, 0, 10, True),
    SqlType("FLOAT", REAL, 24, None, 2, False),
    SqlType("DOUBLE", DOUBLE, 53, None, 2, False),
    SqlType("VARCHAR", VARCHAR, quote="'"),
    SqlType("DATE", DATE, 10, quote="'"),
    SqlType("TIME", TIME, 15, quote="'"),
    SqlType("TIMESTAMP", TIMESTAMP, 26, quote="'"),
    SqlType("TIMESTAMP WITH TIME ZONE", TIMESTAMP, 32, quote="'"),
)
_BY_NAME = {t.name: t for t in TYPES}


def xdbc_type_info(data_type: int | None = None) -> pa.Table:
    """The GetXdbcTypeInfo rows (all, or those of one XDBC code), ordered by code then name.

    Example:
        >>> xdbc_type_info(12).column("type_name").to_pylist()
        ['VARCHAR']
    """
    rows = sorted(
        (t for t in TYPES if data_type is None or t.code == data_type),
        key=lambda t: (t.code, t.name),
    )
    sortable = [t.code not in (VARBINARY,) for t in rows]
    data: dict[str, list[object]] = {
        "type_name": [t.name for t in rows],
        "data_type": [t.code for t in rows],
        "column_size": [t.precision for t in rows],
        "literal_prefix": [t.quote for t in rows],
        "literal_suffix": [t.quote for t in rows],
        "create_params": [["precision", "scale"] if t.code == DECIMAL else None for t in rows],
        "nullable": [NULLABLE] * len(rows),
        "case_sensitive": [t.textual for t in rows],
        "searchable": [SEARCHABLE_FULL if s else SEARCHABLE_BASIC for s in sortable],
        "unsigned_attribute": [t.unsigned for t in rows],
        "fixed_prec_scale": [False] * len(rows),
        "auto_increment": [False if t.radix == 10 else None for t in rows],
        "local_type_name": [t.name for t in rows],
        "minimum_scale": [0 if t.code == DECIMAL else None for t in rows],
        "maximum_scale": [38 if t.code == DECIMAL else None for t in rows],
        "sql_data_type": [t.code for t in rows],
        "datetime_subcode": [None] * len(rows),
        "num_prec_radix": [t.radix for t in rows],
        "interval_precision": [None] * len(rows),
    }
    return pa.Table.from_pydict(data, schema=XDBC_TYPE_INFO_SCHEMA)


def sql_type(arrow: pa.DataType, name: str | None = None) -> SqlType:
    """The SQL type of a column of Arrow type ``arrow`` (DuckDB's type name ``name`` if known).

    Example:
        >>> sql_type(pa.int64()).name, sql_type(pa.decimal128(18, 3)).name
        ('BIGINT', 'DECIMAL(18,3)')
        >>> t = sql_type(pa.list_(pa.float64()), "DOUBLE[]")
        >>> t.name, t.code
        ('DOUBLE[]', 0)
    """
    if pa.types.is_decimal(arrow):
        # HUGEINT and UHUGEINT travel as decimal256(39, 0) and keep their own names
        label = name if name and name.upper() in ("HUGEINT", "UHUGEINT") else None
        return SqlType(label or f"DECIMAL({arrow.precision},{arrow.scale})", DECIMAL,
                       arrow.precision, arrow.scale, 10, name == "UHUGEINT")  # fmt: skip
    guess = _arrow_name(arrow)
    known = _BY_NAME.get((name or guess or "").upper())
    if known is not None:
        return known
    return SqlType(name or guess or str(arrow).upper(), UNKNOWN)


def _arrow_name(t: pa.DataType) -> str | None:
    if pa.types.is_boolean(t):
        return "BOOLEAN"
    if pa.types.is_integer(t):
        base = {8: "TINYINT", 16: "SMALLINT", 32: "INTEGER", 64: "BIGINT"}[t.bit_width]
        return ("U" + base) if pa.types.is_unsigned_integer(t) else base
    if pa.types.is_float32(t):
        return "FLOAT"
    if pa.types.is_floating(t):
        return "DOUBLE"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "VARCHAR"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return "BLOB"
    if pa.types.is_date(t):
        return "DATE"
    if pa.types.is_time(t):
        return "TIME"
    if pa.types.is_timestamp(t):
        return "TIMESTAMP WITH TIME ZONE" if t.tz else "TIMESTAMP"
    if pa.types.is_null(t):
        return "NULL"
    if pa.types.is_dictionary(t):
        return _arrow_name(t.value_type)
    return None


def annotate(
    schema: pa.Schema,
    type_names: Sequence[str] = (),
    *,
    table: str | None = None,
    db_schema: str | None = None,
) -> pa.Schema:
    """``schema`` with the Flight SQL column metadata on every field.

    ``type_names`` are DuckDB's names of the columns' types, when known (else derived from
    the Arrow types). Every column is read-only and searchable; text is case-sensitive.

    Example:
        >>> s = annotate(pa.schema([("loss", pa.float64())]), table="logs")
        >>> s.field("loss").metadata[b"ARROW:FLIGHT:SQL:TYPE_NAME"]
        b'DOUBLE'
    """
    names = list(type_names) if len(type_names) == len(schema) else [None] * len(schema)
    fields = []
    for field, name in zip(schema, names, strict=True):
        t = sql_type(field.type, name)
        meta = dict(field.metadata or {})
        meta.update(_column_metadata(t, table=table, db_schema=db_schema))
        fields.append(field.with_metadata(meta))
    return pa.schema(fields, metadata=schema.metadata)


def _column_metadata(t: SqlType, *, table: str | None, db_schema: str | None) -> dict[str, str]:
    meta = {"TYPE_NAME": t.name}
    if t.precision is not None:
        meta["PRECISION"] = str(t.precision)
    if t.scale is not None:
        meta["SCALE"] = str(t.scale)
    if db_schema is not None:
        meta["DB_SCHEMA_NAME"] = db_schema
    if table is not None:
        meta["TABLE_NAME"] = table
    meta.update(
        IS_AUTO_INCREMENT="0",
        IS_CASE_SENSITIVE="1" if t.textual else "0",
        IS_READ_ONLY="1",
        IS_SEARCHABLE="1",
    )
    return {PREFIX + k: v for k, v in meta.items()}
