"""Exact-SQL stranger sweep s33: user names that are also the names of florsql's own helper
columns, answered exactly.

Oracle: DuckDB over a flat table holding the rows of ``logs`` built by hand from the same events
(:class:`tests.helpers_sql.RunBuilder`); each florsql query is paired with the same question over
that table. Its row grain is written ``{a|b}`` (the contexts where ``a`` or ``b`` was logged).

Found: the pivot that builds ``logs`` joins the log records grouped by ``(run_id, ctx_id)`` with
``__flor_ctx``, whose columns are ``run_id``, ``ctx_id``, ``chain``, ``outer_loop``,
``outer_iteration``, ``inner_loop``, ``inner_iteration`` and one per loop name. A log named
``ctx_id`` answered the internal context ids instead of its values; a loop named ``chain`` answered
the text ``'chain'`` (its loop chain) instead of its iteration, and ``WHERE chain = 2`` failed
with a conversion error; a loop named ``outer_iteration`` nested in another answered the
outer loop's iteration. The replay set's helpers (``__flor_chains``, ``__flor_cover``) read
such a loop's column for their own. An unaliased subquery over ``logs`` in the select list was
named by the internal CTE it read (``(SELECT max(epoch) FROM __flor_logs_1 AS logs)``).
sqlglot answered other questions than the ones asked: ``TIMESTAMPTZ '...'::DATE`` cast the string
to a date, then to TIMESTAMPTZ; ``last(x IGNORE NULLS)`` lost IGNORE NULLS; ``json_extract_path(j,
'a', 'b')`` read two top-level paths; ``TABLESAMPLE bernoulli(10)`` took 10 rows; a ``?`` in
``USING SAMPLE ? PERCENT (bernoulli)`` was dropped.

Slow: predicates that must not cut the replay set (OR with a recorded column, an outer join's
ON, HAVING, a WHERE over a LIMIT or over a window's result, NOT, IS DISTINCT FROM, comparisons
across types, row IN subquery, ORDER BY a run column LIMIT OFFSET, FILTER) answer over a
replayed history what runs that recorded everything answer (tests/test_pushdown_shapes.py's
pair of histories).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pytest

from florsql.engine import Engine
from florsql.errors import ParseError, PlanError
from tests.helpers import copy_repo, git, make_repo, run_script, write
from tests.helpers_replay import old_source, patched_source
from tests.helpers_sql import BASE_TIME, RunBuilder
from tests.test_pushdown_shapes import TEXT
from tests.test_pushdown_shapes import _rows as replay_rows

#: train.py's loops are named like __flor_ctx's own columns; its logs like the pivot's keys.
TRAIN = """import florsql as flor
lr = flor.arg("lr", 0)
for c in flor.loop("chain", range(3)):
    for i in flor.loop("inner_iteration", range(2)):
        flor.log("ctx_id", c * 10 + i)
        flor.log("hs", c + i)
    flor.log("outer_loop", c)
    flor.log("hc", c)
"""

#: b.py's loops are named like __flor_ctx's other columns.
B = """import florsql as flor
for k in flor.loop("outer_iteration", range(2)):
    for j in flor.loop("inner_loop", range(2)):
        flor.log("val", 7 * k + j)
"""

COLUMNS = {
    "run_id": pa.string(),
    "filename": pa.string(),
    "chain": pa.int64(),
    "inner_iteration": pa.int64(),
    "outer_iteration": pa.int64(),
    "inner_loop": pa.int64(),
    "lr": pa.int64(),
    "ctx_id": pa.int64(),
    "outer_loop": pa.int64(),
    "val": pa.int64(),
}
LOGS = ("ctx_id", "outer_loop", "val")


def _history(repo: Path) -> list[RunBuilder]:
    """Two runs of train.py (hs, hc: hindsight, not recorded), one of b.py."""
    repo.mkdir(parents=True)
    (repo / "train.py").write_text(TRAIN)
    (repo / "b.py").write_text(B)
    runs = []
    for r in range(2):
        b = RunBuilder(f"r{r}", {"lr": r}, tstamp=BASE_TIME + timedelta(hours=r))
        for c in range(3):
            with b.loop("chain", c):
                for i in range(2):
                    with b.loop("inner_iteration", i):
                        b.log("ctx_id", 100 * r + c * 10 + i)
                b.log("outer_loop", 100 * r + c)
        b.write(repo)
        runs.append(b)
    b = RunBuilder("r2", {}, filename="b.py", tstamp=BASE_TIME + timedelta(hours=3))
    for k in range(2):
        with b.loop("outer_iteration", k):
            for j in range(2):
                with b.loop("inner_loop", j):
                    b.log("val", 7 * k + j)
    b.write(repo)
    runs.append(b)
    git(repo, "init", "-q")
    return runs


def _flat(runs: list[RunBuilder]) -> pa.Table:
    """The rows of ``logs`` by hand."""
    rows = []
    for b in runs:
        for ctx, vals in sorted(b.values.items()):
            row = {"run_id": b.run_id, "filename": b.filename, **b.ctx_loops[ctx], **b.args}
            row.update(vals)
            row.update({f"has_{n}": n in vals for n in LOGS})
            rows.append(row)
    schema = pa.schema([*COLUMNS.items(), *((f"has_{n}", pa.bool_()) for n in LOGS)])
    return pa.table({f.name: [r.get(f.name) for r in rows] for f in schema}, schema=schema)


def _expand(sql: str) -> str:
    """``{a|b}`` -> the rows of ``logs`` at the grain of log names a and b."""
    cols = ", ".join(COLUMNS)

    def grain(m: re.Match[str]) -> str:
        names = m.group(1).split("|")
        return f"(SELECT {cols} FROM flat WHERE {' OR '.join('has_' + n for n in names)})"

    return re.sub(r"\{([^{}]*)\}", grain, sql)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, duckdb.DuckDBPyConnection]:
    repo = tmp_path_factory.mktemp("s33") / "repo"
    runs = _history(repo)
    oracle = duckdb.connect()
    oracle.register("flat_arrow", _flat(runs))
    oracle.execute("CREATE TABLE flat AS SELECT * FROM flat_arrow")
    return repo, oracle


@pytest.fixture(scope="module", params=[True, False], ids=["pivot", "live"])
def engine(history: tuple[Path, duckdb.DuckDBPyConnection], request: Any) -> Iterator[Engine]:
    with Engine(history[0], use_cache=request.param) as eng:
        yield eng


def _rows(table: pa.Table) -> list[tuple[Any, ...]]:
    return sorted(zip(*(c.to_pylist() for c in table.columns), strict=True), key=repr)


def ask(engine: Engine, sql: str) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return engine.execute(sql)


HELPER_NAMES = [
    ("SELECT run_id, chain, inner_iteration, ctx_id FROM logs",
     "SELECT run_id, chain, inner_iteration, ctx_id FROM {ctx_id}"),
    ("SELECT run_id, chain, outer_loop FROM logs WHERE chain = 2",
     "SELECT run_id, chain, outer_loop FROM {outer_loop} WHERE chain = 2"),
    ("SELECT run_id, outer_iteration, inner_loop, val FROM logs WHERE inner_loop = 1",
     "SELECT run_id, outer_iteration, inner_loop, val FROM {val} WHERE inner_loop = 1"),
    ("SELECT filename, count(*), sum(ctx_id), max(chain), max(outer_iteration) FROM logs "
     "GROUP BY ALL",
     "SELECT filename, count(*), sum(ctx_id), max(chain), max(outer_iteration) FROM "
     "{ctx_id} GROUP BY ALL"),
    ("SELECT filename, count(*), max(chain), max(inner_loop), sum(val) FROM logs "
     "WHERE val IS NOT NULL OR outer_loop IS NOT NULL GROUP BY ALL",
     "SELECT filename, count(*), max(chain), max(inner_loop), sum(val) FROM {val|outer_loop} "
     "WHERE val IS NOT NULL OR outer_loop IS NOT NULL GROUP BY ALL"),
    ("SELECT run_id, chain, ctx_id FROM logs WHERE inner_iteration = 1 AND chain >= 1",
     "SELECT run_id, chain, ctx_id FROM {ctx_id} WHERE inner_iteration = 1 AND chain >= 1"),
]  # fmt: skip


@pytest.mark.parametrize(("sql", "oracle_sql"), HELPER_NAMES)
def test_names_of_florsql_helper_columns_answer_their_own_values(
    engine: Engine,
    history: tuple[Path, duckdb.DuckDBPyConnection],
    sql: str,
    oracle_sql: str,
) -> None:
    want = _rows(history[1].sql(_expand(oracle_sql)).to_arrow_table())
    assert want
    assert _rows(ask(engine, sql).table) == want


def test_the_replay_set_reads_loops_named_like_helper_columns(engine: Engine) -> None:
    """``chain`` is train.py's outer loop, ``inner_iteration`` its inner one: the hindsight
    statements replay exactly the outer iterations the predicate selects."""
    assert ask(engine, "SELECT hc FROM logs WHERE chain = 1").plan.replay_set() == {
        "r0": {"hc": (1,)},
        "r1": {"hc": (1,)},
    }
    plan = ask(engine, "SELECT hs FROM logs WHERE inner_iteration = 1 AND chain > 0").plan
    assert plan.replay_set() == {"r0": {"hs": (1, 2)}, "r1": {"hs": (1, 2)}}
    plan = ask(engine, "SELECT hs FROM logs WHERE lr = 1 AND chain <> 1").plan
    assert plan.replay_set() == {"r1": {"hs": (0, 2)}}


NAMED_BY_DUCKDB = [
    "SELECT (SELECT max(chain) FROM logs), (SELECT min(l.chain) FROM logs AS l) AS m",
    'SELECT EXISTS (FROM logs "L x" WHERE "L x".ctx_id > 100), 1 + (SELECT count(*) FROM logs)',
    "SELECT chain IN (SELECT chain FROM logs WHERE outer_loop > 100) FROM logs "
    "WHERE outer_loop IS NOT NULL",
    "SELECT (SELECT max(chain) FROM LOGS), (SELECT 1 FROM logs LIMIT 1) FROM logs_in_cte",
]


@pytest.mark.parametrize("sql", NAMED_BY_DUCKDB)
def test_an_expression_reading_logs_is_named_as_duckdb_names_it(
    engine: Engine, history: tuple[Path, duckdb.DuckDBPyConnection], sql: str
) -> None:
    """An unaliased subquery over ``logs`` in the select list was named by the SQL florsql ran:
    ``(SELECT max(chain) FROM __flor_logs_1 AS logs)``, an internal name in a result's column
    (the DB-API's ``description``, a DataFrame, the CLI's header)."""
    oracle = history[1]
    oracle.execute(f"CREATE OR REPLACE VIEW logs AS SELECT {', '.join(COLUMNS)} FROM flat")
    sql = "WITH logs_in_cte AS (SELECT 1) " + sql if "logs_in_cte" in sql else sql
    want = oracle.sql(sql).columns
    assert ask(engine, sql).table.column_names == want
    with engine.cursor() as cursor:
        described = cursor.describe(sql).table
    assert described.column_names == want
    assert all(f.metadata for f in described.schema)  # florsql.type kept


@pytest.mark.parametrize("use_cache", [True, False], ids=["pivot", "live"])
def test_logs_named_like_the_pivots_hidden_columns(tmp_path: Path, use_cache: bool) -> None:
    """The materialized pivot keeps hidden columns beside ``logs``'s: ``__ctx`` (the context)
    and ``__has:<name>`` (a name logged as None there). A log named ``__has:x`` was read as
    x's presence column: ``SELECT epoch, x FROM logs`` answered no row."""
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "train.py").write_text("import florsql as flor\n")
    b = RunBuilder("r0", {"lr": 1})
    for e in range(3):
        with b.loop("epoch", e):
            b.log("x", None if e == 1 else e)
            if e == 2:
                b.log("__has:x", 0)
            b.log("__ctx", 100 + e)
    b.write(repo)
    git(repo, "init", "-q")
    with Engine(repo, use_cache=use_cache) as eng:
        got = ask(eng, "SELECT epoch, x FROM logs ORDER BY epoch").table.to_pylist()
        assert got == [{"epoch": 0, "x": 0}, {"epoch": 1, "x": None}, {"epoch": 2, "x": 2}]
        sql = 'SELECT epoch, "__has:x", "__ctx" FROM logs ORDER BY epoch'
        assert _rows(ask(eng, sql).table) == [(0, None, 100), (1, None, 101), (2, 0, 102)]


# -- samples: what DuckDB refuses is refused, not answered as another question --------------


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT count(*) FROM logs USING SAMPLE ? ROWS",
        "SELECT count(*) FROM logs USING SAMPLE ? PERCENT (bernoulli)",
        "SELECT count(*) FROM logs TABLESAMPLE ?%",
        "SELECT count(*) FROM range(9) TABLESAMPLE ?",
    ],
)
def test_a_parameter_where_duckdb_takes_only_a_constant_is_refused_at_it(
    engine: Engine, sql: str
) -> None:
    """sqlglot read ``USING SAMPLE ? PERCENT (bernoulli)`` without its ``?`` (florsql then said
    the query had 0 parameters and DuckDB failed on ``USING SAMPLE BERNOULLI ()``), and ``? ROWS``
    as a sampling method named ``?``."""
    with pytest.raises(ParseError, match=r"constant") as info:
        engine.execute(sql, [5])
    assert info.value.col == sql.index("?") + 1


@pytest.mark.parametrize(
    "sample",
    [
        "TABLESAMPLE bernoulli(10)",
        "TABLESAMPLE BERNOULLI (10 ROWS)",
        "USING SAMPLE 10 (bernoulli, 3)",
        "USING SAMPLE bernoulli(10) REPEATABLE (3)",
    ],
)
def test_bernoulli_with_a_row_count_is_refused_not_answered_as_reservoir(
    engine: Engine, sample: str
) -> None:
    """DuckDB refuses BERNOULLI with a row count (PostgreSQL reads ``BERNOULLI (10)`` as 10
    percent); sqlglot wrote it as ``RESERVOIR (10 ROWS)``, so florsql answered 10 rows."""
    sql = f"SELECT count(*) FROM range(1000) {sample}"
    with duckdb.connect() as con, pytest.raises(duckdb.Error):
        con.sql(sql).fetchall()
    with pytest.raises(ParseError, match="PERCENT"):
        ask(engine, sql)


@pytest.mark.parametrize(
    "sample",
    [
        "TABLESAMPLE bernoulli(10%) REPEATABLE (3)",
        "USING SAMPLE 10 PERCENT (bernoulli, 3)",
        "USING SAMPLE 10 PERCENT (system, 3)",
        "USING SAMPLE 10 ROWS",
        "TABLESAMPLE reservoir(10)",
        "USING SAMPLE 10",
        "USING SAMPLE reservoir(?) REPEATABLE (?)",
        "TABLESAMPLE bernoulli(? PERCENT) REPEATABLE (?)",
    ],
)
def test_samples_duckdb_takes_answer_as_duckdb(engine: Engine, sample: str) -> None:
    """florsql binds each ? as the constant it stands for: ``reservoir(? ROWS)`` is
    ``reservoir(10 ROWS)``."""
    sql = f"SELECT count(*) FROM range(100000) {sample}"
    values = [10, 3][: sql.count("?")]
    written = sql.replace("?", "{}").format(*values)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = engine.execute(sql, values).table.column(0).to_pylist()
    with duckdb.connect() as con:
        assert got == [con.sql(written).fetchall()[0][0]]


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT run_id, last(outer_loop IGNORE NULLS) FROM logs GROUP BY run_id",
        "SELECT run_id, last(ctx_id IGNORE NULLS ORDER BY chain) FROM logs GROUP BY run_id",
        "SELECT any_value(ctx_id RESPECT NULLS) FROM logs",
        "SELECT sum(ctx_id RESPECT NULLS), min(ctx_id IGNORE NULLS) FROM logs",
    ],
)
def test_what_sqlglot_cannot_write_for_duckdb_is_refused_not_changed(
    engine: Engine, sql: str
) -> None:
    """DuckDB refuses IGNORE NULLS and RESPECT NULLS on an aggregate; sqlglot dropped them
    (with a log warning), so ``last(x IGNORE NULLS)`` answered ``last(x)``: NULL where the
    last row's value is NULL, not the last value that is not."""
    with pytest.raises(PlanError, match="NULLS") as info:
        ask(engine, sql)
    assert "DuckDB" in info.value.message


def test_what_sqlglot_writes_exactly_for_duckdb_still_answers(
    engine: Engine, history: tuple[Path, duckdb.DuckDBPyConnection]
) -> None:
    """``first(x IGNORE NULLS)`` is written ``any_value(x)``, ``list(x IGNORE NULLS)`` with a
    FILTER: the same question, so still answered."""
    sql = (
        "SELECT run_id, first(outer_loop IGNORE NULLS ORDER BY chain DESC), "
        "list(outer_loop IGNORE NULLS ORDER BY chain) FROM logs GROUP BY run_id"
    )
    oracle = (
        "SELECT run_id, any_value(outer_loop ORDER BY chain DESC), list(outer_loop ORDER BY "
        "chain) FILTER (WHERE outer_loop IS NOT NULL) FROM {outer_loop} GROUP BY run_id"
    )
    want = _rows(history[1].sql(_expand(oracle)).to_arrow_table())
    assert _rows(ask(engine, sql).table) == want


@pytest.mark.parametrize(
    ("sql", "want"),
    [
        ("SELECT approx_top_k(chain, 1) FROM logs WHERE chain = 2", [([2],)]),
        ("SELECT DISTINCT extract(hour FROM TIMESTAMPTZ '2026-01-01 10:00:00+00') FROM logs",
         [(10,)]),
    ],
)  # fmt: skip
def test_duckdbs_own_forms_sqlglot_warns_about_still_answer(
    engine: Engine, sql: str, want: list[tuple[Any, ...]]
) -> None:
    """sqlglot warns on ``approx_top_k`` (other dialects' return types) and on ``extract`` from
    a TIMESTAMPTZ (other dialects' time zones) and writes both back as DuckDB reads them: the
    refusal of what sqlglot cannot write refused them (the sandbox fuzz test's approx_top_k)."""
    assert _rows(ask(engine, sql).table) == want


J = """'{"a": {"b": [1, 2]}, "c": "x"}'"""


@pytest.mark.parametrize(
    "call",
    [
        f"json_extract_path({J}, 'a', 'b')",
        f"json_extract_path_text({J}, 'a', 'b')",
        f"json_extract({J}, 'a', 'b')",
        f"json_extract_string({J}, 'a', 'b', 'c')",
    ],
)
def test_json_extraction_with_path_steps_is_refused(engine: Engine, call: str) -> None:
    """PostgreSQL's ``json_extract_path(j, 'a', 'b')`` is the value at a.b; DuckDB takes one path
    and refuses more. sqlglot wrote ``json_extract(j, ['$.a', 'b'])`` (two top-level values,
    ``[{"b":[1,2]},null]``), and ``json_extract_string(j, 'a', 'b')`` as ``j ->> '$.a'``."""
    sql = f"SELECT {call}"
    with pytest.raises(ParseError, match="one path") as info:
        ask(engine, sql)
    assert info.value.col == sql.index("json") + 1


@pytest.mark.parametrize(
    "call",
    [
        f"json_extract_path({J}, '$.a.b')",
        f"json_extract_path_text({J}, 'c')",
        f"json_extract({J}, ['$.a', '$.c'])",
        f"json_extract_string({J}, '$.a.b[1]')",
        f"{J}::JSON -> 'a'",
        f"{J}::JSON ->> '$.a.b[0]'",
    ],
)
def test_json_extraction_with_one_path_answers_as_duckdb(engine: Engine, call: str) -> None:
    sql = f"SELECT {call}"
    with duckdb.connect() as con:
        want = con.sql(sql).fetchall()
    assert _rows(ask(engine, sql).table) == want


@pytest.mark.parametrize(
    "expression",
    [
        "TIMESTAMPTZ '2026-03-06 23:30:00-05'::DATE",
        "TIMESTAMP '2026-03-06 23:30:00'::DATE",
        "DATE '2026-03-06'::VARCHAR",
        "DATE '2026-03-06'::TIMESTAMP",
        "TIMESTAMP '2026-03-06 23:30:00'::DATE + 1",
        "TIME '01:02:03'::VARCHAR || 'x'",
        "TIMESTAMP '2026-03-06 23:30:00'::DATE::VARCHAR",
        "- (DATE '2026-03-06'::TIMESTAMP::DATE::VARCHAR)[1:4]::INT",
        "[DATE '2026-03-06'::VARCHAR, TIMESTAMP '2026-03-06 01:00'::TIME::VARCHAR]",
        "JSON '{\"a\":  [1, 2]}'",
        "JSON '{\"a\":  [1, 2]}'::VARCHAR",
    ],
)
def test_a_cast_after_a_typed_literal_casts_the_literal(engine: Engine, expression: str) -> None:
    """DuckDB reads ``TIMESTAMPTZ '...'::DATE`` as the timestamp cast to a date; sqlglot cast the
    string to a date first and that to TIMESTAMPTZ: ``TIMESTAMPTZ '2026-03-06 23:30:00-05'::DATE``
    answered the timestamp 2026-03-06 00:00 UTC, not the date 2026-03-07."""
    sql = f"SELECT {expression} AS v, typeof({expression}) AS t"
    with duckdb.connect() as con:
        con.execute("SET TimeZone = 'UTC'")
        want = con.sql(sql).fetchall()
    with engine.cursor() as cursor:
        got = cursor.execute(sql).table
    assert _rows(got) == want


# -- hindsight columns: predicates that must not cut the replay ---------------------------------

REPLAYED = [
    # OR with a recorded log column: no epoch can be left out
    "SELECT Seed, epoch, hs FROM logs WHERE epoch = 1 OR acc > 0.9",
    # the predicate on the null-supplying side sits in the ON
    "SELECT a.Seed, a.epoch, b.hs FROM logs a LEFT JOIN logs b ON a.run_id = b.run_id AND "
    "b.epoch = a.epoch AND b.epoch > 2 WHERE a.acc IS NOT NULL",
    # HAVING, a WHERE over a LIMIT, a WHERE over a window's result
    "SELECT Seed, max(hs), min(hs) FROM logs GROUP BY Seed HAVING max(epoch) > 3",
    "SELECT * FROM (SELECT Seed, epoch, hs FROM logs WHERE hs IS NOT NULL ORDER BY Seed, epoch "
    "LIMIT 7) WHERE epoch >= 1",
    "SELECT * FROM (SELECT Seed, epoch, hs, lead(hs) OVER (PARTITION BY run_id ORDER BY epoch) "
    "AS nxt FROM logs) WHERE epoch = 2",
    # NOT over a hindsight atom, IS DISTINCT FROM, comparisons across types
    "SELECT Seed, epoch, hs FROM logs WHERE NOT (epoch < 3 AND hs > 1) AND epoch IS DISTINCT "
    "FROM 4",
    "SELECT Seed, epoch, hs FROM logs WHERE epoch = '2' OR lr = '0.3' OR epoch < 0.5",
    "SELECT Seed, epoch, step, gstep FROM logs WHERE (epoch, step) IN (SELECT epoch, step FROM "
    "logs WHERE gstep > 1.5) OR (step = 0) IS NOT TRUE AND epoch = 4",
    # ORDER BY a run column LIMIT (cuts runs), FILTER, a top-level statement
    "SELECT Seed, epoch, hs FROM logs ORDER BY lr DESC, epoch LIMIT 3 OFFSET 1",
    "SELECT Seed, count(*) FILTER (WHERE epoch > 2), avg(hs) FILTER (WHERE epoch < 2) FROM logs "
    "GROUP BY Seed",
    "SELECT Seed, hfinal, hs FROM logs WHERE epoch IS NULL OR epoch = 0 AND Seed <> 1",
]


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(history: the old script recorded, today's in the working tree; oracle: today's script
    recorded with the same args): tests/test_pushdown_shapes.py's pair."""
    root = tmp_path_factory.mktemp("s33_replay")
    history = make_repo(root / "history", {"train.py": old_source(TEXT)})
    oracle = make_repo(root / "oracle", {"train.py": patched_source(TEXT)})
    for lr, seed in (("0.1", "0"), ("0.2", "1"), ("0.3", "2")):
        run_script(history, "train.py", "--lr", lr, "--Seed", seed)
        run_script(oracle, "train.py", "--lr", lr, "--Seed", seed)
    write(history / "train.py", patched_source(TEXT))
    return history, oracle


@pytest.mark.slow
@pytest.mark.parametrize("sql", REPLAYED)
def test_a_replayed_history_answers_as_runs_that_recorded_everything(
    recorded: tuple[Path, Path], tmp_path: Path, sql: str
) -> None:
    history, oracle = recorded
    repo = copy_repo(history, tmp_path / "history")
    want = replay_rows(oracle, sql, "off")
    assert want and replay_rows(repo, sql, "auto") == want


#: Loops named like ``__flor_ctx``'s own columns, recorded and replayed for real.
HELPER_LOOPS = """
import florsql as flor
seed = flor.arg("seed", 0)
w = 1.0 + seed
for c in flor.loop("chain", range(4)):
    for k in flor.loop("ctx_id", range(2)):
        w = round(w * 0.9 + 0.01 * k, 6)
        flor.log("outer_iteration", w)
        flor.log("hk", round(w * 3, 6))  # hindsight
    flor.log("hc", round(w + c, 6))  # hindsight
"""

HELPER_LOOP_QUERIES = [
    "SELECT seed, chain, ctx_id, outer_iteration, hk FROM logs WHERE chain = 2 OR ctx_id = 0 "
    "AND seed = 1",
    "SELECT seed, chain, hc FROM logs WHERE ctx_id IS NULL AND chain >= 1",
]


@pytest.fixture(scope="module")
def helper_loops(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("s33_loops")
    history = make_repo(root / "history", {"train.py": old_source(HELPER_LOOPS)})
    oracle = make_repo(root / "oracle", {"train.py": patched_source(HELPER_LOOPS)})
    for seed in ("0", "1"):
        run_script(history, "train.py", "--seed", seed)
        run_script(oracle, "train.py", "--seed", seed)
    write(history / "train.py", patched_source(HELPER_LOOPS))
    return history, oracle


@pytest.mark.slow
@pytest.mark.parametrize("sql", HELPER_LOOP_QUERIES)
def test_loops_named_like_helper_columns_replay_as_recorded(
    helper_loops: tuple[Path, Path], tmp_path: Path, sql: str
) -> None:
    """The replay set and its coverage read ``__flor_ctx``: a loop named ``chain`` or ``ctx_id``
    was read for its chain or context id there."""
    history, oracle = helper_loops
    repo = copy_repo(history, tmp_path / "history")
    want = replay_rows(oracle, sql, "off")
    assert want and replay_rows(repo, sql, "auto") == want
    assert replay_rows(repo, sql, "off") == want  # replayed once, covered after
