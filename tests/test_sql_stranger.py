"""Questions a newcomer asks, answered exactly: florsql's answer against DuckDB's over the same
rows materialized as a plain table (the oracle), and the names runs may share across scripts."""

from __future__ import annotations

import csv
import io
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wcwidth import wcswidth, wcwidth

import florsql
from florsql.engine import Engine
from florsql.repl.render import render
from tests.helpers import make_repo
from tests.helpers_sql import BASE_TIME, RunBuilder, fixture_history


def _shared_names_history(repo: Path) -> Path:
    """``a.py`` takes an arg ``x`` and loops over ``step``; ``b.py`` logs values named ``x`` and
    ``step`` (a run cannot log its own arg's or loop's name, but another script's runs can);
    ``c.py`` takes an arg named like ``b.py``'s loop ``epoch``."""
    a = RunBuilder("r1", {"x": 5}, filename="a.py", tstamp=BASE_TIME)
    with a.loop("step", 0):
        a.log("acc", 0.5)
    a.write(repo)
    b = RunBuilder("r2", {}, filename="b.py", tstamp=BASE_TIME.replace(hour=1))
    for epoch in range(2):
        with b.loop("epoch", epoch):
            b.log("x", 100 + epoch)
            b.log("step", 7)
    b.write(repo)
    c = RunBuilder("r3", {"epoch": 42}, filename="c.py", tstamp=BASE_TIME.replace(hour=2))
    c.log("acc", 0.25)
    c.write(repo)
    (repo / "b.py").write_text(B_TODAY)
    return repo


#: ``b.py`` today: it also logs ``h``, a hindsight name its run never recorded.
B_TODAY = """import florsql as flor

for epoch in flor.loop("epoch", range(2)):
    flor.log("x", 100 + epoch)
    flor.log("step", 7)
    flor.log("h", epoch)
"""


@pytest.mark.parametrize("use_cache", [True, False])
def test_a_name_that_is_an_arg_or_loop_of_some_runs_and_a_log_of_others(
    tmp_path: Path, use_cache: bool
) -> None:
    """Before, the log values of such a name read as NULL in ``logs`` (the arg or loop column
    hid them; they were only in log_records). Now the column holds every run's values, and a
    predicate on it is not taken for a run-level one (it is not pushed, nor used to cut a
    LIMIT), so each answer equals DuckDB's over the rows materialized by hand."""
    repo = _shared_names_history(tmp_path / "repo")
    with Engine(repo, use_cache=use_cache) as eng, warnings.catch_warnings():
        warnings.simplefilter("ignore")

        def rows(sql: str) -> list[tuple[object, ...]]:
            return [tuple(r.values()) for r in eng.execute(sql).table.to_pylist()]

        assert rows("SELECT run_id, epoch, step, x, acc FROM logs ORDER BY ALL") == [
            ("r1", None, 0, 5, 0.5),
            ("r2", 0, 7, 100, None),
            ("r2", 1, 7, 101, None),
            ("r3", 42, None, None, 0.25),
        ]
        assert rows("SELECT run_id, epoch FROM logs WHERE x > 50 ORDER BY ALL") == [
            ("r2", 0),
            ("r2", 1),
        ]
        assert rows("SELECT run_id, x FROM logs WHERE x IS NOT NULL ORDER BY x DESC LIMIT 2") == [
            ("r2", 101),
            ("r2", 100),
        ]
        assert rows("SELECT run_id FROM logs WHERE epoch = 42") == [("r3",)]
        shown = eng.execute("SHOW COLUMNS FROM logs").table.to_pylist()
        types = {c["column_name"]: c["column_type"] for c in shown}
        assert (types["x"], types["step"], types["epoch"]) == ("BIGINT", "BIGINT", "BIGINT")
        # r2's rows pass x > 50 with the values it logged: its replay of h must not be dropped
        plan = eng.plan("SELECT epoch, h FROM logs WHERE x > 50 AND epoch >= 1")
        assert plan.replay.replay_set() == {"r2": {"h": (0, 1)}}
        args = rows("SELECT run_id, x, epoch FROM runs ORDER BY run_id")
        assert args == [("r1", 5, None), ("r2", None, None), ("r3", None, 42)]
        frame = florsql.dataframe("x", engine=eng)  # rows per context: b.py logged x twice
        assert frame.column("x").to_pylist() == [5, 100, 101, None]


def test_show_columns_counts_replayed_runs_as_having_the_column(tmp_path: Path) -> None:
    """After a replay computed ``w2`` for both runs, SHOW COLUMNS said ``runs_with`` 2 and
    ``runs_lacking`` 2 (of 2 runs): the lacking count ignored replayed values. Now a run lacks a
    column when it has no value of it, recorded or replayed; the column stays a hindsight one."""
    import florsql
    from tests.test_flight_support import recorded_repo

    repo = recorded_repo(tmp_path / "proj")
    with florsql.connect(repo, replay="auto") as con:
        before = {r[0]: r for r in con.execute("SHOW COLUMNS FROM logs").fetchall()}
        assert before["w2"][3:7] == (True, [], 0, 2)  # hindsight, versions, with, lacking
        assert con.execute("SELECT count(w2) FROM logs").fetchall() == [(6,)]
        after = {r[0]: r for r in con.execute("SHOW COLUMNS FROM logs").fetchall()}
        plan = [r[0] for r in con.execute("EXPLAIN SELECT w2 FROM logs").fetchall()]
    # EXPLAIN counts the runs that did not record it (it said they "lack it", replayed or not)
    assert plan[:2] == [
        "Replay plan: nothing to replay (every value the query reads exists)",
        "  hindsight columns: w2 (2 run(s) did not record it)",
    ]
    assert after["w2"][3] is True and after["w2"][5:7] == (2, 0)
    assert after["loss"][5:7] == (2, 0)


# -- the shell's text of any value: DuckDB's CAST(... AS VARCHAR) ------------------------------

_CHARS = st.sampled_from([*"ab ,'\"()[]{}:=\\\t\nNUL-é_.0", "null", "NULL"])
_LEAVES = st.one_of(
    st.lists(_CHARS, max_size=6).map(lambda cs: "'" + "".join(cs).replace("'", "''") + "'"),
    st.integers(-5, 5).map(str),
    st.just("NULL"),
    st.floats(-1e20, 1e20, allow_nan=False).map(lambda f: f"{f!r}::DOUBLE"),
    st.sampled_from(
        ["TIMESTAMP '2020-01-01 01:02:03'", "DATE '2020-01-02'", "INTERVAL 3 DAY", "true",
         "'x''\"'::BLOB", "1.50::DECIMAL(4,2)", "TIMESTAMPTZ '2020-01-01 01:02:03+02'"]
    ),
)  # fmt: skip


def _nest(children: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    items = st.lists(children, min_size=1, max_size=3)
    return st.one_of(
        st.lists(children, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]"),
        items.map(lambda xs: "{" + ", ".join(f"'k{i}': {x}" for i, x in enumerate(xs)) + "}"),
        items.map(lambda xs: "row(" + ", ".join(xs) + ")"),
        items.map(lambda xs: "MAP {" + ", ".join(f"{i}: {x}" for i, x in enumerate(xs)) + "}"),
    )


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    with Engine(fixture_history(tmp_path_factory.mktemp("text") / "repo")) as eng:
        yield eng


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expr=st.recursive(_LEAVES, _nest, max_leaves=6))
def test_the_shell_prints_any_value_as_duckdb_writes_it(engine: Engine, expr: str) -> None:
    """Lists, structs, unnamed structs and maps of strings that need quoting (``'NULL'``,
    ``'a,b'``, ``''``, ``' x'``), quotes in BLOBs, times: what ``florsql query`` and the shell
    print (CSV here, so each cell is whole) equals DuckDB's own text of the value."""
    oracle = duckdb.connect()
    oracle.execute("SET TimeZone = 'UTC'")
    try:
        row = oracle.execute(f"SELECT ({expr})::VARCHAR").fetchone()
    except duckdb.Error:
        return  # not a value DuckDB builds (a list of mixed types...)
    assert row is not None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = engine.execute(f"SELECT {expr} AS v").table
    printed = list(csv.reader(io.StringIO(render(table, "csv"))))[1][0]
    assert printed == ("" if row[0] is None else row[0])


#: Pieces of text that break a table line or its alignment, or that read like the table's own
#: marks (NULL, padding, the E'...' of an escaped cell), besides plain ones.
_PIECES = [*"ab '\\\",E", "\n", "\t", "\r", "\x1b", "\x7f", "\x85", "\u2028", "\u202e", "日本",
           "e\u0301", "NULL", "null", "E'"]  # fmt: skip
_TEXTS = st.one_of(st.none(), st.lists(st.sampled_from(_PIECES), max_size=6).map("".join))


def _cut(line: str, start: int, end: int) -> str:
    """The characters of ``line`` between terminal columns ``start`` and ``end``."""
    out, at = [], 0
    for ch in line:
        width = max(wcwidth(ch), 0)
        if start <= at < end or (at == end and width == 0 and out):
            out.append(ch)
        at += width
    return "".join(out)


def _read_cell(text: str, *, name: bool = False) -> str | None:
    """A cell's value back from its printed text, with DuckDB reading an ``E'...'`` literal
    (a column name is never NULL: a header ``NULL`` is the name)."""
    if text == "NULL" and not name:
        return None
    if text.startswith("E'"):
        row = duckdb.execute(f"SELECT {text}").fetchone()
        assert row is not None
        return str(row[0])
    return text


@settings(max_examples=150, deadline=None)
@given(
    names=st.lists(st.lists(st.sampled_from(_PIECES), min_size=1, max_size=3).map("".join),
                   min_size=2, max_size=2, unique=True),
    rows=st.lists(st.tuples(_TEXTS, _TEXTS, st.none() | st.integers(-(10**6), 10**6)),
                  max_size=5),
)  # fmt: skip
def test_the_table_mode_prints_one_aligned_line_per_row_that_reads_back(
    names: list[str], rows: list[tuple[str | None, str | None, int | None]]
) -> None:
    """A value holding a newline broke its row across lines; a tab, a wide or combining
    character or a bidirectional control shifted the columns after it; the string 'NULL' read
    like NULL and edge spaces like padding. Now each row is one line,
    every cell starts at its column's offset (in terminal columns), and each printed cell reads
    back as the value: ``NULL`` is NULL, an ``E'...'`` cell is the DuckDB literal of the value."""
    columns = list(zip(*rows, strict=True)) if rows else [(), (), ()]
    table = pa.table(
        {
            names[0]: pa.array(columns[0], pa.string()),
            names[1]: pa.array(columns[1], pa.string()),
            "n": pa.array(columns[2], pa.int64()),
        }
    )
    printed = render(table, "table", limit=None)
    lines = printed.split("\n")
    assert len(lines) == len(rows) + 3  # header, rule, one line per row, the count
    assert lines[-1] == f"({len(rows)} row{'s' if len(rows) != 1 else ''})"
    spans = [(m.start(), m.end()) for m in re.finditer("-+", lines[1])]
    assert len(spans) == 3
    for number, line in enumerate([lines[0], *lines[2:-1]]):
        assert wcswidth(line) <= len(lines[1])  # -1 (a control character) included
        cells = [_cut(line, a, b).strip(" ") for a, b in spans]
        want = [*names, "n"] if number == 0 else list(rows[number - 1])
        if number == 0:
            assert [_read_cell(c, name=True) for c in cells] == want
            continue
        got = [_read_cell(c) for c in cells]
        assert got[:2] == want[:2]
        assert got[2] == (None if want[2] is None else str(want[2]))


def test_a_new_log_named_like_another_scripts_arg_is_a_hindsight_column(tmp_path: Path) -> None:
    """``a.py`` takes an arg ``k``; today's ``b.py`` gains ``flor.log("k", ...)``, which its run
    never recorded. Before, the arg column hid the new statement: nothing was replayed and
    b.py's rows read NULL without a word. Now the column is also a hindsight one, and b.py's run
    is in the replay set (a.py's, whose value is its arg, is not)."""
    repo = tmp_path / "repo"
    a = RunBuilder("r1", {"k": 3}, filename="a.py", tstamp=BASE_TIME)
    with a.loop("epoch", 0):
        a.log("acc", 0.5)
    a.write(repo)
    b = RunBuilder("r2", {}, filename="b.py", tstamp=BASE_TIME.replace(hour=1))
    for epoch in range(2):
        with b.loop("epoch", epoch):
            b.log("acc", 0.1 * epoch)
    b.write(repo)
    (repo / "b.py").write_text(
        "import florsql as flor\n\n"
        'for epoch in flor.loop("epoch", range(2)):\n'
        '    flor.log("acc", 0.1 * epoch)\n'
        '    flor.log("k", epoch * 10)\n'
    )
    with Engine(repo, replay="off") as eng:
        plan = eng.plan("SELECT run_id, epoch, k FROM logs")
        assert plan.replay.replay_set() == {"r2": {"k": (0, 1)}}
        shown = {
            c["column_name"]: c for c in eng.execute("SHOW COLUMNS FROM logs").table.to_pylist()
        }
        assert shown["k"]["hindsight"] is True
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            rows = eng.execute("SELECT run_id, epoch, k FROM logs ORDER BY ALL").table.to_pylist()
        assert [(r["run_id"], r["k"]) for r in rows] == [("r1", 3), ("r2", None), ("r2", None)]
        assert any("replay is off" in str(w.message) for w in caught)  # said, not silent


A_SCRIPT = """
import florsql as flor
k = flor.arg("k", 3)
for epoch in flor.loop("epoch", range(2)):
    flor.log("acc", 0.5 * k)
"""
B_SCRIPT = """
import random
import florsql as flor
random.seed(7)
state = {"w": 0.0}
with flor.checkpointing(state=state):
    for epoch in flor.loop("epoch", range(3)):
        for step in flor.loop("step", range(3)):
            state["w"] += random.random()
        flor.log("acc", state["w"])
"""


def test_a_new_log_named_like_another_scripts_arg_replays_exactly(tmp_path: Path) -> None:
    """End to end, with real runs: b.py's new ``k`` statement is replayed for b.py's run and
    equals a full run of the patched b.py; a.py's rows keep their arg."""
    from tests.helpers import run_script, write

    new = 'flor.log("acc", state["w"])\n        flor.log("k", round(state["w"] * 10, 9))'
    repo = make_repo(tmp_path / "r", {"a.py": A_SCRIPT, "b.py": B_SCRIPT})
    run_script(repo, "a.py", "--k", "4")
    run_script(repo, "b.py", FLORSQL_CHECKPOINT_PERIOD="1")
    write(repo / "b.py", B_SCRIPT.replace('flor.log("acc", state["w"])', new))
    oracle = make_repo(tmp_path / "o", {"b.py": (repo / "b.py").read_text()})
    run_script(oracle, "b.py")
    sql = "SELECT filename, epoch, k FROM logs WHERE step IS NULL ORDER BY ALL"
    with Engine(oracle, replay="off") as eng:
        want = eng.execute(sql).table.to_pylist()
    with Engine(repo, replay="auto") as eng, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = eng.execute(sql).table.to_pylist()
    assert [r for r in got if r["filename"] == "a.py"] == [
        {"filename": "a.py", "epoch": e, "k": 4} for e in range(2)
    ]
    assert [r for r in got if r["filename"] == "b.py"] == want
    assert all(r["k"] is not None for r in want)


_CLAUSE_ORDERS = [
    ("SELECT run_id FROM runs ORDER BY lr WHERE lr > 0", "WHERE cannot follow ORDER BY"),
    ("SELECT run_id FROM runs LIMIT 1 WHERE lr > 0", "WHERE cannot follow LIMIT"),
    ("SELECT lr FROM runs HAVING count(*) > 0 GROUP BY lr", "GROUP BY cannot follow HAVING"),
    ("SELECT lr FROM runs LIMIT 1 ORDER BY lr", "ORDER BY cannot follow LIMIT"),
    ("SELECT lr FROM runs GROUP BY lr WHERE lr > 0", "WHERE cannot follow GROUP BY"),
    ("SELECT lr FROM runs QUALIFY true WHERE lr > 0", "WHERE cannot follow QUALIFY"),
    ("SELECT lr FROM runs UNION SELECT 1 ORDER BY 1 WHERE true", "WHERE cannot follow ORDER BY"),
    ("SELECT lr FROM runs OFFSET 0 LIMIT 1", None),
    ("FROM runs SELECT lr WHERE lr > 0", None),
    ("SELECT 1 AS limit, 2 AS where FROM runs WHERE lr > 0 ORDER BY 1", None),
    ("SELECT list(lr ORDER BY lr) FILTER (WHERE lr > 0) FROM runs WHERE lr > 0 GROUP BY run_id "
     "ORDER BY 1 LIMIT 1", None),
    ("WITH a AS (SELECT lr FROM runs ORDER BY lr LIMIT 3) SELECT * FROM a WHERE lr > 0", None),
    ("SELECT lr FROM runs WHERE lr > 0 ORDER BY lr OFFSET 1 ROWS FETCH FIRST 1 ROWS ONLY", None),
    ("SELECT lr FROM runs WHERE lr IN (SELECT 1 LIMIT 1) GROUP BY lr HAVING true", None),
    ("SELECT sum(lr) OVER (ORDER BY lr) FROM runs WHERE lr > 0 QUALIFY true", None),
    ("SELECT lr FROM runs GROUP BY lr UNION ALL SELECT 2 WHERE true ORDER BY 1", None),
]  # fmt: skip


@pytest.mark.parametrize(("sql", "refused"), _CLAUSE_ORDERS)
def test_clauses_out_of_order_are_a_syntax_error_as_in_duckdb(
    sql: str, refused: str | None
) -> None:
    """sqlglot takes a SELECT's clauses in any order: ``LIMIT 1 ORDER BY lr`` answered the
    sorted first row, ``HAVING ... GROUP BY`` grouped, where DuckDB answers a syntax error. Now
    florsql refuses exactly what DuckDB's parser refuses (DuckDB is the oracle), at the keyword."""
    from florsql.errors import ParseError
    from florsql.grammar import parse

    oracle = duckdb.connect()
    oracle.execute("CREATE TABLE runs AS SELECT 0.1 AS lr, 'r1' AS run_id")
    try:
        oracle.execute(sql)
        duck_refused = False
    except duckdb.ParserException:
        duck_refused = True
    assert duck_refused == (refused is not None)
    if refused is None:
        assert parse(sql).kind == "select"
        return
    with pytest.raises(ParseError, match=refused) as info:
        parse(sql)
    keyword = refused.split(" cannot")[0]
    assert info.value.col == sql.rindex(keyword) + 1  # at the misplaced keyword (1-based)


def test_dbapi_refuses_a_set_of_parameters_and_has_callproc_and_nextset(tmp_path: Path) -> None:
    """A set bound its values in iteration order (``{0.1, 0.2}`` could bind 0.2 to the first
    ``?``); ``callproc`` and ``nextset`` (optional in PEP 249) were missing attributes. Now a set
    is refused as the string is, ``callproc`` raises ``NotSupportedError`` and ``nextset``
    answers None (one result set per statement) or, without a result, ``ProgrammingError``."""
    repo = _shared_names_history(make_repo(tmp_path / "repo"))
    with florsql.connect(repo, replay="off") as con, con.cursor() as cur:
        with pytest.raises(florsql.ProgrammingError, match="a set has no order"):
            cur.execute("SELECT ? < ?", {0.1, 0.2})
        with pytest.raises(florsql.ProgrammingError, match="execute a query first"):
            cur.nextset()
        assert cur.execute("SELECT 1").nextset() is None
        assert cur.fetchall() == [(1,)]
        with pytest.raises(florsql.NotSupportedError, match="no stored procedures"):
            cur.callproc("train")


def test_connect_in_a_subfolder_reads_the_repositorys_runs_and_creates_nothing(
    tmp_path: Path,
) -> None:
    """``florsql.connect()`` in a notebook under ``project/notebooks`` made an empty store there
    (``notebooks/.florsql``) and answered no rows, where ``florsql query`` in the same folder
    reads the project's; a folder in no git repository got a store too. Now the DB-API (and
    every front end opening an engine) reads the store of the folder when it has one, else the
    git repository's around it, and refuses a folder in none, creating nothing."""
    repo = _shared_names_history(make_repo(tmp_path / "repo"))
    notebooks = repo / "notebooks"
    notebooks.mkdir()
    with florsql.connect(notebooks, replay="off") as con:
        assert con.execute("SELECT count(*) FROM runs").fetchall() == [(3,)]
    assert not (notebooks / ".florsql").exists()
    frame = florsql.dataframe("acc", repo=notebooks)
    assert frame.column("acc").to_pylist() == [0.5, None, None, 0.25]
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    with pytest.raises(florsql.Error, match="not inside a git repository"):
        florsql.connect(outside)
    assert list(outside.iterdir()) == []


#: (florsql's query, the rows of ``logs`` it reads: the oracle runs the query over them).
PIVOTS = [
    ("PIVOT (SELECT run_id, epoch, acc FROM logs) ON epoch USING first(acc) ORDER BY run_id "
     "LIMIT 2", "SELECT run_id, epoch, acc FROM logs"),
    ("UNPIVOT (SELECT run_id, epoch, acc FROM logs WHERE acc > 0) ON acc INTO NAME k VALUE v "
     "ORDER BY ALL LIMIT 3 OFFSET 1", "SELECT run_id, epoch, acc FROM logs"),
    ("WITH p AS (PIVOT (SELECT run_id, epoch, acc FROM logs) ON epoch USING count(*)) "
     "SELECT * FROM p ORDER BY ALL", "SELECT run_id, epoch, acc FROM logs"),
    ("SELECT * FROM (PIVOT (SELECT run_id, epoch, loss FROM logs) ON epoch USING sum(loss)) "
     "ORDER BY 1", "SELECT run_id, epoch, loss FROM logs"),
    ("SELECT * FROM (PIVOT logs ON epoch USING count(*) GROUP BY run_id) ORDER BY 1",
     "SELECT * FROM logs"),
    ("WITH p AS (PIVOT logs ON epoch USING max(acc) GROUP BY run_id) SELECT * FROM p "
     "ORDER BY ALL", "SELECT * FROM logs"),
]  # fmt: skip


@pytest.mark.parametrize(("sql", "rows"), PIVOTS)
def test_pivot_statements_nest_and_take_order_by_as_in_duckdb(
    engine: Engine, sql: str, rows: str
) -> None:
    """``PIVOT ... ORDER BY`` was a syntax error (DuckDB's PIVOT statement takes ORDER BY,
    LIMIT and OFFSET); ``PIVOT logs`` nested in a CTE failed (no table logs), and ``ORDER BY 1``
    over a subquery PIVOT was an internal error. Each answers as DuckDB does over the rows the
    statement reads, nested or not."""
    oracle = duckdb.connect()
    oracle.register("rows", engine.execute(rows).table)
    oracle.execute("CREATE TABLE logs AS SELECT * FROM rows")
    want = oracle.sql(sql).to_arrow_table()
    got = engine.execute(sql).table
    assert got.column_names == want.column_names
    assert got.to_pylist() == want.to_pylist()


def test_columns_qualified_by_schema_and_catalog_read_logs(tmp_path: Path) -> None:
    """DuckDB reads `main.logs.epoch` and `florsql.main.logs.epoch` for a table named in FROM
    as `main.logs` / `florsql.main.logs`; florsql read the table but failed the column
    (`Referenced table "main" not found`)."""
    with Engine(fixture_history(tmp_path / "repo")) as eng, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = eng.execute("SELECT epoch, acc FROM logs WHERE epoch = 1 ORDER BY ALL").table
        for sql in (
            "SELECT main.logs.epoch, acc FROM main.logs WHERE main.logs.epoch = 1 ORDER BY ALL",
            "SELECT epoch, florsql.main.logs.acc FROM florsql.main.logs "
            "WHERE florsql.main.logs.epoch = 1 ORDER BY ALL",
            "SELECT Main.LOGS.epoch, acc FROM main.logs WHERE logs.epoch = 1 ORDER BY ALL",
        ):
            assert eng.execute(sql).table.to_pylist() == want.to_pylist(), sql
