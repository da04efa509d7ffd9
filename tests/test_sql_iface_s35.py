"""Query interfaces tried as a stranger would (s35): parameters DuckDB types otherwise than their
SQL literal, Arrow readers of the DB-API cursor, ``florsql replay-service`` outside a git
repository.

Oracle: DuckDB's own Python API given the same parameters over a flat table of the rows of
``logs`` (``tests.test_sql_iface_s34._flat``, computed by hand from the script).

Found (each silently wrong unless said):

- An integer parameter was written into the SQL as a bare integer literal, which DuckDB narrows
  to the other operand's type: ``20::TINYINT * ?`` bound to 10 failed with a TINYINT overflow
  (not silent), ``typeof(1::TINYINT + ?)`` answered TINYINT and ``[?, 2::TINYINT]`` a
  ``TINYINT[]``, where DuckDB given the parameter binds an INTEGER (200, INTEGER, INTEGER[]).
- A list parameter mixing kinds was written as a list literal, whose type DuckDB takes from
  the first non-text value: ``(1, '2')`` was ``[1, 2]`` (so ``epoch IN ?`` matched epochs 1 and
  2, where DuckDB given the parameter has the VARCHAR[] ``['1', '2']`` and refuses to compare
  it with a number), ``(1, 'a')`` failed converting 'a' to INT32, ``(1, 2**63)`` was a
  ``UBIGINT[]`` (DuckDB: ``HUGEINT[]``).
- ``ORDER BY +?`` was refused as a parameter standing alone (sqlglot drops the plus); DuckDB
  reads ``+?`` as a constant sort key. Over Flight its prepared statement failed (its schema was
  found with the parameter NULL, ``ORDER BY NULL``). ``+?`` bound to text answered the text,
  where DuckDB refuses ``+`` of a VARCHAR.
- ``polars.read_database`` over ``florsql.connect`` types columns from the type names of
  ``description`` (polars knows florsql as a plain DB-API driver): an empty result's
  ``TIMESTAMP WITH TIME ZONE`` column came out as polars' Null type, a STRUCT column failed to
  load. The cursor now speaks the Arrow PyCapsule interface: ``polars.DataFrame(cursor)``.
- sqlglot reads ``.5`` as ``0.5``: DuckDB typed it ``DECIMAL(2,1)`` (not ``DECIMAL(1,1)``),
  and ``.99999999999999999999999999999999999999`` (``DECIMAL(38,38)``) became a DOUBLE, 1.0.
- ``ORDER BY x LIMIT 3 USING SAMPLE 2 ROWS`` (a syntax error to DuckDB) was answered as a sample
  of the whole relation: sqlglot moved the clause before ORDER BY.
- Two quoted strings in a row were joined on one line: ``Opt IN ('sgd' 'x')``, a comma
  missed, matched ``'sgdx'`` (no row) where DuckDB answers a syntax error (it continues a
  string only across a line break).
- ``Decimal('NaN')`` bound as a DOUBLE, where DuckDB's Python API binds a FLOAT (not silent in
  value, in type).
- Not wrong, slow: binding a 20,000-value list took 3 s (a CAST per value after the first fix:
  20 s; now one CAST of the list), 5,000 ``?`` of one IN list 4.5 s (sqlglot's ``replace``
  re-links the whole list per value).

Tried and right: window frames (ROWS/RANGE/GROUPS, EXCLUDE), QUALIFY, GROUP BY ALL/ORDER BY ALL,
self-joins of ``logs`` in CTEs, LATERAL, USING/NATURAL/FULL joins with a VALUES table,
DISTINCT ON, LIMIT/OFFSET/FETCH parameters, star modifiers (EXCLUDE/REPLACE/RENAME, COLUMNS),
FILTER aggregates, names that are SQL keywords or functions (``count``, ``user``, ``a"b``,
``*``, ``#1``), all of it over replayed hindsight columns too; ``description`` type names of
every DuckDB type; ``fetchmany`` across its 1,024-row conversion batches; parameters of every
Python type reused on one cursor; Flight GetTables/GetColumns/``adbc_get_table_schema`` against
each relation's query schema; a session time zone other than UTC.
"""

from __future__ import annotations

import decimal
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import adbc_driver_flightsql.dbapi as adbc
import duckdb
import pyarrow as pa
import pytest
from click.testing import CliRunner

import florsql
from florsql import dbapi
from florsql.cli import main
from tests.helpers import copy_repo, make_repo, run_script
from tests.test_flight_support import running_server
from tests.test_sql_iface_s34 import TRAIN, _flat


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = make_repo(tmp_path_factory.mktemp("s35") / "proj", {"train.py": TRAIN})
    run_script(repo, "train.py")
    run_script(repo, "train.py", "--lr", "0.2", "--Opt", "ad'am", "--flag")
    return repo


@pytest.fixture(scope="module")
def con(repo: Path) -> Iterator[dbapi.Connection]:
    with florsql.connect(repo) as connection:
        yield connection


@pytest.fixture(scope="module")
def oracle() -> duckdb.DuckDBPyConnection:
    db = duckdb.connect()
    db.register("logs", _flat())
    return db


def _answer(run: Any) -> Any:
    """Rows, or the kind of failure: florsql's and DuckDB's error classes differ."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return run()
    except (duckdb.Error, florsql.Error):
        return "error"


def _same(con: dbapi.Connection, oracle: duckdb.DuckDBPyConnection, sql: str, params: Any) -> None:
    want = _answer(lambda: oracle.execute(sql, params).fetchall())
    got = _answer(lambda: con.cursor().execute(sql, params).fetchall())
    assert got == want, (sql, params)


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        ("SELECT 20::TINYINT * ?", [10]),
        ("SELECT typeof(1::TINYINT + ?), typeof([?, 2::TINYINT])", [1, 1]),
        ("SELECT 2::UTINYINT - ?, 100::TINYINT + ?", [3, 100]),
        ("SELECT epoch::TINYINT * ? FROM logs WHERE epoch = 2 AND step = 1", [100]),
        ("SELECT 1.5::DECIMAL(3,1) + ?, typeof(1.5::DECIMAL(3,1) + ?)", [1, 1]),
        ("SELECT ? // 2, 7 / ?, typeof(sum(?)) FROM logs", [7, 2, 1]),
        ("SELECT [10, 20, 30][?], 'abc'[?], DATE '2020-01-01' + ?", [2, 2, 3]),
        ("SELECT 2000000000::INTEGER + ?", [2000000000]),  # overflows in both
        ("SELECT ?, typeof(?), bit_count(?)", [-(2**31)] * 3),
    ],
)
def test_an_integer_parameter_is_the_integer_duckdb_binds(
    con: dbapi.Connection, oracle: duckdb.DuckDBPyConnection, sql: str, params: list[Any]
) -> None:
    """A bare integer literal takes the other operand's narrower type in DuckDB; a parameter
    does not: ``20::TINYINT * ?`` overflowed a TINYINT where DuckDB answers 200."""
    _same(con, oracle, sql, params)


MIXED_LISTS = [
    (1, "a"),
    (1, "2"),
    [1, "2"],
    (1, 2.5),
    (1, True),
    (1, 2**63),
    (1, decimal.Decimal("1.5")),
    ([1], ["a"]),
    (1.5, "x"),
    (True, "x"),
    ("a", b"x"),
    ("a", [1]),  # DuckDB cannot type it
    (None, 1, "b"),
    # integers only: one CAST of the whole list, of the type DuckDB gives it
    (2**63, 2**64 - 1, None),
    (-(2**31), 5),
    (1, -(2**63) - 1),
    (2**40, 2**63),
]


@pytest.mark.parametrize("value", MIXED_LISTS, ids=repr)
def test_a_list_parameter_mixing_kinds_has_duckdbs_type(
    con: dbapi.Connection, oracle: duckdb.DuckDBPyConnection, value: Any
) -> None:
    """``(1, '2')`` was the INTEGER[] ``[1, 2]``: ``epoch IN ?`` matched epochs 1 and 2 where
    DuckDB given the parameter has the VARCHAR[] ``['1', '2']`` and refuses the comparison."""
    _same(con, oracle, "SELECT ?, typeof(?)", [value, value])
    _same(con, oracle, "SELECT count(*) FROM logs WHERE epoch IN ?", [value])
    _same(con, oracle, "SELECT count(*) FROM logs WHERE Opt IN ?", [value])
    _same(con, oracle, "SELECT count(*) FROM logs WHERE epoch = ANY(?)", [value])


def test_a_list_duckdb_cannot_type_is_refused_naming_the_parameter(con: dbapi.Connection) -> None:
    with pytest.raises(dbapi.ProgrammingError, match=r"parameter 2: DuckDB cannot type this list"):
        con.cursor().execute("SELECT ?, ?", [1, ("a", [1])])


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        ("SELECT epoch, step FROM logs WHERE step IS NOT NULL ORDER BY +?, 1, 2", [1]),
        ("SELECT epoch, step FROM logs WHERE step IS NOT NULL ORDER BY +?, 1, 2", [None]),
        ("SELECT epoch, step FROM logs WHERE step IS NOT NULL ORDER BY +?, 1, 2", ["x"]),
        ("SELECT epoch FROM logs WHERE step IS NOT NULL ORDER BY 1, + ?", [2.5]),
        ("SELECT DISTINCT ON (+?) epoch FROM logs WHERE step IS NOT NULL ORDER BY ALL", [1]),
        ("SELECT count(*) FROM logs WHERE step IS NOT NULL GROUP BY +?", [2]),
        ("SELECT +?, typeof(+?)", [5, 5]),
        ("SELECT +?", ["x"]),  # DuckDB refuses + of text
        ("SELECT +?", [True]),
        ("SELECT count(*) FROM logs WHERE epoch = +?", [1]),
        ("SELECT 3 - +?, [+?]", [1, 2]),
    ],
)
def test_a_parameter_after_a_unary_plus_keeps_it(
    con: dbapi.Connection, oracle: duckdb.DuckDBPyConnection, sql: str, params: list[Any]
) -> None:
    """sqlglot drops the ``+``: ``ORDER BY +?`` was refused as a parameter standing alone
    (DuckDB sorts by the constant), ``SELECT +?`` of 'x' answered 'x' (DuckDB refuses)."""
    _same(con, oracle, sql, params)


def test_flight_prepares_and_binds_the_same_parameters(repo: Path, tmp_path: Path) -> None:
    """Over Flight the parameters are Arrow-typed (an ``int64`` is a BIGINT) and the prepared
    statement's schema is found with them NULL: ``ORDER BY +?`` failed to prepare."""
    oracle = duckdb.connect()
    oracle.register("logs", _flat())
    queries: list[tuple[str, tuple[Any, ...]]] = [
        ("SELECT epoch, step FROM logs WHERE step IS NOT NULL ORDER BY +?, 1, 2", (1,)),
        ("SELECT 20::TINYINT * ?", (10,)),
        ("SELECT count(*) FROM logs WHERE epoch IN (?, ?)", (1, "2")),
    ]
    with (
        running_server(copy_repo(repo, tmp_path / "served")) as server,
        adbc.connect(f"grpc://127.0.0.1:{server.port}", autocommit=True) as conn,
    ):
        for sql, params in queries:
            with conn.cursor() as cur:
                cur.execute(sql, params)
                got = cur.fetchall()
            typed = [pa.scalar(p) for p in params]  # as ADBC sends them: int64, string
            assert got == oracle.execute(sql, [p.as_py() for p in typed]).fetchall(), sql
        with conn.cursor() as cur, pytest.raises(adbc.Error, match="'a' to INT64"):
            cur.execute("SELECT count(*) FROM logs WHERE epoch IN (?, ?)", (1, "a"))


def test_polars_reads_the_cursor_with_its_arrow_types(con: dbapi.Connection) -> None:
    """``pl.read_database`` over a florsql connection types an empty result's TIMESTAMPTZ
    column from its name (polars gives up on a zone it does not know: Null); the cursor as an
    Arrow stream keeps every type, rows or none."""
    pl = pytest.importorskip("polars")
    for where in ("false", "epoch = 1 AND step = 0"):
        items = "tstamp, max(tstamp) OVER () AS m, {'a': epoch} AS s"
        sql = f"SELECT {items} FROM logs WHERE {where}"
        frame = pl.DataFrame(con.cursor().execute(sql))
        assert frame.schema == {
            "tstamp": pl.Datetime("us", "Etc/UTC"),
            "m": pl.Datetime("us", "Etc/UTC"),
            "s": pl.Struct({"a": pl.Int64}),
        }
        assert frame.height == (0 if where == "false" else 2)
    cur = con.cursor().execute("SELECT tstamp FROM runs ORDER BY tstamp")
    first = cur.fetchone()
    rest = pa.table(cur)  # the rows not fetched yet, as fetch_arrow_table()
    assert first is not None and rest.num_rows == 1 and rest.column(0)[0].as_py() > first[0]


#: The ``florsql`` command, as its console script runs it.
ENTRY = "import sys; from florsql.entry import main; sys.exit(main())"


def test_replay_service_commands_outside_a_git_repository(repo: Path, tmp_path: Path) -> None:
    """A store folder with no git repository around it: one line saying so, no traceback."""
    import shutil

    bare = tmp_path / "bare"
    shutil.copytree(repo / ".florsql", bare / ".florsql")
    for command in ("status", "stop"):
        result = CliRunner().invoke(main, ["replay-service", command, "--repo", str(bare)])
        assert result.exit_code == 1, result.output
        assert result.stderr.startswith(f"Error: {bare} is not inside a git repository.")
        assert len(result.stderr.splitlines()) == 1
    done = subprocess.run(
        [sys.executable, "-c", ENTRY, "replay-service", "stop"],
        cwd=bare,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1 and "is not inside a git repository" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize(
    "items",
    [
        ".99999999999999999999999999999999999999 * 1, typeof(.123456789012345678901234567890)",
        ".5, typeof(.5), -.25, typeof(-.25), typeof(.1 + .2), 0.5, typeof(0.5), typeof(00.5)",
    ],
)
def test_a_number_written_with_a_leading_point_keeps_its_digits(
    con: dbapi.Connection, items: str
) -> None:
    """sqlglot reads ``.5`` as ``0.5``: one more digit, so DuckDB typed it ``DECIMAL(2,1)``
    (``.5`` is ``DECIMAL(1,1)``), and 38 digits after the point no DECIMAL holds: a DOUBLE,
    ``.999...9`` answered 1.0, silently."""
    sql = f"SELECT {items}"
    assert _answer(lambda: con.cursor().execute(sql).fetchall()) == (
        duckdb.connect().execute(sql).fetchall()
    )
    over_logs = "SELECT count(*) FROM logs WHERE lr > .15 AND lr < .99999999999999999999"
    assert con.cursor().execute(over_logs).fetchall() == [
        (sum(r["lr"] > 0.15 for r in _flat().to_pylist()),)
    ]


@pytest.mark.parametrize(
    "tail",
    [
        "WHERE x > 0 USING SAMPLE 100% ORDER BY x",  # (a count of rows: the same every time)
        "GROUP BY x USING SAMPLE 100% ORDER BY x",
        "WINDOW w AS () USING SAMPLE 100% ORDER BY x",
        "ORDER BY x LIMIT 3 USING SAMPLE 2 ROWS",
        "ORDER BY x USING SAMPLE 2 ROWS",
        "USING SAMPLE 2 ROWS WHERE x > 0",
        "USING SAMPLE 2 ROWS GROUP BY x",
    ],
)
def test_using_sample_stands_where_duckdb_takes_it(con: dbapi.Connection, tail: str) -> None:
    """sqlglot moves a ``USING SAMPLE`` written after ORDER BY or LIMIT before them:
    ``ORDER BY x LIMIT 3 USING SAMPLE 2 ROWS`` (a syntax error to DuckDB) answered a sample of
    the whole relation, another question than a sample of the first three rows."""
    sql = f"SELECT count(*) FROM (SELECT x FROM range(5) t(x) {tail})"
    want = _answer(lambda: duckdb.connect().execute(sql).fetchall())
    assert _answer(lambda: con.cursor().execute(sql).fetchall()) == want
    if want == "error":
        with pytest.raises(dbapi.ProgrammingError, match="USING SAMPLE"):
            con.cursor().execute(sql)


def test_a_list_mixing_numpy_and_python_numbers_binds(con: dbapi.Connection) -> None:
    """Numbers of several types need no DuckDB typing (their list literal types as the API
    would); only text mixed with other kinds does, and DuckDB's Python API cannot take numpy
    scalars: ``[np.int64(1), 2]`` was refused for a while in s35."""
    np = pytest.importorskip("numpy")
    sql = "SELECT ?, typeof(?)"
    value = [np.int64(1), 2]
    assert con.cursor().execute(sql, [value, value]).fetchall() == [([1, 2], "BIGINT[]")]
    value = [np.float32(0.5), 1]
    assert con.cursor().execute(sql, [value, value]).fetchall() == [([0.5, 1.0], "FLOAT[]")]


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity", "-NaN"])
def test_a_decimal_that_is_no_number_binds_as_duckdb_binds_it(
    con: dbapi.Connection, oracle: duckdb.DuckDBPyConnection, text: str
) -> None:
    """``Decimal('NaN')`` was a DOUBLE; DuckDB's Python API binds a FLOAT."""
    value = decimal.Decimal(text)
    _same(con, oracle, "SELECT ?::VARCHAR, typeof(?)", [value, value])


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM logs WHERE Opt IN ('sgd' 'x')",  # a comma missed
        "SELECT 'a' 'b'",
        "SELECT 'a' /* c */ 'b'",
        "SELECT $$p$$\n'q'",
        "SELECT 'a'\n'b'",  # DuckDB's continuation, across a line break: one string
        "SELECT 'a' -- c\n'b'\n  'c'",
    ],
)
def test_two_strings_in_a_row_are_one_only_across_a_line_break(
    con: dbapi.Connection, oracle: duckdb.DuckDBPyConnection, sql: str
) -> None:
    """sqlglot joined any two quoted strings: ``Opt IN ('sgd' 'x')`` matched ``'sgdx'`` (no
    row, silently) where DuckDB answers a syntax error."""
    _same(con, oracle, sql, None)
    if _answer(lambda: oracle.execute(sql).fetchall()) == "error":
        with pytest.raises(dbapi.ProgrammingError, match="syntax error near"):
            con.cursor().execute(sql)
