"""The catalog commands BI tools call, with exactly the result schemas of the Flight SQL spec.

florsql has one database: one catalog, ``florsql`` (:data:`florsql.grammar.CATALOG_NAME`, what
``current_database()`` and ``information_schema`` say too), and one schema, ``main`` (DuckDB's name
for it), whose tables are ``logs`` and the metadata relations, of type ``table``. It has no keys:
``GetPrimaryKeys``, ``GetExportedKeys``, ``GetImportedKeys`` and ``GetCrossReference`` answer no
rows, with the spec's schemas. Table schemas carry the Flight SQL column metadata
(:mod:`florsql.flight.xdbc`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pyarrow as pa

from florsql.flight import flight_sql_pb2 as pb
from florsql.flight import xdbc
from florsql.flight.service import TableInfo
from florsql.fold import fold
from florsql.grammar import CATALOG_NAME, SCHEMA_NAME

__all__ = [
    "CATALOGS_SCHEMA",
    "DB_SCHEMAS_SCHEMA",
    "FOREIGN_KEYS_SCHEMA",
    "PRIMARY_KEYS_SCHEMA",
    "TABLES_SCHEMA",
    "TABLES_SCHEMA_WITH_SCHEMA",
    "TABLE_TYPES_SCHEMA",
    "catalogs",
    "db_schemas",
    "like",
    "table_types",
    "tables",
    "xdbc_type_info",
]

SCHEMA = SCHEMA_NAME
CATALOGS_SCHEMA = pa.schema([pa.field("catalog_name", pa.utf8(), nullable=False)])
DB_SCHEMAS_SCHEMA = pa.schema(
    [pa.field("catalog_name", pa.utf8()), pa.field("db_schema_name", pa.utf8(), nullable=False)]
)
TABLES_SCHEMA = pa.schema(
    [
        pa.field("catalog_name", pa.utf8()),
        pa.field("db_schema_name", pa.utf8()),
        pa.field("table_name", pa.utf8(), nullable=False),
        pa.field("table_type", pa.utf8(), nullable=False),
    ]
)
TABLES_SCHEMA_WITH_SCHEMA = TABLES_SCHEMA.append(
    pa.field("table_schema", pa.binary(), nullable=False)
)
TABLE_TYPES_SCHEMA = pa.schema([pa.field("table_type", pa.utf8(), nullable=False)])


def like(pattern: str | None, name: str, escape: str = "\\") -> bool:
    """SQL LIKE as the spec's filter patterns use it: ``%`` any run, ``_`` one character,
    ignoring case as florsql's SQL names do (``FROM LOGS`` reads ``logs``, so ``LOGS`` and
    ``Lo%`` find it too).

    Example:
        >>> like("lo%", "logs"), like("l_gs", "logs"), like("runs", "logs"), like(None, "x")
        (True, True, False, True)
        >>> like("LOGS", "logs"), like("Lo%", "logs")
        (True, True)
    """
    if pattern is None:
        return True
    out, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == escape and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        out.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
        i += 1
    return re.fullmatch("".join(out), name, flags=re.DOTALL | re.IGNORECASE) is not None


def exact_name(pattern: str | None, name: str, escape: str = "\\") -> str:
    """``pattern`` as written when it spells ``name`` in another case, with ``_`` read as
    itself and no ``%`` (a client asking for one table by name); else ``name``.

    Example:
        >>> exact_name("LOGS", "logs"), exact_name("Log_Records", "log_records")
        ('LOGS', 'Log_Records')
        >>> exact_name("Lo%", "logs"), exact_name("l_gs", "logs"), exact_name(None, "logs")
        ('logs', 'logs', 'logs')
    """
    if pattern is None:
        return name
    literal, i = [], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == escape and i + 1 < len(pattern):
            literal.append(pattern[i + 1])
            i += 2
            continue
        if ch == "%":
            return name
        literal.append(ch)
        i += 1
    spelled = "".join(literal)
    return spelled if fold(spelled) == fold(name) else name


def catalogs() -> pa.Table:
    return pa.Table.from_pydict({"catalog_name": [CATALOG_NAME]}, schema=CATALOGS_SCHEMA)


def _catalog_matches(catalog: str | None) -> bool:
    """The spec's ``catalog`` is a name, not a pattern (``""``: tables without one); it ignores
    case as SQL does (``FLORSQL.main.logs`` reads ``logs``)."""
    return catalog is None or catalog.lower() == CATALOG_NAME.lower()


def db_schemas(cmd: pb.CommandGetDbSchemas) -> pa.Table:
    catalog = cmd.catalog if cmd.HasField("catalog") else None
    pattern = cmd.db_schema_filter_pattern if cmd.HasField("db_schema_filter_pattern") else None
    names = [SCHEMA] if _catalog_matches(catalog) and like(pattern, SCHEMA) else []
    return pa.Table.from_pydict(
        {"catalog_name": [CATALOG_NAME] * len(names), "db_schema_name": names},
        schema=DB_SCHEMAS_SCHEMA,
    )


def table_types(infos: Sequence[TableInfo]) -> pa.Table:
    kinds = sorted({t.table_type for t in infos})
    return pa.Table.from_pydict({"table_type": kinds}, schema=TABLE_TYPES_SCHEMA)


def _wanted(cmd: pb.CommandGetTables, info: TableInfo) -> bool:
    if not _catalog_matches(cmd.catalog if cmd.HasField("catalog") else None):
        return False
    if cmd.HasField("db_schema_filter_pattern") and not like(cmd.db_schema_filter_pattern, SCHEMA):
        return False
    if cmd.HasField("table_name_filter_pattern") and not like(
        cmd.table_name_filter_pattern, info.name
    ):
        return False
    # ``TABLE`` (JDBC's and ODBC's spelling) finds the ``table`` tables
    return not cmd.table_types or info.table_type.lower() in {t.lower() for t in cmd.table_types}


def tables(cmd: pb.CommandGetTables, infos: Sequence[TableInfo]) -> pa.Table:
    """Rows ordered by table name (catalog ``florsql``, schema ``main``), schemas IPC-serialized.

    A filter that names one table exactly in another case (``LOGS``) answers that table under
    the name as asked: ADBC's Flight SQL driver looks a table's schema up with GetTables and
    keeps only the rows whose name equals the one asked, exactly (``adbc_get_table_schema``).
    A pattern with a wildcard (``Lo%``) answers the tables' own names.
    """
    found = sorted((t for t in infos if _wanted(cmd, t)), key=lambda t: (t.name, t.table_type))
    pattern = cmd.table_name_filter_pattern if cmd.HasField("table_name_filter_pattern") else None
    names = [exact_name(pattern, t.name) for t in found]
    data: dict[str, list[object]] = {
        "catalog_name": [CATALOG_NAME] * len(found),
        "db_schema_name": [SCHEMA] * len(found),
        "table_name": list(names),
        "table_type": [t.table_type for t in found],
    }
    if not cmd.include_schema:
        return pa.Table.from_pydict(data, schema=TABLES_SCHEMA)
    data["table_schema"] = [
        xdbc.annotate(t.schema, t.types, table=name, db_schema=SCHEMA).serialize().to_pybytes()
        for t, name in zip(found, names, strict=True)
    ]
    return pa.Table.from_pydict(data, schema=TABLES_SCHEMA_WITH_SCHEMA)


def result_schema(cmd: object) -> pa.Schema:
    """The fixed result schema of a metadata command (for GetSchema and empty FlightInfos)."""
    if isinstance(cmd, pb.CommandGetCatalogs):
        return CATALOGS_SCHEMA
    if isinstance(cmd, pb.CommandGetDbSchemas):
        return DB_SCHEMAS_SCHEMA
    if isinstance(cmd, pb.CommandGetTables):
        return TABLES_SCHEMA_WITH_SCHEMA if cmd.include_schema else TABLES_SCHEMA
    if isinstance(cmd, pb.CommandGetTableTypes):
        return TABLE_TYPES_SCHEMA
    if isinstance(cmd, pb.CommandGetXdbcTypeInfo):
        return xdbc.XDBC_TYPE_INFO_SCHEMA
    if isinstance(cmd, pb.CommandGetPrimaryKeys):
        return PRIMARY_KEYS_SCHEMA
    if isinstance(cmd, pb.CommandGetExportedKeys | pb.CommandGetImportedKeys):
        return FOREIGN_KEYS_SCHEMA
    if isinstance(cmd, pb.CommandGetCrossReference):
        return FOREIGN_KEYS_SCHEMA
    raise TypeError(f"not a metadata command: {type(cmd).__name__}")


PRIMARY_KEYS_SCHEMA = pa.schema(
    [
        pa.field("catalog_name", pa.utf8()),
        pa.field("db_schema_name", pa.utf8()),
        pa.field("table_name", pa.utf8(), nullable=False),
        pa.field("column_name", pa.utf8(), nullable=False),
        pa.field("key_name", pa.utf8()),
        pa.field("key_sequence", pa.int32(), nullable=False),
    ]
)
#: GetExportedKeys, GetImportedKeys and GetCrossReference share it.
FOREIGN_KEYS_SCHEMA = pa.schema(
    [
        pa.field("pk_catalog_name", pa.utf8()),
        pa.field("pk_db_schema_name", pa.utf8()),
        pa.field("pk_table_name", pa.utf8(), nullable=False),
        pa.field("pk_column_name", pa.utf8(), nullable=False),
        pa.field("fk_catalog_name", pa.utf8()),
        pa.field("fk_db_schema_name", pa.utf8()),
        pa.field("fk_table_name", pa.utf8(), nullable=False),
        pa.field("fk_column_name", pa.utf8(), nullable=False),
        pa.field("key_sequence", pa.int32(), nullable=False),
        pa.field("fk_key_name", pa.utf8()),
        pa.field("pk_key_name", pa.utf8()),
        pa.field("update_rule", pa.uint8(), nullable=False),
        pa.field("delete_rule", pa.uint8(), nullable=False),
    ]
)


def xdbc_type_info(cmd: pb.CommandGetXdbcTypeInfo) -> pa.Table:
    return xdbc.xdbc_type_info(cmd.data_type if cmd.HasField("data_type") else None)
