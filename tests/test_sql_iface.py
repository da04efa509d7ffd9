"""Every front end tried as a stranger would: parameters where DuckDB takes none, errors that
must name the real mistake, the DB-API's connection rules, ``flor.dataframe`` of loop names.
Each answer is compared with DuckDB's over the same rows (the oracle) where there is one."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from sqlglot import exp

import florsql
from florsql.dbapi.exceptions import wrap_error
from florsql.engine import Engine
from tests.helpers import script_env
from tests.helpers_sql import RunBuilder, fixture_history


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fixture_history(tmp_path_factory.mktemp("iface") / "repo")


@pytest.fixture(scope="module")
def engine(repo: Path) -> Iterator[Engine]:
    with Engine(repo) as eng:
        yield eng


@pytest.mark.parametrize(
    ("sql", "clause"),
    [
        ("SELECT run_id, lr FROM runs ORDER BY ? DESC", "ORDER BY"),
        ("SELECT run_id, lr FROM runs ORDER BY (?) DESC", "ORDER BY"),
        ("SELECT lr FROM runs UNION ALL SELECT 9 ORDER BY ?", "ORDER BY"),
        ("SELECT lr > 0.15 AS k, count(*) FROM runs GROUP BY ?", "GROUP BY"),
        ("SELECT lr > 0.15 AS k, count(*) FROM runs GROUP BY ROLLUP (?)", "GROUP BY"),
        ("SELECT lr > 0.15 AS k, count(*) FROM runs GROUP BY GROUPING SETS ((?), ())", "GROUP BY"),
        ("SELECT DISTINCT ON (?) opt, lr FROM runs", "DISTINCT ON"),
    ],
)
def test_a_parameter_alone_as_an_order_or_group_item_is_refused_as_duckdb_does(
    engine: Engine, sql: str, clause: str
) -> None:
    """Bound as the literal ``2``, ``ORDER BY ?`` sorted by the second column (and ``GROUP BY
    ?`` grouped by the first): DuckDB refuses a parameter there, and SQLite or PostgreSQL read it
    as a constant, so florsql answered a question no database asks. It is refused, in every
    front end (the grammar sees it), at the ``?``."""
    oracle = duckdb.connect()
    oracle.execute(
        "CREATE TABLE runs AS SELECT * FROM (VALUES ('r1', 0.1, 'sgd'), "
        "('r2', 0.2, 'sgd'), ('r3', 0.3, 'adam')) v(run_id, lr, opt)"
    )
    with pytest.raises(duckdb.Error, match="Parameter not supported"):
        oracle.execute(sql, [2 if "ORDER" in sql else 1])
    with pytest.raises(florsql.errors.ParseError, match=f"item of {clause}") as err:
        engine.execute(sql, [2 if "ORDER" in sql else 1])
    assert err.value.col == sql.index("?") + 1
    # inside an expression, or in a window's or an aggregate's ORDER BY, it is a value
    rows = engine.execute(
        "SELECT run_id, sum(lr) OVER (ORDER BY ?) FROM runs ORDER BY lr * ? DESC", [1, 1]
    ).table.to_pylist()
    assert [r["run_id"] for r in rows] == ["r3", "r2", "r1", "r4"]  # r4 (eval.py): no lr


@pytest.mark.parametrize(
    ("sql", "name", "hint"),
    [
        ("SELECT opt FROM runs GROUP BY opt HAVING zz > 1", "zz", ""),
        ("SELECT lr, avg(loss) AS m FROM logs GROUP BY lr HAVING mm > 1", "mm", ""),
        ("SELECT lr, count(*) FROM logs GROUP BY lr QUALIFY zz > 1", "zz", ""),
        (
            "SELECT run_id, epoch FROM logs QUALIFY row_number() OVER "
            "(PARTITION BY run_id ORDER BY los) = 1",
            "los",
            " Did you mean 'loss'?",
        ),
    ],
)
def test_an_unknown_name_in_having_or_qualify_is_an_unknown_column(
    engine: Engine, sql: str, name: str, hint: str
) -> None:
    """sqlglot leaves unqualified HAVING and QUALIFY names out of a scope's columns (they may be
    select aliases), so a misspelt one reached DuckDB, which answered 'column "zz" must appear in
    the GROUP BY clause or be used in an aggregate function' (or, for QUALIFY, 'can't find in
    alias map'): the unknown-column error, with its suggestion and position, as in WHERE."""
    with pytest.raises(florsql.errors.PlanError) as err:
        engine.execute(sql)
    assert str(err.value).splitlines()[0] == f"Unknown column '{name}'.{hint}"
    assert err.value.col == sql.index(name) + 1


def test_having_and_qualify_still_read_aliases_lambdas_and_outer_names(engine: Engine) -> None:
    """What HAVING and QUALIFY may name without a table: a select alias (in any case), a lambda's
    variable, a column of the FROM; the answers equal DuckDB's over the same rows (each
    reference's grain: every context where it names no log column, else where ``loss`` was)."""
    oracle = duckdb.connect()
    oracle.register("every", engine.execute("SELECT run_id, lr, epoch FROM logs").table)
    oracle.register("losses", engine.execute("SELECT run_id, lr, epoch, loss FROM logs").table)
    for sql, flat in (
        (
            'SELECT lr, sum(epoch) AS "Total" FROM logs GROUP BY lr HAVING total > 3 ORDER BY lr',
            "every",
        ),
        (
            "SELECT lr FROM logs GROUP BY lr "
            "HAVING len(list_filter(list(epoch), lambda y: y > 2)) > 0 "
            "ORDER BY lr",
            "every",
        ),
        ("SELECT lr AS x FROM logs GROUP BY x HAVING X > 0.1 ORDER BY x", "every"),
        (
            "SELECT run_id, epoch, loss AS l FROM logs QUALIFY L = max(loss) OVER "
            "(PARTITION BY run_id) ORDER BY ALL",
            "losses",
        ),
    ):
        got = engine.execute(sql).table.to_pylist()
        want = oracle.sql(sql.replace("FROM logs", f"FROM {flat}")).to_arrow_table().to_pylist()
        assert got == want


def test_a_second_connection_in_the_same_process_says_so(tmp_path: Path) -> None:
    """A notebook that runs ``florsql.connect()`` twice was told the index 'is in use by another
    process (pid N)', N being its own pid, and to wait for it (only another thread could close
    it). It is told the index is open in this process, and how to read through that connection."""
    repo = fixture_history(tmp_path / "repo")
    first = florsql.connect(repo=repo)
    try:
        for wait in (0.0, 1.0):
            with pytest.raises(florsql.OperationalError) as err:
                florsql.connect(repo=repo, wait=wait)
            assert "already in use in this process" in str(err.value)
            assert "another process" not in str(err.value)
        table = florsql.dataframe("loss", repo=repo, engine=first)
        assert table.num_rows == first.execute("SELECT count(loss) FROM logs").fetchone()[0]
    finally:
        first.close()
    with florsql.connect(repo=repo) as again:  # closed: free again
        assert again.execute("SELECT count(*) FROM runs").fetchone() == (4,)


def test_dataframe_of_a_loop_name_keeps_loop_order_and_sorts_by_every_loop(engine: Engine) -> None:
    """``flor.dataframe("epoch")`` put ``step`` before ``epoch`` and sorted by ``step`` alone
    (epoch 3 before epoch 0 within a run): a loop name chosen is its loop column, in loop order,
    and rows are sorted by every loop, as for any other names."""
    table = florsql.dataframe("epoch", engine=engine)
    assert table.column_names == ["projid", "tstamp", "filename", "epoch", "step"]
    oracle = duckdb.connect()
    every = "SELECT projid, tstamp, filename, run_id, epoch, step FROM logs"  # every context
    oracle.register("flat", engine.execute(every).table)
    want = oracle.sql(
        "SELECT projid, tstamp, filename, epoch, step FROM flat "
        "ORDER BY tstamp, run_id, epoch, step"
    ).to_arrow_table()
    assert table.to_pylist() == want.to_pylist()
    loss = florsql.dataframe("loss", "EPOCH", "lr", engine=engine)
    assert loss.column_names == ["projid", "tstamp", "filename", "epoch", "step", "loss", "lr"]


def test_florsql_explain_takes_parameters_as_florsql_query_does(tmp_path: Path) -> None:
    """``florsql explain`` had no ``-p``: a query with ``?`` could not be explained from the
    command line ('the query has 1 parameter(s) (?), 0 value(s) given', and ``-p`` was 'No such
    option'). It takes ``-p VALUE`` as ``florsql query`` does, and prints the plan the DB-API's
    ``EXPLAIN`` gives for the same values."""
    repo = fixture_history(tmp_path / "repo")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)  # the command needs one
    sql = "SELECT run_id, grad FROM logs WHERE lr >= ?"
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from florsql.cli import main; main()",
            "explain",
            sql,
            "-p",
            "0.2",
            "--repo",
            str(repo),
        ],
        cwd=repo,
        capture_output=True,
        text=True,
        env=script_env(FLORSQL_REPLAY_SERVICE="0", FLORSQL_QUERY_HOST="0"),
        timeout=300,
    )
    assert (done.returncode, done.stderr) == (0, ""), done.stderr
    with florsql.connect(repo=repo) as con:
        lines = [row[0] for row in con.execute(f"EXPLAIN {sql}", [0.2]).fetchall()]
    assert done.stdout.splitlines() == lines
    assert "  pushed into the replay set (logs): lr >= CAST('0.2' AS DOUBLE)" in lines


def test_show_statements_describe_their_columns_with_duckdbs_types(tmp_path: Path) -> None:
    """``SHOW RUNS`` gave ``tstamp`` and ``ended`` the DB-API type ``TIMESTAMP`` while their
    values are zoned (``SELECT * FROM runs`` says ``TIMESTAMP WITH TIME ZONE``): the SHOW
    statements run as queries, so ``description`` (and Flight SQL's ``TYPE_NAME``) gives
    DuckDB's types, the ones the same SELECT gives."""
    with florsql.connect(repo=fixture_history(tmp_path / "repo")) as con:
        cur = con.cursor()
        for show, select in (
            ("SHOW RUNS", "SELECT * FROM runs ORDER BY tstamp, run_id"),
            ("SHOW COLUMNS FROM runs", "SELECT column_name, column_type FROM (DESCRIBE runs)"),
        ):
            shown = (cur.execute(show).description, cur.fetchall())
            assert shown == (cur.execute(select).description, cur.fetchall())
        types = dict(d[:2] for d in cur.execute("SHOW RUNS").description or ())
        assert types["tstamp"] == types["ended"] == "TIMESTAMP WITH TIME ZONE"
        kinds = dict(d[:2] for d in cur.execute("SHOW COLUMNS FROM logs").description or ())
        assert kinds["hindsight"] == "BOOLEAN" and kinds["versions"] == "VARCHAR[]"


def test_names_with_edge_spaces_and_quotes_are_columns_select_star_included(
    tmp_path: Path,
) -> None:
    """A run logged ``" pad "`` (the record API takes it): sqlglot read the catalog's names as
    SQL, so ``pad`` was the column qualify knew, ``SELECT " pad "`` answered 'Unknown column ' pad
    '. Did you mean ' pad '?' and every ``SELECT *`` of the repository failed. Names keep their
    spaces and quotes; the answers equal DuckDB's over the run's flat rows."""
    names = [" pad ", 'a"b', "Val Loss", "x.y", "order", "ünï"]
    b = RunBuilder("r1", {"lr": 0.1})
    for epoch in range(3):
        with b.loop("epoch", epoch):
            for i, name in enumerate(names):
                b.log(name, epoch * 10 + i)
    b.write(tmp_path / "repo")
    oracle = duckdb.connect()
    oracle.register("flat", pa.Table.from_pylist(b.rows))
    quoted = ", ".join('"' + n.replace('"', '""') + '"' for n in names)
    with Engine(tmp_path / "repo") as eng:
        star = eng.execute("SELECT * FROM logs ORDER BY epoch").table
        assert star.column_names[-len(names) :] == sorted(names, key=str.lower)
        for sql in (
            f"SELECT epoch, {quoted} FROM logs ORDER BY epoch",
            'SELECT l." pad " + l."a""b" AS s FROM logs l WHERE " pad " > 0 ORDER BY s',
        ):
            got = eng.execute(sql).table.to_pylist()
            want = oracle.sql(sql.replace("FROM logs", "FROM flat")).to_arrow_table()
            assert got == want.to_pylist()


CTRL_C = """
import linecache, os, signal, sys, threading, time
import florsql

# as in an interactive Python: a job started with ``&`` by a non-interactive shell (a CI
# script's background run) inherits SIGINT ignored, and the Ctrl-C below would be lost
signal.signal(signal.SIGINT, signal.default_int_handler)

con = florsql.connect(repo=sys.argv[1])
main = threading.main_thread().ident


def in_duckdb():  # the main thread is in DuckDB's call that runs the query
    frame = sys._current_frames().get(main)
    top = frame
    while frame is not None:
        if frame.f_lineno is None:  # a frame caught between two lines: look again
            return False
        line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
        if frame.f_code.co_name == "run_exact" and "to_arrow_table" in line:
            return "duckdb" in top.f_code.co_filename
        frame = frame.f_back
    return False


def press_ctrl_c():
    while not in_duckdb():
        time.sleep(0.005)
    os.kill(os.getpid(), signal.SIGINT)


threading.Thread(target=press_ctrl_c, daemon=True).start()
try:
    con.execute("SELECT count(*) FROM range(200000000000) a(i) WHERE i % 7 = 3")
    print("answered")
except KeyboardInterrupt:
    print("KeyboardInterrupt")
except Exception as e:
    print(type(e).__name__, e)
print(con.execute("SELECT count(*) FROM runs").fetchone())
"""


def test_ctrl_c_stops_a_db_api_query_as_python_code_stops(tmp_path: Path) -> None:
    """Ctrl-C while a DB-API query ran over the repository's index file went unnoticed until
    DuckDB finished, then raised ``QueryInternalError`` 'florsql failed on this query
    (RuntimeError: Query interrupted); this is a florsql bug'. It stops DuckDB at once and
    raises ``KeyboardInterrupt``, and the connection answers the next query.
    (``Engine.interrupt()`` from another thread raises ``florsql.OperationalError``.) Since
    session 46 the query scans 2e11 rows, minutes uninterrupted: a loaded CI machine answered
    the 2e9 rows of before the Ctrl-C thread ran."""
    repo = fixture_history(tmp_path / "repo")
    script = tmp_path / "ctrl_c.py"
    script.write_text(CTRL_C)
    done = subprocess.run(
        [sys.executable, str(script), str(repo)],
        capture_output=True,
        text=True,
        env=script_env(),
        timeout=600,
    )
    assert done.stdout.splitlines() == ["KeyboardInterrupt", "(4,)"], done.stdout + done.stderr


def test_an_interrupted_query_is_an_operational_error_not_a_florsql_bug(engine: Engine) -> None:
    """``Engine.interrupt()`` from another thread made DuckDB raise a plain ``RuntimeError``,
    which florsql reported as its own bug (``InternalError``). It is
    ``florsql.errors.QueryInterrupted``, a ``florsql.OperationalError`` in the DB-API."""
    running = threading.Event()  # set while the query is answered
    engine.on_run = lambda sql: running.set()

    def interrupt_until_answered() -> None:
        running.wait()
        while running.is_set():  # an interrupt before DuckDB starts the query is lost: again
            engine.interrupt()
            time.sleep(0.05)

    helper = threading.Thread(target=interrupt_until_answered, daemon=True)
    helper.start()
    try:
        with pytest.raises(florsql.errors.QueryInterrupted) as err:
            engine.execute("SELECT count(*) FROM range(200000000000) a(i) WHERE i % 7 = 3")
    finally:
        engine.on_run = None
        running.clear()
        helper.join()
    assert isinstance(wrap_error(err.value), florsql.OperationalError)
    assert engine.execute("SELECT count(*) FROM runs").table.to_pylist() == [{"count_star()": 4}]


def test_mysql_limit_offset_comma_means_what_mysql_and_sqlite_mean(engine: Engine) -> None:
    """``LIMIT a, b`` (refused by DuckDB and PostgreSQL) is MySQL's and SQLite's ``LIMIT b
    OFFSET a``, with literals and with parameters, and a replay-set cut keeps that meaning."""
    for sql, params in (
        ("SELECT run_id, epoch FROM logs WHERE acc IS NOT NULL ORDER BY lr, epoch LIMIT 5, 3", []),
        (
            "SELECT run_id, epoch FROM logs WHERE acc IS NOT NULL ORDER BY lr, epoch LIMIT ?, ?",
            [5, 3],
        ),
    ):
        want = engine.execute(
            sql.replace("LIMIT 5, 3", "LIMIT 3 OFFSET 5").replace("LIMIT ?, ?", "LIMIT 3 OFFSET 5"),
            [],
        ).table.to_pylist()
        assert engine.execute(sql, params).table.to_pylist() == want
        assert [(r["run_id"], r["epoch"]) for r in want] == [("r2", 1), ("r2", 2), ("r2", 3)]


def test_an_empty_log_name_in_todays_code_is_no_column(tmp_path: Path) -> None:
    """``flor.log("", x)`` in the working tree (refused when it runs) became a hindsight column
    named ``""``, and every query naming ``logs`` failed with DuckDB's 'zero-length delimited
    identifier': the whole history unreadable because of one unfinished edit."""
    repo = fixture_history(tmp_path / "repo")
    script = repo / "train.py"
    with Engine(repo) as eng:
        count = "SELECT count(*) AS n FROM logs"
        before = eng.execute(count).table.to_pylist()
        script.write_text(script.read_text() + 'flor.log("", 2.0)\n')  # read on the next query
        names = [r["column_name"] for r in eng.execute("SHOW COLUMNS FROM logs").table.to_pylist()]
        assert "" not in names
        assert eng.execute(count).table.to_pylist() == before
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", florsql.errors.ReplayOffWarning)
            assert eng.execute("SELECT * FROM logs").table.num_rows == before[0]["n"]


@pytest.mark.parametrize(
    ("sql", "at"),
    [
        ("SELECT l.lr FROM logs AS l ORDER BY logs.lr", "logs.lr"),
        ("SELECT lr FROM logs AS l WHERE LOGS.epoch = 1", "LOGS.epoch"),
        ('SELECT lr FROM logs AS l WHERE "logs".epoch = 1', '"logs".epoch'),
        ("SELECT lr FROM logs AS l GROUP BY lr HAVING max(m.epoch) > 1", "m.epoch"),
    ],
)
def test_a_qualifier_no_table_has_is_pointed_at_where_it_qualifies(
    engine: Engine, sql: str, at: str
) -> None:
    """'Referenced table "logs" not found' for ``logs.lr`` where the FROM calls it ``l``: the
    caret pointed at the first ``logs`` of the text, the one in FROM, which is right; it points
    at the qualifier that names no table."""
    with pytest.raises(florsql.errors.SqlError, match="Referenced table") as err:
        engine.execute(sql)
    assert err.value.col == sql.index(at) + 1


def test_the_shell_completes_names_that_need_quotes_quoted() -> None:
    """Tab after ``SELECT my`` inserted ``my name`` (read as ``my AS name``), after ``SELECT a``
    the log ``a.b`` (a column b of a table a), after ``SELECT ord`` the keyword ``order``: names
    that are not plain or are reserved words (DuckDB's list) are inserted quoted, and a quote
    typed already is not doubled. The completed statements parse and name those columns."""
    from florsql.grammar import parse
    from florsql.repl.completion import suggest
    from florsql.repl.service import Column, Schema

    names = ("loss", "my name", "a.b", "order", 'x"y')
    schema = Schema({"logs": tuple(Column(n, "DOUBLE") for n in names)})
    for before, name in (
        ("SELECT my", "my name"),
        ('SELECT "my', "my name"),
        ("SELECT a", "a.b"),
        ("SELECT ord", "order"),
        ("SELECT x", 'x"y'),
        ("SELECT lo", "loss"),
        ("SELECT logs.or", "order"),
    ):
        first = suggest(before, schema)[0]
        done = before[: len(before) - first.replace] + first.text
        tree = parse(f"{done} FROM logs").tree
        assert [c.name for c in tree.find_all(exp.Column)] == [name], (before, done)


def test_dataframe_of_a_hindsight_name_says_how_to_compute_it_and_can(tmp_path: Path) -> None:
    """``flor.dataframe("w2")`` of a name today's code logs but no run recorded answered NULLs
    with a warning ending 'SET replay = 'auto' to compute them', which a dataframe caller cannot
    do. The warning names ``flor.dataframe(..., replay='auto')``, which replays the old runs;
    its values equal what the DB-API (replay on) answers."""
    from tests.test_flight_support import recorded_repo

    repo = recorded_repo(tmp_path / "proj")
    with pytest.warns(florsql.errors.ReplayOffWarning) as caught:
        off = florsql.dataframe("w2", repo=repo)
    assert off.column("w2").null_count == off.num_rows
    text = " ".join(str(w.message) for w in caught)
    assert "flor.dataframe(..., replay='auto') computes them" in text and "SET replay" not in text
    with warnings.catch_warnings():  # the tiny script's old runs replay a little differently
        warnings.simplefilter("ignore", florsql.errors.NondeterminismWarning)
        on = florsql.dataframe("w2", repo=repo, replay="auto")
        with florsql.connect(repo=repo) as con:
            want = con.execute(
                "SELECT w2 FROM logs WHERE w2 IS NOT NULL ORDER BY tstamp, run_id, epoch"
            ).fetchall()
    assert [(v,) for v in on.column("w2").to_pylist()] == want and want
