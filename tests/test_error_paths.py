"""Odd inputs, as a stranger types them, through every front end: a florsql error, never a trace.

Through the DB-API, click's CliRunner and the real ``florsql`` command in a subprocess: each
error is a ``florsql.Error`` (or a one-line ``Error:`` from the command) whose message says what
to do, names no internal API, and no path is created by asking.
"""

from __future__ import annotations

import datetime
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import florsql
from florsql.cli import main
from florsql.engine import Engine
from tests.helpers import git
from tests.helpers_sql import fixture_history

INTERNAL = ("parse_many", "sqlglot", "Traceback", "duckdb.", "_duckdb", "<class")


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = fixture_history(tmp_path_factory.mktemp("odd") / "repo")
    git(path, "init", "-q")
    return path


@pytest.fixture
def cur(repo: Path) -> Iterator[florsql.dbapi.Cursor]:
    with florsql.connect(repo, replay="off") as con:
        yield con.cursor()


ODD: list[tuple[str, Any, type[Exception], str]] = [
    ("", [], florsql.ProgrammingError, "empty query"),
    ("   \n", [], florsql.ProgrammingError, "empty query"),
    ("-- only a comment", [], florsql.ProgrammingError, "empty query"),
    ("/* c */ ;", [], florsql.ProgrammingError, "empty query"),
    ("SELECT 1; SELECT 2", [], florsql.ProgrammingError, "run them one at a time"),
    ("SELECT 'abc", [], florsql.ProgrammingError, "unterminated string literal"),
    ('SELECT "abc', [], florsql.ProgrammingError, "unterminated quoted identifier"),
    ("SELECT ?", [], florsql.ProgrammingError, "1 parameter(s) (?), 0 value(s) given"),
    ("SELECT 1", [1], florsql.ProgrammingError, "0 parameter(s) (?), 1 value(s) given"),
    ("SELECT ?", [10**40], florsql.ProgrammingError, "beyond SQL's integer types"),
    ("SELECT ?", [object()], florsql.ProgrammingError, "cannot bind a value of type object"),
    ("SELECT 1", 5, florsql.ProgrammingError, "pass the values as a list, in order"),
    ("SELECT 1", {"a": 1}, florsql.ProgrammingError, "named parameters (a) are not supported"),
    ("SELECT 9223372036854775807 + 1", [], florsql.DataError, "Overflow"),
    ("SELECT 1 LIMIT 1e400", [], florsql.DataError, "out of range"),
    ("SELECT * FROM nowhere", [], florsql.ProgrammingError, "Unknown relation 'nowhere'"),
    # session 43: "Unknown column 'z'", where DuckDB renames logs' first columns by position
    ("SELECT z FROM logs AS t(a, b, z)", [], florsql.ProgrammingError, "column alias list"),
]


@pytest.mark.parametrize(("sql", "params", "kind", "says"), ODD)
def test_odd_inputs_through_the_dbapi(
    cur: florsql.dbapi.Cursor, sql: str, params: Any, kind: type[Exception], says: str
) -> None:
    with pytest.raises(kind) as info:
        cur.execute(sql, params)
    assert isinstance(info.value, florsql.Error)
    assert says in str(info.value)
    assert not any(word in str(info.value) for word in INTERNAL), str(info.value)


def test_odd_values_that_do_bind(cur: florsql.dbapi.Cursor) -> None:
    longest = datetime.timedelta.max
    ((got,),) = cur.execute("SELECT ?", [longest]).fetchall()  # a timedelta, as DuckDB's API
    assert type(got) is datetime.timedelta and got == longest
    exact = cur.execute("SELECT ?", [longest]).fetch_arrow_table().column(0)[0].value
    micros = longest.seconds * 1_000_000 + longest.microseconds
    assert (exact.months, exact.days, exact.nanoseconds) == (0, longest.days, micros * 1000)
    assert cur.execute("SELECT ?::VARCHAR", [float("-inf")]).fetchall() == [("-inf",)]


def test_a_top_level_pivot_over_logs_reads_logs(cur: florsql.dbapi.Cursor) -> None:
    """``PIVOT logs ...`` (no SELECT around it) used to fail: "Table with name logs does not
    exist!"."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cur.execute("PIVOT logs ON epoch IN (0, 3) USING max(acc) GROUP BY run_id")
        rows = cur.fetchall()
    assert sorted(rows)[:3] == [("r1", 0.0, 0.75), ("r2", 0.0, 0.75), ("r3", 0.0, 0.75)]


def test_an_error_florsql_did_not_foresee_is_still_a_florsql_error(repo: Path) -> None:
    """The engine's observability hook is user code: what it raises fails the query as a
    florsql error (PEP 249 InternalError), its cause kept."""
    with florsql.connect(repo, replay="off") as con:

        def broken(sql: str) -> None:
            raise RuntimeError("hook broke")

        con._engine().on_run = broken
        with pytest.raises(florsql.InternalError, match="RuntimeError: hook broke") as info:
            con.cursor().execute("SELECT 1")
        assert isinstance(info.value.__cause__, RuntimeError)
        assert "please report it" in str(info.value)


def test_a_missing_repository_is_said_and_never_created(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such"
    with pytest.raises(florsql.OperationalError, match="does not exist"):
        florsql.connect(missing)
    assert not (tmp_path / "no").exists()
    result = CliRunner().invoke(main, ["--repo", str(missing), "query", "SELECT 1"])
    assert result.exit_code == 2 and "does not exist" in result.output
    result = CliRunner().invoke(main, ["query", "SELECT 1", "--repo", str(missing)])
    assert result.exit_code == 2 and "does not exist" in result.output
    assert not (tmp_path / "no").exists()


def test_cli_errors_are_one_line_without_internal_names(repo: Path) -> None:
    for sql, says in (
        ("SELECT 1; SELECT 2", "expected one statement, got 2: run them one at a time"),
        ("", "empty query|needs a query"),
        ("SELECT 'abc", "unterminated string literal"),
        ("SELECT ?", "1 parameter(s) (?), 0 value(s) given"),
    ):
        for command in ("query", "explain"):
            result = CliRunner().invoke(main, ["--repo", str(repo), command, sql])
            assert result.exit_code == 1, result.output
            assert result.output.startswith("Error: "), result.output
            assert any(part in result.output for part in says.split("|")), result.output
            assert result.exception is None or isinstance(result.exception, SystemExit)
            assert not any(word in result.output for word in INTERNAL)


def _florsql(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    code = "import sys; from florsql.cli import main; sys.exit(main())"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


def test_the_real_command(repo: Path, tmp_path: Path) -> None:
    done = _florsql("--repo", str(tmp_path / "missing"), "query", "SELECT 1", cwd=tmp_path)
    assert done.returncode == 2 and "does not exist" in done.stderr
    assert "Traceback" not in done.stderr
    done = _florsql("query", "SELECT 1", cwd=tmp_path)  # not in a git repository
    assert done.returncode == 1 and "is not inside a git repository" in done.stderr
    assert "Traceback" not in done.stderr
    done = _florsql("--repo", str(repo), "query", "SELECT 1; SELECT 2", cwd=tmp_path)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        "Error: expected one statement, got 2: run them one at a time (line 1, column 11)"
    ]


def test_the_index_in_use_hint_names_an_option_that_exists(repo: Path, tmp_path: Path) -> None:
    with Engine(repo):  # this process holds the index
        done = _florsql("--repo", str(repo), "--wait", "0", "query", "SELECT 1", cwd=tmp_path)
        assert done.returncode == 1 and "in use by another process" in done.stderr
        assert "florsql --wait SECONDS" in done.stderr and "Traceback" not in done.stderr
        for args in (["--wait", "0.1", "query", "SELECT 1"], ["query", "SELECT 1", "--wait", "0"]):
            done = _florsql("--repo", str(repo), *args, cwd=tmp_path)
            assert done.returncode == 1 and "in use by another process" in done.stderr, done.stderr
        with pytest.raises(florsql.OperationalError, match=r"wait=SECONDS"):
            florsql.connect(repo, wait=0.05)


def test_a_second_command_waits_for_the_index_and_says_so(repo: Path, tmp_path: Path) -> None:
    """Two ``florsql query`` commands at once (two terminals): the second failed at once, "in
    use by another process" (``--wait`` was 0 by default). Now it waits (60 s by default),
    saying so on stderr, and answers once the first is done."""
    code = "import sys; from florsql.cli import main; sys.exit(main())"
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    engine = Engine(repo)  # the first command, holding the index
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", code, "--repo", str(repo), "query", "SELECT 41 + 1 AS x"],
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        assert proc.stderr is not None
        line = proc.stderr.readline()  # the notice: it waits now
        assert "in use by another process" in line and "waiting up to 60 s" in line, line
    finally:
        engine.close()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "42" in out


def test_the_shell_reports_each_error_and_goes_on(repo: Path) -> None:
    script = ";;\n-- a comment\nSELECT ?;\nSELECT 1 AS one;\n.nope\nSELECT 1; SELECT 'abc\n"
    result = CliRunner().invoke(main, ["--repo", str(repo)], input=script)
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "one\n---\n  1\n(1 row)" in result.stdout
    for says in ("1 parameter(s) (?), 0 value(s) given", "unknown command .nope",
                 "unterminated string literal"):  # fmt: skip
        assert says in result.stderr, result.stderr
    assert not any(word in result.stderr for word in INTERNAL)


DIRECT = """
import florsql
from florsql import log as L, loop

w = 1.0
for epoch in loop("epoch", range(3)):
    w = w * 0.5 + epoch
    L("w", w)
"""


def test_a_statement_written_with_an_imported_log_function_says_how_to_write_it(
    tmp_path: Path,
) -> None:
    """``from florsql import log as L`` then a new ``L("w2", ...)``: the column is found but
    propagation places only module calls; the error says so and how to write it (it said
    "no file of this version can take it"), and the module form then replays."""
    from tests.helpers import make_repo, run_script

    repo = make_repo(tmp_path / "p", {"train.py": DIRECT})
    run_script(repo, "train.py")
    (repo / "train.py").write_text(DIRECT + '    L("w2", w * 2)\n')
    with pytest.raises(florsql.Error) as err, florsql.connect(repo) as con:
        con.execute("SELECT epoch, w2 FROM logs ORDER BY epoch").fetchall()
    assert "from florsql import log" in str(err.value)
    assert 'florsql.log("w2", ...)' in str(err.value)
    (repo / "train.py").write_text(DIRECT + '    florsql.log("w2", w * 2)\n')
    with florsql.connect(repo) as con:
        rows = con.execute("SELECT epoch, w, w2 FROM logs ORDER BY epoch").fetchall()
    assert [r[2] for r in rows] == [r[1] * 2 for r in rows]


def test_a_statement_naming_its_value_first_is_a_hindsight_column(tmp_path: Path) -> None:
    """``florsql.log(value=v, name="w2")`` logs ``w2`` when it runs, so it is a hindsight
    statement too: older runs replay it. The scanner read the first argument in source order
    (the value) and missed it: once a run of today's code had logged w2, the older run's w2
    was NULL without a word."""
    from tests.helpers import make_repo, run_script

    repo = make_repo(tmp_path / "p", {"train.py": DIRECT})
    run_script(repo, "train.py")
    (repo / "train.py").write_text(DIRECT + '    florsql.log(value=w * 2, name="w2")\n')
    git(repo, "commit", "-qam", "w2")
    run_script(repo, "train.py")
    with florsql.connect(repo) as con:
        rows = con.execute(
            "SELECT run_id, epoch, w, w2 FROM logs ORDER BY run_id, epoch"
        ).fetchall()
    assert len(rows) == 6
    assert [r[3] for r in rows] == [r[2] * 2 for r in rows]


BRANCHED = """
import florsql as flor

w = 1.0
with flor.checkpointing(state={}):
    for epoch in flor.loop("epoch", range(4)):
        w = w * 0.5 + epoch
        flor.log("w", w)
"""
#: Today's code: one statement the old version can take, one inside a new ``if`` block that
#: also holds a log statement the old version has (such a block cannot travel whole).
BRANCHED_NEW = BRANCHED + (
    '        flor.log("w2", w * 2)\n'
    "        if epoch % 2 == 0:  # a block the old version lacks\n"
    '            flor.log("w3", w * 3)\n'
    '            flor.log("w", w)\n'
)


def test_a_statement_propagation_cannot_place_is_said_with_its_reason(tmp_path: Path) -> None:
    """A new statement inside a block the old version lacks, where that block cannot travel
    whole (it holds a log statement the old version has), cannot be placed. EXPLAIN says so
    and plans no task for it; a query that also reads a placeable statement gets that one's
    values (equal to a full run of today's code) and a warning naming the reason, not a bare
    "still missing after replay" after replaying for nothing; a query of it alone is an error
    with the reason."""
    from tests.helpers import make_repo, run_script

    repo = make_repo(tmp_path / "p", {"train.py": BRANCHED})
    run_script(repo, "train.py", FLORSQL_CHECKPOINT_PERIOD="1")
    (repo / "train.py").write_text(BRANCHED_NEW)
    why = "no block matching if epoch % 2 == 0 inside flor.loop('epoch')"
    with florsql.connect(repo) as con:
        plan = "\n".join(r[0] for r in con.execute("EXPLAIN SELECT w2, w3 FROM logs").fetchall())
        assert f"cannot place: w3 ({why}" in plan
        assert "statement: w2" in plan and "statement: w3" not in plan
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rows = con.execute("SELECT epoch, w, w2, w3 FROM logs ORDER BY epoch").fetchall()
        texts = [str(c.message) for c in caught]
    assert [r[2] for r in rows] == [r[1] * 2 for r in rows] and len(rows) == 4
    assert all(r[3] is None for r in rows)
    assert any("cannot compute w3" in t and why in t for t in texts), texts
    assert not any("still missing after replay" in t for t in texts), texts
    with pytest.raises(florsql.Error) as err, florsql.connect(repo) as con:
        con.execute("SELECT epoch, w3 FROM logs").fetchall()
    assert why in str(err.value) and "w3" in str(err.value)
