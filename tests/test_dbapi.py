"""PEP 249: module globals, connection, cursor, exceptions, types, warnings."""

from __future__ import annotations

import datetime
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

import florsql
import florsql.errors as ferrors
from florsql import dbapi
from florsql.errors import ReplayOffWarning
from tests.helpers import make_repo, run_script, write
from tests.helpers_sql import fixture_history


@pytest.fixture
def con(tmp_path: Path) -> Iterator[dbapi.Connection]:
    with florsql.connect(fixture_history(tmp_path / "repo")) as connection:
        yield connection


def test_module_globals() -> None:
    assert (dbapi.apilevel, dbapi.threadsafety, dbapi.paramstyle) == ("2.0", 1, "qmark")
    assert florsql.connect is dbapi.connect
    for name in (
        "Warning", "Error", "InterfaceError", "DatabaseError", "DataError", "OperationalError",
        "IntegrityError", "InternalError", "ProgrammingError", "NotSupportedError",
    ):  # fmt: skip
        cls = getattr(dbapi, name)
        assert issubclass(cls, Exception) and getattr(dbapi.Connection, name) is cls
    assert issubclass(dbapi.Error, ferrors.FlorError)
    assert issubclass(dbapi.ProgrammingError, dbapi.DatabaseError)
    assert issubclass(dbapi.DataError, dbapi.DatabaseError)


def test_pep249_names_on_the_top_level_module_load_lazily() -> None:
    """PEP 249 puts its globals, exceptions and types on the module that has ``connect``."""
    for name in florsql.DBAPI_NAMES:
        assert getattr(florsql, name) is getattr(dbapi, name), name
        assert name in florsql.__all__
    assert (florsql.apilevel, florsql.threadsafety, florsql.paramstyle) == ("2.0", 1, "qmark")
    assert florsql.Date(2026, 1, 2) == datetime.date(2026, 1, 2)
    assert florsql.STRING == "VARCHAR" and florsql.NUMBER == "DOUBLE"
    assert issubclass(florsql.ProgrammingError, florsql.Error)
    assert issubclass(florsql.Error, florsql.FlorError)
    code = (
        "import sys, florsql\n"
        "names = [getattr(florsql, n) for n in florsql.DBAPI_NAMES if n != 'connect']\n"
        "try:\n"
        "    raise florsql.ProgrammingError('x')\n"
        "except florsql.Error:\n"
        "    pass\n"
        "heavy = ('duckdb', 'sqlglot', 'pyarrow', 'ray', 'torch', 'libcst')\n"
        "print([m for m in heavy if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        florsql.nope  # noqa: B018


def test_fetching(con: dbapi.Connection) -> None:
    cur = con.cursor()
    assert cur.description is None and cur.rowcount == -1 and cur.arraysize == 1
    cur.execute("SELECT run_id, epoch, acc FROM logs WHERE acc IS NOT NULL ORDER BY run_id, epoch")
    assert cur.rowcount == 12
    assert [d[0] for d in cur.description or []] == ["run_id", "epoch", "acc"]
    assert cur.fetchone() == ("r1", 0, 0.0)
    assert cur.fetchmany() == [("r1", 1, 0.25)]
    cur.arraysize = 3
    assert [r[1] for r in cur.fetchmany()] == [2, 3, 0]
    assert len(cur.fetchmany(100)) == 7
    assert cur.fetchone() is None and cur.fetchall() == [] and cur.fetchmany(5) == []
    cur.execute("SELECT epoch FROM logs WHERE acc IS NOT NULL AND run_id = 'r2' ORDER BY 1")
    assert list(cur) == [(0,), (1,), (2,), (3,)]


def test_description_type_codes_compare_to_type_objects(con: dbapi.Connection) -> None:
    cur = con.execute("SELECT run_id, tstamp, lr, epoch, 'x'::BLOB AS b, val FROM logs LIMIT 0")
    codes = [d[1] for d in cur.description or []]
    assert codes[:5] == ["VARCHAR", "TIMESTAMP WITH TIME ZONE", "DOUBLE", "BIGINT", "BLOB"]
    assert codes[0] == dbapi.STRING and codes[1] == dbapi.DATETIME
    assert codes[2] == dbapi.NUMBER and codes[3] == dbapi.NUMBER and codes[4] == dbapi.BINARY
    assert codes[2] != dbapi.STRING and codes[5] == "NULL"
    assert all(len(d) == 7 for d in cur.description or [])


def test_parameters_and_executemany(con: dbapi.Connection) -> None:
    cur = con.cursor()
    cur.execute("SELECT count(*) FROM logs WHERE lr >= ? AND opt = ? AND acc > ?", (0.2, "sgd", 0))
    assert cur.fetchone() == (3,)
    cur.executemany("SELECT CAST(? AS VARCHAR), ?", [("a", 1), ("b", 2)])
    assert cur.fetchall() == [("b", 2)]
    cur.execute("SELECT ?, ?, ?", [dbapi.Date(2020, 1, 2), dbapi.Binary(b"ab"), None])
    assert cur.fetchone() == (datetime.date(2020, 1, 2), b"ab", None)
    with pytest.raises(dbapi.ProgrammingError, match="qmark"):
        cur.execute("SELECT ?", {"x": 1})
    with pytest.raises(dbapi.ProgrammingError, match="parameter"):
        cur.execute("SELECT ?", [])
    cur.setinputsizes([None])
    cur.setoutputsize(10)


def test_a_failed_execute_leaves_no_result_of_the_statement_before(
    con: dbapi.Connection,
) -> None:
    """The rows of the previous statement must not answer for one that failed (a loop that
    catches errors would read them as the failed query's), nor for an executemany given no
    parameters: like DuckDB's and sqlite3's cursors, no result is left."""
    cur = con.cursor()
    cur.execute("SELECT 42 AS answer")
    with pytest.raises(dbapi.ProgrammingError):
        cur.execute("SELECT gradd FROM logs")
    assert cur.description is None and cur.rowcount == -1
    with pytest.raises(dbapi.ProgrammingError, match="no result"):
        cur.fetchall()
    cur.execute("SELECT 42 AS answer")
    cur.executemany("SELECT ? AS x", [])
    assert cur.description is None and cur.rowcount == -1
    with pytest.raises(dbapi.ProgrammingError, match="no result"):
        cur.fetchone()


def test_errors_map_to_pep249_and_florsql_classes(con: dbapi.Connection) -> None:
    cur = con.cursor()
    with pytest.raises(dbapi.ProgrammingError) as info:
        cur.execute("SELEC 1")
    assert isinstance(info.value, ferrors.ParseError) and info.value.line == 1
    with pytest.raises(dbapi.ProgrammingError) as info:
        cur.execute("DELETE FROM runs")
    assert isinstance(info.value, ferrors.ParseError)
    with pytest.raises(dbapi.ProgrammingError) as plan:
        cur.execute("SELECT gradd FROM logs")
    assert isinstance(plan.value, ferrors.PlanError) and "Did you mean 'grad'" in str(plan.value)
    with pytest.raises(dbapi.DataError) as data:
        cur.execute("SELECT 'x'::INT")
    assert isinstance(data.value, ferrors.SqlError) and data.value.col is not None
    with pytest.raises(dbapi.ProgrammingError) as bind:
        cur.execute("SELECT nope()")
    assert isinstance(bind.value, ferrors.SqlError) and "nope" in str(bind.value)


def test_warnings_reach_the_caller(con: dbapi.Connection) -> None:
    cur = con.cursor()
    cur.execute("SET replay = 'off'")
    with pytest.warns(ReplayOffWarning, match="replay is off") as caught:
        cur.execute("SELECT val FROM logs")
    assert caught[0].filename == __file__
    assert cur.messages and cur.messages[0][0] is ReplayOffWarning
    assert cur.plan is not None and not cur.plan.empty


def test_set_show_explain_and_arrow(con: dbapi.Connection) -> None:
    cur = con.cursor()
    cur.execute("SET replay = 'confirm'")
    assert con.replay == "confirm" and cur.rowcount == -1 and cur.description is None
    with pytest.raises(dbapi.ProgrammingError):
        cur.fetchone()
    cur.execute("SHOW RUNS")
    assert cur.rowcount == 4
    cur.execute("EXPLAIN SELECT val FROM logs")
    assert cur.fetchone() == ("Replay plan: 3 run(s), 12 outer iteration(s), 5 task(s), "
                              "est. 48.2 s of work, 3.9 KB of checkpoints restored",)  # fmt: skip
    cur.execute("SELECT run_id, lr FROM runs ORDER BY run_id")
    cur.fetchone()
    rest = cur.fetch_arrow_table()
    assert isinstance(rest, pa.Table) and rest.column("run_id").to_pylist() == ["r2", "r3", "r4"]
    assert cur.fetchall() == []


def test_close_semantics(tmp_path: Path) -> None:
    repo = fixture_history(tmp_path / "repo")
    con = florsql.connect(repo)
    cur = con.cursor()
    con.commit()
    con.rollback()
    with con.cursor() as other:
        other.execute("SELECT 1")
    with pytest.raises(dbapi.InterfaceError):
        other.execute("SELECT 1")
    con.close()
    con.close()  # closing twice is fine
    assert con.closed
    for call in (con.cursor, con.commit, lambda: cur.execute("SELECT 1")):
        with pytest.raises(dbapi.InterfaceError):
            call()
    with florsql.connect(repo) as again:  # the index was released
        with pytest.raises(dbapi.OperationalError) as busy:
            florsql.connect(repo)
        assert isinstance(busy.value, ferrors.StoreError)
        assert again.execute("SELECT 1").fetchone() == (1,)


def test_type_constructors() -> None:
    assert dbapi.Date(2020, 1, 2) == datetime.date(2020, 1, 2)
    assert dbapi.Time(1, 2, 3) == datetime.time(1, 2, 3)
    assert dbapi.Timestamp(2020, 1, 2, 3, 4, 5) == datetime.datetime(2020, 1, 2, 3, 4, 5)
    assert dbapi.DateFromTicks(0).year in (1969, 1970)
    assert isinstance(dbapi.TimeFromTicks(0), datetime.time)
    assert isinstance(dbapi.TimestampFromTicks(0), datetime.datetime)
    assert dbapi.Binary(b"x") == b"x"
    assert dbapi.NUMBER == "DECIMAL(18,3)" and dbapi.ROWID != "VARCHAR"


TINY = """
import florsql as flor
state = {"w": flor.arg("lr", 0.1)}
with flor.checkpointing(state=state):
    for epoch in flor.loop("epoch", range(3)):
        for step in flor.loop("step", range(2)):
            state["w"] += 1
        flor.log("w", state["w"])
"""


def test_connect_replays_hindsight_columns_by_default(tmp_path: Path) -> None:
    """``florsql.connect(repo)`` is ``replay = 'auto'`` (docs/interfaces.md): a query naming a
    hindsight column computes it."""
    repo = make_repo(tmp_path / "t", {"train.py": TINY})
    run_script(repo, "train.py", FLORSQL_CHECKPOINT_PERIOD="1")
    write(repo / "train.py", TINY + '        flor.log("w2", state["w"] * 2)\n')
    with florsql.connect(repo) as con:
        assert con.replay == "auto"
        cur = con.execute("SELECT epoch, w, w2 FROM logs ORDER BY epoch")
        rows = cur.fetchall()
    assert rows == [(0, 2.1, 4.2), (1, 4.1, 8.2), (2, 6.1, 12.2)]


def test_fetchmany_refuses_a_negative_size(con: dbapi.Connection) -> None:
    """PEP 249 leaves a negative size undefined and the drivers disagree: sqlite3 answers every
    row, DuckDB's Python API refuses it (a TypeError), florsql answered [] (a `while rows :=
    cur.fetchmany(n)` loop then read nothing, silently). It is refused, and 0 answers []."""
    cur = con.execute("SELECT epoch FROM logs WHERE run_id = 'r2' AND acc IS NOT NULL ORDER BY 1")
    with pytest.raises(dbapi.ProgrammingError, match=r"fetchmany\(-1\).*fetchall\(\)"):
        cur.fetchmany(-1)
    assert cur.fetchmany(0) == []
    cur.arraysize = -2
    with pytest.raises(dbapi.ProgrammingError, match=r"arraysize is -2"):
        cur.fetchmany()
    with pytest.raises(dbapi.ProgrammingError, match="a whole number"):
        cur.fetchmany(1.5)  # type: ignore[arg-type]
    cur.arraysize = 1
    assert cur.fetchall() == [(0,), (1,), (2,), (3,)]  # nothing was consumed by the refusals


def test_binary_parameters_are_refused_as_bytes_are(con: dbapi.Connection) -> None:
    """A bytearray or memoryview given as the parameters bound each byte as an integer
    (`SELECT ?, ?` with bytearray(b'ab') answered 97, 98), where bytes are refused: a value
    meant for one `?` must be in the list."""
    for params in (bytearray(b"ab"), memoryview(b"ab")):
        with pytest.raises(dbapi.ProgrammingError, match=r"\(a list or tuple\)"):
            con.execute("SELECT ? AS a, ? AS b", params)  # type: ignore[arg-type]
    assert con.execute("SELECT ? AS a", [bytearray(b"ab")]).fetchall() == [(b"ab",)]
