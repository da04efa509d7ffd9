"""Properties of the parser over generated queries (hypothesis).

* Random combinations of allowed clauses always parse, regenerate stably, and where DuckDB runs
  the text as written, the regenerated SQL gives the same rows.
* Random damage to those queries never escapes as anything but ``florsql.errors.ParseError``,
  and a reported position always lies inside the text.
"""

from __future__ import annotations

from collections.abc import Iterator

import duckdb
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from florsql.errors import ParseError
from florsql.grammar import parse, parse_many
from tests.test_grammar_duckdb import SETUP, rows

NUMERIC = ("epoch", "step", "lr", "loss", "val_acc")
COLUMNS = ("run_id", *NUMERIC)
CMP = ("=", "<>", "<", "<=", ">", ">=")

numbers = st.sampled_from(("0", "1", "2", "0.5", "0.01", "3"))
numeric = st.one_of(
    st.sampled_from(NUMERIC),
    st.builds("{} {} {}".format, st.sampled_from(NUMERIC), st.sampled_from("+-*"), numbers),
    st.builds("abs({})".format, st.sampled_from(NUMERIC)),
    st.builds("round({}, 2)".format, st.sampled_from(NUMERIC)),
    st.builds("coalesce({}, {})".format, st.sampled_from(NUMERIC), numbers),
)
scalar = st.one_of(numeric, st.sampled_from(("run_id", "upper(run_id)", "tstamp")))
aggregate = st.one_of(
    st.builds("{}({})".format, st.sampled_from(("avg", "sum", "min", "max")), numeric),
    st.just("count(*)"),
    st.builds("count(DISTINCT {})".format, st.sampled_from(COLUMNS)),
)
window = st.builds(
    "{} OVER (PARTITION BY run_id ORDER BY step, epoch)".format,
    st.sampled_from(("row_number()", "avg(loss)", "lag(loss)", "sum(step)", "rank()")),
)


@st.composite
def predicates(draw: st.DrawFn, depth: int = 2) -> str:
    leaf = draw(
        st.one_of(
            st.builds("{} {} {}".format, numeric, st.sampled_from(CMP), numbers),
            st.just("run_id IN ('r1', 'r3')"),
            st.just("val_acc IS NULL"),
            st.builds("{} BETWEEN 0 AND {}".format, st.sampled_from(NUMERIC), numbers),
        )
    )
    if depth == 0 or draw(st.booleans()):
        return leaf
    other = draw(predicates(depth - 1))
    return draw(st.sampled_from((f"({leaf} AND {other})", f"({leaf} OR {other})", f"NOT {leaf}")))


@st.composite
def queries(draw: st.DrawFn) -> str:
    where = f" WHERE {draw(predicates())}" if draw(st.booleans()) else ""
    if draw(st.booleans()):
        keys = draw(st.lists(st.sampled_from(("run_id", "epoch", "lr")), max_size=2, unique=True))
        aggs = draw(st.lists(aggregate, min_size=1, max_size=3))
        items = [*keys, *aggs]
        having = f" HAVING count(*) > {draw(numbers)}" if draw(st.booleans()) else ""
        tail = f" GROUP BY ALL{having}"
    else:
        items = draw(st.lists(scalar, min_size=1, max_size=4))
        tail = ""
        if draw(st.booleans()):
            items.append(draw(window))
            if draw(st.booleans()):
                tail = f" QUALIFY {len(items) and 'c' + str(len(items) - 1)} <= 2"
    select = ", ".join(f"{item} AS c{i}" for i, item in enumerate(items))
    distinct = "DISTINCT " if draw(st.booleans()) else ""
    order = f" ORDER BY ALL LIMIT {draw(st.integers(1, 20))}" if draw(st.booleans()) else ""
    query = f"SELECT {distinct}{select} FROM logs{where}{tail}{order}"
    wrap = draw(st.sampled_from(("none", "cte", "subquery", "union")))
    if wrap == "cte":
        return f"WITH q AS ({query}) SELECT * FROM q"
    if wrap == "subquery":
        return f"SELECT * FROM ({query}) AS s WHERE c0 IS NOT NULL"
    if wrap == "union":
        return f"({query}) UNION ALL ({query})"
    return query


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    connection.execute("SET threads = 1")
    connection.execute(SETUP)
    yield connection
    connection.close()


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(sql=queries())
def test_allowed_clauses_parse_and_round_trip(con: duckdb.DuckDBPyConnection, sql: str) -> None:
    statement = parse(sql)
    assert statement.kind == "select"
    regenerated = statement.duckdb_sql()
    assert parse(regenerated).duckdb_sql() == regenerated
    try:
        expected = rows(con, sql)
    except duckdb.Error:
        return  # not a valid query for DuckDB either (a type mismatch, say): nothing to compare
    assert rows(con, regenerated) == expected


DAMAGE = (
    "(",
    ")",
    ",",
    "'",
    '"',
    "$$",
    "/*",
    "--",
    ";",
    "?",
    "$1",
    "::",
    "[",
    "]",
    "{",
    "}",
    "->",
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP BY",
    "INSERT INTO logs",
    "read_csv('x')",
    "'x.csv'",
    "EXPLAIN",
    "SHOW",
    "SET replay =",
    "lambda x:",
    "\n",
    "\t",
    "é",
    "\\",
    "@",
    "#",
    "%",
    "0x",
    "e'",
    "OVER (",
    "PIVOT",
    "QUALIFY",
    "AS",
    "..",
    "1e",
)


@st.composite
def damaged(draw: st.DrawFn) -> str:
    sql = draw(queries())
    for _ in range(draw(st.integers(1, 3))):
        at = draw(st.integers(0, len(sql)))
        if draw(st.booleans()):
            sql = sql[:at] + draw(st.sampled_from(DAMAGE)) + sql[at:]
        else:
            sql = sql[:at] + sql[at + draw(st.integers(1, 12)) :]
    return sql


@settings(max_examples=400, deadline=None)
@given(sql=st.one_of(damaged(), st.text(max_size=40)))
def test_damaged_queries_raise_only_florsql_parse_errors(sql: str) -> None:
    try:
        parse_many(sql)
    except ParseError as error:
        if error.line is not None:
            lines = sql.splitlines() or [""]
            assert 1 <= error.line <= len(lines)
            assert error.col is not None and 1 <= error.col <= len(lines[error.line - 1]) + 1
