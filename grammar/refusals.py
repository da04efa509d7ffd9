"""What florsql refuses, as data: statement classes, command keywords, and why functions are.

florsql answers questions about recorded runs; a query may only read florsql's own relations.
Every statement here would write, change the DuckDB engine florsql runs on, or read something
other than those relations (files, the network, other databases, settings, secrets, the
environment). Functions are allowed by a list (:mod:`florsql.grammar.functions`); the tables of
functions here only explain, in the refusal's message, why well-known ones are not on it.
:mod:`florsql.grammar.safety` applies these tables; the tests walk every entry.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from sqlglot import exp

__all__ = [
    "REFUSED_COMMANDS",
    "REFUSED_FUNCTIONS",
    "REFUSED_PREFIXES",
    "REFUSED_STATEMENTS",
    "UNSUPPORTED_STATEMENTS",
]

WRITES = "queries may only read; use the record API to write"
FILES = "it reads or writes files outside florsql's store"
ENGINE = "it changes the DuckDB engine florsql runs on"
CATALOG = "florsql queries see only florsql's own relations"
TRANSACTIONS = "florsql runs each query in its own read-only transaction"
DYNAMIC = "florsql runs only the statement it is given"

#: sqlglot statement class -> (keyword shown to the user, why it is refused).
REFUSED_STATEMENTS: Mapping[type[exp.Expr], tuple[str, str]] = MappingProxyType(
    {
        exp.Insert: ("INSERT", WRITES),
        exp.Update: ("UPDATE", WRITES),
        exp.Delete: ("DELETE", WRITES),
        exp.Merge: ("MERGE", WRITES),
        exp.TruncateTable: ("TRUNCATE", WRITES),
        exp.Create: ("CREATE", WRITES),
        exp.Drop: ("DROP", WRITES),
        exp.Alter: ("ALTER", WRITES),
        exp.Comment: ("COMMENT", WRITES),
        exp.Into: ("SELECT ... INTO", WRITES),
        exp.Grant: ("GRANT", WRITES),
        exp.Revoke: ("REVOKE", WRITES),
        exp.Copy: ("COPY", FILES),
        exp.LoadData: ("LOAD DATA", FILES),
        exp.Attach: ("ATTACH", CATALOG),
        exp.Detach: ("DETACH", CATALOG),
        exp.Use: ("USE", CATALOG),
        exp.ConnectTo: ("CONNECT", CATALOG),
        exp.Disconnect: ("DISCONNECT", CATALOG),
        exp.Install: ("INSTALL", ENGINE),
        exp.Pragma: ("PRAGMA", ENGINE),
        exp.Analyze: ("ANALYZE", ENGINE),
        exp.Cache: ("CACHE", ENGINE),
        exp.Uncache: ("UNCACHE", ENGINE),
        exp.Refresh: ("REFRESH", ENGINE),
        exp.Kill: ("KILL", ENGINE),
        exp.Declare: ("DECLARE", ENGINE),
        exp.Transaction: ("BEGIN", TRANSACTIONS),
        exp.Commit: ("COMMIT", TRANSACTIONS),
        exp.Rollback: ("ROLLBACK", TRANSACTIONS),
    }
)

#: Statements that only read, but that florsql does not offer: class -> the hint to show.
UNSUPPORTED_STATEMENTS: Mapping[type[exp.Expr], str] = MappingProxyType(
    {
        exp.Describe: "DESCRIBE is not supported in florsql; use SHOW COLUMNS FROM <table>",
        exp.Summarize: "SUMMARIZE is not supported in florsql; use SELECT with aggregates",
        exp.Show: "is not supported in florsql; use SHOW RUNS or SHOW COLUMNS FROM <table>",
    }
)

#: First keyword of a statement sqlglot keeps as an opaque ``Command`` -> why it is refused.
REFUSED_COMMANDS: Mapping[str, str] = MappingProxyType(
    {
        "LOAD": ENGINE,
        "INSTALL": ENGINE,
        "FORCE": ENGINE,
        "CALL": ENGINE,
        "CHECKPOINT": ENGINE,
        "VACUUM": ENGINE,
        "RESET": ENGINE,
        "OPTIMIZE": ENGINE,
        "EXPORT": FILES,
        "IMPORT": FILES,
        "COPY": FILES,
        "CREATE": WRITES,
        "DROP": WRITES,
        "ALTER": WRITES,
        "UPDATE": WRITES,
        "RENAME": WRITES,
        "COMMENT": WRITES,
        "ATTACH": CATALOG,
        "DETACH": CATALOG,
        "USE": CATALOG,
        "START": TRANSACTIONS,
        "END": TRANSACTIONS,
        "ABORT": TRANSACTIONS,
        "PREPARE": DYNAMIC,
        "EXECUTE": DYNAMIC,
        "DEALLOCATE": DYNAMIC,
        "UNLISTEN": ENGINE,
    }
)

_FILE = "reads files"
_NET = "reads files or the network"
_OTHER_DB = "reads another database"
_SQL = "runs SQL given as text"
_SETTINGS = "reads DuckDB's settings, secrets or catalog"
_STATE = "changes DuckDB's state"

#: Why well-known functions are not on the allow-list: lower-case name -> what it does.
REFUSED_FUNCTIONS: Mapping[str, str] = MappingProxyType(
    {
        **dict.fromkeys(
            (
                "read_csv",
                "read_csv_auto",
                "read_parquet",
                "parquet_scan",
                "read_json",
                "read_json_auto",
                "read_json_objects",
                "read_json_objects_auto",
                "read_ndjson",
                "read_ndjson_auto",
                "read_ndjson_objects",
                "read_text",
                "read_blob",
                "read_duckdb",
                "read_xlsx",
                "glob",
                "sniff_csv",
                "parquet_metadata",
                "parquet_schema",
                "parquet_file_metadata",
                "parquet_kv_metadata",
                "st_read",
            ),
            _FILE,
        ),
        **dict.fromkeys(("iceberg_scan", "iceberg_metadata", "delta_scan", "http_get"), _NET),
        **dict.fromkeys(
            (
                "sqlite_scan",
                "sqlite_attach",
                "postgres_scan",
                "postgres_attach",
                "postgres_query",
                "mysql_scan",
                "mysql_query",
            ),
            _OTHER_DB,
        ),
        **dict.fromkeys(
            (
                "query",
                "query_table",
                "json_execute_serialized_sql",
                "json_serialize_sql",
                "json_serialize_plan",
                "json_deserialize_sql",
            ),
            _SQL,
        ),
        **dict.fromkeys(
            (
                "current_setting",
                "duckdb_settings",
                "duckdb_secrets",
                "duckdb_extensions",
                "which_secret",
                "pragma_table_info",
                "getvariable",
                "in_search_path",
            ),
            _SETTINGS,
        ),
        "getenv": "reads the environment",
        **dict.fromkeys(
            (
                "load_extension",
                "write_log",
                "enable_logging",
                "disable_logging",
                "truncate_duckdb_logs",
                "checkpoint",
                "force_checkpoint",
                "nextval",
                "currval",
                "setval",
                "setseed",
                "add_grammar_extension",
                "remove_grammar_extension",
            ),
            _STATE,
        ),
    }
)

#: The same by name prefix: every DuckDB function named so reads outside florsql.
REFUSED_PREFIXES: Mapping[str, str] = MappingProxyType(
    {
        "read_": _FILE,
        "parquet_": _FILE,
        "st_read": _FILE,
        "iceberg_": _NET,
        "delta_": _NET,
        "http_": _NET,
        "sqlite_": _OTHER_DB,
        "postgres_": _OTHER_DB,
        "mysql_": _OTHER_DB,
        "duckdb_": _SETTINGS,
        "pragma_": _SETTINGS,
        "pg_": _SETTINGS,
        "has_": _SETTINGS,
    }
)
