"""Every front end tried as a stranger would: parameters where DuckDB takes none, errors that
must name the real mistake, the DB-API's connection rules, ``flor.dataframe`` of loop names.
Each answer is compared with DuckDB's over the same rows (the oracle) where there is one."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

import florsql
from florsql.engine import Engine
from tests.helpers_sql import fixture_history


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
