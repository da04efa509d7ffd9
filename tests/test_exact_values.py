"""Every value a query returns is the exact value, through every front end.

The oracle is DuckDB itself: its Python API (``fetchall``) for the DB-API, its text
(``CAST(x AS VARCHAR)``) for what ``florsql query`` prints, and the documented Arrow mapping
(``florsql.engine.exact``) for Flight SQL through the ADBC client. Where DuckDB's own Python
value is not exact (an INTERVAL with months, a nanosecond timestamp), the DB-API raises a
florsql error instead of a wrong value.
"""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import adbc_driver_flightsql.dbapi as adbc
import duckdb
import pyarrow as pa
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import florsql
from florsql import dbapi
from florsql.cli import main
from florsql.engine.exact import run_exact, type_name
from florsql.errors import FlorError
from florsql.flight.backend import open_service
from florsql.repl.render import render
from tests.helpers import make_repo
from tests.helpers_sql import fixture_history
from tests.test_flight_clients import serving

NANOS = "TIMESTAMP_NS '2024-01-02 03:04:05.123456789'"

#: SQL expressions of every DuckDB type whose conversion could go wrong.
EXPRESSIONS = [
    "12345678901234567890123456789012345678901",  # BIGNUM (the issue's literal)
    "-12345678901234567890123456789012345678901",
    "5::BIGNUM",
    "170141183460469231731687303715884105727::HUGEINT",
    "(-170141183460469231731687303715884105727 - 1)::HUGEINT",
    "340282366920938463463374607431768211455::UHUGEINT",  # wrapped to -1 before
    "18446744073709551615::UBIGINT",
    "12345678901234567890123456789.123456789::DECIMAL(38,9)",
    "-0.000000001::DECIMAL(38,9)",
    "INTERVAL '3 days 04:05:06.789012'",  # sqlglot dropped the time part before
    "INTERVAL '-5 days'",
    "'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::UUID",
    "'10110'::BIT",  # DuckDB's internal bytes before
    "'\\xAA\\x00b'::BLOB",
    "'q''\"\\x5C'::BLOB",  # quotes and the backslash print as \x27, \x22, \x5C
    "TIME '12:34:56.123456'",
    "TIME '24:00:00'",  # midnight before
    "TIMETZ '12:34:56.123456+05:30'",  # offset lost before
    "TIMETZ '12:34:56-03:30:15'",
    "TIMESTAMP_NS '2024-01-02 03:04:05.123456'",
    "TIMESTAMP '2024-01-02 03:04:05.123456'",
    "TIMESTAMPTZ '2024-01-02 03:04:05.123456+02'",
    "'2024-01-01 00:00:01'::TIMESTAMP_S",
    "'infinity'::TIMESTAMP",  # OverflowError before
    "'-infinity'::TIMESTAMP",
    "'infinity'::DATE",
    "'-infinity'::DATE",
    "DATE '5877642-06-25'",
    "DATE '0044-03-15 (BC)'",
    "'290000-01-01'::TIMESTAMP",
    "'ok'::ENUM('sad', 'ok', 'happy')",
    "[1::HUGEINT, NULL, 2]",
    "[340282366920938463463374607431768211455::UHUGEINT]",
    "{'a': 1::UHUGEINT, 'b': INTERVAL '1 day', 'c': NULL, 'd': '1'::BIT}",
    "MAP {'k': 12345678901234567890123456789012345678901}",
    "MAP {1: TIMETZ '01:02:03+01'}",
    "union_value(num := 2)::UNION(num INTEGER, str VARCHAR)",
    "union_value(n := 340282366920938463463374607431768211455::UHUGEINT)"
    "::UNION(n UHUGEINT, s VARCHAR)",
    "[1, 2, 3]::INTEGER[3]",
    "[1::HUGEINT, 2]::HUGEINT[2]",
    "[['infinity'::DATE, NULL]]",
    "{'x': [MAP {1: '10'::BIT}]}",
    # unnamed structs (TUPLE): a dict of element1... and garbled leaves before
    "row(340282366920938463463374607431768211455::UHUGEINT, 'a')",
    "row('10110'::BIT, TIMETZ '01:02:03+05:30', INTERVAL 1 DAY, 'infinity'::DATE)",
    "[row(1, 'a,b'), NULL]",
    "{'a': (1, ('x', NULL))}",
    "'nan'::DOUBLE",
    "'inf'::DOUBLE",
    "'-inf'::FLOAT",
    "NULL",
    "NULL::BIGNUM",
    "NULL::TIMETZ",
]


def _bignum_as_int(value: Any, type_name: str) -> Any:
    """DuckDB's API returns BIGNUM as text; florsql returns the number (the issue asks it)."""
    if value is None:
        return None
    if type_name == "BIGNUM":
        return int(value)
    if type_name.startswith("MAP(VARCHAR, BIGNUM"):
        return {k: int(v) for k, v in value.items()}
    return value


def _oracle(sql: str) -> tuple[list[Any], list[str]]:
    con = duckdb.connect()
    rel = con.sql(sql)
    types = [str(t) for t in rel.types]
    rows = con.execute(sql).fetchall()
    return [_bignum_as_int(v, types[0]) for (v, *_) in rows], types


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A history for the CLI and the server (one process at a time opens an index)."""
    return fixture_history(make_repo(tmp_path_factory.mktemp("exact") / "repo"))


@pytest.fixture(scope="module")
def con(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dbapi.Connection]:
    with florsql.connect(fixture_history(tmp_path_factory.mktemp("dbapi") / "repo")) as c:
        yield c


def _same(got: Any, want: Any) -> bool:
    """Equal, with the same Python types all the way down (1 == 1.0 == Decimal(1) is not
    enough), NaN equal to NaN."""
    if type(got) is not type(want):
        return False
    if isinstance(got, float) and got != got:
        return want != want
    if isinstance(got, list | tuple):
        return len(got) == len(want) and all(_same(g, w) for g, w in zip(got, want, strict=True))
    if isinstance(got, dict):
        return list(got) == list(want) and all(_same(got[k], want[k]) for k in got)
    if isinstance(got, datetime.datetime | datetime.time):
        return got == want and got.utcoffset() == want.utcoffset()
    return bool(got == want)


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_db_api_values_equal_duckdbs_own(con: dbapi.Connection, expr: str) -> None:
    sql = f"SELECT {expr} AS v"
    want, types = _oracle(sql)
    got = [row[0] for row in con.execute(sql).fetchall()]
    assert _same(got, want), (expr, types, got, want)
    assert con.execute(sql).description[0][1] == type_name(duckdb.sqltype(types[0]))


def test_the_issues_bignum_is_an_int_everywhere(con: dbapi.Connection, repo: Path) -> None:
    """``SELECT 1234...901 AS big`` printed ``b'\\x80\\x00\\x11$G...'`` before."""
    big = 12345678901234567890123456789012345678901
    sql = f"SELECT {big} AS big"
    assert con.execute(sql).fetchall() == [(big,)]
    table = con.execute(sql).fetch_arrow_table()
    assert table.schema.field("big").type == pa.string()  # documented: its decimal digits
    assert table.column("big").to_pylist() == [str(big)]
    result = CliRunner().invoke(main, ["query", sql, "--repo", str(repo), "--format", "csv"])
    assert (result.exit_code, result.stdout) == (0, f"big\n{big}\n")
    result = CliRunner().invoke(main, ["query", sql, "--repo", str(repo), "--format", "json"])
    assert result.stdout == f'[\n{{"big": {big}}}\n]\n'


def test_values_without_an_exact_python_form_raise_a_florsql_error(con: dbapi.Connection) -> None:
    """DuckDB's API turns a month into 30 days and drops nanoseconds: the DB-API refuses."""
    for sql, words in (
        ("SELECT INTERVAL '1 year 2 months 3 days' AS v", "INTERVAL '1 year 2 months 3 days'"),
        ("SELECT TIMESTAMP_NS '2024-01-02 03:04:05.123456789' AS v", "nanoseconds (789"),
    ):
        cur = con.execute(sql)
        with pytest.raises(dbapi.DataError, match="fetch_arrow_table") as info:
            cur.fetchall()
        assert isinstance(info.value, FlorError) and words in str(info.value)
        exact = con.execute(sql).fetch_arrow_table().column(0)[0]
        assert exact.value == (
            pa.MonthDayNano([14, 3, 0])
            if "INTERVAL" in sql
            else exact.value  # checked below, without pandas' Timestamp
        )
    ns = con.execute("SELECT TIMESTAMP_NS '2024-01-02 03:04:05.123456789' AS v")
    assert ns.fetch_arrow_table().column(0).cast(pa.int64()).to_pylist() == [1704164645123456789]


#: (expression, what DuckDB's text differs in) for the shell and ``florsql query``.
def test_cli_prints_duckdbs_text_of_every_value(repo: Path) -> None:
    """One ``florsql query`` over every expression (CSV, so each cell is whole), each cell
    compared with DuckDB's own ``CAST(... AS VARCHAR)``."""
    exprs = [e for e in EXPRESSIONS if e != "NULL"]
    extra = [
        "INTERVAL '1 year 2 months 3 days 04:05:06.789012'",
        "INTERVAL '-1 month 5 days'",
        "TIMESTAMP_NS '2024-01-02 03:04:05.123456789'",
    ]
    exprs += extra
    select = ", ".join(f"{e} AS c{i}" for i, e in enumerate(exprs))
    args = ["query", f"SELECT {select}", "--repo", str(repo), "--format", "csv"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.stderr
    import csv
    import io

    header, row = list(csv.reader(io.StringIO(result.stdout)))
    assert header == [f"c{i}" for i in range(len(exprs))]
    duck = duckdb.connect()
    for expr, printed in zip(exprs, row, strict=True):
        (text,) = duck.execute(f"SELECT CAST({expr} AS VARCHAR)").fetchone() or (None,)
        assert printed == ("" if text is None else text), expr


def test_table_mode_shows_exact_numbers_right_aligned() -> None:
    con = duckdb.connect()
    table, _ = run_exact(
        con, "SELECT 12345678901234567890123456789012345678901 AS big, 1.10::DECIMAL(3,2) AS d"
    )
    assert render(table, "table") == (
        "                                      big     d\n"
        "-----------------------------------------  ----\n"
        "12345678901234567890123456789012345678901  1.10\n"
        "(1 row)"
    )
    assert render(table, "json") == (
        '[\n{"big": 12345678901234567890123456789012345678901, "d": 1.10}\n]'
    )  # before: 1.1, a float


#: The documented Arrow type of each DuckDB type over Flight SQL.
FLIGHT = [
    ("12345678901234567890123456789012345678901", pa.string(),
     "12345678901234567890123456789012345678901", "BIGNUM"),
    ("340282366920938463463374607431768211455::UHUGEINT", pa.decimal256(39, 0),
     decimal.Decimal("340282366920938463463374607431768211455"), "UHUGEINT"),
    ("(-170141183460469231731687303715884105727 - 1)::HUGEINT", pa.decimal256(39, 0),
     decimal.Decimal("-170141183460469231731687303715884105728"), "HUGEINT"),
    ("12345678901234567890123456789.123456789::DECIMAL(38,9)", pa.decimal128(38, 9),
     decimal.Decimal("12345678901234567890123456789.123456789"), "DECIMAL(38,9)"),
    ("'10110'::BIT", pa.string(), "10110", "BIT"),
    ("TIMETZ '12:34:56.123456+05:30'", pa.string(), "12:34:56.123456+05:30",
     "TIME WITH TIME ZONE"),
    ("INTERVAL '1 year 2 months 3 days 04:05:06.789012'", pa.month_day_nano_interval(),
     pa.MonthDayNano([14, 3, 14_706_789_012_000]), "INTERVAL"),
    ("'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'::UUID", pa.string(),
     "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11", "UUID"),
    ("'\\xAA\\x00b'::BLOB", pa.binary(), b"\xaa\x00b", "BLOB"),
    ("[340282366920938463463374607431768211455::UHUGEINT]",
     pa.list_(pa.field("l", pa.decimal256(39, 0))),
     [decimal.Decimal("340282366920938463463374607431768211455")], "UHUGEINT[]"),
]  # fmt: skip


def test_flight_sql_sends_the_documented_arrow_types(repo: Path) -> None:
    service = open_service(repo)
    try:
        with serving(service) as server:
            uri = f"grpc://127.0.0.1:{server.port}"
            with adbc.connect(uri, autocommit=True) as client, client.cursor() as cur:
                for expr, arrow, value, name in FLIGHT:
                    cur.execute(f"SELECT {expr} AS v")
                    table = cur.fetch_arrow_table()
                    field = table.schema.field("v")
                    assert field.type == arrow, expr
                    assert table.column("v").to_pylist() == [value], expr
                    assert field.metadata[b"ARROW:FLIGHT:SQL:TYPE_NAME"] == name.encode()
                duck = duckdb.connect()
                for expr in EXPRESSIONS:  # every other type arrives as the engine made it
                    cur.execute(f"SELECT {expr} AS v")
                    got = cur.fetch_arrow_table().column("v").combine_chunks()
                    want = run_exact(duck, f"SELECT {expr} AS v")[0].column("v").combine_chunks()
                    assert got.type == want.type, expr
                    nan = pa.types.is_floating(got.type) and str(got) == str(want)  # NaN != NaN
                    assert got.equals(want) or nan, expr
                cur.execute(f"SELECT 'infinity'::DATE AS d, {NANOS} AS n")
                table = cur.fetch_arrow_table()
                assert table.column("d").cast(pa.int32()).to_pylist() == [2**31 - 1]
                assert table.column("n").cast(pa.int64()).to_pylist() == [1704164645123456789]
    finally:
        service.close()


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    big=st.integers(min_value=-(10**60), max_value=10**60),
    huge=st.integers(min_value=-(2**127), max_value=2**127 - 1),
    uhuge=st.integers(min_value=0, max_value=2**128 - 1),
    dec=st.decimals(min_value=-(10**28), max_value=10**28, places=9, allow_nan=False),
)
def test_random_big_numbers_come_back_exact(
    con: dbapi.Connection, big: int, huge: int, uhuge: int, dec: decimal.Decimal
) -> None:
    sql = (
        f"SELECT {big} AS a, ({huge})::HUGEINT AS b, ({uhuge})::UHUGEINT AS c, "
        f"'{dec:f}'::DECIMAL(38,9) AS d"
    )
    row = con.execute(sql).fetchone()
    # A literal is typed by its size (INTEGER ... HUGEINT, then BIGNUM): an int whatever it is.
    assert row == (big, huge, uhuge, dec)
    assert [type(v) for v in row or ()] == [int, int, int, decimal.Decimal]
    oracle = duckdb.connect().execute(sql).fetchone()
    assert oracle is not None and row == (int(oracle[0]), *oracle[1:])


def test_the_shell_prints_every_digit(repo: Path) -> None:
    """The REPL (its script mode: statements piped in) renders through the same conversion."""
    big = 12345678901234567890123456789012345678901
    script = (
        f"SELECT {big} AS big, 340282366920938463463374607431768211455::UHUGEINT AS u;\n"
        ".mode line\n"
        f"SELECT INTERVAL '14 months' AS i, {NANOS} AS n, 'infinity'::DATE AS d;\n"
    )
    result = CliRunner().invoke(main, ["--repo", str(repo)], input=script)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == (
        "                                      big                                        u\n"
        "-----------------------------------------  ---------------------------------------\n"
        f"{big}  340282366920938463463374607431768211455\n"
        "(1 row)\n"
        "i = 1 year 2 months\n"
        "n = 2024-01-02 03:04:05.123456789\n"
        "d = infinity\n"
        "\n"
        "(1 row)\n"
    )


def test_nested_values_over_many_rows_fetched_in_batches(con: dbapi.Connection) -> None:
    """The DB-API converts 1024 rows at a time: slices of nested columns stay aligned."""
    sql = (
        "SELECT i, [i::HUGEINT, NULL, (i * 7)::UHUGEINT]::HUGEINT[] AS l,"
        " CASE WHEN i % 5 = 0 THEN NULL ELSE MAP {'k': i::UHUGEINT} END AS m,"
        f" {{'u': i::UHUGEINT + {2**128 - 10_000}::UHUGEINT, 'e': []::BIT[]}} AS s,"
        " [i::HUGEINT, 2]::HUGEINT[2] AS a,"
        " CASE WHEN i % 3 = 0 THEN [] ELSE [TIMETZ '01:02:03+01'] END AS t"
        " FROM range(2500) AS r(i) ORDER BY i"
    )
    want = duckdb.connect().execute(sql).fetchall()
    cur = con.execute(sql)
    got = cur.fetchmany(7) + cur.fetchmany(1500) + cur.fetchall()
    assert _same(got, want)


def test_parse_type_reads_every_type_name_as_duckdb_does() -> None:
    """The plain types come from a table (no DuckDB connection needed); every name, plain or
    not, parses to the type DuckDB parses it to."""
    from florsql.engine.exact import _BARE_NULL, parse_type

    con = duckdb.connect()
    names = [
        "BIGINT", "DOUBLE", "VARCHAR", "BOOLEAN", "NULL", "NULL[]", "TIMESTAMP WITH TIME ZONE",
        "TIME WITH TIME ZONE", "UUID", "BLOB", "HUGEINT", "UHUGEINT", "DECIMAL(18,3)",
        "DOUBLE[]", 'STRUCT("NULL" NULL, b INTEGER)', "MAP(VARCHAR, BIGINT)", "INTEGER[3]",
        "TIMESTAMP_NS", "INTERVAL", "DATE", "BIT",
    ]  # fmt: skip
    for name in names:
        expected = con.sqltype(_BARE_NULL.sub('"NULL"', name))  # bare NULL: the NULL type
        got = parse_type(name)
        assert got == expected and str(got) == str(expected), name
