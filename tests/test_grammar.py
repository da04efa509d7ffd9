"""florsql.grammar: the florsql statements, Statement fields, scripts, and parse errors with
exact positions and caret snippets."""

from __future__ import annotations

import doctest
import importlib
import logging
import re
from pathlib import Path

import pytest
import sqlglot
from sqlglot import exp

import florsql.grammar
from florsql.errors import FlorError, ParseError, SqlError
from florsql.grammar import (
    REFUSED_FUNCTIONS,
    REFUSED_PREFIXES,
    Explain,
    SetReplay,
    ShowColumns,
    ShowRuns,
    node_position,
    parse,
    parse_many,
)

README = Path(florsql.grammar.__file__).parent / "README.md"


def error_of(sql: str) -> ParseError:
    with pytest.raises(ParseError) as info:
        parse_many(sql)
    return info.value


# --- florsql statements -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "sql",
    [
        "EXPLAIN SELECT run_id, avg(loss) FROM logs GROUP BY ALL",
        "explain select 1",
        "EXPLAIN FROM logs",
        "EXPLAIN WITH t AS (SELECT 1) SELECT * FROM t",
        "EXPLAIN PIVOT logs ON epoch USING avg(loss)",
        "EXPLAIN SELECT 1 UNION SELECT 2;",
        "EXPLAIN\n  SELECT *\n  FROM logs WHERE lr > ?",
    ],
)
def test_explain(sql: str) -> None:
    statement = parse(sql)
    assert statement.kind == "explain"
    assert isinstance(statement.tree, Explain)
    assert statement.query is statement.tree.this
    assert not statement.duckdb_sql().upper().startswith("EXPLAIN")


def test_explain_keeps_the_query_and_its_parameters() -> None:
    statement = parse("EXPLAIN SELECT * FROM logs WHERE lr >= ? AND epoch >= ?")
    assert statement.param_count == 2
    assert statement.duckdb_sql() == "SELECT * FROM logs WHERE lr >= ? AND epoch >= ?"


@pytest.mark.parametrize("sql", ["SHOW RUNS", "show runs", "  SHOW   RUNS ;", "SHOW RUNS -- all"])
def test_show_runs(sql: str) -> None:
    statement = parse(sql)
    assert (statement.kind, statement.query, statement.table) == ("show_runs", None, None)
    assert isinstance(statement.tree, ShowRuns)


@pytest.mark.parametrize(
    ("sql", "table"),
    [
        ("SHOW COLUMNS FROM logs", "logs"),
        ("show columns from LOGS", "LOGS"),
        ("SHOW COLUMNS IN runs", "runs"),
        ("SHOW COLUMNS FROM main.logs", "main.logs"),
        ('SHOW COLUMNS FROM "log records"', '"log records"'),
    ],
)
def test_show_columns(sql: str, table: str) -> None:
    statement = parse(sql)
    assert (statement.kind, statement.table) == ("show_columns", table)
    assert isinstance(statement.tree, ShowColumns)


@pytest.mark.parametrize(
    ("sql", "value"),
    [
        ("SET replay = 'auto'", "auto"),
        ("SET replay = 'confirm'", "confirm"),
        ("SET replay = 'off'", "off"),
        ("SET replay TO 'off'", "off"),
        ("SET replay = off", "off"),
        ("SET replay TO Auto", "auto"),
        ("set REPLAY = 'CONFIRM';", "confirm"),
        ('SET replay = "off"', "off"),
    ],
)
def test_set_replay(sql: str, value: str) -> None:
    statement = parse(sql)
    assert (statement.kind, statement.setting, statement.value) == ("set", "replay", value)
    assert isinstance(statement.tree, SetReplay)


@pytest.mark.parametrize(
    ("sql", "message", "col"),
    [
        (
            "SET replay",
            "syntax error near 'SET': SET replay needs a value: 'auto', 'confirm' or 'off'",
            1,
        ),
        (
            "SET replay =",
            "syntax error near 'SET': SET replay needs a value: 'auto', 'confirm' or 'off'",
            1,
        ),
        ("EXPLAIN", "syntax error near 'EXPLAIN': EXPLAIN needs a query after it", 1),
        (
            "SHOW COLUMNS logs",
            "syntax error near 'logs': expected FROM <table> after SHOW COLUMNS",
            14,
        ),
        ("SHOW RUNS WHERE 1", "syntax error near 'WHERE': unexpected token", 11),
    ],
)
def test_incomplete_florsql_statements(sql: str, message: str, col: int) -> None:
    error = error_of(sql)
    assert (error.message, error.line, error.col) == (message, 1, col)


@pytest.mark.parametrize(
    ("sql", "canonical"),
    [
        ("explain select 1", "EXPLAIN SELECT 1"),
        ("show runs", "SHOW RUNS"),
        ("show columns in logs", "SHOW COLUMNS FROM logs"),
        ("set replay to off", "SET replay = 'off'"),
    ],
)
def test_dialect_is_registered_and_generates_florsql(sql: str, canonical: str) -> None:
    assert sqlglot.parse_one(sql, read="florsql").sql(dialect="florsql") == canonical


def test_duckdb_dialect_is_left_alone() -> None:
    assert isinstance(sqlglot.parse_one("SHOW RUNS", read="duckdb"), exp.Command)
    assert isinstance(sqlglot.parse_one("EXPLAIN SELECT 1", read="duckdb"), exp.Command)
    assert isinstance(sqlglot.parse_one("SET replay = 'off'", read="duckdb"), exp.Set)


def test_refused_commands_log_no_sqlglot_warnings(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="sqlglot"):
        for sql in ("LOAD httpfs", "CALL pragma_version()", "SHOW DATABASES", "VACUUM"):
            with pytest.raises(ParseError):
                parse(sql)
    assert caplog.records == []


# --- statements and scripts ---------------------------------------------------------------------


def test_select_statement_fields() -> None:
    statement = parse("  SELECT run_id FROM logs WHERE lr > ? AND epoch < ?;  ")
    assert statement.kind == "select"
    assert statement.query is statement.tree
    assert statement.sql == "SELECT run_id FROM logs WHERE lr > ? AND epoch < ?"
    assert (statement.offset, statement.param_count) == (2, 2)
    assert statement.setting is statement.value is statement.table is None


def test_florsql_words_stay_usable_as_column_names() -> None:
    statement = parse("SELECT explain, runs, replay FROM logs WHERE show = 1")
    assert statement.duckdb_sql() == 'SELECT explain, runs, replay FROM logs WHERE "show" = 1'


@pytest.mark.parametrize(
    "sql", ["VALUES (1), (2)", "TABLE logs", "FROM logs", "(SELECT 1)", "PIVOT logs ON epoch"]
)
def test_every_query_form_is_a_select(sql: str) -> None:
    assert parse(sql).kind == "select"


def test_parse_many_splits_a_script() -> None:
    script = "SET replay = 'off';\nSHOW RUNS;;\n-- a comment\nSELECT 1 AS one; EXPLAIN FROM logs"
    statements = parse_many(script)
    assert [s.kind for s in statements] == ["set", "show_runs", "select", "explain"]
    assert [s.sql for s in statements] == [
        "SET replay = 'off'",
        "SHOW RUNS",
        "SELECT 1 AS one",
        "EXPLAIN FROM logs",
    ]
    assert all(s.source == script for s in statements)
    assert script[statements[2].offset :].startswith("SELECT 1 AS one")


def test_node_position_counts_from_the_script_start() -> None:
    script = "SHOW RUNS;\nSELECT run_id,\n       grad_norm FROM logs"
    statement = parse_many(script)[1]
    column = next(c for c in statement.tree.find_all(exp.Column) if c.name == "grad_norm")
    assert node_position(column, statement.source) == (3, 8)


def test_parse_takes_one_statement() -> None:
    with pytest.raises(ParseError) as info:
        parse("SELECT 1;\n SELECT 2")
    error = info.value
    assert error.message == "expected one statement, got 2: run them one at a time"
    assert (error.line, error.col) == (2, 2)


@pytest.mark.parametrize("sql", ["", "   ", ";", " ; ;\n", "-- nothing", "/* nothing */ ;"])
def test_empty_input(sql: str) -> None:
    for function in (parse, parse_many):
        with pytest.raises(ParseError) as info:
            function(sql)
        assert info.value.message == "empty query: expected a SELECT or a florsql statement"
        assert info.value.line is None


def test_not_a_statement() -> None:
    expected = (
        "expected a query (SELECT, FROM, WITH, VALUES, TABLE, PIVOT) or a florsql statement "
        "(EXPLAIN, SHOW RUNS, SHOW COLUMNS FROM <table>, SET replay)"
    )
    assert error_of("1 + 1").message == expected
    assert error_of("SELEC run_id FROM logs").message == f"syntax error near 'SELEC': {expected}"
    assert error_of("ELSE").message == f"syntax error near 'ELSE': {expected}"


# --- parse errors: exact positions ----------------------------------------------------------------


POSITIONS = [
    ("SELECT FROM", "syntax error near 'FROM': expected table name", 1, 8),
    ("SELECT * FROM logs WHERE", "syntax error near 'WHERE': something is missing after it", 1, 20),
    (
        "SELECT a FROM logs\nWHERE x = = 1",
        "syntax error near '=': something is missing after it",
        2,
        11,
    ),
    ("SELECT * FROM logs\n  GROUP BYY run_id", "syntax error near 'BYY': unexpected token", 2, 9),
    ("SELECT (1", "syntax error near '1': expected )", 1, 9),
    ("SELECT a b c FROM t", "syntax error near 'c': unexpected token", 1, 12),
    ("\n\n  SELECT )", "syntax error near ')': unexpected token", 3, 10),
    ("SELECT 1;\nSELECT (", "syntax error near '(': something is missing after it", 2, 8),
    ("SELECT é, (", "syntax error near '(': something is missing after it", 1, 11),
    ("SELECT max(1, 2, 3)", "syntax error near ')': expected at most 2 arguments for Max", 1, 19),
    ("SELECT CAST(x AS) FROM logs", "syntax error near ')': expected TYPE after CAST", 1, 17),
    (
        "SELECT 1\r\nFROM logs\r\nWHERE",
        "syntax error near 'WHERE': something is missing after it",
        3,
        1,
    ),
    (
        "SELECT tstamp, lr\nFROM logs\nWHERE lr >= 0.01\n"
        "  AND epoch >= 8 GROUP BY ALL ORDER BY tstamp LIMIT",
        "syntax error near 'LIMIT': something is missing after it",
        4,
        47,
    ),
    ("SELECT 'abc", "syntax error: unterminated string literal", 1, 8),
    ("SELECT 1,\n  'abc\n def", "syntax error: unterminated string literal", 2, 3),
    ('SELECT "abc', "syntax error: unterminated quoted identifier", 1, 8),
    ("SELECT * FROM t /* no end", "syntax error: unterminated comment", 1, 17),
    ("SELECT $$abc", "syntax error: unterminated dollar-quoted string", 1, 8),
    ("SELECT e'abc", "syntax error: unterminated string literal", 1, 8),
]


@pytest.mark.parametrize(
    ("sql", "message", "line", "col"), POSITIONS, ids=[p[0] for p in POSITIONS]
)
def test_parse_error_positions(sql: str, message: str, line: int, col: int) -> None:
    error = error_of(sql)
    assert (error.message, error.line, error.col) == (message, line, col)
    assert error.sql == sql


def test_caret_snippet_single_line() -> None:
    assert str(error_of("SELECT FROM")) == (
        "syntax error near 'FROM': expected table name\n  1 | SELECT FROM\n    |        ^"
    )


def test_caret_snippet_multi_line() -> None:
    assert str(error_of("SELECT *\nFROM logs\n  GROUP BYY run_id")) == (
        "syntax error near 'BYY': unexpected token\n  3 |   GROUP BYY run_id\n    |         ^"
    )


def test_deep_nesting_is_a_parse_error() -> None:
    error = error_of("SELECT " + "(" * 3000 + "1" + ")" * 3000)
    assert error.message == "the statement nests too deeply to parse (parentheses, subqueries)"


def test_parse_error_classes() -> None:
    error = error_of("SELECT FROM")
    assert isinstance(error, SqlError) and isinstance(error, FlorError)


# --- docs tied to code ----------------------------------------------------------------------------


def test_doctests() -> None:
    for name in ("florsql.grammar.parse", "florsql.grammar.positions"):
        module = importlib.import_module(name)
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_readme_sql_examples_parse() -> None:
    blocks = re.findall(r"```sql\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 10
    kinds = {parse(block).kind for block in blocks}
    assert kinds == {"select", "explain", "show_runs", "show_columns", "set"}


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT * FROM logs\n  GROUP BYY run_id",
        "SELECT * FROM logs WHERE lr IN (FROM read_csv('lr.csv'))",
    ],
)
def test_readme_error_examples_are_real(sql: str) -> None:
    assert f"florsql.errors.ParseError: {error_of(sql)}" in README.read_text()


def test_readme_lists_every_refused_function() -> None:
    text = README.read_text()
    for prefix in REFUSED_PREFIXES:
        assert f"`{prefix}*`" in text or f"{prefix}*" in text, prefix
    for name in REFUSED_FUNCTIONS:
        covered = any(name.startswith(p) for p in REFUSED_PREFIXES)
        assert covered or f"`{name}`" in text, name
