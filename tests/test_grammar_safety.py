"""florsql is read-only: every refused statement class and every refused function, with its
message and position, wherever in a query it hides."""

from __future__ import annotations

import duckdb
import pytest

from florsql.errors import ParseError
from florsql.grammar import (
    ALLOWED_TABLE_FUNCTIONS,
    REFUSED_FUNCTIONS,
    REFUSED_PREFIXES,
    parse,
)
from florsql.grammar.placeholders import refusal as placeholder_refusal
from florsql.grammar.safety import FETCH_PERCENT, FETCH_TIES, SET_OPERAND_LIMIT

WRITES = "queries may only read; use the record API to write"
FILES = "it reads or writes files outside florsql's store"
ENGINE = "it changes the DuckDB engine florsql runs on"
CATALOG = "florsql queries see only florsql's own relations"
TRANSACTIONS = "florsql runs each query in its own read-only transaction"
DYNAMIC = "florsql runs only the statement it is given"
SET_REFUSED = "SET of DuckDB options is not allowed; florsql settings: replay, executor"
SHOW_HINT = "is not supported in florsql; use SHOW RUNS or SHOW COLUMNS FROM <table>"


def refused(keyword: str, why: str) -> str:
    return f"florsql is read-only: {keyword} is not allowed ({why})"


def refusal(sql: str) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse(sql)
    return info.value


STATEMENTS = [
    ("INSERT INTO logs VALUES (1)", refused("INSERT", WRITES)),
    ("INSERT OR REPLACE INTO logs SELECT * FROM logs", refused("INSERT", WRITES)),
    ("WITH t AS (SELECT 1) INSERT INTO logs SELECT * FROM t", refused("INSERT", WRITES)),
    ("UPDATE logs SET loss = 0", refused("UPDATE", WRITES)),
    ("UPDATE EXTENSIONS", refused("UPDATE", WRITES)),
    ("DELETE FROM logs WHERE loss > 1", refused("DELETE", WRITES)),
    (
        "MERGE INTO logs USING runs ON logs.run_id = runs.run_id WHEN MATCHED THEN DELETE",
        refused("MERGE", WRITES),
    ),
    ("TRUNCATE logs", refused("TRUNCATE", WRITES)),
    ("CREATE TABLE t (x INT)", refused("CREATE TABLE", WRITES)),
    ("CREATE OR REPLACE TABLE t AS SELECT * FROM logs", refused("CREATE TABLE", WRITES)),
    ("CREATE TEMP VIEW v AS SELECT 1", refused("CREATE VIEW", WRITES)),
    ("CREATE MACRO m(a) AS a + 1", refused("CREATE MACRO", WRITES)),
    ("CREATE SECRET s (TYPE s3, KEY_ID 'k')", refused("CREATE", WRITES)),
    ("CREATE SEQUENCE s", refused("CREATE SEQUENCE", WRITES)),
    ("DROP TABLE logs", refused("DROP TABLE", WRITES)),
    ("DROP SECRET s", refused("DROP", WRITES)),
    ("ALTER TABLE logs ADD COLUMN x INT", refused("ALTER TABLE", WRITES)),
    ("COMMENT ON TABLE logs IS 'x'", refused("COMMENT", WRITES)),
    ("GRANT SELECT ON logs TO someone", refused("GRANT", WRITES)),
    ("COPY logs TO 'out.csv'", refused("COPY", FILES)),
    ("COPY logs FROM 'in.csv'", refused("COPY", FILES)),
    ("COPY (SELECT * FROM logs) TO 'out.parquet' (FORMAT parquet)", refused("COPY", FILES)),
    ("EXPORT DATABASE 'dir' (FORMAT parquet)", refused("EXPORT", FILES)),
    ("IMPORT DATABASE 'dir'", refused("IMPORT", FILES)),
    ("ATTACH 'other.db' AS other", refused("ATTACH", CATALOG)),
    ("ATTACH DATABASE ':memory:' AS m", refused("ATTACH", CATALOG)),
    ("DETACH other", refused("DETACH", CATALOG)),
    ("USE other", refused("USE", CATALOG)),
    ("INSTALL httpfs", refused("INSTALL", ENGINE)),
    ("FORCE INSTALL httpfs FROM community", refused("INSTALL", ENGINE)),
    ("LOAD httpfs", refused("LOAD", ENGINE)),
    ("LOAD '/tmp/evil.duckdb_extension'", refused("LOAD", ENGINE)),
    ("PRAGMA enable_profiling", refused("PRAGMA", ENGINE)),
    ("PRAGMA table_info('logs')", refused("PRAGMA", ENGINE)),
    ("CALL duckdb_settings()", refused("CALL", ENGINE)),
    ("CHECKPOINT", refused("CHECKPOINT", ENGINE)),
    ("FORCE CHECKPOINT", refused("FORCE", ENGINE)),
    ("VACUUM", refused("VACUUM", ENGINE)),
    ("ANALYZE logs", refused("ANALYZE", ENGINE)),
    ("RESET threads", refused("RESET", ENGINE)),
    ("BEGIN", refused("BEGIN", TRANSACTIONS)),
    ("BEGIN TRANSACTION", refused("BEGIN", TRANSACTIONS)),
    ("START TRANSACTION", refused("START", TRANSACTIONS)),
    ("COMMIT", refused("COMMIT", TRANSACTIONS)),
    ("END", refused("END", TRANSACTIONS)),
    ("ROLLBACK", refused("ROLLBACK", TRANSACTIONS)),
    ("ABORT", refused("ABORT", TRANSACTIONS)),
    ("PREPARE p AS SELECT 1", refused("PREPARE", DYNAMIC)),
    ("EXECUTE p", refused("EXECUTE", DYNAMIC)),
    ("DEALLOCATE p", refused("DEALLOCATE", DYNAMIC)),
    ("SET threads = 4", SET_REFUSED),
    ("SET threads TO 4", SET_REFUSED),
    ("SET GLOBAL threads = 4", SET_REFUSED),
    ("SET enable_external_access = true", SET_REFUSED),
    ("SET VARIABLE x = 1", SET_REFUSED),
    ("SET x TO DEFAULT", SET_REFUSED),
    (
        "SET replay = 'auto', threads = 4",
        "SET replay takes a single value and no scope: SET replay = 'auto' | 'confirm' | 'off'",
    ),
    (
        "SET SESSION replay = 'off'",
        "SET replay takes a single value and no scope: SET replay = 'auto' | 'confirm' | 'off'",
    ),
    ("DESCRIBE logs", "DESCRIBE is not supported in florsql; use SHOW COLUMNS FROM <table>"),
    ("DESCRIBE SELECT 1", "DESCRIBE is not supported in florsql; use SHOW COLUMNS FROM <table>"),
    ("SUMMARIZE logs", "SUMMARIZE is not supported in florsql; use SELECT with aggregates"),
    ("SHOW TABLES", f"SHOW TABLES {SHOW_HINT}"),
    ("SHOW ALL TABLES", f"SHOW ALL TABLES {SHOW_HINT}"),
    ("SHOW DATABASES", f"SHOW DATABASES {SHOW_HINT}"),
    ("SHOW logs", f"SHOW logs {SHOW_HINT}"),
    (
        "EXPLAIN ANALYZE SELECT * FROM logs",
        "EXPLAIN ANALYZE is not supported: florsql's EXPLAIN shows the replay plan and its cost "
        "without running anything",
    ),
]


@pytest.mark.parametrize(("sql", "message"), STATEMENTS, ids=[s for s, _ in STATEMENTS])
def test_refused_statement(sql: str, message: str) -> None:
    error = refusal(sql)
    assert error.message == message
    assert (error.line, error.col) == (1, 1)  # a statement is refused at its start


@pytest.mark.parametrize(
    ("sql", "message", "col"),
    [
        ("EXPLAIN INSERT INTO t VALUES (1)", refused("INSERT", WRITES), 9),
        ("EXPLAIN DELETE FROM logs", refused("DELETE", WRITES), 9),
        ("EXPLAIN COPY logs TO 'x.csv'", refused("COPY", FILES), 9),
        ("EXPLAIN SHOW RUNS", "EXPLAIN takes a query (SELECT ...), not SHOW RUNS", 9),
        ("EXPLAIN SET replay = 'off'", "EXPLAIN takes a query (SELECT ...), not SET replay", 9),
        ("EXPLAIN EXPLAIN SELECT 1", "EXPLAIN takes a query (SELECT ...), not EXPLAIN", 9),
        ("SELECT * INTO t FROM logs", refused("SELECT ... INTO", WRITES), 15),
        (
            "WITH t AS (INSERT INTO x VALUES (1) RETURNING *) SELECT * FROM t",
            refused("INSERT", WRITES),
            24,
        ),
        ("SELECT 1 INTO t", refused("SELECT ... INTO", WRITES), 15),
    ],
)
def test_refused_statement_nested(sql: str, message: str, col: int) -> None:
    error = refusal(sql)
    assert (error.message, error.line, error.col) == (message, 1, col)


@pytest.mark.parametrize(
    ("sql", "message", "col"),
    [
        ("SELECT lr FROM runs ORDER BY lr FETCH FIRST 2 ROWS WITH TIES", FETCH_TIES, 45),
        ("FROM (FROM runs ORDER BY lr FETCH NEXT 1 ROW WITH TIES)", FETCH_TIES, 40),
        ("SELECT lr FROM runs ORDER BY lr FETCH FIRST 50 PERCENT ROWS ONLY", FETCH_PERCENT, 45),
    ],
)
def test_fetch_forms_duckdb_lacks_are_refused(sql: str, message: str, col: int) -> None:
    """sqlglot writes ``FETCH FIRST n ROWS WITH TIES`` and ``FETCH FIRST n PERCENT ROWS ONLY``
    for DuckDB as ``LIMIT n``: the ties dropped, a percentage read as a row count. Neither has
    a DuckDB form, so florsql refuses them and says what to write."""
    error = refusal(sql)
    assert (error.message, error.line, error.col) == (message, 1, col)
    fetch = "SELECT x FROM range(5) t(x) ORDER BY x OFFSET 1 ROW FETCH NEXT 2 ROWS ONLY"
    assert parse(fetch).duckdb_sql() == (
        "SELECT x FROM RANGE(0, 5) AS t(x) ORDER BY x LIMIT 2 OFFSET 1"
    )  # the form DuckDB has: accepted, and it means LIMIT


@pytest.mark.parametrize(
    ("sql", "col"),
    [
        ("SELECT 1 AS a UNION ALL SELECT 2 LIMIT 1 UNION ALL SELECT 3", 40),
        ("SELECT lr FROM runs LIMIT 1 UNION ALL SELECT 9", 27),
        ("SELECT 1 UNION ALL SELECT 2 OFFSET 1 UNION SELECT 5", 36),
        ("SELECT 1 LIMIT 1 EXCEPT SELECT 2", 16),
        ("FROM (SELECT 1 LIMIT 1 INTERSECT SELECT 1)", 22),
    ],
)
def test_limit_inside_a_set_operation_is_refused(sql: str, col: int) -> None:
    """DuckDB refuses LIMIT or OFFSET on an operand of UNION/EXCEPT/INTERSECT that is not in
    parentheses; sqlglot read it as the operand's own, so `SELECT 1 UNION ALL SELECT 2 LIMIT 1
    UNION ALL SELECT 3` answered 1, 2, 3 where a reader expects the LIMIT to cut what comes
    before it. Refused, saying how to write either meaning."""
    error = refusal(sql)
    assert (error.message, error.line, error.col) == (SET_OPERAND_LIMIT, 1, col)
    for fine in (
        "(SELECT 1 LIMIT 1) UNION ALL SELECT 2",
        "SELECT 1 UNION ALL (SELECT 2 LIMIT 0)",
        "SELECT 1 UNION ALL SELECT 2 ORDER BY 1 LIMIT 1 OFFSET 1",
        "WITH t AS (SELECT 1 UNION SELECT 2 LIMIT 1) SELECT * FROM t",
    ):
        parse(fine)


def test_statement_refused_in_a_script_points_at_that_statement() -> None:
    from florsql.grammar import parse_many

    with pytest.raises(ParseError) as info:
        parse_many("SELECT 1;\n  SHOW RUNS;\n  DROP TABLE logs;")
    assert (info.value.message, info.value.line, info.value.col) == (
        refused("DROP TABLE", WRITES),
        3,
        3,
    )


def function_message(name: str, why: str) -> str:
    return f"function {name} {why} and is not allowed in florsql queries"


@pytest.mark.parametrize(("name", "why"), sorted(REFUSED_FUNCTIONS.items()))
def test_refused_function_as_table_and_as_scalar(name: str, why: str) -> None:
    for sql in (f"SELECT * FROM {name}('/etc/passwd')", f"SELECT {name}('x', 1) FROM logs"):
        error = refusal(sql)
        assert error.message == function_message(name, why)
        assert (error.line, error.col) == (1, sql.index(name) + 1)


@pytest.mark.parametrize(("prefix", "why"), sorted(REFUSED_PREFIXES.items()))
def test_refused_prefix(prefix: str, why: str) -> None:
    name = f"{prefix}something_new"
    assert refusal(f"SELECT {name}(1)").message == function_message(name, why)
    assert refusal(f"SELECT * FROM {name}(1)").message == function_message(name, why)


def test_the_read_csv_of_the_issue() -> None:
    error = refusal("SELECT * FROM read_csv('/etc/passwd')")
    assert str(error) == (
        "function read_csv reads files and is not allowed in florsql queries\n"
        "  1 | SELECT * FROM read_csv('/etc/passwd')\n"
        "    |               ^"
    )


READ = "read_csv('/etc/passwd')"
HIDING_PLACES = [
    ("cte", "WITH t AS (SELECT * FROM {f}) SELECT * FROM t"),
    ("second cte", "WITH a AS (SELECT 1), b AS (FROM {f}) SELECT * FROM a, b"),
    ("subquery in where", "SELECT * FROM logs WHERE run_id IN (SELECT column0 FROM {f})"),
    ("exists", "SELECT * FROM logs WHERE EXISTS (FROM {f})"),
    ("scalar subquery", "SELECT (SELECT count(*) FROM {f}) AS n FROM logs"),
    ("from subquery", "SELECT * FROM (SELECT * FROM {f}) AS s"),
    ("parenthesized table", "SELECT * FROM ({f})"),
    ("join", "SELECT * FROM logs JOIN {f} AS p ON true"),
    ("left join subquery", "SELECT * FROM logs LEFT JOIN (FROM {f}) AS p ON true"),
    ("lateral function", "SELECT * FROM logs, LATERAL {f}"),
    ("lateral join", "SELECT * FROM logs CROSS JOIN LATERAL (SELECT * FROM {f}) AS p"),
    ("union branch", "SELECT run_id FROM logs UNION ALL SELECT * FROM {f}"),
    ("except branch", "SELECT run_id FROM logs EXCEPT (SELECT * FROM {f})"),
    ("function argument", "SELECT length(({f})) FROM logs"),
    ("scalar call", "SELECT upper(CAST({f} AS VARCHAR)) FROM logs"),
    ("lambda body", "SELECT list_transform([1], lambda x: {f}) FROM logs"),
    ("case", "SELECT CASE WHEN loss > 1 THEN {f} END FROM logs"),
    ("having", "SELECT run_id FROM logs GROUP BY ALL HAVING count(*) > (SELECT 1 FROM {f})"),
    ("qualify", "SELECT * FROM logs QUALIFY row_number() OVER () = (SELECT 1 FROM {f})"),
    ("order by", "SELECT * FROM logs ORDER BY (SELECT 1 FROM {f})"),
    ("window", "SELECT sum(loss) OVER (ORDER BY (SELECT 1 FROM {f})) FROM logs"),
    ("values", "SELECT * FROM (VALUES ((SELECT 1 FROM {f})))"),
    ("pivot source", "PIVOT (FROM {f}) ON a USING count(*)"),
    ("explain", "EXPLAIN SELECT * FROM {f}"),
    ("deep", "SELECT * FROM (SELECT * FROM (SELECT * FROM (SELECT * FROM {f})))"),
    ("schema-qualified", "SELECT * FROM system.main.{f}"),
    ("on clause", "SELECT * FROM logs JOIN runs ON runs.run_id = (SELECT 'x' FROM {f})"),
]


@pytest.mark.parametrize(("place", "template"), HIDING_PLACES, ids=[p for p, _ in HIDING_PLACES])
def test_file_function_refused_however_nested(place: str, template: str) -> None:
    sql = template.format(f=READ)
    error = refusal(sql)
    assert error.message == function_message("read_csv", "reads files"), place
    assert (error.line, error.col) == (1, sql.index("read_csv") + 1)


SCALAR_PLACES = [(p, t) for p, t in HIDING_PLACES if p != "schema-qualified"]


@pytest.mark.parametrize(("place", "template"), SCALAR_PLACES, ids=[p for p, _ in SCALAR_PLACES])
def test_environment_function_refused_however_nested(place: str, template: str) -> None:
    sql = template.format(f="(SELECT getenv('HOME'))")
    assert refusal(sql).message == function_message("getenv", "reads the environment"), place


def test_method_call_syntax_is_a_function_too() -> None:
    assert refusal("SELECT 'HOME'.getenv()").message == function_message(
        "getenv", "reads the environment"
    )
    assert refusal('SELECT "read_csv"(1)').message == function_message("read_csv", "reads files")


def test_multiline_refusal_position() -> None:
    error = refusal("SELECT run_id\nFROM logs\nWHERE lr IN (\n    FROM read_parquet('p'))")
    assert (error.line, error.col) == (4, 10)


TABLE_FUNCTION = (
    "table function {} is not allowed in florsql queries; FROM takes florsql's relations, "
    "subqueries, and range, generate_series or unnest"
)


@pytest.mark.parametrize(
    "name", ["json_each", "json_tree", "summary", "test_all_types", "my_macro"]
)
def test_table_functions_outside_the_allow_list(name: str) -> None:
    error = refusal(f"SELECT * FROM logs, {name}('x')")
    assert (error.message, error.col) == (TABLE_FUNCTION.format(name), 21)


def test_every_duckdb_table_function_is_refused_unless_allowed() -> None:
    con = duckdb.connect()
    names = {
        row[0]
        for row in con.sql(
            "SELECT function_name FROM duckdb_functions() "
            "WHERE function_type IN ('table', 'table_macro')"
        ).fetchall()
    }
    con.close()
    assert len(names) > 50
    for name in sorted(names - ALLOWED_TABLE_FUNCTIONS):
        with pytest.raises(ParseError):
            parse(f"SELECT * FROM {name}(1)")


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM range(10)",
        "SELECT * FROM range(1, 10, 2) AS r(i)",
        "SELECT * FROM generate_series(1, 3)",
        "SELECT * FROM unnest([1, 2, 3]) AS u(x)",
        "SELECT * FROM logs, unnest([1, 2]) AS u(x)",
        "SELECT * FROM logs CROSS JOIN LATERAL unnest([loss, lr]) AS u(v)",
        "SELECT unnest([1, 2]), generate_series(1, 2), range(3)",
        "SELECT read_count, getenv_like FROM logs",  # columns that only look like functions
        "SELECT * FROM read_csv_results",  # a table named like one
        "SELECT 'read_csv(x)', 'x.csv' FROM logs",  # strings as values are values
    ],
)
def test_allowed_reads(sql: str) -> None:
    assert parse(sql).kind == "select"


STRING_TABLE = (
    "a string as a table ('{}') reads a file in DuckDB; florsql queries may only read "
    "florsql's relations"
)
PATH_TABLE = (
    'table name "{}" looks like a file path, which DuckDB would read; florsql queries may only '
    "read florsql's relations"
)


@pytest.mark.parametrize(
    ("sql", "message", "col"),
    [
        ("SELECT * FROM 'runs.csv'", STRING_TABLE.format("runs.csv"), 15),
        ("FROM 'data.parquet'", STRING_TABLE.format("data.parquet"), 6),
        (
            "SELECT * FROM logs JOIN 's3://bucket/x.parquet' AS t USING (run_id)",
            STRING_TABLE.format("s3://bucket/x.parquet"),
            25,
        ),
        ("WITH t AS (FROM 'x') SELECT * FROM t", STRING_TABLE.format("x"), 17),
        ("SELECT * FROM logs WHERE run_id IN (FROM 'ids.csv')", STRING_TABLE.format("ids.csv"), 42),
        ("SHOW COLUMNS FROM 'logs.csv'", STRING_TABLE.format("logs.csv"), 19),
        ('SELECT * FROM "runs.csv"', PATH_TABLE.format("runs.csv"), 15),
        ('SELECT * FROM "/tmp/*.csv"', PATH_TABLE.format("/tmp/*.csv"), 15),
        ('SELECT * FROM "~/x"', PATH_TABLE.format("~/x"), 15),
        ('SELECT * FROM logs, "https://h/x.json"', PATH_TABLE.format("https://h/x.json"), 21),
        ("SELECT * FROM ?", "a parameter cannot stand for a table name", 15),
        ("SELECT * FROM logs WHERE lr > $1", placeholder_refusal("$1"), 31),
        ("SELECT * FROM logs WHERE lr > $lr", placeholder_refusal("$lr"), 31),
        ("SELECT * FROM logs WHERE lr > :lr", placeholder_refusal(":lr"), 31),
    ],
)
def test_tables_must_be_plain_names(sql: str, message: str, col: int) -> None:
    error = refusal(sql)
    assert (error.message, error.line, error.col) == (message, 1, col)


@pytest.mark.parametrize(
    ("sql", "col"),
    [("SET replay = 'maybe'", 14), ("SET replay = 1", 14), ("SET replay TO ''", 15)],
)
def test_replay_values(sql: str, col: int) -> None:
    error = refusal(sql)
    assert error.message.startswith("replay must be 'auto', 'confirm' or 'off', not ")
    assert (error.line, error.col) == (1, col)


def test_refusals_are_parse_errors_with_the_sql() -> None:
    error = refusal("DROP TABLE logs")
    assert isinstance(error, ParseError)
    assert error.sql == "DROP TABLE logs"


@pytest.mark.parametrize("sql", ["SELECT * FROM show(1)", "SELECT * FROM main.show(1, 2)"])
def test_a_call_sqlglot_reads_as_a_table_with_columns_is_refused_as_a_table_function(
    sql: str,
) -> None:
    """sqlglot reads ``show(1)`` in FROM as the table ``show`` with the column list ``(1)``
    (hypothesis found it in tests/test_sandbox_fuzz.py): the grammar let it through and only the
    planner refused the unknown relation. Now the grammar refuses it as the call it is."""
    with pytest.raises(ParseError, match="table function show is not allowed"):
        parse(sql)
    assert parse("SELECT * FROM logs AS l(a, b)").kind == "select"  # a real column list
