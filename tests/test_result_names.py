"""Result columns are named as DuckDB names the query the user wrote.

Found as a stranger: florsql runs sqlglot's rewrite of a query, and an unaliased expression was
named by the rewrite's text: ``tot ** 2`` came back as ``power(tot, 2)``, ``list(tot)`` as
``array_agg(tot)``, ``string_agg(...)`` as ``listagg(...)``, ``tot::VARCHAR`` as ``CAST(tot AS
TEXT)``, ``date_trunc('hour', ...)`` as ``date_trunc('HOUR', ...)``: ``df["list(tot)"]`` raised
``KeyError``. Oracle: DuckDB itself, over a flat table holding what ``SELECT * FROM logs``
returns (the same names, types and values).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import duckdb
import pytest

import florsql
from florsql.engine import names
from tests.helpers import make_repo, run_script

SCRIPT = """
import florsql as flor
lr = flor.arg("lr", 0.1)
for epoch in flor.loop("epoch", range(3)):
    for step in flor.loop("step", range(2)):
        flor.log("loss", 1.0 / (epoch * 2 + step + 1))
    flor.log("acc", 0.5 + epoch / 10)
"""

EXPRESSIONS = [
    "loss ** 2",
    "2 ^ 3",
    "list(loss)",
    "string_agg(run_id, ',')",
    "loss::VARCHAR",
    "date_trunc('hour', tstamp)",
    "avg(loss)",
    "count(*)",
    "sum(loss) / 2",
    "loss // 1",
    "epoch % 2",
    "coalesce(acc, 0)",
    "CASE WHEN loss > 0.3 THEN 'hi' ELSE 'lo' END",
    "first(loss ORDER BY step)",
    "loss IS NULL",
    "median(loss)",
    "quantile_cont(loss, 0.5)",
    "epoch BETWEEN 0 AND 1",
    "-loss",
    "NOT (loss > 0.3)",
    "upper(run_id)",
    "round(loss, 2)",
    "[loss, acc]",
    "{'k': loss}",
    "count(DISTINCT run_id)",
    "max(loss) - min(loss)",
    "'abc'",
    "lr * 10",
]


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = make_repo(tmp_path_factory.mktemp("names") / "r", {"train.py": SCRIPT})
    run_script(path, "train.py")
    run_script(path, "train.py", "--lr", "0.2")
    return path


@pytest.fixture(scope="module")
def flat(repo: Path) -> duckdb.DuckDBPyConnection:
    with florsql.connect(repo) as con:
        table = con.execute("SELECT * FROM logs").fetch_arrow_table()
    db = duckdb.connect()
    db.register("flat", table)
    db.execute("CREATE TABLE logs AS SELECT * FROM flat")
    return db


def _both(repo: Path, flat: duckdb.DuckDBPyConnection, sql: str) -> tuple[list[str], list[str]]:
    with florsql.connect(repo) as con:
        cur = con.cursor()
        cur.execute(sql)
        ours = [d[0] for d in cur.description]
        cur.fetchall()
    theirs = [d[0] for d in flat.execute(sql).description]
    return ours, theirs


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_an_unaliased_expression(repo: Path, flat: duckdb.DuckDBPyConnection, expr: str) -> None:
    grouped = any(f in expr for f in ("avg(", "count(", "sum(", "list(", "agg(", "first(",
                                      "median(", "quantile", "max("))  # fmt: skip
    sql = f"SELECT epoch, {expr} FROM logs" + (" GROUP BY ALL" if grouped else "")
    ours, theirs = _both(repo, flat, sql)
    assert ours == theirs


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT loss ** 2 FROM logs UNION ALL SELECT 1 FROM logs",
        "SELECT *, loss ** 2 FROM logs",
        "SELECT loss ** 2, * FROM logs",
        "SELECT COLUMNS('lo.*'), list(epoch) FROM logs GROUP BY ALL",
        "WITH x AS (SELECT loss FROM logs) SELECT list(loss), 2 ^ 3 FROM x",
        "SELECT l.loss ** 2, logs.loss, l.acc FROM logs l JOIN logs USING (run_id, epoch)",
        "SELECT loss ** 2 FROM logs WHERE epoch = ? ",
        # a positional reference is named by its column (``#2`` was named ``#2``: session 43)
        "SELECT #2, #2 || 'x', (#1), loss FROM logs",
        "SELECT #2 FROM logs UNION ALL SELECT #1 FROM logs",
    ],
)
def test_queries_of_other_shapes(repo: Path, flat: duckdb.DuckDBPyConnection, sql: str) -> None:
    if "?" in sql:
        with florsql.connect(repo) as con:
            cur = con.cursor()
            cur.execute(sql, [1])
            ours = [d[0] for d in cur.description]
        theirs = [d[0] for d in flat.execute(sql, [1]).description]
    else:
        ours, theirs = _both(repo, flat, sql)
    assert ours == theirs


def test_pandas_reads_the_names(repo: Path) -> None:
    import pandas as pd

    with florsql.connect(repo) as con, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # pandas: "only supports SQLAlchemy"
        df = pd.read_sql("SELECT epoch, list(loss), loss ** 2 FROM logs GROUP BY ALL", con)
    assert list(df.columns) == ["epoch", "list(loss)", "(loss ** 2)"]


def test_a_star_keeps_its_columns_between_the_items_around_it() -> None:
    assert names.apply(["a", "b", "power(x, 2)"], [names.STAR, "(x ** 2)"]) == [
        "a",
        "b",
        "(x ** 2)",
    ]
    assert names.apply(["power(x, 2)"], None) == ["power(x, 2)"]
