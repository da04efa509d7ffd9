"""florsql's parser against DuckDB itself: every SELECT form it accepts, regenerated as DuckDB SQL,
runs and gives the same rows as the text the user wrote (a differential test, as sqlglot's own)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from florsql.grammar import parse

FIXTURE = Path(__file__).parent / "fixtures" / "grammar" / "selects.sql"

SETUP = """
CREATE TABLE logs AS
SELECT 'r' || (i % 3 + 1) AS run_id,
       (i // 12)::INTEGER AS epoch,
       (i % 12)::INTEGER AS step,
       [0.001, 0.01, 0.1][i % 3 + 1] AS lr,
       round(2.0 / (1 + i) + (i % 5) * 0.1, 6) AS loss,
       CASE WHEN i % 4 = 0 THEN round(i / 40.0, 4) END AS val_acc,
       TIMESTAMP '2026-01-01 00:00:00' + (i % 3) * INTERVAL 1 HOUR + i * INTERVAL 1 MINUTE AS tstamp
FROM range(36) AS t(i);
CREATE TABLE runs AS
SELECT * FROM (VALUES ('r1', 'done'), ('r2', 'done'), ('r3', 'failed'), ('r4', 'running'))
    AS v(run_id, status);
CREATE TABLE checkpoints AS SELECT run_id, step FROM logs WHERE step % 4 = 3;
"""


def load_blocks(path: Path) -> Iterator[tuple[str, str]]:
    """(title, sql) for each ``-- title:`` block of a fixture file."""
    for block in re.split(r"^-- title: ", path.read_text(), flags=re.M)[1:]:
        title, _, sql = block.partition("\n")
        yield title.strip(), sql.strip()


BLOCKS = list(load_blocks(FIXTURE))


@pytest.fixture(scope="module")
def con() -> Iterator[duckdb.DuckDBPyConnection]:
    connection = duckdb.connect()
    connection.execute("SET threads = 1")
    connection.execute(SETUP)
    yield connection
    connection.close()


def _key(value: object) -> tuple[int, str]:
    if isinstance(value, float) and math.isnan(value):
        return (1, "nan")
    return (0, repr(value)) if value is not None else (2, "")


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> tuple[int, list[tuple[object, ...]]]:
    """Column count and rows, sorted: row order is not part of what a query promises here."""
    result = con.sql(sql)
    fetched = result.fetchall()
    return len(result.columns), sorted(fetched, key=lambda row: [_key(v) for v in row])


def test_fixture_has_the_forms_the_issue_names() -> None:
    titles = " ".join(title for title, _ in BLOCKS)
    for form in ("join", "cte", "window", "group by all", "qualify", "pivot", "lateral", "union"):
        assert form in titles
    assert len(BLOCKS) >= 50


@pytest.mark.parametrize(("title", "sql"), BLOCKS, ids=[t for t, _ in BLOCKS])
def test_select_round_trips_on_duckdb(con: duckdb.DuckDBPyConnection, title: str, sql: str) -> None:
    statement = parse(sql)
    assert statement.kind == "select", title
    regenerated = statement.duckdb_sql()
    assert rows(con, regenerated) == rows(con, sql)
    # Generation is stable: parsing what florsql generated gives the same SQL again.
    assert parse(regenerated).duckdb_sql() == regenerated


def test_qmark_parameters_round_trip(con: duckdb.DuckDBPyConnection) -> None:
    sql = "SELECT run_id, step FROM logs WHERE lr >= ? AND epoch BETWEEN ? AND ? ORDER BY ALL"
    statement = parse(sql)
    assert statement.param_count == 3
    params = [0.01, 1, 2]
    expected = con.execute(sql, params).fetchall()
    assert con.execute(statement.duckdb_sql(), params).fetchall() == expected
