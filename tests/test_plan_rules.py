"""The planner's small rule modules: their docstring examples, and the volatile list."""

from __future__ import annotations

import doctest
import importlib

import duckdb
import pytest
from sqlglot import parse_one

from florsql.plan.volatile import is_volatile, volatile_functions


@pytest.mark.parametrize(
    "module", ["florsql.plan.params", "florsql.plan.volatile", "florsql.plan.relax"]
)
def test_doctests(module: str) -> None:
    assert doctest.testmod(importlib.import_module(module)).failed == 0


def test_every_function_duckdb_calls_volatile_is_on_the_list() -> None:
    with duckdb.connect() as con:  # not DuckDB's default connection, which other tests share
        rows = con.sql(
            "SELECT DISTINCT function_name FROM duckdb_functions() WHERE stability = 'VOLATILE'"
        ).fetchall()
    assert {r[0] for r in rows} <= volatile_functions()
    assert len(rows) >= 10


@pytest.mark.parametrize(
    ("call", "volatile"),
    [
        ("now()", True),
        ("NOW()", True),
        ("current_timestamp", True),
        ("CURRENT_DATE", True),
        ("today()", True),
        ("get_current_timestamp()", True),
        ("transaction_timestamp()", True),
        ("localtimestamp", True),
        ("current_setting('threads')", True),
        ("random()", True),
        ("gen_random_uuid()", True),
        ("uuid()", True),
        ("nextval('s')", True),
        ("setseed(0.5)", True),
        ("abs(-1)", False),
        ("year(DATE '2026-01-01')", False),
        ("date_trunc('day', TIMESTAMP '2026-01-01')", False),
        ("coalesce(1, 2)", False),
    ],
)
def test_volatile_calls_whatever_the_spelling(call: str, volatile: bool) -> None:
    node = parse_one(f"SELECT {call}", read="duckdb").selects[0]
    assert is_volatile(node) is volatile
